package core_test

import (
	"context"
	"fmt"

	"github.com/goray/goray/core"
)

var square = core.Register("example.square", func(_ context.Context, x int) (int, error) { return x * x, nil })

// Submit tasks and gather their results. (rt comes from core.Init in
// TestMain: see the package documentation.)
func Example() {
	ctx := context.Background()
	refs := make([]*core.ObjectRef, 5)
	for i := range refs {
		refs[i] = square.Remote(rt, i)
	}
	squares, err := core.GetAll[int](ctx, refs)
	fmt.Println(squares, err)
	// Output: [0 1 4 9 16] <nil>
}

// A ref as an argument: the task waits for it, not the caller.
func ExamplePut() {
	ctx := context.Background()
	ref, _ := core.Put(rt, 7)
	sq, err := core.Get[int](ctx, square.Remote(rt, ref))
	fmt.Println(sq, err)
	// Output: 49 <nil>
}
