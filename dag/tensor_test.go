package dag_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
	"github.com/goray/goray/cuda"
	"github.com/goray/goray/dag"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// Shard is the tensor test actor: rank r makes tensors whose element i is
// r*1000 + i + x.
type Shard struct{ rank int }

func (s *Shard) Make(ctx context.Context, x, n int) (*tensor.Tensor, error) {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(s.rank*1000 + i + x)
	}
	return tensor.FromSlice(v, n)
}

func (s *Shard) Scale(ctx context.Context, t *tensor.Tensor, by float32) (*tensor.Tensor, error) {
	in, err := tensor.As[float32](t)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(in))
	for i, x := range in {
		out[i] = x * by
	}
	return tensor.FromSlice(out, t.Shape()...)
}

func (s *Shard) Values(ctx context.Context, t *tensor.Tensor) ([]float32, error) {
	v, err := tensor.As[float32](t)
	if err != nil {
		return nil, err
	}
	return append([]float32{}, v...), nil
}

func (s *Shard) MakeOrFail(ctx context.Context, x, n int) (*tensor.Tensor, error) {
	if x < 0 {
		return nil, fmt.Errorf("shard %d: negative input %d", s.rank, x)
	}
	return s.Make(ctx, x, n)
}

func (s *Shard) Count(ctx context.Context, x int) (int, error) { return x, nil }
func (s *Shard) Pid(ctx context.Context) (int, error)          { return os.Getpid(), nil }
func (s *Shard) SetEnv(ctx context.Context, k, v string) (bool, error) {
	return true, os.Setenv(k, v)
}

var shardClass = actor.Register("dag.Shard", func(ctx context.Context, rank int) (*Shard, error) { return &Shard{rank: rank}, nil })

func newShards(t *testing.T, n int) []*actor.Handle {
	t.Helper()
	hs := make([]*actor.Handle, n)
	for i := range hs {
		h, err := shardClass.Remote(rt, i)
		require.NoError(t, err)
		hs[i] = h
		t.Cleanup(func() { actor.Kill(h, true) })
	}
	for _, h := range hs {
		_, err := core.Get[int](testCtx(t), h.Call("Pid"))
		require.NoError(t, err)
	}
	return hs
}

func cpuComm() dag.CompileOption { return dag.Communicator(nccl.CPU) }

func ramp(base float32, n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = (base + float32(i)) * scale
	}
	return v
}

// A tensor crosses an NCCL edge: metadata through the ring, data through
// the communicator.
func TestNCCLEdge(t *testing.T) {
	hs := newShards(t, 2)
	for _, n := range []int{0, 5, 300_000} { // 300k float32: several chunks of the communicator
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			in := dag.Input()
			a := dag.Bind(hs[0], "Make", in, n).WithTensorTransport(dag.NCCL)
			b := dag.Bind(hs[1], "Values", dag.Bind(hs[1], "Scale", a, float32(2)))
			g := compile(t, b, cpuComm())
			for x := range 5 {
				require.Equal(t, ramp(float32(x), n, 2), run[[]float32](t, g, x))
			}
		})
	}
}

// Three actors pass a tensor along over NCCL edges.
func TestNCCLPipelineThreeActors(t *testing.T) {
	hs := newShards(t, 3)
	in := dag.Input()
	a := dag.Bind(hs[0], "Make", in, 1000).WithTensorTransport(dag.NCCL)
	b := dag.Bind(hs[1], "Scale", a, float32(3)).WithTensorTransport(dag.NCCL)
	c := dag.Bind(hs[2], "Scale", b, float32(0.5))
	g := compile(t, dag.Bind(hs[2], "Values", c), cpuComm(), dag.MaxInflight(4))
	ctx := testCtx(t)
	var fs []*dag.Future
	for x := range 4 { // pipelined: four in flight
		f, err := g.Execute(ctx, x)
		require.NoError(t, err)
		fs = append(fs, f)
	}
	for x, f := range fs {
		got, err := dag.Get[[]float32](ctx, f)
		require.NoError(t, err)
		require.Equal(t, ramp(float32(x), 1000, 1.5), got)
	}
}

// Without GPUs, Auto (the default) sends tensors through shared memory.
func TestAutoTransportWithoutGPUs(t *testing.T) {
	hs := newShards(t, 2)
	in := dag.Input()
	a := dag.Bind(hs[0], "Make", in, 64)
	g := compile(t, dag.Bind(hs[1], "Values", a))
	require.Equal(t, ramp(3, 64, 1), run[[]float32](t, g, 3))
	assert.Contains(t, g.Visualize(), `[label="shm"]`)
	assert.NotContains(t, g.Visualize(), "nccl")
}

