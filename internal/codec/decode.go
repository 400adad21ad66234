package codec

import (
	"errors"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// IsRaw reports whether data holds a raw (zero-copy capable) payload: a
// []byte, a numeric slice or a host tensor. It checks only the header.
func IsRaw(data []byte) bool {
	if len(data) < headerSize || data[0] != magic || data[1] != version {
		return false
	}
	return data[2] == formatBytes || data[2] == formatNumeric || data[2] == formatTensor
}

// Decode decodes data into a new value of type t.
//
// Raw payloads: for t == []byte with a raw-bytes payload, and for t ==
// []float32 etc. with the matching raw numeric payload, the result ALIASES
// data (zero-copy) when data is suitably aligned for the element type;
// otherwise it copies. An aliased result shares data's memory: in goray that
// is a read-only view of shared object-store memory, so it must not be
// written, and it is only valid while data is. For t an interface type
// (e.g. any), raw bytes give []byte (aliased) and raw numeric payloads give
// the typed slice. A raw-bytes payload decodes into a string (a copy). A raw
// numeric payload decoded into a slice of a different element type is an
// error naming both types.
//
// CBOR payloads: the natural decoding. In interface-typed places, registered
// types (see RegisterType) come back as their Go types, other structs as
// map[string]any, maps with only string keys as map[string]any and other
// maps as map[any]any, integers as int64 (uint64 above MaxInt64, *big.Int
// beyond), floats as float64, and time.Time as time.Time. A payload that does
// not fit t gives an error that names t and wraps the library's error.
//
// Every error wraps ErrBadEncoding; type mismatches also wrap
// ErrTypeMismatch.
func Decode(data []byte, t reflect.Type) (reflect.Value, error) {
	if t == nil {
		return reflect.Value{}, badEncoding(nil, nil, "nil target type: pass reflect.TypeFor[T]()")
	}
	p := reflect.New(t)
	if err := decodeInto(data, p.Interface()); err != nil {
		return reflect.Value{}, err
	}
	return p.Elem(), nil
}

// Unmarshal decodes data into *ptr, replacing what *ptr held; see Decode.
// ptr must be a non-nil pointer. On error *ptr may hold part of the value.
func Unmarshal(data []byte, ptr any) error {
	rv := reflect.ValueOf(ptr)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return badEncoding(nil, nil, "Unmarshal needs a non-nil pointer, got %T: pass &v", ptr)
	}
	rv.Elem().SetZero() // the library merges into what is there, and leaves scalars alone on null
	return decodeInto(data, ptr)
}

