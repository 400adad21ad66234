package codec

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"unsafe"
)

// Element kinds of a raw numeric payload (header byte 3). The numbers are
// part of the wire format: never renumber, only append.
const (
	kindNone    uint8 = 0
	kindInt8    uint8 = 1
	kindInt16   uint8 = 2
	kindInt32   uint8 = 3
	kindInt64   uint8 = 4
	kindUint16  uint8 = 5
	kindUint32  uint8 = 6
	kindUint64  uint8 = 7
	kindFloat32 uint8 = 8
	kindFloat64 uint8 = 9
	kindInt     uint8 = 10 // Go int, 64 bits on the wire whatever the host's int size
	kindUint    uint8 = 11 // Go uint, likewise
	numKinds          = 12
)

// numeric is the element types that travel as raw numeric slices. uint8 is
// absent: []byte has its own format.
type numeric interface {
	int8 | int16 | int32 | int64 | uint16 | uint32 | uint64 | float32 | float64 | int | uint
}

// elemKind describes one element kind: how to name it in errors and how to
// turn a payload into the Go slice that an interface-typed target receives.
type elemKind struct {
	name      string       // "float32"
	wireSize  int          // bytes per element on the wire
	goKind    reflect.Kind // the Go element kind a typed target must have
	sliceType reflect.Type // []float32
	// view returns the payload as the kind's Go slice: aliased when the host
	// layout matches the wire and the payload is aligned, else a copy.
	view func(payload []byte) (any, error)
	// set stores view(payload) through ptr when ptr is *[]T for this kind,
	// skipping reflection; it reports whether ptr had that type.
	set func(ptr any, payload []byte) (bool, error)
}

// hostLittleEndian reports the host byte order; the wire is little-endian,
// so only little-endian hosts can alias. A variable so tests can force the
// element-by-element path on any host.
var hostLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

const intIs64 = strconv.IntSize == 64

var kinds = func() [numKinds]*elemKind {
	var k [numKinds]*elemKind
	k[kindInt8] = makeKind[int8]("int8")
	k[kindInt16] = makeKind[int16]("int16")
	k[kindInt32] = makeKind[int32]("int32")
	k[kindInt64] = makeKind[int64]("int64")
	k[kindUint16] = makeKind[uint16]("uint16")
	k[kindUint32] = makeKind[uint32]("uint32")
	k[kindUint64] = makeKind[uint64]("uint64")
	k[kindFloat32] = makeKind[float32]("float32")
	k[kindFloat64] = makeKind[float64]("float64")
	k[kindInt] = makeKind[int]("int")
	k[kindUint] = makeKind[uint]("uint")
	return k
}()

func makeKind[T numeric](name string) *elemKind {
	var zero T
	wire := int(unsafe.Sizeof(zero))
	if name == "int" || name == "uint" {
		wire = 8
	}
	view := func(payload []byte) ([]T, error) { return viewAs[T](payload, wire) }
	return &elemKind{
		name:      name,
		wireSize:  wire,
		goKind:    reflect.TypeFor[T]().Kind(),
		sliceType: reflect.TypeFor[[]T](),
		view: func(payload []byte) (any, error) {
			s, err := view(payload)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		set: func(ptr any, payload []byte) (bool, error) {
			p, ok := ptr.(*[]T)
			if !ok {
				return false, nil
			}
			s, err := view(payload)
			if err != nil {
				return true, err
			}
			*p = s
			return true, nil
		},
	}
}

// viewAs returns payload as a []T. len(payload) is a multiple of wire,
// checked by the caller. The result aliases payload when T's host layout is
// the wire layout and &payload[0] is aligned for T; otherwise it is a copy.
func viewAs[T numeric](payload []byte, wire int) ([]T, error) {
	n := len(payload) / wire
	if n == 0 {
		return []T{}, nil
	}
	var zero T
	size := int(unsafe.Sizeof(zero))
	p := unsafe.Pointer(&payload[0])
	if size == wire && hostLittleEndian {
		if uintptr(p)%unsafe.Alignof(zero) == 0 {
			return unsafe.Slice((*T)(p), n), nil
		}
		out := make([]T, n)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), len(payload)), payload)
		return out, nil
	}
	// Element by element: a big-endian host, or a 32-bit int/uint reading
	// 64-bit wire values.
	out := make([]T, n)
	for i := range out {
		b := payload[i*wire : (i+1)*wire]
		q := unsafe.Pointer(&out[i])
		switch {
		case wire == 1:
			*(*uint8)(q) = b[0]
		case wire == 2:
			*(*uint16)(q) = binary.LittleEndian.Uint16(b)
		case wire == 4:
			*(*uint32)(q) = binary.LittleEndian.Uint32(b)
		case size == 8:
			*(*uint64)(q) = binary.LittleEndian.Uint64(b)
		default: // 32-bit int or uint from a 64-bit wire value
			u := binary.LittleEndian.Uint64(b)
			if _, signed := any(zero).(int); signed {
				v := int64(u)
				if v < math.MinInt32 || v > math.MaxInt32 {
					return nil, fmt.Errorf("element %d is %d, which overflows this host's 32-bit int: decode into []int64", i, v)
				}
				*(*int32)(q) = int32(v)
			} else {
				if u > math.MaxUint32 {
					return nil, fmt.Errorf("element %d is %d, which overflows this host's 32-bit uint: decode into []uint64", i, u)
				}
				*(*uint32)(q) = uint32(u)
			}
		}
	}
	return out, nil
}