func TestCollectives(t *testing.T) {
	const n = 12
	hs := newShards(t, 3)
	ref := func(x int) [][]float32 { // each rank's input
		out := make([][]float32, 3)
		for r := range out {
			out[r] = ramp(float32(r*1000+x), n, 1)
		}
		return out
	}
	cases := []struct {
		name string
		coll func(nodes ...dag.Node) *dag.CollectiveNode
		want func(in [][]float32, rank int) []float32
	}{
		{"allreduce_sum", dag.AllReduce, func(in [][]float32, _ int) []float32 {
			out := make([]float32, n)
			for _, v := range in {
				for i := range v {
					out[i] += v[i]
				}
			}
			return out
		}},
		{"allreduce_max", func(nodes ...dag.Node) *dag.CollectiveNode { return dag.AllReduce(nodes...).WithOp(nccl.Max) },
			func(in [][]float32, _ int) []float32 { return in[2] }},
		{"allgather", dag.AllGather, func(in [][]float32, _ int) []float32 {
			return append(append(append([]float32{}, in[0]...), in[1]...), in[2]...)
		}},
		{"reducescatter", dag.ReduceScatter, func(in [][]float32, rank int) []float32 {
			out := make([]float32, n/3)
			for _, v := range in {
				for i := range out {
					out[i] += v[rank*n/3+i]
				}
			}
			return out
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := dag.Input()
			var parts []dag.Node
			for _, h := range hs {
				parts = append(parts, dag.Bind(h, "Make", in, n))
			}
			coll := c.coll(parts...)
			var outs []dag.Node
			for i, h := range hs {
				outs = append(outs, dag.Bind(h, "Values", coll.Output(i)))
			}
			g := compile(t, dag.MultiOutput(outs...), cpuComm())
			for x := range 3 {
				got := run[[]any](t, g, x)
				for r := range hs {
					require.Equal(t, c.want(ref(x), r), got[r], "rank %d execution %d", r, x)
				}
			}
		})
	}
}

// An application error before an NCCL edge travels as an error value; the
// graph stays usable.
func TestNCCLEdgeErrorTravels(t *testing.T) {
	hs := newShards(t, 2)
	in := dag.Input()
	a := dag.Bind(hs[0], "MakeOrFail", in, 8).WithTensorTransport(dag.NCCL)
	g := compile(t, dag.Bind(hs[1], "Values", a), cpuComm())
	ctx := testCtx(t)
	f, err := g.Execute(ctx, -1)
	require.NoError(t, err)
	_, err = f.Get(ctx)
	require.ErrorContains(t, err, "negative input -1")
	require.Equal(t, ramp(2, 8, 1), run[[]float32](t, g, 2))
}

// A participant whose input failed: every participant skips the
// collective and gets an error; the next execution works.
func TestCollectiveInputFails(t *testing.T) {
	hs := newShards(t, 2)
	in := dag.Input()
	a := dag.Bind(hs[0], "MakeOrFail", in, 4)
	b := dag.Bind(hs[1], "Make", in, 4)
	ar := dag.AllReduce(a, b)
	g := compile(t, dag.MultiOutput(dag.Bind(hs[0], "Values", ar.Output(0)), dag.Bind(hs[1], "Values", ar.Output(1))), cpuComm())
	ctx := testCtx(t)
	f, err := g.Execute(ctx, -5)
	require.NoError(t, err)
	_, err = f.Get(ctx)
	require.Error(t, err) // whichever output settles the execution first
	if !strings.Contains(err.Error(), "negative input -5") {
		require.ErrorContains(t, err, "AllReduce(2 tensors) was skipped: the input of participant 0 failed")
	}
	got := run[[]any](t, g, 1)
	want := make([]float32, 4)
	for i := range want {
		want[i] = float32(1+i) + float32(1000+1+i)
	}
	require.Equal(t, want, got[0])
	require.Equal(t, want, got[1])
}

