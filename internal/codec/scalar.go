package codec

import (
	"encoding/binary"
	"math"
)

// Fast paths for the scalars that most task arguments and results are.
// They write exactly the bytes the CBOR library would (TestScalarMatchesLibrary
// checks), and read only the forms they fully understand; anything else,
// errors included, goes to the library, so behaviour is the library's.

// CBOR major types and simple values used here.
const (
	majorUint   = 0
	majorNegInt = 1
	majorText   = 3
	cborFalse   = 0xf4
	cborTrue    = 0xf5
	cborNull    = 0xf6
	cborUndef   = 0xf7
	cborFloat32 = 0xfa
	cborFloat64 = 0xfb
)

// encodeScalar returns the whole encoding (header included) of v if v is a
// bool, string, or a number of a predeclared type.
func encodeScalar(v any) ([]byte, bool) {
	var b []byte
	switch x := v.(type) {
	case int:
		b = appendInt(newCBOR(9), int64(x))
	case int64:
		b = appendInt(newCBOR(9), x)
	case int32:
		b = appendInt(newCBOR(5), int64(x))
	case int16:
		b = appendInt(newCBOR(3), int64(x))
	case int8:
		b = appendInt(newCBOR(2), int64(x))
	case uint:
		b = appendHead(newCBOR(9), majorUint, uint64(x))
	case uint64:
		b = appendHead(newCBOR(9), majorUint, x)
	case uint32:
		b = appendHead(newCBOR(5), majorUint, uint64(x))
	case uint16:
		b = appendHead(newCBOR(3), majorUint, uint64(x))
	case uint8:
		b = appendHead(newCBOR(2), majorUint, uint64(x))
	case float64:
		b = binary.BigEndian.AppendUint64(append(newCBOR(9), cborFloat64), math.Float64bits(x))
	case float32:
		b = binary.BigEndian.AppendUint32(append(newCBOR(5), cborFloat32), math.Float32bits(x))
	case bool:
		s := byte(cborFalse)
		if x {
			s = cborTrue
		}
		b = append(newCBOR(1), s)
	case string:
		b = append(appendHead(newCBOR(9+len(x)), majorText, uint64(len(x))), x...)
	default:
		return nil, false
	}
	return b, true
}

// newCBOR returns a slice holding the CBOR header, with room for n more bytes.
func newCBOR(n int) []byte {
	return append(make([]byte, 0, headerSize+n), cborHeader[:]...)
}

func appendInt(b []byte, x int64) []byte {
	if x < 0 {
		return appendHead(b, majorNegInt, uint64(-1-x))
	}
	return appendHead(b, majorUint, uint64(x))
}

// appendHead appends a CBOR head in its shortest form.
func appendHead(b []byte, major byte, x uint64) []byte {
	m := major << 5
	switch {
	case x < 24:
		return append(b, m|byte(x))
	case x <= math.MaxUint8:
		return append(b, m|24, byte(x))
	case x <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(x))
	case x <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(x))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), x)
}

// readHead parses the CBOR head at the start of b: major type, argument and
// head length. ok is false for forms the fast paths leave to the library
// (indefinite lengths, reserved values, truncation).
func readHead(b []byte) (major byte, arg uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, 0, false
	}
	major, ai := b[0]>>5, b[0]&31
	switch {
	case ai < 24:
		return major, uint64(ai), 1, true
	case ai == 24 && len(b) >= 2:
		return major, uint64(b[1]), 2, true
	case ai == 25 && len(b) >= 3:
		return major, uint64(binary.BigEndian.Uint16(b[1:])), 3, true
	case ai == 26 && len(b) >= 5:
		return major, uint64(binary.BigEndian.Uint32(b[1:])), 5, true
	case ai == 27 && len(b) >= 9:
		return major, binary.BigEndian.Uint64(b[1:]), 9, true
	}
	return 0, 0, 0, false
}

// readInt reads a body that is exactly one CBOR integer within
// [-1-maxNeg, maxPos].
func readInt(body []byte, maxPos, maxNeg uint64) (int64, bool) {
	major, arg, n, ok := readHead(body)
	if !ok || n != len(body) {
		return 0, false
	}
	switch {
	case major == majorUint && arg <= maxPos:
		return int64(arg), true
	case major == majorNegInt && arg <= maxNeg:
		return -1 - int64(arg), true
	}
	return 0, false
}

// decodeScalar decodes body into ptr if ptr is one of the common scalar
// targets and body one of the forms read here. It reports whether it did.
func decodeScalar(body []byte, ptr any) bool {
	switch p := ptr.(type) {
	case *int:
		x, ok := readInt(body, math.MaxInt, math.MaxInt)
		if ok {
			*p = int(x)
		}
		return ok
	case *int64:
		x, ok := readInt(body, math.MaxInt64, math.MaxInt64)
		if ok {
			*p = x
		}
		return ok
	case *uint64:
		major, arg, n, ok := readHead(body)
		if ok && n == len(body) && major == majorUint {
			*p = arg
			return true
		}
	case *float64:
		if len(body) == 9 && body[0] == cborFloat64 {
			*p = math.Float64frombits(binary.BigEndian.Uint64(body[1:]))
			return true
		}
	case *bool:
		if len(body) == 1 && (body[0] == cborFalse || body[0] == cborTrue) {
			*p = body[0] == cborTrue
			return true
		}
	case *string:
		s, ok := readText(body)
		if ok {
			*p = s
		}
		return ok
	case *any:
		x, ok := scalarAny(body)
		if ok {
			*p = x
		}
		return ok
	}
	return false
}

func readText(body []byte) (string, bool) {
	major, arg, n, ok := readHead(body)
	if !ok || major != majorText || arg != uint64(len(body)-n) {
		return "", false
	}
	return string(body[n:]), true
}

// scalarAny decodes what the library would put in an interface-typed place
// for the scalar forms, with normalize's integer rule applied.
func scalarAny(body []byte) (any, bool) {
	if len(body) == 0 {
		return nil, false
	}
	switch body[0] {
	case cborFalse:
		return false, len(body) == 1
	case cborTrue:
		return true, len(body) == 1
	case cborNull, cborUndef:
		return nil, len(body) == 1
	case cborFloat64:
		if len(body) == 9 {
			return math.Float64frombits(binary.BigEndian.Uint64(body[1:])), true
		}
		return nil, false
	case cborFloat32:
		if len(body) == 5 {
			return float64(math.Float32frombits(binary.BigEndian.Uint32(body[1:]))), true
		}
		return nil, false
	}
	major, arg, n, ok := readHead(body)
	if !ok {
		return nil, false
	}
	switch major {
	case majorUint:
		if n != len(body) {
			return nil, false
		}
		if arg <= math.MaxInt64 {
			return int64(arg), true
		}
		return arg, true
	case majorNegInt:
		if n != len(body) || arg > math.MaxInt64 {
			return nil, false
		}
		return -1 - int64(arg), true
	case majorText:
		return readText(body)
	}
	return nil, false
}
