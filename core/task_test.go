package core_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/internal/testutil"
)

var (
	add    = core.Register("add", func(_ context.Context, a, b int) (int, error) { return a + b, nil })
	concat = core.Register("concat", func(_ context.Context, parts ...string) (string, error) {
		return strings.Join(parts, "+"), nil
	})
	divmod = core.Register("divmod", func(_ context.Context, a, b int) (int, int, error) { return a / b, a % b, nil })
	noop   = core.Register("noop", func(context.Context) error { return nil })

	// span sleeps d and reports when it ran, in the worker's clock (the
	// same machine's), and where.
	span = core.Register("span", func(ctx context.Context, d time.Duration) (Span, error) {
		s := Span{Start: time.Now(), PID: os.Getpid()}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return s, ctx.Err()
		}
		s.End = time.Now()
		return s, nil
	})
)

// Span is when and where a task ran.
type Span struct {
	Start, End time.Time
	PID        int
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRemoteAdd(t *testing.T) {
	ctx := ctxT(t)
	got, err := core.Get[int](ctx, add.Remote(rt, 2, 3))
	require.NoError(t, err)
	require.Equal(t, 5, got)
}

func TestRemoteVariadicAndMultipleResults(t *testing.T) {
	ctx := ctxT(t)
	s, err := core.Get[string](ctx, concat.Remote(rt, "a", "b", "c"))
	require.NoError(t, err)
	require.Equal(t, "a+b+c", s)

	refs := divmod.RemoteN(rt, 17, 5)
	require.Len(t, refs, 2)
	qr, err := core.GetAll[int](ctx, refs)
	require.NoError(t, err)
	require.Equal(t, []int{3, 2}, qr)

	// A function with only an error returns a ref to nil, to wait on.
	v, err := core.Get[any](ctx, noop.Remote(rt))
	require.NoError(t, err)
	require.Nil(t, v)
}

// maxOverlap is the largest number of spans running at one instant.
func maxOverlap(spans []Span) int {
	type ev struct {
		at    time.Time
		delta int
	}
	var evs []ev
	for _, s := range spans {
		evs = append(evs, ev{s.Start, 1}, ev{s.End, -1})
	}
	slices.SortFunc(evs, func(a, b ev) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta // ends before starts at the same instant
	})
	cur, best := 0, 0
	for _, e := range evs {
		cur += e.delta
		best = max(best, cur)
	}
	return best
}

// The walkthrough's first lesson: 8 tasks of 0.5 s on 4 CPUs run four at
// a time (about 1 s in all, not 4): never more than 4 at once, since each
// takes a CPU, and 4 at once at some point.
func TestParallelTasksUseEveryCPU(t *testing.T) {
	ctx := ctxT(t)
	var refs []*core.ObjectRef
	for range 8 {
		refs = append(refs, span.Remote(rt, 500*time.Millisecond))
	}
	spans, err := core.GetAll[Span](ctx, refs)
	require.NoError(t, err)
	require.Equal(t, 4, maxOverlap(spans), "tasks of 1 CPU on a 4-CPU node")
}

// Fractional CPUs: tasks of 0.5 CPU run two per CPU.
func TestFractionalCPUs(t *testing.T) {
	ctx := ctxT(t)
	half := span.Options(core.NumCPUs(0.5))
	var refs []*core.ObjectRef
	for range 8 {
		refs = append(refs, half.Remote(rt, 1500*time.Millisecond))
	}
	spans, err := core.GetAll[Span](ctx, refs)
	require.NoError(t, err)
	// More than 4 at once proves the sharing; all 8 is the usual case (a
	// loaded machine may start the last workers late).
	n := maxOverlap(spans)
	require.Greater(t, n, 4, "tasks of 0.5 CPU share CPUs")
	require.LessOrEqual(t, n, 8)
}

var (
	fetch   = core.Register("fetch", func(_ context.Context, url string) (string, error) { return "<" + url + ">", nil })
	process = core.Register("process", func(_ context.Context, page string) (int, error) { return len(page), nil })
	combine = core.Register("combine", func(_ context.Context, sizes ...int) (int, error) {
		total := 0
		for _, s := range sizes {
			total += s
		}
		return total, nil
	})
)

