package codec

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// The 8-byte header. Its size keeps a raw payload 8-byte aligned whenever
// the buffer is, which is what lets Decode alias numeric slices.
const (
	headerSize = 8
	magic      = 'g'
	version    = 1
)

// Payload formats (header byte 2). Part of the wire format: only append.
const (
	formatCBOR    uint8 = 1 // a CBOR data item
	formatBytes   uint8 = 2 // a raw []byte
	formatNumeric uint8 = 3 // a raw little-endian numeric slice; byte 3 names the element kind
	// formatTensor = 4 (tensor.go)
)

func formatName(f uint8) string {
	switch f {
	case formatCBOR:
		return "CBOR"
	case formatBytes:
		return "raw bytes"
	case formatNumeric:
		return "raw numeric"
	case formatTensor:
		return "tensor"
	}
	return fmt.Sprintf("format %d", f)
}

// Encoded is a value ready to be written: Size bytes in total, written by
// WriteTo into a destination (e.g. an object-store buffer) with a single copy
// of any raw payload.
//
// For []byte and numeric slices an Encoded aliases the caller's slice: the
// caller must not modify the slice until the Encoded has been written. The
// zero Encoded has Size 0 and writes nothing.
type Encoded struct {
	buf    []byte // formatCBOR: the whole encoding, header included, owned by the Encoded; formatTensor: the metadata after the header
	raw    []byte // raw formats: the payload after the header (and metadata), usually the caller's memory
	format uint8
	kind   uint8
}

// Size is the number of bytes WriteTo writes.
func (e Encoded) Size() int {
	switch e.format {
	case 0:
		return 0
	case formatCBOR:
		return len(e.buf)
	}
	return headerSize + len(e.buf) + len(e.raw)
}

// WriteTo writes the encoding into dst and returns Size(). It panics if
// len(dst) < Size(), like an out-of-range copy: sizing dst is the caller's
// job and a short one is a bug.
func (e Encoded) WriteTo(dst []byte) int {
	n := e.Size()
	if len(dst) < n {
		panic(fmt.Sprintf("codec: Encoded.WriteTo: dst has %d bytes, the encoding needs %d: size it with Size()", len(dst), n))
	}
	if e.format == formatCBOR {
		return copy(dst, e.buf)
	}
	if n == 0 {
		return 0
	}
	e.putHeader(dst)
	copy(dst[headerSize+copy(dst[headerSize:], e.buf):], e.raw)
	return n
}

// Bytes returns a fresh slice holding the whole encoding.
func (e Encoded) Bytes() []byte {
	out := make([]byte, e.Size())
	e.WriteTo(out)
	return out
}

// AppendTo appends the encoding to dst and returns the extended slice.
func (e Encoded) AppendTo(dst []byte) []byte {
	n := e.Size()
	dst = grow(dst, n)
	e.WriteTo(dst[len(dst)-n:])
	return dst
}

// grow extends dst by n bytes, reallocating at most once.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst[:len(dst)+n]
	}
	out := make([]byte, len(dst)+n, 2*cap(dst)+n)
	copy(out, dst)
	return out
}

func (e Encoded) putHeader(dst []byte) {
	_ = dst[headerSize-1]
	dst[0], dst[1], dst[2], dst[3] = magic, version, e.format, e.kind
	dst[4], dst[5], dst[6], dst[7] = 0, 0, 0, 0
}

// cborHeader is the header of every CBOR encoding.
var cborHeader = [headerSize]byte{magic, version, formatCBOR, kindNone}

// encodedNull is the encoding of nil.
func encodedNull() Encoded {
	return Encoded{buf: append(cborHeader[:], 0xf6), format: formatCBOR}
}

// Encode prepares v for writing. []byte and the numeric slices ([]int8,
// []int16, []int32, []int64, []int, []uint16, []uint32, []uint64, []uint,
// []float32, []float64, exactly those types) become raw payloads that alias
// v's memory: nothing is copied until WriteTo. A nil slice of those types
// encodes as nil. Everything else is encoded as CBOR now.
//
// Encode rejects, with an error wrapping ErrUnsupportedType, values that
// hold funcs, channels, complex numbers or unsafe pointers; values that nest
// deeper than the decoder accepts (64 levels of slices, maps, structs and
// registered types), which includes any pointer cycle; and times outside
// years 0..9999, which the time encoding (RFC 3339 text) cannot carry back.
func Encode(v any) (Encoded, error) {
	switch x := v.(type) {
	case nil:
		return encodedNull(), nil
	case []byte:
		if x == nil {
			return encodedNull(), nil
		}
		return Encoded{raw: x, format: formatBytes}, nil
	}
	if e, ok := encodeNumeric(v); ok {
		return e, nil
	}
	if e, ok, err := encodeTensor(v); ok {
		return e, err
	}
	if buf, ok := encodeScalar(v); ok {
		return Encoded{buf: buf, format: formatCBOR}, nil
	}
	m := current.Load()
	if err := m.precheck(v); err != nil {
		if errors.Is(err, errTooDeep) {
			err = fmt.Errorf("value nests deeper than %d levels (each slice, map, struct and registered type is one): "+
				"break the pointer cycle, or flatten the data", maxNesting)
		}
		return Encoded{}, &codecError{msg: fmt.Sprintf("codec: encode %T: %v", v, err), errs: []error{ErrUnsupportedType}}
	}
	b := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if b.Cap() <= maxPooledBuffer {
			b.Reset()
			bufPool.Put(b)
		}
	}()
	b.Reset()
	b.Write(cborHeader[:])
	if err := m.em.MarshalToBuffer(v, b); err != nil {
		return Encoded{}, encodeError(v, err)
	}
	return Encoded{buf: bytes.Clone(b.Bytes()), format: formatCBOR}, nil
}

// Marshal returns the whole encoding of v in a fresh slice: Encode, then
// Bytes.
func Marshal(v any) ([]byte, error) {
	e, err := Encode(v)
	if err != nil {
		return nil, err
	}
	if e.format == formatCBOR {
		return e.buf, nil // already a fresh slice that nothing else holds
	}
	return e.Bytes(), nil
}

// bufPool holds the scratch buffers CBOR encodes into; the result is copied
// out at its exact size so that an Encoded never pins a large buffer.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer keeps one huge value from parking a huge buffer in the pool.
const maxPooledBuffer = 1 << 20

func encodeError(v any, err error) error {
	var ute *cbor.UnsupportedTypeError
	if errors.As(err, &ute) {
		return unsupportedError(reflect.TypeOf(v), ute.Type, err)
	}
	return fmt.Errorf("codec: encode %T: %w", v, err)
}

func unsupportedError(top, reported reflect.Type, cause error) error {
	var what string
	switch path, bad := findUnencodable(top, map[reflect.Type]bool{}); {
	case bad != nil && path == "":
		what = "type cannot be encoded"
	case bad != nil:
		what = fmt.Sprintf("%s has type %s, which cannot be encoded", strings.TrimPrefix(path, "."), bad)
	default: // behind an interface, where only the library saw it
		what = fmt.Sprintf("it holds a %s, which cannot be encoded", reported)
	}
	return &codecError{
		msg:  fmt.Sprintf("codec: encode %s: %s: send plain data (structs, slices, maps, numbers, strings)", top, what),
		errs: []error{ErrUnsupportedType, cause},
	}
}