// kill -9 of one participant: the others' collective fails instead of
// hanging, and the graph reports the death.
func TestCollectivePeerKilled(t *testing.T) {
	hs := newShards(t, 3)
	in := dag.Input()
	var parts []dag.Node
	for _, h := range hs {
		parts = append(parts, dag.Bind(h, "Make", in, 1<<16))
	}
	ar := dag.AllReduce(parts...)
	var outs []dag.Node
	for i, h := range hs {
		outs = append(outs, dag.Bind(h, "Values", ar.Output(i)))
	}
	g := compile(t, dag.MultiOutput(outs...), cpuComm(), dag.GetTimeout(30*time.Second))
	ctx := testCtx(t)
	run[[]any](t, g, 0)
	pid, err := core.Get[int](ctx, hs[1].Call("Pid"))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	start := time.Now()
	var gerr error
	for i := 0; i < 20 && gerr == nil; i++ {
		f, err := g.Execute(ctx, i)
		if err != nil {
			gerr = err
			break
		}
		_, gerr = f.Get(ctx)
	}
	require.Error(t, gerr)
	assert.ErrorIs(t, gerr, dag.ErrActorDied)
	assert.Less(t, time.Since(start), 25*time.Second, "the survivors noticed the death")
	require.NoError(t, g.Teardown())
	// The survivors are usable in a new graph.
	in2 := dag.Input()
	ar2 := dag.AllReduce(dag.Bind(hs[0], "Make", in2, 2), dag.Bind(hs[2], "Make", in2, 2))
	g2 := compile(t, dag.MultiOutput(dag.Bind(hs[0], "Values", ar2.Output(0)), dag.Bind(hs[2], "Values", ar2.Output(1))), cpuComm())
	got := run[[]any](t, g2, 0)
	require.Equal(t, []float32{2000, 2002}, got[0])
}

func TestTensorCompileErrors(t *testing.T) {
	hs := newShards(t, 2)
	ctx := testCtx(t)
	mustFail := func(out dag.Node, want string, opts ...dag.CompileOption) {
		t.Helper()
		g, err := dag.Compile(ctx, out, opts...)
		if g != nil {
			g.Teardown()
		}
		require.Error(t, err)
		require.ErrorContains(t, err, want)
	}
	in := dag.Input()
	mustFail(dag.Bind(hs[0], "Make", in, 4).WithTensorTransport(dag.NCCL), "driver holds no rank", cpuComm())
	in = dag.Input()
	mustFail(dag.Bind(hs[1], "Count", dag.Bind(hs[0], "Count", in).WithTensorTransport(dag.NCCL)), "carries a *tensor.Tensor", cpuComm())
	in = dag.Input()
	a, b := dag.Bind(hs[0], "Make", in, 4), dag.Bind(hs[0], "Make", in, 8)
	ar := dag.AllReduce(a, b)
	mustFail(dag.MultiOutput(dag.Bind(hs[0], "Values", ar.Output(0)), dag.Bind(hs[0], "Values", ar.Output(1))), "different actor", cpuComm())
	in = dag.Input()
	ar = dag.AllReduce(dag.Bind(hs[0], "Make", in, 4), dag.Bind(hs[1], "Make", in, 4))
	mustFail(dag.MultiOutput(dag.Bind(hs[1], "Values", ar.Output(0)), dag.Bind(hs[1], "Values", ar.Output(1))), "stays on actor", cpuComm())
	in = dag.Input()
	ar = dag.AllReduce(dag.Bind(hs[0], "Make", in, 4), dag.Bind(hs[1], "Make", in, 4))
	mustFail(dag.MultiOutput(ar.Output(0), ar.Output(1)), "collective's result", cpuComm())
	in = dag.Input()
	mustFail(dag.Bind(hs[0], "Values", dag.Bind(hs[0], "Make", in, 4)), "Communicator(nil)", dag.Communicator(nil))
	// The default backend is NCCL; without libnccl Compile says so.
	in = dag.Input()
	a = dag.Bind(hs[0], "Make", in, 4).WithTensorTransport(dag.NCCL)
	g, err := dag.Compile(ctx, dag.Bind(hs[1], "Values", a))
	if err == nil {
		g.Teardown()
		t.Skip("libnccl is present here: the default backend compiled")
	}
	require.ErrorContains(t, err, "libnccl")
}

