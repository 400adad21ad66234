package benchmarks

import (
	"context"
	"fmt"
	"os"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
	"github.com/goray/goray/cuda"
	"github.com/goray/goray/dag"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// The tensor transport cases (BenchmarkTensorTransport): one op is one
// execution of a two-actor graph in which the first actor's float16 tensor
// reaches the second, which returns its size to the driver:
//
//	TensorTransport/cpu_comm/{100KB,16MiB}  an NCCL edge on the CPU communicator:
//	                                        metadata through the ring, data through the communicator
//	TensorTransport/shm/{100KB,16MiB}       the tensor encoded into the shared-memory ring
//	TensorTransport/nccl/{100KB,16MiB}      on a GPU machine: a device tensor over the nccl backend,
//	                                        two actors sharing the GPU (NCCL_MULTI_RANK_GPU_ENABLE=1)
//	TensorTransport/cuda_ipc/{100KB,16MiB}  on a GPU machine: the same through a CUDA IPC staging buffer
//
// Memcpy/{100KB,16MiB} beside them is the copy bandwidth of this machine;
// cuda's BenchmarkCopy gives the GPU's (docs/GPU.md).

// tensorStage produces one tensor again and again, or consumes one.
type tensorStage struct{ t *tensor.Tensor }

// Produce returns the stage's tensor of size bytes (made on first use).
func (s *tensorStage) Produce(_ context.Context, _ int, size int) (*tensor.Tensor, error) {
	if s.t == nil || s.t.NumBytes() != size {
		t, err := tensor.New(tensor.Float16, size/2)
		if err != nil {
			return nil, err
		}
		v, _ := tensor.As[uint16](t)
		for i := range v {
			v[i] = tensor.F16(float32(i % 2048))
		}
		s.t = t
	}
	return s.t, nil
}

// Consume returns the tensor's size, reading its last element.
func (s *tensorStage) Consume(_ context.Context, t *tensor.Tensor) (int, error) {
	v, err := tensor.As[uint16](t)
	if err != nil {
		return 0, err
	}
	if len(v) > 0 && tensor.F16ToFloat32(v[len(v)-1]) != float32((len(v)-1)%2048) {
		return 0, fmt.Errorf("the tensor arrived corrupted")
	}
	return t.NumBytes(), nil
}

// ProduceOnGPU returns the stage's tensor of size bytes on its GPU.
func (s *tensorStage) ProduceOnGPU(ctx context.Context, x int, size int) (*tensor.Tensor, error) {
	if s.t == nil || s.t.NumBytes() != size {
		h, err := s.Produce(ctx, x, size)
		if err != nil {
			return nil, err
		}
		if s.t, err = h.ToDevice(tensor.CUDA(0)); err != nil {
			return nil, err
		}
	}
	return s.t, nil
}

// ConsumeOnGPU returns the device tensor's size.
func (s *tensorStage) ConsumeOnGPU(_ context.Context, t *tensor.Tensor) (int, error) {
	if !t.Device().IsCUDA() {
		return 0, fmt.Errorf("%s is not on a GPU", t)
	}
	return t.NumBytes(), nil
}

// SetEnv sets an environment variable in the actor's process.
func (s *tensorStage) SetEnv(_ context.Context, k, v string) (bool, error) {
	return true, os.Setenv(k, v)
}

var tensorStageClass = actor.Register("benchmarks.TensorStage", func(context.Context) (*tensorStage, error) { return &tensorStage{}, nil })

// directStage is tensorStage whose Fresh results stay in the actor
// (actor.Class.KeepTensors).
type directStage struct{ tensorStage }

// Fresh returns a new float16 tensor of size bytes (a kept tensor belongs
// to its ref, so it is never reused).
func (s *directStage) Fresh(_ context.Context, x, size int) (*tensor.Tensor, error) {
	t, err := tensor.New(tensor.Float16, size/2)
	if err != nil {
		return nil, err
	}
	if v, _ := tensor.As[uint16](t); len(v) > 0 { // what Consume checks
		v[len(v)-1] = tensor.F16(float32((len(v) - 1) % 2048))
	}
	return t, nil
}

var (
	directStageClass = actor.Register("benchmarks.DirectStage", newDirectStage).KeepTensors("Fresh")
	objectStageClass = actor.Register("benchmarks.ObjectStage", newDirectStage) // Fresh's tensors by value
)

func newDirectStage(context.Context) (*directStage, error) { return &directStage{}, nil }

// directBody: one op is b.Consume(a.Fresh(size)) and its Get, the tensor
// moving peer to peer (direct) or by value through the object store
// (object: the same method, not kept).
func directBody(mode string, size int) func(B) {
	return func(b B) {
		ctx, cancel := runContext(b)
		defer cancel()
		rt := sharedRuntime(b)
		class := directStageClass
		if mode == "object" {
			class = objectStageClass
		}
		hs := make([]*actor.Handle, 2)
		for i := range hs {
			h, err := class.Remote(rt)
			if err != nil {
				b.Fatal(err)
			}
			hs[i] = h
		}
		defer killAll(hs)
		if mode == "direct" {
			g, err := actor.NewGroup(ctx, nccl.CPU, hs...)
			if err != nil {
				b.Fatal(err)
			}
			defer g.Destroy(context.Background())
		}
		once := func(x int) {
			ref := hs[0].Call("Fresh", x, size)
			out := hs[1].Call("Consume", ref)
			n, err := core.Get[int](ctx, out)
			core.Free(ref)
			core.Free(out)
			if err != nil {
				b.Fatal(err)
			}
			if n != size {
				b.Fatalf("the consumer saw %d bytes, want %d", n, size)
			}
		}
		for i := range 10 {
			once(i)
		}
		b.SetBytes(int64(size))
		timeOps(b, once)
	}
}

func tensorTransportBody(transport string, size int) func(B) {
	return func(b B) {
		ctx, cancel := runContext(b)
		defer cancel()
		rt := sharedRuntime(b)
		hs := make([]*actor.Handle, 2)
		class, produce, consume := tensorStageClass, "Produce", "Consume"
		if transport == "nccl" || transport == "cuda_ipc" { // two actors on the one GPU
			class, produce, consume = class.Options(core.NumGPUs(0.5)), "ProduceOnGPU", "ConsumeOnGPU"
		}
		for i := range hs {
			h, err := class.Remote(rt)
			if err != nil {
				b.Fatal(err)
			}
			hs[i] = h
			if transport == "nccl" {
				// Two ranks on the one GPU: NCCL allows it only when told
				// to, in the actors' processes, before the communicator.
				if _, err := core.Get[bool](ctx, h.Call("SetEnv", "NCCL_MULTI_RANK_GPU_ENABLE", "1")); err != nil {
					b.Fatal(err)
				}
			}
		}
		defer killAll(hs)
		in := dag.Input()
		opts := []dag.CompileOption{dag.MaxInflight(4)}
		p := dag.Bind(hs[0], produce, in, size)
		switch transport {
		case "nccl":
			p.WithTensorTransport(dag.NCCL)
			opts = append(opts, dag.BufferSize(64<<10))
		case "cuda_ipc":
			p.WithTensorTransport(dag.CUDAIPC)
			opts = append(opts, dag.BufferSize(64<<10))
		case "cpu_comm":
			p.WithTensorTransport(dag.NCCL)
			opts = append(opts, dag.Communicator(nccl.CPU), dag.BufferSize(64<<10))
		case "shm":
			p.WithTensorTransport(dag.SharedMemory)
			opts = append(opts, dag.BufferSize(size+4096))
		}
		g, err := dag.Compile(ctx, dag.Bind(hs[1], consume, p), opts...)
		if err != nil {
			b.Fatal(err)
		}
		defer g.Teardown()
		once := func(x int) {
			f, err := g.Execute(ctx, x)
			if err != nil {
				b.Fatal(err)
			}
			n, err := dag.Get[int](ctx, f)
			if err != nil {
				b.Fatal(err)
			}
			if n != size {
				b.Fatalf("the consumer saw %d bytes, want %d", n, size)
			}
		}
		for i := range 20 {
			once(i)
		}
		b.SetBytes(int64(size))
		timeOps(b, once)
	}
}

func init() {
	sizes := []struct {
		name  string
		bytes int
	}{{"100KB", 100 << 10}, {"16MiB", 16 << 20}}
	for _, s := range sizes {
		Register(NewCase("Memcpy/"+s.name, memcpyBody(s.bytes)))
		for _, tr := range []string{"cpu_comm", "shm"} {
			Register(NewCase("TensorTransport/"+tr+"/"+s.name, tensorTransportBody(tr, s.bytes)))
		}
		RegisterRow(Row{Case: "TensorTransport/cpu_comm/" + s.name, Baseline: "Memcpy/" + s.name, Kind: Bandwidth})
		RegisterRow(Row{Case: "TensorTransport/shm/" + s.name, Baseline: "Memcpy/" + s.name, Kind: Bandwidth})
		RegisterRow(Row{Case: "TensorTransport/cpu_comm/" + s.name, Baseline: "TensorTransport/shm/" + s.name, Kind: Latency})
	}
	for _, s := range sizes {
		for _, mode := range []string{"direct", "object"} {
			Register(NewCase("DirectTransport/"+mode+"/"+s.name, directBody(mode, s.bytes)))
		}
		RegisterRow(Row{Case: "DirectTransport/direct/" + s.name, Baseline: "DirectTransport/object/" + s.name, Kind: Latency})
	}
	// On a GPU machine: a device tensor over the nccl backend. (Registered
	// only there, so that no run elsewhere lists a case it cannot run.)
	if n, err := cuda.DeviceCount(); err == nil && n > 0 {
		for _, s := range sizes {
			for _, tr := range []string{"nccl", "cuda_ipc"} {
				Register(NewCase("TensorTransport/"+tr+"/"+s.name, tensorTransportBody(tr, s.bytes)))
				RegisterRow(Row{Case: "TensorTransport/" + tr + "/" + s.name, Baseline: "TensorTransport/cpu_comm/" + s.name, Kind: Latency})
			}
		}
	}
}
