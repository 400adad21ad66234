package benchmarks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/goray/goray/core"
)

// The RayMicro cases are Ray's `ray microbenchmark` (ray_perf.py) on the
// public API of package core, with the names Ray prints them under. They
// share one embedded cluster per process (sharedRuntime), whose workers
// are this binary re-executed: a binary that runs them calls
// core.ServeIfWorker first in main (or TestMain), and ShutdownRuntime when
// it is done.

// The remote functions, registered at package level so that every process
// of the binary (the workers included) has them.
var (
	noopTask = core.Register("benchmarks.noop", func(context.Context) (int, error) { return 0, nil })

	// clientTask is one of multi_client_tasks_async's submitters: it
	// submits n no-op tasks from inside a worker and returns how many
	// succeeded. Ray's clients are actors, which hold no CPU while they
	// run; NumCPUs(0) does the same here, so that the clients never keep
	// the no-op tasks they wait for off the node's CPUs.
	clientTask = core.Register("benchmarks.multi_client", func(ctx context.Context, n int) (int, error) {
		rt := core.RuntimeFrom(ctx)
		if rt == nil {
			return 0, errors.New("benchmarks.multi_client: no runtime in the task's context")
		}
		return submitNoops(ctx, rt, n)
	}).Options(core.NumCPUs(0))

	// holdTask occupies a worker for a while without a CPU: sharedRuntime
	// runs as many at once as the pool has workers, which spreads them
	// over the pool (a task of unknown length gets a worker of its own),
	// so that every prestarted worker has started before any case runs.
	holdTask = core.Register("benchmarks.hold", func(ctx context.Context, d time.Duration) (int, error) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return 0, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}).Options(core.NumCPUs(0))
)

// Shapes of the cases.
const (
	// asyncBatch is how many tasks tasks_async keeps in flight before it
	// gets them: Ray's `ray.get([f.remote() for _ in range(1000)])`.
	asyncBatch = 1000
	// numClients is how many submitters multi_client_tasks_async runs at
	// once (Ray's m = 4).
	numClients = 4
	// freeEvery is how many small objects put_calls makes before it frees
	// them, so that its memory stays flat over any b.N.
	freeEvery = 1000
	// largePut is put_gigabytes' object size: Memcpy/64MiB's, so the two
	// compare the same copy.
	largePut = 64 << 20
	// storeMemory is the shared cluster's object store capacity: room for
	// several large puts.
	storeMemory = 1 << 30
	// taskWarmUps is how many tasks each case runs untimed first, after
	// the cluster's workers have started.
	taskWarmUps = 20
)

var (
	sharedMu sync.Mutex
	shared   *core.Runtime
)

// sharedRuntime returns this process's embedded cluster, starting it on
// first use: one node with this machine's CPUs and a 1 GiB object store,
// whose worker pool keeps a process for every CPU and for every client of
// multi_client_tasks_async. Before it returns, every worker has started
// and the cases' shapes of work have run once (the raylet starts more
// workers while leases of the previous shape linger), so that no case
// times the start of a worker process or shares the machine with one.
func sharedRuntime(b B) *core.Runtime {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		return shared
	}
	workers := runtime.NumCPU() + numClients
	rt, err := core.Init(context.Background(), core.NumCPUs(float64(runtime.NumCPU())),
		core.ObjectStoreMemory(storeMemory), core.PrestartWorkers(workers))
	if err != nil {
		b.Fatalf("start the shared cluster: %v", err)
	}
	ctx, cancel := context.WithTimeout(b.Context(), peerStartTimeout)
	defer cancel()
	refs := make([]*core.ObjectRef, workers)
	for i := range refs {
		refs[i] = holdTask.Remote(rt, 20*time.Millisecond)
	}
	_, err = core.GetAll[int](ctx, refs)
	core.Free(refs...)
	if err == nil {
		_, err = submitNoops(ctx, rt, asyncBatch)
	}
	if err == nil {
		err = runClients(ctx, rt, numClients*asyncBatch)
	}
	if err != nil {
		rt.Shutdown()
		b.Fatalf("first tasks on the shared cluster: %v", err)
	}
	shared = rt
	return rt
}

// ShutdownRuntime stops the cluster the RayMicro cases started, if they
// did; a later case starts a new one. Call it at the end of a process
// that ran them (after m.Run in TestMain), before its leak checks.
func ShutdownRuntime() error {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		return nil
	}
	err := shared.Shutdown()
	shared = nil
	if err != nil {
		return fmt.Errorf("benchmarks: shut the shared cluster down: %w", err)
	}
	return nil
}

