package fakecuda_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
	"github.com/goray/goray/cuda"
	"github.com/goray/goray/dag"
	"github.com/goray/goray/internal/fakecuda"
	"github.com/goray/goray/internal/testutil"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// The device-tensor paths of tensor, dag and actor, run against the fake
// CUDA runtime: this process finds it through GORAY_LIBCUDART, the workers
// (whose environment drops GORAY_ variables) through LD_LIBRARY_PATH.

var rt *core.Runtime

func TestMain(m *testing.M) {
	if os.Getenv("GORAY_WORKER") == "" && os.Getenv("GORAY_REEXEC_ROLE") == "" {
		dir, err := os.MkdirTemp("", "fakecuda")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
		lib, err := fakecuda.Install(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Setenv("GORAY_LIBCUDART", lib)
		os.Setenv("LD_LIBRARY_PATH", dir+":"+os.Getenv("LD_LIBRARY_PATH"))
	}
	var err error
	rt, err = core.Init(context.Background(), core.NumCPUs(4), core.NumGPUs(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "core.Init:", err)
		os.Exit(1)
	}
	testutil.MainWith(m, func() error {
		err := rt.Shutdown()
		fakecuda.RemoveStale()
		return err
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Stage makes and reads tensors on its (fake) GPU.
type Stage struct{ rank int }

func (s *Stage) Make(_ context.Context, x, n int) (*tensor.Tensor, error) {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(s.rank*1000 + i + x)
	}
	h, err := tensor.FromSlice(v)
	if err != nil {
		return nil, err
	}
	return h.ToDevice(tensor.CUDA(0))
}

func (s *Stage) Values(_ context.Context, t *tensor.Tensor) ([]float32, error) {
	if !t.Device().IsCUDA() {
		return nil, fmt.Errorf("%s is not on a GPU", t)
	}
	h, err := t.ToHost()
	if err != nil {
		return nil, err
	}
	return tensor.As[float32](h)
}

func (s *Stage) Devices(context.Context) (int, error) { return cuda.DeviceCount() }

var stageClass = actor.Register("fakecuda.Stage", func(_ context.Context, rank int) (*Stage, error) { return &Stage{rank: rank}, nil })

func stages(t *testing.T, n int) []*actor.Handle {
	hs := make([]*actor.Handle, n)
	for i := range hs {
		h, err := stageClass.Options(core.NumGPUs(0.5)).Remote(rt, i)
		require.NoError(t, err)
		hs[i] = h
		t.Cleanup(func() { actor.Kill(h, true) })
		d, err := core.Get[int](testCtx(t), h.Call("Devices"))
		require.NoError(t, err, "the worker finds the fake runtime")
		require.Equal(t, 1, d)
	}
	return hs
}

func ramp(base float32, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = base + float32(i)
	}
	return v
}

func TestTensorOnDevice(t *testing.T) {
	h, err := tensor.FromSlice([]int32{1, 2, 3, 4}, 2, 2)
	require.NoError(t, err)
	d, err := h.ToDevice(tensor.CUDA(0))
	require.NoError(t, err)
	defer d.Free()
	assert.Equal(t, "tensor(int32, [2 2], cuda:0)", d.String())
	d2, err := d.ToDevice(tensor.CUDA(0)) // device to device
	require.NoError(t, err)
	defer d2.Free()
	back, err := d2.ToHost()
	require.NoError(t, err)
	assert.True(t, back.Equal(h))
	z := tensor.Zeros(tensor.Int32, 2, 2)
	require.NoError(t, z.CopyFrom(d))
	assert.True(t, z.Equal(h))
	_, err = tensor.Empty(tensor.Float32, tensor.CUDA(3), 4)
	assert.ErrorContains(t, err, "cuda:3")
}

// Two actors on one GPU: dag.Auto moves device tensors through CUDA IPC.
func TestCUDAIPCEdge(t *testing.T) {
	hs := stages(t, 2)
	in := dag.Input()
	g, err := dag.Compile(testCtx(t), dag.Bind(hs[1], "Values", dag.Bind(hs[0], "Make", in, 5000)), dag.MaxInflight(3))
	require.NoError(t, err)
	defer g.Teardown()
	assert.Contains(t, g.Visualize(), `[label="cuda_ipc"]`)
	ctx := testCtx(t)
	var fs []*dag.Future
	for x := range 3 { // as many in flight as staging buffers
		f, err := g.Execute(ctx, x)
		require.NoError(t, err)
		fs = append(fs, f)
	}
	for x, f := range fs {
		got, err := dag.Get[[]float32](ctx, f)
		require.NoError(t, err)
		require.Equal(t, ramp(float32(x), 5000), got)
	}
	for x := 3; x < 10; x++ { // the buffers reused
		f, err := g.Execute(ctx, x)
		require.NoError(t, err)
		got, err := dag.Get[[]float32](ctx, f)
		require.NoError(t, err)
		require.Equal(t, ramp(float32(x), 5000), got)
	}
}

// A device tensor on a shared-memory edge, or given to the CPU
// communicator, fails the execution with the fix in the message.
func TestDeviceTensorWrongTransport(t *testing.T) {
	hs := stages(t, 2)
	ctx := testCtx(t)
	in := dag.Input()
	a := dag.Bind(hs[0], "Make", in, 4).WithTensorTransport(dag.SharedMemory)
	g, err := dag.Compile(ctx, dag.Bind(hs[1], "Values", a))
	require.NoError(t, err)
	f, err := g.Execute(ctx, 0)
	require.NoError(t, err)
	_, err = f.Get(ctx)
	require.ErrorContains(t, err, "a device tensor cannot be serialized")
	require.NoError(t, g.Teardown())

	in = dag.Input()
	a = dag.Bind(hs[0], "Make", in, 4).WithTensorTransport(dag.NCCL)
	g, err = dag.Compile(ctx, dag.Bind(hs[1], "Values", a), dag.Communicator(nccl.CPU))
	require.NoError(t, err)
	f, err = g.Execute(ctx, 0)
	require.NoError(t, err)
	_, err = f.Get(ctx)
	require.ErrorContains(t, err, "the graph's communicator is the cpu backend")
	require.NoError(t, g.Teardown())
}

// The default communicator is NCCL; without libnccl Compile says so.
func TestNCCLEdgeWithoutLibnccl(t *testing.T) {
	hs := stages(t, 2)
	in := dag.Input()
	a := dag.Bind(hs[0], "Make", in, 4).WithTensorTransport(dag.NCCL)
	g, err := dag.Compile(testCtx(t), dag.Bind(hs[1], "Values", a))
	if err == nil {
		g.Teardown()
		t.Skip("libnccl is present here")
	}
	require.True(t, strings.Contains(err.Error(), "libnccl"), err.Error())
}
