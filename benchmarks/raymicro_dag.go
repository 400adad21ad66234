package benchmarks

import (
	"context"
	"time"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
	"github.com/goray/goray/dag"
)

// The compiled-graph cases (BenchmarkCompiledDAG): one op is one Execute
// and its Get, on the shared embedded cluster, with 64-byte payloads:
//
//	single_actor            one actor's method, cross-process
//	chain4                  four actors in a chain
//	scatter_gather4         four actors fed the input, a fifth joining them
//	single_actor_pipelined  single_actor with MaxInflight executions in flight
//
// An actor placed in the driver's own process (inproc_single) is not
// supported: actors live in worker processes.

// dagStage is the actor of the graph cases.
type dagStage struct{}

// Echo returns its input.
func (*dagStage) Echo(_ context.Context, b []byte) ([]byte, error) { return b, nil }

// Join returns its first input.
func (*dagStage) Join(_ context.Context, bs ...[]byte) ([]byte, error) { return bs[0], nil }

var dagStageClass = actor.Register("benchmarks.DagStage", func(context.Context) (*dagStage, error) { return &dagStage{}, nil })

const dagInflight = 16

// dagGraph starts n actors and compiles a graph of them with build.
func dagGraph(ctx context.Context, b B, n int, build func(in *dag.InputNode, hs []*actor.Handle) dag.Node) (*dag.CompiledDAG, func()) {
	rt := sharedRuntime(b)
	hs := make([]*actor.Handle, n)
	for i := range hs {
		h, err := dagStageClass.Remote(rt)
		if err != nil {
			b.Fatal(err)
		}
		hs[i] = h
		if _, err := core.Get[[]byte](ctx, h.Call("Echo", []byte("warm"))); err != nil {
			b.Fatalf("start actor: %v", err)
		}
	}
	g, err := dag.Compile(ctx, build(dag.Input(), hs), dag.MaxInflight(dagInflight), dag.BufferSize(64<<10))
	if err != nil {
		killAll(hs)
		b.Fatal(err)
	}
	return g, func() {
		g.Teardown()
		killAll(hs)
	}
}

func dagLatencyBody(n int, build func(in *dag.InputNode, hs []*actor.Handle) dag.Node) func(B) {
	return func(b B) {
		ctx, cancel := runContext(b)
		defer cancel()
		g, stop := dagGraph(ctx, b, n, build)
		defer stop()
		msg := make([]byte, 64)
		for range 200 { // warm-up
			if err := dagOnce(ctx, g, msg); err != nil {
				b.Fatal(err)
			}
		}
		timeOps(b, func(int) {
			if err := dagOnce(ctx, g, msg); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func dagOnce(ctx context.Context, g *dag.CompiledDAG, msg []byte) error {
	f, err := g.Execute(ctx, msg)
	if err != nil {
		return err
	}
	_, err = f.Get(ctx)
	return err
}

func dagPipelinedBody(b B) {
	ctx, cancel := runContext(b)
	defer cancel()
	g, stop := dagGraph(ctx, b, 1, func(in *dag.InputNode, hs []*actor.Handle) dag.Node {
		return dag.Bind(hs[0], "Echo", in)
	})
	defer stop()
	msg := make([]byte, 64)
	iters := b.Iterations()
	fs := make([]*dag.Future, 0, dagInflight)
	b.ResetTimer()
	for i := 0; i < iters; {
		fs = fs[:0]
		for ; len(fs) < dagInflight && i < iters; i++ {
			f, err := g.Execute(ctx, msg)
			if err != nil {
				b.Fatal(err)
			}
			fs = append(fs, f)
		}
		for _, f := range fs {
			if _, err := f.Get(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(iters)/b.Elapsed().Seconds(), unitMsgs)
}

func init() {
	Register(NewCase("CompiledDAG/single_actor", dagLatencyBody(1, func(in *dag.InputNode, hs []*actor.Handle) dag.Node {
		return dag.Bind(hs[0], "Echo", in)
	})))
	Register(NewCase("CompiledDAG/chain4", dagLatencyBody(4, func(in *dag.InputNode, hs []*actor.Handle) dag.Node {
		var n dag.Node = in
		for _, h := range hs {
			n = dag.Bind(h, "Echo", n)
		}
		return n
	})))
	Register(NewCase("CompiledDAG/scatter_gather4", dagLatencyBody(5, func(in *dag.InputNode, hs []*actor.Handle) dag.Node {
		var branches []any
		for _, h := range hs[:4] {
			branches = append(branches, dag.Bind(h, "Echo", in))
		}
		return dag.Bind(hs[4], "Join", branches...)
	})))
	Register(NewCase("CompiledDAG/single_actor_pipelined", dagPipelinedBody))

	const grpcBase = "Baseline/grpc_unary_roundtrip"
	for _, r := range []Row{
		{Case: "CompiledDAG/single_actor", Baseline: grpcBase, Kind: Latency,
			Target: Target{MinRatio: 20, MaxP50: 5 * time.Microsecond, MaxP99: 50 * time.Microsecond}},
		// The classic path to the same actor method.
		{Case: "CompiledDAG/single_actor", Baseline: "RayMicro/actor_calls_sync", Kind: Latency},
		{Case: "CompiledDAG/chain4", Baseline: "Baseline/grpc_chain4", Kind: Latency,
			Target: Target{MaxP50: 15 * time.Microsecond}},
		{Case: "CompiledDAG/scatter_gather4", Baseline: grpcBase, Kind: Latency},
		{Case: "CompiledDAG/single_actor_pipelined", Baseline: grpcBase, Kind: MsgRate,
			Target: Target{MinMsgsPerSec: 200e3}},
	} {
		RegisterRow(r)
	}
}