// A graph of refs: fetch → process → combine, submitted at once; each
// task waits for its arguments, the driver only for the end.
func TestRefGraph(t *testing.T) {
	ctx := ctxT(t)
	var sizes []any
	want := 0
	for _, u := range []string{"a", "bb", "ccc", "dddd"} {
		page := fetch.Remote(rt, u)
		sizes = append(sizes, process.Remote(rt, page))
		want += len(u) + 2
	}
	got, err := core.Get[int](ctx, combine.Remote(rt, sizes...))
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// Wait hands back results as they finish, fastest first.
func TestWaitAsTheyArrive(t *testing.T) {
	ctx := ctxT(t)
	durations := []time.Duration{900 * time.Millisecond, 50 * time.Millisecond, 400 * time.Millisecond}
	var refs []*core.ObjectRef
	for _, d := range durations {
		refs = append(refs, span.Remote(rt, d))
	}
	var order []time.Duration
	pending := refs
	for len(pending) > 0 {
		ready, rest, err := core.Wait(ctx, pending, 1, -1)
		require.NoError(t, err)
		require.Len(t, ready, 1)
		s, err := core.Get[Span](ctx, ready[0])
		require.NoError(t, err)
		order = append(order, s.End.Sub(s.Start).Round(50*time.Millisecond))
		pending = rest
	}
	require.Len(t, order, 3)
	require.True(t, order[0] < order[1] && order[1] < order[2], "finished in order of duration: %v", order)

	// A timeout returns what is ready by then.
	slow := span.Remote(rt, 2*time.Second)
	ready, notReady, err := core.Wait(ctx, []*core.ObjectRef{slow}, 1, 10*time.Millisecond)
	require.NoError(t, err)
	require.Empty(t, ready)
	require.Len(t, notReady, 1)
	require.NoError(t, core.Cancel(slow, false))
}

var sumBytes = core.Register("sumBytes", func(_ context.Context, data []byte) (int, error) {
	s := 0
	for _, b := range data {
		s += int(b)
	}
	return s, nil
})

// Put once, pass the ref to many tasks: the value is in the store once,
// and every task reads that one copy.
func TestPutOncePassToMany(t *testing.T) {
	ctx := ctxT(t)
	store := core.StoreOf(rt)
	before, err := store.Stats()
	require.NoError(t, err)
	data := make([]byte, 4<<20)
	want := 0
	for i := range data {
		data[i] = byte(i)
		want += int(byte(i))
	}
	ref, err := core.Put(rt, data)
	require.NoError(t, err)
	var refs []*core.ObjectRef
	for range 10 {
		refs = append(refs, sumBytes.Remote(rt, ref))
	}
	sums, err := core.GetAll[int](ctx, refs)
	require.NoError(t, err)
	for _, s := range sums {
		require.Equal(t, want, s)
	}
	after, err := store.Stats()
	require.NoError(t, err)
	// (Other tests' dropped refs may be collected meanwhile: at most.)
	require.LessOrEqual(t, after.Objects, before.Objects+1, "one copy in the store, not one per task")

	// Freed: gone from the store.
	id, err := ids.ParseObjectID(ref.ID())
	require.NoError(t, err)
	core.Free(ref)
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if in, _ := store.Contains(id); in {
			return fmt.Errorf("object %s still in the store after Free", id)
		}
		return nil
	})
}

var ErrFlaky = core.RegisterError(errors.New("core_test: flaky backend"))

var flaky = core.Register("flaky", func(ctx context.Context, p float64) (int, error) {
	rc, _ := core.RuntimeContextFrom(ctx)
	if rand.Float64() < p {
		return rc.Attempt, fmt.Errorf("attempt %d: %w", rc.Attempt, ErrFlaky)
	}
	return rc.Attempt, nil
})

// RetryOn retries listed application errors until one attempt succeeds.
func TestRetryOn(t *testing.T) {
	ctx := ctxT(t)
	retried := flaky.Options(core.RetryOn(ErrFlaky), core.MaxRetries(50))
	var refs []*core.ObjectRef
	for range 10 {
		refs = append(refs, retried.Remote(rt, 0.5))
	}
	attempts, err := core.GetAll[int](ctx, refs)
	require.NoError(t, err)
	require.Len(t, attempts, 10)

	// Without RetryOn an application error is not retried, and errors.Is
	// sees the registered sentinel through the TaskError.
	_, err = core.Get[int](ctx, flaky.Remote(rt, 1.0))
	var te *core.TaskError
	require.ErrorAs(t, err, &te)
	require.ErrorIs(t, err, ErrFlaky)
	require.Equal(t, "flaky", te.Task)
	require.Contains(t, te.Message, "attempt 0: core_test: flaky backend")

	// Retries used up: the last failure.
	_, err = core.Get[int](ctx, flaky.Options(core.RetryOn(ErrFlaky), core.MaxRetries(2)).Remote(rt, 1.0))
	require.ErrorIs(t, err, ErrFlaky)
	require.Contains(t, err.Error(), "attempt 2")
}

