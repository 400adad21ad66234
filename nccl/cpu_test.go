package nccl_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// Helpers: goroutine ranks.

// cpuRanks makes a communicator of size goroutine ranks on backend b and
// closes it at the end of the test.
func cpuRanks(t testing.TB, b nccl.Backend, size int) []nccl.Communicator {
	t.Helper()
	id, err := b.NewUniqueID()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	comms := make([]nccl.Communicator, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for r := range size {
		wg.Go(func() { comms[r], errs[r] = b.Init(ctx, id, r, size, -1) })
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range comms {
			if c != nil {
				assert.NoError(t, c.Close())
			}
		}
	})
	for r, err := range errs {
		require.NoError(t, err, "rank %d", r)
	}
	return comms
}

// onEach runs f for every rank concurrently and returns each rank's error.
func onEach(comms []nccl.Communicator, f func(r int, c nccl.Communicator) error) []error {
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	for r, c := range comms {
		wg.Go(func() { errs[r] = f(r, c) })
	}
	wg.Wait()
	return errs
}

func requireAll(t testing.TB, errs []error) {
	t.Helper()
	for r, err := range errs {
		require.NoError(t, err, "rank %d", r)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Tensors of any dtype, built from and read back as float64 (the test
// values are small integers, exact in every dtype).

func makeT(t testing.TB, dt tensor.DType, vals []float64) *tensor.Tensor {
	t.Helper()
	x, err := tensor.New(dt, len(vals))
	require.NoError(t, err)
	setVals(t, x, vals)
	return x
}

func setVals(t testing.TB, x *tensor.Tensor, vals []float64) {
	t.Helper()
	switch x.DType() {
	case tensor.Float32:
		fill(t, x, vals, func(v float64) float32 { return float32(v) })
	case tensor.Float64:
		fill(t, x, vals, func(v float64) float64 { return v })
	case tensor.Float16:
		fill(t, x, vals, func(v float64) uint16 { return tensor.F16(float32(v)) })
	case tensor.BFloat16:
		fill(t, x, vals, func(v float64) uint16 { return tensor.BF16(float32(v)) })
	case tensor.Int8:
		fill(t, x, vals, func(v float64) int8 { return int8(v) })
	case tensor.Int16:
		fill(t, x, vals, func(v float64) int16 { return int16(v) })
	case tensor.Int32:
		fill(t, x, vals, func(v float64) int32 { return int32(v) })
	case tensor.Int64:
		fill(t, x, vals, func(v float64) int64 { return int64(v) })
	case tensor.Uint8:
		fill(t, x, vals, func(v float64) uint8 { return uint8(v) })
	case tensor.Uint16:
		fill(t, x, vals, func(v float64) uint16 { return uint16(v) })
	case tensor.Uint32:
		fill(t, x, vals, func(v float64) uint32 { return uint32(v) })
	case tensor.Uint64:
		fill(t, x, vals, func(v float64) uint64 { return uint64(v) })
	case tensor.Bool:
		fill(t, x, vals, func(v float64) bool { return v != 0 })
	default:
		t.Fatalf("dtype %s", x.DType())
	}
}

func fill[T tensor.Elem](t testing.TB, x *tensor.Tensor, vals []float64, conv func(float64) T) {
	s, err := tensor.As[T](x)
	require.NoError(t, err)
	for i, v := range vals {
		s[i] = conv(v)
	}
}

func vals(t testing.TB, x *tensor.Tensor) []float64 {
	t.Helper()
	switch x.DType() {
	case tensor.Float32:
		return read[float32](t, x, func(v float32) float64 { return float64(v) })
	case tensor.Float64:
		return read[float64](t, x, func(v float64) float64 { return v })
	case tensor.Float16:
		return read[uint16](t, x, func(v uint16) float64 { return float64(tensor.F16ToFloat32(v)) })
	case tensor.BFloat16:
		return read[uint16](t, x, func(v uint16) float64 { return float64(tensor.BF16ToFloat32(v)) })
	case tensor.Int8:
		return read[int8](t, x, func(v int8) float64 { return float64(v) })
	case tensor.Int16:
		return read[int16](t, x, func(v int16) float64 { return float64(v) })
	case tensor.Int32:
		return read[int32](t, x, func(v int32) float64 { return float64(v) })
	case tensor.Int64:
		return read[int64](t, x, func(v int64) float64 { return float64(v) })
	case tensor.Uint8:
		return read[uint8](t, x, func(v uint8) float64 { return float64(v) })
	case tensor.Uint16:
		return read[uint16](t, x, func(v uint16) float64 { return float64(v) })
	case tensor.Uint32:
		return read[uint32](t, x, func(v uint32) float64 { return float64(v) })
	case tensor.Uint64:
		return read[uint64](t, x, func(v uint64) float64 { return float64(v) })
	case tensor.Bool:
		return read[bool](t, x, func(v bool) float64 {
			if v {
				return 1
			}
			return 0
		})
	}
	t.Fatalf("dtype %s", x.DType())
	return nil
}

func read[T tensor.Elem](t testing.TB, x *tensor.Tensor, conv func(T) float64) []float64 {
	s, err := tensor.As[T](x)
	require.NoError(t, err)
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = conv(v)
	}
	return out
}

// input is rank r's element i: small integers, in [-3, 3] for signed and
// float dtypes, [0, 3] for unsigned ones, {0, 1} for bool, so sums and
// products of 4 ranks are exact even in bfloat16 and int8.
func input(dt tensor.DType, r, i int) float64 {
	v := float64((r*5+i*3+i/7)%7 - 3)
	switch dt {
	case tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		return math.Abs(v)
	case tensor.Bool:
		return float64((r + i) % 2)
	}
	return v
}

func inputs(dt tensor.DType, r, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = input(dt, r, i)
	}
	return out
}

// reference reduces element i over size ranks as the dtype would.
func reference(dt tensor.DType, op nccl.ReduceOp, size, i int) float64 {
	acc := input(dt, 0, i)
	for r := 1; r < size; r++ {
		v := input(dt, r, i)
		switch op {
		case nccl.Sum, nccl.Avg:
			acc += v
		case nccl.Prod:
			acc *= v
		case nccl.Max:
			acc = max(acc, v)
		case nccl.Min:
			acc = min(acc, v)
		}
	}
	if op != nccl.Avg {
		return acc
	}
	switch dt {
	case tensor.Float64:
		return acc / float64(size)
	case tensor.Float32:
		return float64(float32(acc) / float32(size))
	case tensor.Float16:
		return float64(tensor.F16ToFloat32(tensor.F16(float32(acc) / float32(size))))
	case tensor.BFloat16:
		return float64(tensor.BF16ToFloat32(tensor.BF16(float32(acc) / float32(size))))
	}
	return math.Trunc(acc / float64(size)) // integer division of the sum
}

var (
	allDTypes = []tensor.DType{tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16,
		tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64}
	allOps = []nccl.ReduceOp{nccl.Sum, nccl.Prod, nccl.Max, nccl.Min, nccl.Avg}
)

// A small chunk, so modest tensors take many parts and wrap the rings.
var smallChunks = nccl.CPUBackend{ChunkSize: 4 << 10, Slots: 2}

func TestCPURegistered(t *testing.T) {
	b, err := nccl.Lookup("cpu")
	require.NoError(t, err)
	assert.Equal(t, "cpu", b.Name())
	assert.Contains(t, nccl.Names(), "cpu")
}

func TestCPUAllReduce(t *testing.T) {
	for size := 1; size <= 4; size++ {
		comms := cpuRanks(t, nccl.CPU, size)
		for _, dt := range allDTypes {
			for _, op := range allOps {
				for _, n := range []int{0, 7, 1000} {
					t.Run(fmt.Sprintf("%dranks/%s/%s/%d", size, dt, op, n), func(t *testing.T) {
						checkAllReduce(t, comms, dt, op, n, false)
					})
				}
			}
		}
		for _, op := range []nccl.ReduceOp{nccl.Max, nccl.Min} {
			t.Run(fmt.Sprintf("%dranks/bool/%s", size, op), func(t *testing.T) {
				checkAllReduce(t, comms, tensor.Bool, op, 9, false)
			})
		}
		t.Run(fmt.Sprintf("%dranks/inplace", size), func(t *testing.T) {
			checkAllReduce(t, comms, tensor.Int32, nccl.Sum, 13, true)
		})
	}
}

func checkAllReduce(t *testing.T, comms []nccl.Communicator, dt tensor.DType, op nccl.ReduceOp, n int, inPlace bool) {
	size := len(comms)
	outs := make([]*tensor.Tensor, size)
	ctx := testCtx(t)
	requireAll(t, onEach(comms, func(r int, c nccl.Communicator) error {
		in := makeT(t, dt, inputs(dt, r, n))
		out := in
		if !inPlace {
			out = tensor.Zeros(dt, n)
		}
		outs[r] = out
		return c.AllReduce(ctx, in, out, op, cuda.Stream{})
	}))
	want := make([]float64, n)
	for i := range want {
		want[i] = reference(dt, op, size, i)
	}
	for r, out := range outs {
		require.Equal(t, want, vals(t, out), "rank %d", r)
	}
}

// TestCPUAllReduceManyParts: small chunks and two slots, so a tensor takes
// many parts per block and every ring wraps many times.
func TestCPUAllReduceManyParts(t *testing.T) {
	for size := 2; size <= 4; size++ {
		comms := cpuRanks(t, smallChunks, size)
		for _, n := range []int{4<<10 + 3, 50_001} {
			t.Run(fmt.Sprintf("%dranks/%d", size, n), func(t *testing.T) {
				checkAllReduce(t, comms, tensor.Float32, nccl.Sum, n, false)
				checkAllReduce(t, comms, tensor.Int16, nccl.Max, n, true)
			})
		}
	}
}

func TestCPUAllReduceLarge(t *testing.T) {
	const n = 4<<20 + 5 // 16 MiB + 20 bytes of float32: 64 chunks
	comms := cpuRanks(t, nccl.CPU, 3)
	ctx := testCtx(t)
	outs := make([][]float32, 3)
	requireAll(t, onEach(comms, func(r int, c nccl.Communicator) error {
		in := make([]float32, n)
		for i := range in {
			in[i] = float32((r + 1) * (i % 1000))
		}
		outs[r] = make([]float32, n)
		x, _ := tensor.FromSlice(in)
		y, _ := tensor.FromSlice(outs[r])
		return c.AllReduce(ctx, x, y, nccl.Sum, cuda.Stream{})
	}))
	for r, out := range outs {
		for i, v := range out {
			if v != float32(6*(i%1000)) {
				t.Fatalf("rank %d element %d: %v, want %v", r, i, v, 6*(i%1000))
			}
		}
	}
}

func TestCPUManySmallOps(t *testing.T) {
	comms := cpuRanks(t, smallChunks, 3)
	ctx := testCtx(t)
	requireAll(t, onEach(comms, func(r int, c nccl.Communicator) error {
		for k := range 500 {
			x := makeT(t, tensor.Int64, []float64{float64(r), float64(k), 1})
			if err := c.AllReduce(ctx, x, x, nccl.Sum, cuda.Stream{}); err != nil {
				return err
			}
			if got, want := vals(t, x), []float64{3, float64(3 * k), 3}; !equalFloats(got, want) {
				return fmt.Errorf("op %d: got %v, want %v", k, got, want)
			}
		}
		return nil
	}))
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCPUAllGather(t *testing.T) {
	for size := 1; size <= 4; size++ {
		for _, b := range []nccl.Backend{nccl.CPU, smallChunks} {
			comms := cpuRanks(t, b, size)
			for _, n := range []int{0, 1, 7, 3000} {
				for _, inPlace := range []bool{false, true} {
					t.Run(fmt.Sprintf("%dranks/%d/inplace=%v", size, n, inPlace), func(t *testing.T) {
						checkAllGather(t, comms, tensor.Float16, n, inPlace)
					})
				}
			}
		}
	}
}

func checkAllGather(t *testing.T, comms []nccl.Communicator, dt tensor.DType, n int, inPlace bool) {
	size := len(comms)
	outs := make([]*tensor.Tensor, size)
	ctx := testCtx(t)
	requireAll(t, onEach(comms, func(r int, c nccl.Communicator) error {
		out := tensor.Zeros(dt, size*n)
		in := makeT(t, dt, inputs(dt, r, n))
		if inPlace {
			// in aliases this rank's block of out.
			es := dt.Size()
			var err error
			in, err = tensor.FromBytes(dt, out.Bytes()[r*n*es:(r+1)*n*es], n)
			require.NoError(t, err)
			setVals(t, in, inputs(dt, r, n))
		}
		outs[r] = out
		return c.AllGather(ctx, in, out, cuda.Stream{})
	}))
	want := []float64{}
	for r := range size {
		want = append(want, inputs(dt, r, n)...)
	}
	for r, out := range outs {
		require.Equal(t, want, vals(t, out), "rank %d", r)
	}
}

func TestCPUReduceScatter(t *testing.T) {
	for size := 1; size <= 4; size++ {
		comms := cpuRanks(t, smallChunks, size)
		for _, dt := range []tensor.DType{tensor.Float32, tensor.BFloat16, tensor.Int8, tensor.Uint64} {
			for _, op := range allOps {
				for _, m := range []int{0, 7, 2500} {
					t.Run(fmt.Sprintf("%dranks/%s/%s/%d", size, dt, op, m), func(t *testing.T) {
						checkReduceScatter(t, comms, dt, op, m, false)
					})
				}
			}
		}
		t.Run(fmt.Sprintf("%dranks/inplace", size), func(t *testing.T) {
			checkReduceScatter(t, comms, tensor.Float64, nccl.Sum, 11, true)
		})
	}
}

func checkReduceScatter(t *testing.T, comms []nccl.Communicator, dt tensor.DType, op nccl.ReduceOp, m int, inPlace bool) {
	size := len(comms)
	outs := make([]*tensor.Tensor, size)
	ctx := testCtx(t)
	requireAll(t, onEach(comms, func(r int, c nccl.Communicator) error {
		in := makeT(t, dt, inputs(dt, r, size*m))
		out := tensor.Zeros(dt, m)
		if inPlace {
			es := dt.Size()
			var err error
			out, err = tensor.FromBytes(dt, in.Bytes()[r*m*es:(r+1)*m*es], m)
			require.NoError(t, err)
		}
		if err := c.ReduceScatter(ctx, in, out, op, cuda.Stream{}); err != nil {
			return err
		}
		outs[r] = out
		return nil
	}))
	for r, out := range outs {
		want := make([]float64, m)
		for i := range want {
			want[i] = reference(dt, op, size, r*m+i)
		}
		require.Equal(t, want, vals(t, out), "rank %d", r)
	}
}

func TestCPUBroadcast(t *testing.T) {
	for size := 1; size <= 4; size++ {
		comms := cpuRanks(t, smallChunks, size)
		for root := range size {
			for _, n := range []int{0, 7, 30_000} {
				t.Run(fmt.Sprintf("%dranks/root%d/%d", size, root, n), func(t *testing.T) {
					ts := make([]*tensor.Tensor, size)
					ctx := testCtx(t)
					requireAll(t, onEach(comms, func(r int, c nccl.Communicator) error {
						ts[r] = tensor.Zeros(tensor.Int32, n)
						if r == root {
							setVals(t, ts[r], inputs(tensor.Int32, root, n))
						}
						return c.Broadcast(ctx, ts[r], root, cuda.Stream{})
					}))
					for r, x := range ts {
						require.Equal(t, inputs(tensor.Int32, root, n), vals(t, x), "rank %d", r)
					}
				})
			}
		}
	}
}

func TestCPUSendRecv(t *testing.T) {
	for size := 2; size <= 4; size++ {
		for _, b := range []nccl.Backend{nccl.CPU, smallChunks} {
			comms := cpuRanks(t, b, size)
			for _, n := range []int{0, 7, 100_003} {
				t.Run(fmt.Sprintf("%dranks/%d", size, n), func(t *testing.T) {
					// A chain 0 → 1 → … → size-1, each rank adding its rank,
					// then every rank sends to rank 0 in turn.
					got := make([]*tensor.Tensor, size)
					ctx := testCtx(t)
					requireAll(t, onEach(comms, func(r int, c nccl.Communicator) error {
						x := makeT(t, tensor.Float64, inputs(tensor.Float64, 0, n))
						if r > 0 {
							if err := c.Recv(ctx, x, r-1, cuda.Stream{}); err != nil {
								return err
							}
							xs, _ := tensor.As[float64](x)
							for i := range xs {
								xs[i] += float64(r)
							}
						}
						if r < size-1 {
							if err := c.Send(ctx, x, r+1, cuda.Stream{}); err != nil {
								return err
							}
						}
						got[r] = x
						if r == 0 {
							for p := 1; p < size; p++ {
								y := tensor.Zeros(tensor.Int8, n+p)
								if err := c.Recv(ctx, y, p, cuda.Stream{}); err != nil {
									return err
								}
								if want := inputs(tensor.Int8, p, n+p); !equalFloats(vals(t, y), want) {
									return fmt.Errorf("from rank %d: got %v, want %v", p, vals(t, y), want)
								}
							}
							return nil
						}
						return c.Send(ctx, makeT(t, tensor.Int8, inputs(tensor.Int8, r, n+r)), 0, cuda.Stream{})
					}))
					for r := range size {
						want := inputs(tensor.Float64, 0, n)
						for i := range want {
							want[i] += float64(r * (r + 1) / 2)
						}
						require.Equal(t, want, vals(t, got[r]), "rank %d", r)
					}
				})
			}
		}
	}
}

func TestCPUSendRecvLarge(t *testing.T) {
	comms := cpuRanks(t, nccl.CPU, 2)
	const n = 16<<20 + 5
	src := make([]uint8, n)
	for i := range src {
		src[i] = uint8(i*7 + i>>13)
	}
	dst := make([]uint8, n)
	ctx := testCtx(t)
	requireAll(t, onEach(comms, func(r int, c nccl.Communicator) error {
		if r == 0 {
			x, _ := tensor.FromSlice(src)
			return c.Send(ctx, x, 1, cuda.Stream{})
		}
		x, _ := tensor.FromSlice(dst)
		return c.Recv(ctx, x, 0, cuda.Stream{})
	}))
	require.Equal(t, src, dst)
}

func TestCPUSingleRank(t *testing.T) {
	c := cpuRanks(t, nccl.CPU, 1)[0]
	ctx := testCtx(t)
	in := makeT(t, tensor.Float32, []float64{1, 2, 3})
	out := tensor.Zeros(tensor.Float32, 3)
	require.NoError(t, c.AllReduce(ctx, in, out, nccl.Avg, cuda.Stream{}))
	assert.Equal(t, []float64{1, 2, 3}, vals(t, out))
	out = tensor.Zeros(tensor.Float32, 3)
	require.NoError(t, c.AllGather(ctx, in, out, cuda.Stream{}))
	assert.Equal(t, []float64{1, 2, 3}, vals(t, out))
	out = tensor.Zeros(tensor.Float32, 3)
	require.NoError(t, c.ReduceScatter(ctx, in, out, nccl.Sum, cuda.Stream{}))
	assert.Equal(t, []float64{1, 2, 3}, vals(t, out))
	require.NoError(t, c.Broadcast(ctx, in, 0, cuda.Stream{}))
	assert.Equal(t, []float64{1, 2, 3}, vals(t, in))
	assert.ErrorIs(t, c.Send(ctx, in, 0, cuda.Stream{}), nccl.ErrBadArgument)
	assert.Equal(t, 0, c.Rank())
	assert.Equal(t, 1, c.Size())
	assert.Equal(t, "cpu", c.Backend())
}

func TestCPUBadArguments(t *testing.T) {
	comms := cpuRanks(t, nccl.CPU, 2)
	c := comms[0]
	ctx := testCtx(t)
	f4 := tensor.Zeros(tensor.Float32, 4)
	f8 := tensor.Zeros(tensor.Float32, 8)
	i4 := tensor.Zeros(tensor.Int32, 4)
	b4 := tensor.Zeros(tensor.Bool, 4)
	gpu, err := tensor.FromDevicePtr(tensor.Float32, tensor.CUDA(0), 0x1000, nil, 4)
	require.NoError(t, err)
	overIn, _ := tensor.FromBytes(tensor.Float32, f8.Bytes()[4:20], 4)
	overOut, _ := tensor.FromBytes(tensor.Float32, f8.Bytes()[0:16], 4)
	s := cuda.Stream{}
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{"allreduce shapes", "same dtype and shape", c.AllReduce(ctx, f4, f8, nccl.Sum, s)},
		{"allreduce dtypes", "same dtype and shape", c.AllReduce(ctx, f4, i4, nccl.Sum, s)},
		{"allreduce overlap", "overlap", c.AllReduce(ctx, overIn, overOut, nccl.Sum, s)},
		{"allreduce cuda", "use the \"nccl\" backend", c.AllReduce(ctx, gpu, f4, nccl.Sum, s)},
		{"allreduce nil", "nil", c.AllReduce(ctx, nil, f4, nccl.Sum, s)},
		{"allreduce bool sum", "Max (or) and Min (and)", c.AllReduce(ctx, b4, b4, nccl.Sum, s)},
		{"allreduce bad op", "use Sum", c.AllReduce(ctx, f4, f4, nccl.ReduceOp(9), s)},
		{"allgather size", "Size (2) times", c.AllGather(ctx, f4, f4, s)},
		{"allgather cuda", "host tensors", c.AllGather(ctx, f4, gpu, s)},
		{"reducescatter size", "Size (2) times", c.ReduceScatter(ctx, f4, f4, nccl.Sum, s)},
		{"broadcast root", "root 2 is outside", c.Broadcast(ctx, f4, 2, s)},
		{"broadcast cuda", "ToHost", c.Broadcast(ctx, gpu, 0, s)},
		{"send peer", "peer 2 is outside", c.Send(ctx, f4, 2, s)},
		{"send negative peer", "peer -1 is outside", c.Send(ctx, f4, -1, s)},
		{"send self", "cannot send to itself", c.Send(ctx, f4, 0, s)},
		{"recv peer", "peer 5 is outside", c.Recv(ctx, f4, 5, s)},
		{"recv cuda", "host tensors", c.Recv(ctx, gpu, 1, s)},
	} {
		assert.ErrorIs(t, tc.err, nccl.ErrBadArgument, tc.name)
		assert.ErrorContains(t, tc.err, tc.want, tc.name)
	}
	// Bad arguments fail before anything moves: the communicator still works.
	checkAllReduce(t, comms, tensor.Float32, nccl.Sum, 5, false)
}

func TestCPUInitBadArguments(t *testing.T) {
	id, err := nccl.CPU.NewUniqueID()
	require.NoError(t, err)
	ctx := testCtx(t)
	for _, tc := range []struct {
		rank, size int
		want       string
	}{
		{2, 2, "rank 2 is outside [0, 2)"},
		{-1, 2, "rank -1 is outside"},
		{0, 0, "size 0"},
		{0, 65, "size 65"},
	} {
		_, err := nccl.CPU.Init(ctx, id, tc.rank, tc.size, -1)
		assert.ErrorIs(t, err, nccl.ErrBadArgument)
		assert.ErrorContains(t, err, tc.want)
	}
	_, err = nccl.CPU.Init(ctx, nccl.UniqueID{}, 0, 1, -1)
	assert.ErrorIs(t, err, nccl.ErrBadArgument)
	assert.ErrorContains(t, err, "NewUniqueID")
	bad := id
	bad[40] ^= 1
	_, err = nccl.CPU.Init(ctx, bad, 0, 1, -1)
	assert.ErrorContains(t, err, "checksum")
	_, err = nccl.CPUBackend{ChunkSize: 1000}.NewUniqueID()
	assert.ErrorIs(t, err, nccl.ErrBadArgument)
	_, err = nccl.CPUBackend{Slots: 1}.NewUniqueID()
	assert.ErrorIs(t, err, nccl.ErrBadArgument)
}

func TestCPUInitSizeMismatch(t *testing.T) {
	id, err := nccl.CPU.NewUniqueID()
	require.NoError(t, err)
	errs := initRace(t, id, [][2]int{{0, 2}, {1, 3}})
	// Whichever rank created the segment, the other finds the sizes
	// differ, and aborts the segment so the first does not wait in vain.
	bad := 0
	for _, err := range errs {
		require.Error(t, err)
		if errors.Is(err, nccl.ErrBadArgument) {
			assert.ErrorContains(t, err, "pass the same size to every Init")
			bad++
		} else {
			assert.ErrorIs(t, err, nccl.ErrAborted)
		}
	}
	assert.Equal(t, 1, bad, "%v", errs)
}

// initRace runs Init for each (rank, size) concurrently, closes what
// succeeds, and returns the errors.
func initRace(t *testing.T, id nccl.UniqueID, ranks [][2]int) []error {
	ctx := testCtx(t)
	errs := make([]error, len(ranks))
	var wg sync.WaitGroup
	for i, rs := range ranks {
		wg.Go(func() {
			var c nccl.Communicator
			c, errs[i] = nccl.CPU.Init(ctx, id, rs[0], rs[1], -1)
			if c != nil {
				c.Close()
			}
		})
	}
	wg.Wait()
	return errs
}

func TestCPUInitDuplicateRank(t *testing.T) {
	id, err := nccl.CPU.NewUniqueID()
	require.NoError(t, err)
	errs := initRace(t, id, [][2]int{{0, 2}, {0, 2}})
	bad := 0
	for _, err := range errs {
		require.Error(t, err)
		if errors.Is(err, nccl.ErrBadArgument) {
			assert.ErrorContains(t, err, "already joined")
			bad++
		} else {
			assert.ErrorIs(t, err, nccl.ErrAborted)
		}
	}
	assert.Equal(t, 1, bad, "%v", errs)
}

func TestCPUInitTimeout(t *testing.T) {
	id, err := nccl.CPU.NewUniqueID()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = nccl.CPU.Init(ctx, id, 1, 3, -1)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "missing: 0, 2")
	// The segment is gone: the leak check in TestMain would say.
}

func TestCPUMismatchedSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   func(ctx context.Context, r int, c nccl.Communicator) error
	}{
		{"allreduce", func(ctx context.Context, r int, c nccl.Communicator) error {
			x := tensor.Zeros(tensor.Float32, 10*(r+1))
			return c.AllReduce(ctx, x, x, nccl.Sum, cuda.Stream{})
		}},
		{"allreduce large", func(ctx context.Context, r int, c nccl.Communicator) error {
			x := tensor.Zeros(tensor.Float32, 1<<20+r)
			return c.AllReduce(ctx, x, x, nccl.Sum, cuda.Stream{})
		}},
		{"allreduce dtype", func(ctx context.Context, r int, c nccl.Communicator) error {
			x := tensor.Zeros([]tensor.DType{tensor.Float32, tensor.Int32, tensor.Uint32}[r], 10)
			return c.AllReduce(ctx, x, x, nccl.Sum, cuda.Stream{})
		}},
		{"allreduce op", func(ctx context.Context, r int, c nccl.Communicator) error {
			x := tensor.Zeros(tensor.Float32, 10)
			return c.AllReduce(ctx, x, x, []nccl.ReduceOp{nccl.Sum, nccl.Max, nccl.Sum}[r], cuda.Stream{})
		}},
		{"different collectives", func(ctx context.Context, r int, c nccl.Communicator) error {
			if r == 1 {
				return c.Broadcast(ctx, tensor.Zeros(tensor.Float32, 30), 0, cuda.Stream{})
			}
			return c.AllGather(ctx, tensor.Zeros(tensor.Float32, 10), tensor.Zeros(tensor.Float32, 30), cuda.Stream{})
		}},
		{"broadcast root", func(ctx context.Context, r int, c nccl.Communicator) error {
			return c.Broadcast(ctx, tensor.Zeros(tensor.Float32, 30), r%2, cuda.Stream{})
		}},
		{"empty and not", func(ctx context.Context, r int, c nccl.Communicator) error {
			x := tensor.Zeros(tensor.Int8, min(r, 1)*5)
			return c.AllReduce(ctx, x, x, nccl.Sum, cuda.Stream{})
		}},
		{"sendrecv", func(ctx context.Context, r int, c nccl.Communicator) error {
			switch r {
			case 0:
				return c.Send(ctx, tensor.Zeros(tensor.Float32, 1<<20), 1, cuda.Stream{})
			case 1:
				return c.Recv(ctx, tensor.Zeros(tensor.Float32, 1<<19), 0, cuda.Stream{})
			}
			return c.Recv(ctx, tensor.Zeros(tensor.Float32, 1), 0, cuda.Stream{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			comms := cpuRanks(t, smallChunks, 3)
			ctx := testCtx(t)
			errs := onEach(comms, func(r int, c nccl.Communicator) error { return tc.op(ctx, r, c) })
			bad := 0
			for r, err := range errs {
				if err == nil {
					// Only a rank that sends and never receives (a
					// Broadcast root) can finish before anyone notices.
					continue
				}
				assert.NotErrorIs(t, err, context.DeadlineExceeded, "rank %d", r)
				if errors.Is(err, nccl.ErrBadArgument) {
					bad++
				} else {
					assert.ErrorIs(t, err, nccl.ErrAborted, "rank %d", r)
				}
			}
			assert.Positive(t, bad, "some rank must name the mismatch: %v", errs)
			// The communicator is aborted for good.
			for r, c := range comms {
				err := c.Broadcast(ctx, tensor.Zeros(tensor.Float32, 1), 0, cuda.Stream{})
				assert.ErrorIs(t, err, nccl.ErrAborted, "rank %d", r)
			}
		})
	}
}

func TestCPUAbortUnblocksRecv(t *testing.T) {
	comms := cpuRanks(t, nccl.CPU, 2)
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() { done <- comms[1].Recv(ctx, tensor.Zeros(tensor.Float32, 4), 0, cuda.Stream{}) }()
	// Whether Abort comes before or during the Recv, the Recv fails.
	require.NoError(t, comms[1].Abort())
	err := <-done
	require.ErrorIs(t, err, nccl.ErrAborted)
	assert.ErrorContains(t, err, "Abort was called on rank 1")
	// The peer sees the abort too, and later operations fail.
	err = comms[0].Send(ctx, tensor.Zeros(tensor.Float32, 1<<20), 1, cuda.Stream{})
	assert.ErrorIs(t, err, nccl.ErrAborted)
	assert.ErrorContains(t, err, "by rank 1")
	assert.ErrorIs(t, comms[1].Broadcast(ctx, tensor.Zeros(tensor.Float32, 1), 0, cuda.Stream{}), nccl.ErrAborted)
	require.NoError(t, comms[1].Abort(), "Abort twice")
}

func TestCPUContextDeadline(t *testing.T) {
	comms := cpuRanks(t, nccl.CPU, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := comms[0].Recv(ctx, tensor.Zeros(tensor.Float32, 4), 1, cuda.Stream{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// The stream position is unknown now: both ranks are aborted.
	ctx = testCtx(t)
	errs := onEach(comms, func(r int, c nccl.Communicator) error {
		x := tensor.Zeros(tensor.Float32, 4)
		return c.AllReduce(ctx, x, x, nccl.Sum, cuda.Stream{})
	})
	for r, err := range errs {
		assert.ErrorIs(t, err, nccl.ErrAborted, "rank %d", r)
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "rank %d", r)
	}
}

func TestCPUContextCancelDuringCollective(t *testing.T) {
	comms := cpuRanks(t, nccl.CPU, 3)
	ctx, cancel := context.WithCancel(context.Background())
	x := tensor.Zeros(tensor.Float32, 1<<20)
	done := make(chan error, 2)
	// Ranks 0 and 1 start an AllReduce; rank 2 never does.
	for r := range 2 {
		go func() {
			y := tensor.Zeros(tensor.Float32, 1<<20)
			done <- comms[r].AllReduce(ctx, y, y, nccl.Sum, cuda.Stream{})
		}()
	}
	time.AfterFunc(20*time.Millisecond, cancel)
	for range 2 {
		err := <-done
		// Each either saw its own ctx end, or the other's abort first.
		if !errors.Is(err, context.Canceled) {
			assert.ErrorIs(t, err, nccl.ErrAborted)
		}
	}
	assert.ErrorIs(t, comms[2].AllReduce(testCtx(t), x, x, nccl.Sum, cuda.Stream{}), nccl.ErrAborted)
}

func TestCPUClose(t *testing.T) {
	comms := cpuRanks(t, nccl.CPU, 2)
	ctx := testCtx(t)
	require.NoError(t, comms[0].Close())
	require.NoError(t, comms[0].Close(), "Close twice")
	require.NoError(t, comms[0].Abort(), "Abort after Close")
	assert.ErrorIs(t, comms[0].Send(ctx, tensor.Zeros(tensor.Float32, 4), 1, cuda.Stream{}), nccl.ErrClosed)
	// Rank 1 waiting for rank 0, which left: an error, not a hang.
	err := comms[1].Recv(ctx, tensor.Zeros(tensor.Float32, 4), 0, cuda.Stream{})
	assert.ErrorIs(t, err, nccl.ErrAborted)
	assert.ErrorContains(t, err, "rank 0 (pid")
	assert.ErrorContains(t, err, "closed the communicator while rank 1 waited for it")
}

// TestCPUCloseAfterSend: a rank may close as soon as its Send returns; the
// receiver still gets the data.
func TestCPUCloseAfterSend(t *testing.T) {
	comms := cpuRanks(t, nccl.CPU, 2)
	ctx := testCtx(t)
	require.NoError(t, comms[0].Send(ctx, makeT(t, tensor.Int16, []float64{1, 2, 3}), 1, cuda.Stream{}))
	require.NoError(t, comms[0].Close())
	x := tensor.Zeros(tensor.Int16, 3)
	require.NoError(t, comms[1].Recv(ctx, x, 0, cuda.Stream{}))
	assert.Equal(t, []float64{1, 2, 3}, vals(t, x))
}

func TestCPUUnaligned(t *testing.T) {
	// Tensors over odd offsets take the kernels' unaligned path.
	comms := cpuRanks(t, nccl.CPU, 2)
	ctx := testCtx(t)
	const n = 1500
	outs := make([]*tensor.Tensor, 2)
	requireAll(t, onEach(comms, func(r int, c nccl.Communicator) error {
		// (As copies a misaligned tensor's elements: fill an aligned one.)
		buf := make([]byte, 8*n+1)
		copy(buf[1:], makeT(t, tensor.Float64, inputs(tensor.Float64, r, n)).Bytes())
		in, _ := tensor.FromBytes(tensor.Float64, buf[1:], n)
		buf2 := make([]byte, 8*n+3)
		out, _ := tensor.FromBytes(tensor.Float64, buf2[3:], n)
		outs[r] = out
		return c.AllReduce(ctx, in, out, nccl.Avg, cuda.Stream{})
	}))
	for r, out := range outs {
		for i, v := range vals(t, out) {
			require.Equal(t, reference(tensor.Float64, nccl.Avg, 2, i), v, "rank %d element %d", r, i)
		}
	}
}
