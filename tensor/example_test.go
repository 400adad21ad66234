package tensor_test

import (
	"fmt"

	"github.com/goray/goray/tensor"
)

func Example() {
	// A host tensor over a Go slice (no copy), viewed back as float32s.
	x, err := tensor.FromSlice([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	if err != nil {
		panic(err)
	}
	v, _ := tensor.As[float32](x)
	v[0] = 10
	fmt.Println(x, x.NumBytes(), "bytes")

	// float16 elements are uint16 bit patterns.
	h := tensor.Zeros(tensor.Float16, 2)
	bits, _ := tensor.As[uint16](h)
	bits[1] = tensor.F16(1.5)
	fmt.Println(tensor.F16ToFloat32(bits[1]))

	// The metadata a receiver needs to allocate the tensor.
	m, _, _ := tensor.ParseMeta(tensor.AppendMeta(nil, x.Meta()))
	fmt.Println(m.DType, m.Shape, m.Device)
	// Output:
	// tensor(float32, [2 3], cpu) 24 bytes
	// 1.5
	// float32 [2 3] cpu
}