// submitNoops submits n no-op tasks in batches of asyncBatch, getting
// each batch before the next, and returns how many returned 0.
func submitNoops(ctx context.Context, rt *core.Runtime, n int) (int, error) {
	refs := make([]*core.ObjectRef, 0, min(n, asyncBatch))
	done := 0
	for done < n {
		refs = refs[:0]
		for range min(n-done, asyncBatch) {
			refs = append(refs, noopTask.Remote(rt))
		}
		vals, err := core.GetAll[int](ctx, refs)
		core.Free(refs...)
		if err != nil {
			return done, err
		}
		for _, v := range vals {
			if v != 0 {
				return done, fmt.Errorf("no-op task returned %d, want 0", v)
			}
		}
		done += len(vals)
	}
	return done, nil
}

// warmTasks runs a few no-op tasks untimed.
func warmTasks(ctx context.Context, b B, rt *core.Runtime) {
	if _, err := submitNoops(ctx, rt, taskWarmUps); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
}

// tasksSyncBody: one op submits a no-op task and gets its result, Ray's
// "single client tasks sync". Reports p50-ns and p99-ns as the round trips
// do.
func tasksSyncBody(b B) {
	rt := sharedRuntime(b)
	ctx, cancel := runContext(b)
	defer cancel()
	warmTasks(ctx, b, rt)
	h := hdrhistogram.New(histMin, histMax, 3)
	n := b.Iterations()
	b.ResetTimer()
	prev := time.Now()
	for range n {
		ref := noopTask.Remote(rt)
		v, err := core.Get[int](ctx, ref)
		core.Free(ref)
		if err != nil {
			b.Fatal(err)
		}
		if v != 0 {
			b.Fatalf("no-op task returned %d, want 0", v)
		}
		now := time.Now()
		h.RecordValue(min(max(int64(now.Sub(prev)), histMin), histMax))
		prev = now
	}
	b.StopTimer()
	b.ReportMetric(float64(h.ValueAtQuantile(50)), unitP50)
	b.ReportMetric(float64(h.ValueAtQuantile(99)), unitP99)
}

// tasksAsyncBody: b.N no-op tasks from the driver, asyncBatch in flight at
// a time, Ray's "single client tasks async". Reports tasks/s as msgs/s.
func tasksAsyncBody(b B) {
	rt := sharedRuntime(b)
	ctx, cancel := runContext(b)
	defer cancel()
	warmTasks(ctx, b, rt)
	n := b.Iterations()
	b.ResetTimer()
	if _, err := submitNoops(ctx, rt, n); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unitMsgs)
}

// multiClientBody: b.N no-op tasks submitted by numClients tasks at once,
// each from its own worker process, Ray's "multi client tasks async". One
// op is one no-op task; the clients' own tasks are not counted. Reports
// tasks/s as msgs/s.
func multiClientBody(b B) {
	rt := sharedRuntime(b)
	ctx, cancel := runContext(b)
	defer cancel()
	if err := runClients(ctx, rt, numClients*taskWarmUps); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	n := b.Iterations()
	b.ResetTimer()
	if err := runClients(ctx, rt, n); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unitMsgs)
}

// runClients runs numClients client tasks at once, which submit n no-op
// tasks between them, and checks that all n ran.
func runClients(ctx context.Context, rt *core.Runtime, n int) error {
	refs := make([]*core.ObjectRef, numClients)
	for i := range refs {
		// Client i submits its share: n split as evenly as it goes.
		refs[i] = clientTask.Remote(rt, (n+i)/numClients)
	}
	counts, err := core.GetAll[int](ctx, refs)
	core.Free(refs...)
	if err != nil {
		return err
	}
	total := 0
	for _, c := range counts {
		total += c
	}
	if total != n {
		return fmt.Errorf("the clients ran %d tasks, want %d", total, n)
	}
	return nil
}

// putCallsBody: one op is core.Put of a 100-byte []byte, Ray's "single
// client put calls"; the refs are freed every freeEvery puts, inside the
// timing, as Ray's refs are dropped inside its. Reports puts/s as msgs/s.
func putCallsBody(b B) {
	rt := sharedRuntime(b)
	v := payload(smallObject)
	refs := make([]*core.ObjectRef, 0, freeEvery)
	put := func() {
		ref, err := core.Put(rt, v)
		if err != nil {
			b.Fatal(err)
		}
		if refs = append(refs, ref); len(refs) == freeEvery {
			core.Free(refs...)
			refs = refs[:0]
		}
	}
	if b.Verify() {
		ctx, cancel := runContext(b)
		defer cancel()
		ref, err := core.Put(rt, v)
		if err != nil {
			b.Fatal(err)
		}
		got, err := core.Get[[]byte](ctx, ref)
		if err != nil || !bytes.Equal(got, v) {
			b.Fatalf("get of a put: %d bytes, %v; want the %d bytes put", len(got), err, len(v))
		}
		core.Free(ref)
	}
	for range freeEvery {
		put()
	}
	n := b.Iterations()
	b.ResetTimer()
	for range n {
		put()
	}
	core.Free(refs...)
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unitMsgs)
}