func TestVisualizeNCCL(t *testing.T) {
	hs := newShards(t, 2)
	in := dag.Input()
	a := dag.Bind(hs[0], "Make", in, 4).WithTensorTransport(dag.NCCL)
	b := dag.Bind(hs[1], "Scale", a, float32(2))
	c := dag.Bind(hs[0], "Make", in, 4)
	ar := dag.AllReduce(c, b).WithOp(nccl.Max)
	g := compile(t, dag.MultiOutput(dag.Bind(hs[0], "Values", ar.Output(0)), dag.Bind(hs[1], "Values", ar.Output(1))), cpuComm())
	dot := g.Visualize()
	for i, h := range hs {
		dot = strings.ReplaceAll(dot, h.ID()[:8], fmt.Sprintf("ACTOR%d", i))
	}
	golden := filepath.Join("testdata", "visualize_nccl.dot")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		require.NoError(t, os.WriteFile(golden, []byte(dot), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), dot)
	got := run[[]any](t, g, 0)
	require.Equal(t, []float32{0, 2, 4, 6}, got[0])
}

func (s *Shard) MakeOnGPU(ctx context.Context, x, n int) (*tensor.Tensor, error) {
	h, err := s.Make(ctx, x, n)
	if err != nil {
		return nil, err
	}
	return h.ToDevice(tensor.CUDA(0))
}

func (s *Shard) HostValues(ctx context.Context, t *tensor.Tensor) ([]float32, error) {
	h, err := t.ToHost()
	if err != nil {
		return nil, err
	}
	return tensor.As[float32](h)
}