var parent = core.Register("parent", func(ctx context.Context, n int) (int, error) {
	rt := core.RuntimeFrom(ctx)
	if rt == nil {
		return 0, errors.New("no runtime in a task's context")
	}
	var refs []*core.ObjectRef
	for i := range n {
		refs = append(refs, add.Remote(rt, i, 1))
	}
	vals, err := core.GetAll[int](ctx, refs)
	if err != nil {
		return 0, err
	}
	s := 0
	for _, v := range vals {
		s += v
	}
	return s, nil
})

// A task submits tasks of its own and waits for them.
func TestNestedTasks(t *testing.T) {
	ctx := ctxT(t)
	got, err := core.Get[int](ctx, parent.Remote(rt, 10))
	require.NoError(t, err)
	require.Equal(t, 55, got)

	// More parents than CPUs: a parent blocked in Get lends its CPU to
	// its children, so this cannot deadlock.
	var refs []*core.ObjectRef
	for range 6 {
		refs = append(refs, parent.Remote(rt, 3))
	}
	sums, err := core.GetAll[int](ctx, refs)
	require.NoError(t, err)
	require.Equal(t, []int{6, 6, 6, 6, 6, 6}, sums)
}

var countTo = core.Register("countTo", func(ctx context.Context, n int) (func(yield func(int) bool), error) {
	return func(yield func(int) bool) {
		for i := range n {
			if !yield(i * i) {
				return
			}
		}
	}, nil
})

// A generator streams one ref per item as the task yields it.
func TestGenerator(t *testing.T) {
	ctx := ctxT(t)
	gen := countTo.RemoteGenerator(rt, 5)
	var got []int
	for ref, err := range gen.All(ctx) {
		require.NoError(t, err)
		v, err := core.Get[int](ctx, ref)
		require.NoError(t, err)
		got = append(got, v)
	}
	require.Equal(t, []int{0, 1, 4, 9, 16}, got)

	// Remote on a generator says to use RemoteGenerator.
	_, err := core.Get[int](ctx, countTo.Remote(rt, 3))
	require.ErrorIs(t, err, core.ErrBadArgument)
	require.Contains(t, err.Error(), "RemoteGenerator")
}

var ctxInfo = core.Register("ctxInfo", func(ctx context.Context) (core.RuntimeContext, error) {
	rc, ok := core.RuntimeContextFrom(ctx)
	if !ok {
		return rc, errors.New("no runtime context")
	}
	return rc, nil
})

func TestRuntimeContext(t *testing.T) {
	ctx := ctxT(t)
	rc, err := core.Get[core.RuntimeContext](ctx, ctxInfo.Options(core.Name("who-am-i")).Remote(rt))
	require.NoError(t, err)
	me := rt.Context()
	require.Equal(t, me.NodeID, rc.NodeID)
	require.Equal(t, me.JobID, rc.JobID)
	require.NotEmpty(t, rc.TaskID)
	require.NotEqual(t, "driver", rc.WorkerID)
	require.Equal(t, "who-am-i", rc.TaskName)
	_, ok := core.RuntimeContextFrom(ctx)
	require.False(t, ok, "the driver's own context is not a task's")
}

func TestResources(t *testing.T) {
	ctx := ctxT(t)
	require.Equal(t, 4.0, rt.ClusterResources()["CPU"])
	_, err := core.Get[int](ctx, add.Options(core.NumCPUs(64)).Remote(rt, 1, 2))
	require.ErrorIs(t, err, core.ErrInfeasible)
	require.Contains(t, err.Error(), "CPU=64")
	_, err = core.Get[int](ctx, add.Options(core.Resources(map[string]float64{"TPU": 1})).Remote(rt, 1, 2))
	require.ErrorIs(t, err, core.ErrInfeasible)
	_, err = core.Get[int](ctx, add.Options(core.NumCPUs(-1)).Remote(rt, 1, 2))
	require.ErrorIs(t, err, core.ErrBadArgument)
}

