package benchmarks

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
)

// Ray's actor microbenchmarks (ray_perf.py) under Ray's names, on the
// shared embedded cluster: 1:1 sync calls (latency), 1:1 async calls
// (asyncBatch in flight: calls/s), 1:1 calls to an actor running up to 16
// at once, and n:n (numActorClients caller actors, each calling its own
// actor).

// benchActor answers no-op calls.
type benchActor struct{}

// Noop returns 0.
func (*benchActor) Noop(context.Context) (int, error) { return 0, nil }

// Drive calls target's Noop n times, asyncBatch in flight, and returns how
// many succeeded: one n:n client.
func (*benchActor) Drive(ctx context.Context, target *actor.Handle, n int) (int, error) {
	rt := core.RuntimeFrom(ctx)
	if rt == nil {
		return 0, fmt.Errorf("benchmarks.Actor.Drive: no runtime in the call's context")
	}
	return callNoops(ctx, target, n)
}

var benchActorClass = actor.Register("benchmarks.Actor", func(context.Context) (*benchActor, error) { return &benchActor{}, nil })

const numActorClients = 2

func callNoops(ctx context.Context, h *actor.Handle, n int) (int, error) {
	refs := make([]*core.ObjectRef, 0, min(n, asyncBatch))
	done := 0
	for done < n {
		refs = refs[:0]
		for range min(n-done, asyncBatch) {
			refs = append(refs, h.Call("Noop"))
		}
		vals, err := core.GetAll[int](ctx, refs)
		core.Free(refs...)
		if err != nil {
			return done, err
		}
		done += len(vals)
	}
	return done, nil
}

// newBenchActors starts n actors (with opts) and waits until each answers.
func newBenchActors(ctx context.Context, b B, rt *core.Runtime, n int, opts ...actor.Option) []*actor.Handle {
	hs := make([]*actor.Handle, n)
	for i := range hs {
		h, err := benchActorClass.Options(opts...).Remote(rt)
		if err != nil {
			b.Fatal(err)
		}
		hs[i] = h
	}
	for _, h := range hs {
		if _, err := callNoops(ctx, h, taskWarmUps); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	return hs
}

func killAll(hs []*actor.Handle) {
	for _, h := range hs {
		actor.Kill(h, true)
	}
}

func actorSyncBody(b B) {
	rt := sharedRuntime(b)
	ctx, cancel := runContext(b)
	defer cancel()
	hs := newBenchActors(ctx, b, rt, 1)
	defer killAll(hs)
	h := hs[0]
	timeOps(b, func(int) {
		ref := h.Call("Noop")
		_, err := core.Get[int](ctx, ref)
		core.Free(ref)
		if err != nil {
			b.Fatal(err)
		}
	})
}

func actorAsyncBody(opts ...actor.Option) func(B) {
	return func(b B) {
		rt := sharedRuntime(b)
		ctx, cancel := runContext(b)
		defer cancel()
		hs := newBenchActors(ctx, b, rt, 1, opts...)
		defer killAll(hs)
		n := b.Iterations()
		b.ResetTimer()
		if _, err := callNoops(ctx, hs[0], n); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unitMsgs)
	}
}

func actorNNBody(b B) {
	rt := sharedRuntime(b)
	ctx, cancel := runContext(b)
	defer cancel()
	clients := newBenchActors(ctx, b, rt, numActorClients)
	targets := newBenchActors(ctx, b, rt, numActorClients)
	defer killAll(append(clients, targets...))
	n := b.Iterations()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make([]error, numActorClients)
	for i := range clients {
		share := n / numActorClients
		if i == 0 {
			share += n % numActorClients
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := core.Get[int](ctx, clients[i].Call("Drive", targets[i], share))
			if err == nil && got != share {
				err = fmt.Errorf("client %d made %d calls, want %d", i, got, share)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	b.StopTimer()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unitMsgs)
}

func init() {
	Register(NewCase("RayMicro/actor_calls_sync", actorSyncBody))
	Register(NewCase("RayMicro/actor_calls_async", actorAsyncBody()))
	Register(NewCase("RayMicro/actor_calls_concurrent", actorAsyncBody(actor.MaxConcurrency(16))))
	Register(NewCase("RayMicro/n_n_actor_calls_async", actorNNBody))
	const grpcBase = "Baseline/grpc_unary_roundtrip"
	for _, r := range []Row{
		{Case: "RayMicro/actor_calls_sync", Baseline: grpcBase, Kind: Latency,
			Target: Target{MaxP50: 30 * time.Microsecond}},
		// What a Go user might pick for remote actors instead.
		{Case: "RayMicro/actor_calls_sync", Baseline: "Baseline/hollywood_remote_roundtrip", Kind: Latency},
		{Case: "RayMicro/actor_calls_async", Baseline: grpcBase, Kind: MsgRate,
			Target: Target{MinMsgsPerSec: 200e3}},
		{Case: "RayMicro/actor_calls_concurrent", Baseline: grpcBase, Kind: MsgRate},
		{Case: "RayMicro/n_n_actor_calls_async", Baseline: grpcBase, Kind: MsgRate},
	} {
		RegisterRow(r)
	}
}