// On a GPU machine: two actors sharing the one GPU pass a device tensor
// over an NCCL edge of the default (nccl) backend. NCCL accepts two ranks
// on one GPU only with NCCL_MULTI_RANK_GPU_ENABLE=1 (2.30+); an NCCL that
// refuses says so, and the test reports it.
func TestNCCLEdgeOnGPU(t *testing.T) {
	if n, err := cuda.DeviceCount(); err != nil || n == 0 {
		t.Skipf("no GPU here (%v): this test runs on a GPU machine (docs/GPU.md)", err)
	}
	hs := make([]*actor.Handle, 2)
	for i := range hs {
		h, err := shardClass.Options(core.NumGPUs(0.5)).Remote(rt, i)
		require.NoError(t, err)
		hs[i] = h
		t.Cleanup(func() { actor.Kill(h, true) })
		// In the actor's process, before its communicator is made.
		_, err = core.Get[bool](testCtx(t), h.Call("SetEnv", "NCCL_MULTI_RANK_GPU_ENABLE", "1"))
		require.NoError(t, err)
	}
	in := dag.Input()
	a := dag.Bind(hs[0], "MakeOnGPU", in, 1<<16).WithTensorTransport(dag.NCCL)
	g, err := dag.Compile(testCtx(t), dag.Bind(hs[1], "HostValues", a))
	if err != nil && strings.Contains(err.Error(), "Duplicate GPU") {
		t.Skipf("this NCCL refuses two ranks on one GPU: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { g.Teardown() })
	for x := range 3 {
		require.Equal(t, ramp(float32(x), 1<<16, 1), run[[]float32](t, g, x))
	}
}

// countingBackend is a user's own communicator (Ray's custom
// communicator): the CPU backend, counting the collectives it runs in this
// process. Registered at init, so every actor process of the test binary
// has it.
type countingBackend struct{ nccl.Backend }

type countingComm struct{ nccl.Communicator }

var collectivesRun atomic.Int64

func (countingBackend) Name() string { return "test-counting" }

func (b countingBackend) Init(ctx context.Context, id nccl.UniqueID, rank, size, device int) (nccl.Communicator, error) {
	c, err := b.Backend.Init(ctx, id, rank, size, device)
	if err != nil {
		return nil, err
	}
	return countingComm{c}, nil
}

func (c countingComm) Backend() string { return "test-counting" }

func (c countingComm) AllReduce(ctx context.Context, in, out *tensor.Tensor, op nccl.ReduceOp, s cuda.Stream) error {
	collectivesRun.Add(1)
	return c.Communicator.AllReduce(ctx, in, out, op, s)
}

func init() { nccl.Register(countingBackend{nccl.CPU}) }

func (s *Shard) Collectives(ctx context.Context) (int64, error) { return collectivesRun.Load(), nil }

func TestCustomCommunicator(t *testing.T) {
	hs := newShards(t, 2)
	in := dag.Input()
	ar := dag.AllReduce(dag.Bind(hs[0], "Make", in, 3), dag.Bind(hs[1], "Make", in, 3))
	g := compile(t, dag.MultiOutput(dag.Bind(hs[0], "Values", ar.Output(0)), dag.Bind(hs[1], "Values", ar.Output(1))),
		dag.Communicator(countingBackend{nccl.CPU}))
	for x := range 5 {
		got := run[[]any](t, g, x)
		require.Equal(t, []float32{float32(1000 + 2*x), float32(1002 + 2*x), float32(1004 + 2*x)}, got[0])
	}
	for _, h := range hs {
		n, err := core.Get[int64](testCtx(t), h.Call("Collectives"))
		require.NoError(t, err)
		assert.Equal(t, int64(10), n, "5 executions × (the agreement flag + the AllReduce) in each actor")
	}
	// An unregistered backend is refused at compile time.
	in = dag.Input()
	_, err := dag.Compile(testCtx(t), dag.Bind(hs[0], "Values", dag.Bind(hs[0], "Make", in, 1)), dag.Communicator(unregistered{nccl.CPU}))
	require.ErrorContains(t, err, "nccl.Register")
}

type unregistered struct{ nccl.Backend }

func (unregistered) Name() string { return "nobody-registered-me" }

// A CUDA IPC edge carries a host tensor as an ordinary value (device
// tensors need a GPU: TestCUDAIPCEdgeOnGPU).
func TestCUDAIPCEdgeHostTensor(t *testing.T) {
	hs := newShards(t, 2)
	in := dag.Input()
	a := dag.Bind(hs[0], "Make", in, 16).WithTensorTransport(dag.CUDAIPC)
	g := compile(t, dag.Bind(hs[1], "Values", a))
	assert.Contains(t, g.Visualize(), `[label="cuda_ipc"]`)
	for x := range 3 {
		require.Equal(t, ramp(float32(x), 16, 1), run[[]float32](t, g, x))
	}
	ctx := testCtx(t)
	in = dag.Input()
	_, err := dag.Compile(ctx, dag.Bind(hs[0], "Make", in, 4).WithTensorTransport(dag.CUDAIPC))
	require.ErrorContains(t, err, "the driver holds no GPU")
	in = dag.Input()
	_, err = dag.Compile(ctx, dag.Bind(hs[1], "Count", dag.Bind(hs[0], "Count", in).WithTensorTransport(dag.CUDAIPC)))
	require.ErrorContains(t, err, "a CUDA IPC edge carries a *tensor.Tensor")
}

// On a GPU machine: two actors sharing the one GPU; Auto picks CUDA IPC.
func TestCUDAIPCEdgeOnGPU(t *testing.T) {
	if n, err := cuda.DeviceCount(); err != nil || n == 0 {
		t.Skipf("no GPU here (%v): this test runs on a GPU machine (docs/GPU.md)", err)
	}
	hs := make([]*actor.Handle, 2)
	for i := range hs {
		h, err := shardClass.Options(core.NumGPUs(0.5)).Remote(rt, i)
		require.NoError(t, err)
		hs[i] = h
		t.Cleanup(func() { actor.Kill(h, true) })
	}
	in := dag.Input()
	a := dag.Bind(hs[0], "MakeOnGPU", in, 1<<16)
	g := compile(t, dag.Bind(hs[1], "HostValues", a), dag.MaxInflight(3))
	assert.Contains(t, g.Visualize(), `[label="cuda_ipc"]`)
	for x := range 8 { // more executions than slots: staging buffers are reused
		require.Equal(t, ramp(float32(x), 1<<16, 1), run[[]float32](t, g, x))
	}
}

// failingBackend is the CPU backend whose rank 1 cannot join.
type failingBackend struct{ nccl.Backend }

func (failingBackend) Name() string { return "test-failing" }

func (b failingBackend) Init(ctx context.Context, id nccl.UniqueID, rank, size, device int) (nccl.Communicator, error) {
	if rank == 1 {
		return nil, errors.New("rank 1 cannot join (test)")
	}
	return b.Backend.Init(ctx, id, rank, size, device)
}

func init() { nccl.Register(failingBackend{nccl.CPU}) }

// A rank that cannot join fails Compile, and the rank waiting for it lets
// go at once instead of holding its actor until the join's bound.
func TestCommunicatorJoinFails(t *testing.T) {
	hs := newShards(t, 2)
	ctx := testCtx(t)
	in := dag.Input()
	a := dag.Bind(hs[0], "Make", in, 4).WithTensorTransport(dag.NCCL)
	start := time.Now()
	_, err := dag.Compile(ctx, dag.Bind(hs[1], "Values", a), dag.Communicator(failingBackend{nccl.CPU}))
	require.ErrorContains(t, err, "rank 1 cannot join")
	_, err = core.Get[int](ctx, hs[0].Call("Pid"))
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 15*time.Second, "actor 0 was free again long before the join's 60 s bound")
}
