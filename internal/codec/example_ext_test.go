package codec_test

import (
	"fmt"

	"github.com/goray/goray/internal/codec"
)

func ExampleEncode() {
	weights := []float32{0.5, 1.5, 2.5}
	e, err := codec.Encode(weights) // aliases weights: nothing copied yet
	if err != nil {
		panic(err)
	}
	buf := make([]byte, e.Size()) // in goray: an object-store buffer
	e.WriteTo(buf)                // the one copy

	got, err := codec.DecodeAs[[]float32](buf) // aliases buf when aligned
	fmt.Println(got, err, codec.IsRaw(buf))
	// Output: [0.5 1.5 2.5] <nil> true
}

func ExampleDecodeAs() {
	data, _ := codec.Marshal(map[string]any{"n": 1, "tags": []string{"a"}})

	typed, _ := codec.DecodeAs[struct {
		N    int
		Tags []string
	}](data)
	fmt.Printf("%+v\n", typed)

	untyped, _ := codec.DecodeAs[any](data)
	fmt.Printf("%#v\n", untyped)
	// Output:
	// {N:1 Tags:[a]}
	// map[string]interface {}{"n":1, "tags":[]interface {}{"a"}}
}

func ExampleRegisterType() {
	// In a real program: func init() { codec.RegisterType("geo.Point", Point{}) }
	// (Point is registered this way by this package's tests.)
	data, _ := codec.Marshal([]any{Point{X: 1, Y: 2}, "label"})
	v, _ := codec.DecodeAs[any](data)
	fmt.Printf("%#v\n", v)
	// Output: []interface {}{codec_test.Point{X:1, Y:2}, "label"}
}