// wireBytes returns s as its little-endian wire bytes: an alias of s's
// memory when the host layout is the wire layout, else a fresh copy.
func wireBytes[T numeric](s []T, wire int) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var zero T
	size := int(unsafe.Sizeof(zero))
	if size == wire && hostLittleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*size)
	}
	out := make([]byte, len(s)*wire)
	for i := range s {
		b := out[i*wire : (i+1)*wire]
		q := unsafe.Pointer(&s[i])
		switch {
		case wire == 1:
			b[0] = *(*uint8)(q)
		case wire == 2:
			binary.LittleEndian.PutUint16(b, *(*uint16)(q))
		case wire == 4:
			binary.LittleEndian.PutUint32(b, *(*uint32)(q))
		case size == 8:
			binary.LittleEndian.PutUint64(b, *(*uint64)(q))
		default: // 32-bit int or uint widened to 64 bits
			if _, signed := any(zero).(int); signed {
				binary.LittleEndian.PutUint64(b, uint64(int64(*(*int32)(q))))
			} else {
				binary.LittleEndian.PutUint64(b, uint64(*(*uint32)(q)))
			}
		}
	}
	return out
}

// encodeNumeric is Encode for the exact numeric slice types; ok is false for
// any other value.
func encodeNumeric(v any) (e Encoded, ok bool) {
	var raw []byte
	var kind uint8
	var isNil bool
	switch s := v.(type) {
	case []int8:
		raw, kind, isNil = wireBytes(s, 1), kindInt8, s == nil
	case []int16:
		raw, kind, isNil = wireBytes(s, 2), kindInt16, s == nil
	case []int32:
		raw, kind, isNil = wireBytes(s, 4), kindInt32, s == nil
	case []int64:
		raw, kind, isNil = wireBytes(s, 8), kindInt64, s == nil
	case []uint16:
		raw, kind, isNil = wireBytes(s, 2), kindUint16, s == nil
	case []uint32:
		raw, kind, isNil = wireBytes(s, 4), kindUint32, s == nil
	case []uint64:
		raw, kind, isNil = wireBytes(s, 8), kindUint64, s == nil
	case []float32:
		raw, kind, isNil = wireBytes(s, 4), kindFloat32, s == nil
	case []float64:
		raw, kind, isNil = wireBytes(s, 8), kindFloat64, s == nil
	case []int:
		raw, kind, isNil = wireBytes(s, 8), kindInt, s == nil
	case []uint:
		raw, kind, isNil = wireBytes(s, 8), kindUint, s == nil
	default:
		return Encoded{}, false
	}
	if isNil {
		// A nil slice travels as CBOR null so that it decodes to nil, while
		// an empty one stays empty: a raw payload cannot tell them apart.
		return encodedNull(), true
	}
	return Encoded{raw: raw, format: formatNumeric, kind: kind}, true
}
