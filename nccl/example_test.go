package nccl_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// Two ranks, here goroutines of one process (they could as well be two
// processes given the same id), sum their tensors with AllReduce.
func Example() {
	backend, err := nccl.Lookup("cpu")
	if err != nil {
		panic(err)
	}
	id, err := backend.NewUniqueID() // made once, passed to every rank
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	results := make([][]float32, 2)
	var wg sync.WaitGroup
	for rank := range 2 {
		wg.Go(func() {
			c, err := backend.Init(ctx, id, rank, 2, -1)
			if err != nil {
				panic(err)
			}
			defer c.Close()
			data := []float32{1, 2, 3}
			for i := range data {
				data[i] *= float32(10*rank + 1) // rank 0: 1 2 3, rank 1: 11 22 33
			}
			x, _ := tensor.FromSlice(data)
			if err := c.AllReduce(ctx, x, x, nccl.Sum, cuda.Stream{}); err != nil {
				panic(err)
			}
			results[rank] = data
		})
	}
	wg.Wait()
	fmt.Println("rank 0:", results[0])
	fmt.Println("rank 1:", results[1])
	// Output:
	// rank 0: [12 24 36]
	// rank 1: [12 24 36]
}