// DecodeAs decodes data into a new T; see Decode. On error it returns T's
// zero value.
func DecodeAs[T any](data []byte) (T, error) {
	var v T
	if err := decodeInto(data, &v); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// decodeInto decodes data into *ptr, which holds its type's zero value.
func decodeInto(data []byte, ptr any) error {
	format, kind, err := readHeader(data, ptr)
	if err != nil {
		return err
	}
	payload := data[headerSize:]
	switch format {
	case formatCBOR:
		return decodeCBOR(payload, ptr)
	case formatBytes:
		return decodeBytes(payload, ptr)
	case formatTensor:
		return decodeTensor(payload, ptr)
	default:
		return decodeNumeric(payload, kinds[kind], ptr)
	}
}

// readHeader validates the header and returns its format and element kind.
func readHeader(data []byte, ptr any) (format, kind uint8, err error) {
	if len(data) < headerSize {
		return 0, 0, badEncoding(targetType(ptr), nil,
			"%d bytes is too short for the %d-byte header: the buffer was truncated, or is not a codec encoding", len(data), headerSize)
	}
	if data[0] != magic {
		return 0, 0, badEncoding(targetType(ptr), nil,
			"bad magic byte 0x%02x (want 0x%02x 'g'): not a codec encoding, or read from the wrong offset", data[0], magic)
	}
	if data[1] != version {
		return 0, 0, badEncoding(targetType(ptr), nil,
			"encoding version %d, but this binary reads version %d: build sender and receiver from the same goray", data[1], version)
	}
	format, kind = data[2], data[3]
	switch format {
	case formatCBOR, formatBytes, formatTensor:
		if kind != kindNone {
			return 0, 0, badEncoding(targetType(ptr), nil,
				"element kind %d in a %s payload, whose kind byte must be 0: the header is corrupt", kind, formatName(format))
		}
	case formatNumeric:
		if kind == kindNone || kind >= numKinds {
			return 0, 0, badEncoding(targetType(ptr), nil,
				"unknown element kind %d in a raw numeric payload (known: 1..%d): the header is corrupt, or a newer goray wrote it", kind, numKinds-1)
		}
	default:
		return 0, 0, badEncoding(targetType(ptr), nil,
			"unknown payload format %d (known: 1 CBOR, 2 raw bytes, 3 raw numeric, 4 tensor): the header is corrupt, or a newer goray wrote it", format)
	}
	if r := data[4:headerSize]; r[0]|r[1]|r[2]|r[3] != 0 {
		return 0, 0, badEncoding(targetType(ptr), nil,
			"reserved header bytes 4..7 are % x, want zero: the header is corrupt, or a newer goray wrote it", r)
	}
	if format == formatNumeric {
		if k := kinds[kind]; len(data[headerSize:])%k.wireSize != 0 {
			return 0, 0, badEncoding(targetType(ptr), nil,
				"raw []%s payload of %d bytes is not a multiple of the element size %d: the buffer was truncated",
				k.name, len(data)-headerSize, k.wireSize)
		}
	}
	return format, kind, nil
}

// targetType is the type decodeInto decodes into, for error messages.
func targetType(ptr any) reflect.Type {
	return reflect.TypeOf(ptr).Elem()
}

func decodeCBOR(body []byte, ptr any) error {
	if decodeScalar(body, ptr) {
		return nil
	}
	m := current.Load()
	if err := m.dm.Unmarshal(body, ptr); err != nil {
		return cborError(targetType(ptr), err)
	}
	var err error
	if p, ok := ptr.(*any); ok {
		var x any
		var changed bool
		if x, changed, err = m.normalize(*p); changed {
			*p = x
		}
	} else if t := targetType(ptr); needsWalk(t) {
		err = m.walk(reflect.ValueOf(ptr).Elem())
	}
	if err != nil {
		return badEncoding(targetType(ptr), err, "bad CBOR payload: %v", err)
	}
	return nil
}

func cborError(t reflect.Type, err error) error {
	var ute *cbor.UnmarshalTypeError
	if errors.As(err, &ute) {
		return mismatch(t, err, "%v: decode into the type that was encoded, or into any to see what it is", err)
	}
	return badEncoding(t, err, "bad CBOR payload: %v", err)
}

// decodeBytes stores a raw-bytes payload through ptr: aliased into []byte
// and interface targets, copied into strings.
func decodeBytes(payload []byte, ptr any) error {
	b := payload[:len(payload):len(payload)] // appending to it must not run past the payload
	switch p := ptr.(type) {
	case *[]byte:
		*p = b
		return nil
	case *any:
		*p = b
		return nil
	case *string:
		*p = string(b)
		return nil
	}
	v := settable(ptr)
	switch {
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8:
		v.SetBytes(b) // []byte, or a named byte-slice type
		return nil
	case v.Kind() == reflect.String:
		v.SetString(string(b))
		return nil
	case v.Kind() == reflect.Interface && reflect.TypeFor[[]byte]().Implements(v.Type()):
		v.Set(reflect.ValueOf(b))
		return nil
	}
	return mismatch(v.Type(), nil, "payload is raw []byte: decode into []byte, string or any")
}

// decodeNumeric stores a raw numeric payload of kind k through ptr.
func decodeNumeric(payload []byte, k *elemKind, ptr any) error {
	if handled, err := k.set(ptr, payload); handled {
		if err != nil {
			return badEncoding(targetType(ptr), nil, "%v", err)
		}
		return nil
	}
	v := settable(ptr)
	t := v.Type()
	switch {
	case v.Kind() == reflect.Interface && k.sliceType.Implements(t):
	case v.Kind() == reflect.Slice && t.Elem().Kind() == k.goKind:
		// A named slice type (type Vec []float64) or element type (type
		// Celsius float64): same memory layout, so reinterpret below.
	default:
		return mismatch(t, nil, "payload is raw []%s (element kind %s): decode into []%s or convert", k.name, k.name, k.name)
	}
	s, err := k.view(payload)
	if err != nil {
		return badEncoding(t, nil, "%v", err)
	}
	sv := reflect.ValueOf(s)
	if v.Kind() == reflect.Slice && t != k.sliceType {
		tmp := reflect.New(k.sliceType)
		tmp.Elem().Set(sv)
		sv = reflect.NewAt(t, tmp.UnsafePointer()).Elem()
	}
	v.Set(sv)
	return nil
}

// settable returns the value a raw payload is stored in: *ptr, after
// following and allocating any pointers, so that a **[]byte target works as
// well as a *[]byte one.
func settable(ptr any) reflect.Value {
	v := reflect.ValueOf(ptr).Elem()
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	return v
}