// The worker pool: workers start with the cluster, are reused from task
// to task, and the ones beyond the prestarted are stopped when idle.
func TestWorkerPool(t *testing.T) {
	ctx := ctxT(t)
	rt2, err := core.Init(ctx, core.NumCPUs(3), core.PrestartWorkers(1), core.WorkerIdleTimeout(200*time.Millisecond))
	require.NoError(t, err)
	defer rt2.Shutdown()

	// Reuse: a sequence of tasks runs in one process.
	first, err := core.Get[int](ctx, whoami.Remote(rt2))
	require.NoError(t, err)
	for range 5 {
		pid, err := core.Get[int](ctx, whoami.Remote(rt2))
		require.NoError(t, err)
		require.Equal(t, first, pid, "the same worker serves consecutive tasks")
	}
	// Three at once need three workers...
	var refs []*core.ObjectRef
	for range 3 {
		refs = append(refs, span.Remote(rt2, 300*time.Millisecond))
	}
	spans, err := core.GetAll[Span](ctx, refs)
	require.NoError(t, err)
	pids := map[int]bool{}
	for _, s := range spans {
		pids[s.PID] = true
	}
	require.Len(t, pids, 3)
	// ...and two of them are stopped once idle.
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		alive := 0
		for pid := range pids {
			if p, err := shm.ProcessOf(pid); err == nil && p.Alive() {
				alive++
			}
		}
		if alive > 1 {
			return fmt.Errorf("%d of the workers still run", alive)
		}
		return nil
	})
}

var binaryError = core.Register("binaryError", func(context.Context) (int, error) {
	return 0, errors.New("bad bytes: \xff\xfe")
})

// An error text that is not UTF-8 still travels (protobuf strings must be
// UTF-8), and the worker keeps serving.
func TestNonUTF8Error(t *testing.T) {
	ctx := context.Background()
	_, err := core.Get[int](ctx, binaryError.Remote(rt))
	require.ErrorContains(t, err, "bad bytes")
	v, err := core.Get[int](ctx, add.Remote(rt, 1, 2))
	require.NoError(t, err)
	require.Equal(t, 3, v)
}

func TestPlacementGroup(t *testing.T) {
	ctx := context.Background()
	before := rt.ClusterResources()["CPU"]
	cpusFree := func(want float64) func() error { // idle leases of earlier tests go back within 50 ms
		return func() error {
			if got := rt.AvailableResources()["CPU"]; got != want {
				return fmt.Errorf("CPU available %v, want %v", got, want)
			}
			return nil
		}
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, cpusFree(before))
	pg, err := core.NewPlacementGroup(rt, []map[string]float64{{"CPU": 1}, {"CPU": 1}}, core.PlacementPack)
	require.NoError(t, err)
	require.NoError(t, pg.Ready(ctx))
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, cpusFree(before-2)) // both bundles reserved
	for _, b := range []int{0, 1, -1} {
		v, err := core.Get[int](ctx, add.Options(core.Strategy(core.PlacementGroup(pg, b))).Remote(rt, 2, 3))
		require.NoError(t, err, "bundle %d", b)
		require.Equal(t, 5, v)
	}
	_, err = core.Get[int](ctx, add.Options(core.NumCPUs(2), core.Strategy(core.PlacementGroup(pg, 0))).Remote(rt, 1, 1))
	require.ErrorIs(t, err, core.ErrInfeasible, "more than the bundle holds")
	require.NoError(t, pg.Remove())
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, cpusFree(before)) // given back
	_, err = core.Get[int](ctx, add.Options(core.Strategy(core.PlacementGroup(pg, 0))).Remote(rt, 1, 1))
	require.ErrorIs(t, err, core.ErrInfeasible, "a removed group")

	bad, err := core.NewPlacementGroup(rt, []map[string]float64{{"CPU": 1}, {"CPU": 1}}, core.PlacementStrictSpread)
	require.NoError(t, err)
	require.ErrorContains(t, bad.Ready(ctx), "one node")
	huge, err := core.NewPlacementGroup(rt, []map[string]float64{{"CPU": 64}}, core.PlacementPack)
	require.NoError(t, err)
	require.ErrorContains(t, huge.Ready(ctx), "in all")
}
