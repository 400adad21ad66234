package nccl

import (
	"context"
	"testing"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/tensor"
)

// BenchmarkNCCL times the NCCL binding on one GPU with one rank: an
// in-place AllReduce, and a Send/Recv to itself fused in a Group. Each
// operation is enqueued and waited for, so ops/s includes the enqueue,
// the kernel and the completion poll. It skips, saying why, without a GPU
// and libnccl.
func BenchmarkNCCL(b *testing.B) {
	c := gpuComm(b)
	ctx := context.Background()
	sizes := []struct {
		name  string
		bytes int
	}{{"100KB", 100_000}, {"16MiB", 16 << 20}}
	var s cuda.Stream
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	}

	b.Run("allreduce_1rank", func(b *testing.B) {
		for _, sz := range sizes {
			b.Run(sz.name, func(b *testing.B) {
				x := devTensor(b, 0, tensor.Float32, make([]byte, sz.bytes), sz.bytes/4)
				b.SetBytes(int64(sz.bytes))
				for b.Loop() {
					if err := c.AllReduce(ctx, x, x, Sum, s); err != nil {
						b.Fatal(err)
					}
				}
				report(b)
			})
		}
	})

	b.Run("sendrecv_self", func(b *testing.B) {
		for _, sz := range sizes {
			b.Run(sz.name, func(b *testing.B) {
				x := devTensor(b, 0, tensor.Uint8, make([]byte, sz.bytes), sz.bytes)
				y := devTensor(b, 0, tensor.Uint8, make([]byte, sz.bytes), sz.bytes)
				pair := func() error {
					if err := c.Send(ctx, x, 0, s); err != nil {
						return err
					}
					return c.Recv(ctx, y, 0, s)
				}
				b.SetBytes(int64(sz.bytes))
				for b.Loop() {
					if err := c.Group(ctx, pair); err != nil {
						b.Fatal(err)
					}
				}
				report(b)
			})
		}
	})
}
