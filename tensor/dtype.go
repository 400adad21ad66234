package tensor

import (
	"fmt"
	"strings"
)

// DType is a tensor's element type. The numbers are part of the wire
// format: never renumber, only append.
type DType uint8

// The element types.
const (
	Invalid   DType = 0
	Float32   DType = 1
	Float16   DType = 2
	BFloat16  DType = 3
	Float64   DType = 4
	Int8      DType = 5
	Int16     DType = 6
	Int32     DType = 7
	Int64     DType = 8
	Uint8     DType = 9
	Bool      DType = 10
	Uint16    DType = 11
	Uint32    DType = 12
	Uint64    DType = 13
	numDTypes       = 14
)

var dtypeInfo = [numDTypes]struct {
	name string
	size int
}{
	Invalid:  {"invalid", 0},
	Float32:  {"float32", 4},
	Float16:  {"float16", 2},
	BFloat16: {"bfloat16", 2},
	Float64:  {"float64", 8},
	Int8:     {"int8", 1},
	Int16:    {"int16", 2},
	Int32:    {"int32", 4},
	Int64:    {"int64", 8},
	Uint8:    {"uint8", 1},
	Bool:     {"bool", 1},
	Uint16:   {"uint16", 2},
	Uint32:   {"uint32", 4},
	Uint64:   {"uint64", 8},
}

// Size is the number of bytes of one element; 0 for an invalid dtype.
func (d DType) Size() int {
	if !d.Valid() {
		return 0
	}
	return dtypeInfo[d].size
}

// Valid reports whether d is one of the element types.
func (d DType) Valid() bool { return d > Invalid && d < numDTypes }

// String is the dtype's name, as in "float16".
func (d DType) String() string {
	if !d.Valid() {
		return fmt.Sprintf("dtype(%d)", uint8(d))
	}
	return dtypeInfo[d].name
}

// ParseDType returns the dtype named s ("float32", "f32", "fp16", "bf16",
// "int64", ...).
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "f32", "fp32":
		return Float32, nil
	case "f16", "fp16", "half":
		return Float16, nil
	case "bf16":
		return BFloat16, nil
	case "f64", "fp64", "double":
		return Float64, nil
	case "i8":
		return Int8, nil
	case "i16":
		return Int16, nil
	case "i32":
		return Int32, nil
	case "i64":
		return Int64, nil
	case "u8", "byte":
		return Uint8, nil
	}
	for d := DType(1); d < numDTypes; d++ {
		if strings.EqualFold(s, dtypeInfo[d].name) {
			return d, nil
		}
	}
	return Invalid, fmt.Errorf("tensor: unknown dtype %q: use one of float32, float16, bfloat16, float64, int8, int16, int32, int64, uint8, uint16, uint32, uint64, bool", s)
}

// Elem is the Go types that a tensor's elements can be viewed as. Float16
// and BFloat16 elements are viewed as uint16 bit patterns (see F16 and BF16).
type Elem interface {
	float32 | float64 | int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64 | bool
}

// DTypeOf returns the dtype whose elements are T. uint16 maps to Uint16;
// build Float16 and BFloat16 tensors with FromBytes or New.
func DTypeOf[T Elem]() DType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float32
	case float64:
		return Float64
	case int8:
		return Int8
	case int16:
		return Int16
	case int32:
		return Int32
	case int64:
		return Int64
	case uint8:
		return Uint8
	case uint16:
		return Uint16
	case uint32:
		return Uint32
	case uint64:
		return Uint64
	case bool:
		return Bool
	}
	return Invalid
}