// getCallsBody: one op is core.Get, as a []byte, of a 100-byte object
// Put first, Ray's "single client get calls". Reports gets/s as msgs/s.
func getCallsBody(b B) {
	rt := sharedRuntime(b)
	ctx, cancel := runContext(b)
	defer cancel()
	want := payload(smallObject)
	ref, err := core.Put(rt, want)
	if err != nil {
		b.Fatal(err)
	}
	defer core.Free(ref)
	verify := b.Verify()
	n := b.Iterations()
	b.ResetTimer()
	for range n {
		got, err := core.Get[[]byte](ctx, ref)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != smallObject || verify && !bytes.Equal(got, want) {
			b.Fatalf("got %d bytes (%x…), want the %d put", len(got), got[:min(len(got), 8)], smallObject)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unitMsgs)
}

// putGigabytesBody: one op is core.Put of a 64 MiB []byte, which goes to
// the shared-memory store in one copy, then Free, which deletes it, Ray's
// "single client put gigabytes". Reports bytes/s (SetBytes).
func putGigabytesBody(b B) {
	rt := sharedRuntime(b)
	src := payload(largePut)
	put := func() *core.ObjectRef {
		ref, err := core.Put(rt, src)
		if err != nil {
			b.Fatal(err)
		}
		return ref
	}
	// Untimed: fault the store's pages in, as in a store that has been
	// running a while (Objstore/put_large does the same), and check what
	// lands there.
	ref := put()
	if b.Verify() {
		ctx, cancel := runContext(b)
		defer cancel()
		got, err := core.Get[[]byte](ctx, ref)
		if err != nil || !bytes.Equal(got, src) {
			b.Fatalf("get of a put: %d bytes, %v; want the %d bytes put", len(got), err, len(src))
		}
	}
	core.Free(ref)
	b.SetBytes(largePut)
	n := b.Iterations()
	b.ResetTimer()
	for range n {
		core.Free(put())
	}
	b.StopTimer()
}

// grpcRateBody is roundTripBody that also reports its round trips per
// second as msgs/s, so that rows of kind MsgRate can take it as their
// baseline.
func grpcRateBody(open opener, size int) func(B) {
	body := roundTripBody(open, size)
	return func(b B) {
		body(b)
		if b.Failed() {
			return
		}
		b.ReportMetric(float64(b.Iterations())/b.Elapsed().Seconds(), unitMsgs)
	}
}

func init() {
	// A gRPC unary call of a 64-byte message to a peer process over
	// loopback TCP and back: what one submission of a task costs at least
	// on goray's control plane, and what a user would call instead.
	Register(NewCase("Baseline/grpc_unary_roundtrip", grpcRateBody(openGRPCTCP, 64)))

	Register(NewCase("RayMicro/tasks_sync", tasksSyncBody))
	Register(NewCase("RayMicro/tasks_async", tasksAsyncBody))
	Register(NewCase("RayMicro/multi_client_tasks_async", multiClientBody))
	Register(NewCase("RayMicro/put_calls", putCallsBody))
	Register(NewCase("RayMicro/get_calls", getCallsBody))
	Register(NewCase("RayMicro/put_gigabytes", putGigabytesBody))

	const grpcBase = "Baseline/grpc_unary_roundtrip"
	for _, r := range []Row{
		// A task round trip is at least one gRPC round trip to the
		// worker (push the task, its reply carries the result); the
		// budget is 50 µs, and at most 3× that floor.
		{Case: "RayMicro/tasks_sync", Baseline: grpcBase, Kind: Latency,
			Target: Target{MinRatio: 1.0 / 3, MaxP50: 50 * time.Microsecond}},
		// Against the rate of sequential gRPC round trips: what a
		// submitter that waits for each call gets. Submission pipelines
		// tasks to the workers, so beating this is the point of async.
		{Case: "RayMicro/tasks_async", Baseline: grpcBase, Kind: MsgRate,
			Target: Target{MinMsgsPerSec: 100e3}},
		{Case: "RayMicro/multi_client_tasks_async", Baseline: grpcBase, Kind: MsgRate},
		// A small Put stays in the driver's memory and never reaches the
		// shared-memory store; the store's own put of the same 100 bytes
		// (create, write, seal, delete, in the store's process, without
		// a socket) is what the value would cost there. The ratio is the
		// price, or the gain, of the layer above: encoding, the object
		// ID, the ref and its count, Free.
		{Case: "RayMicro/put_calls", Baseline: "Objstore/put_small", Kind: MsgRate,
			Target: Target{MinMsgsPerSec: 200e3}},
		// Likewise a Get of a small object reads the driver's memory: the
		// store's get and release of the same 100 bytes is the floor
		// under a get from the store.
		{Case: "RayMicro/get_calls", Baseline: "Objstore/get_small", Kind: MsgRate,
			Target: Target{MinMsgsPerSec: 500e3}},
		// One copy into the store, against copy() of the same size.
		{Case: "RayMicro/put_gigabytes", Baseline: "Memcpy/64MiB", Kind: Bandwidth,
			Target: Target{MinRatio: 0.8}},
	} {
		RegisterRow(r)
	}
}
