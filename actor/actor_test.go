package actor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
)

// Counter is the seed's counter.
type Counter struct {
	n     int
	calls []int
}

func (c *Counter) Increment(ctx context.Context) (int, error)   { c.n++; return c.n, nil }
func (c *Counter) Add(ctx context.Context, by int) (int, error) { c.n += by; return c.n, nil }
func (c *Counter) Value(ctx context.Context) (int, error)       { return c.n, nil }
func (c *Counter) Pid(ctx context.Context) (int, error)         { return os.Getpid(), nil }
func (c *Counter) Panic(ctx context.Context) (int, error)       { panic("counter exploded") }

// Record appends i: the order calls ran in.
func (c *Counter) Record(ctx context.Context, i int) error     { c.calls = append(c.calls, i); return nil }
func (c *Counter) Recorded(ctx context.Context) ([]int, error) { return c.calls, nil }
func (c *Counter) Info(ctx context.Context) (string, error) {
	rc, _ := core.RuntimeContextFrom(ctx)
	return rc.ActorID, nil
}

// String is a plain Go method: not remote.
func (c *Counter) String() string { return fmt.Sprint(c.n) }

var counter = actor.Register("Counter", func(ctx context.Context, start int) (*Counter, error) {
	return &Counter{n: start}, nil
})

// DataStore is written by tasks that got its handle.
type DataStore struct {
	mu   sync.Mutex
	data map[string]int
}

func (d *DataStore) Put(ctx context.Context, k string, v int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.data[k] = v
	return nil
}

func (d *DataStore) All(ctx context.Context) (map[string]int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.data, nil
}

var (
	dataStore = actor.Register("DataStore", func(ctx context.Context) (*DataStore, error) {
		return &DataStore{data: map[string]int{}}, nil
	})
	writeStore = core.Register("writeStore", func(ctx context.Context, h *actor.Handle, i int) (int, error) {
		return 0, waitErr(ctx, h.Call("Put", fmt.Sprint("k", i), i*i))
	})
)

func waitErr(ctx context.Context, r *core.ObjectRef) error {
	_, err := core.Get[any](ctx, r)
	return err
}

// Accounting keeps balances; a withdrawal beyond the balance fails.
type Accounting struct{ balance map[string]int }

var errInsufficient = errors.New("insufficient funds")

func init() { core.RegisterError(errInsufficient) }

func (a *Accounting) Deposit(ctx context.Context, who string, amt int) (int, error) {
	a.balance[who] += amt
	return a.balance[who], nil
}

func (a *Accounting) Withdraw(ctx context.Context, who string, amt int) (int, error) {
	if a.balance[who] < amt {
		return a.balance[who], fmt.Errorf("%s has %d, wants %d: %w", who, a.balance[who], amt, errInsufficient)
	}
	a.balance[who] -= amt
	return a.balance[who], nil
}

var accounting = actor.Register("Accounting", func(ctx context.Context) (*Accounting, error) {
	return &Accounting{balance: map[string]int{}}, nil
})

var failingCtor = actor.Register("FailingCtor", func(ctx context.Context, why string) (*Counter, error) {
	return nil, errors.New(why)
})

func TestCounter(t *testing.T) {
	ctx := testCtx(t)
	h, err := counter.Remote(rt, 10)
	require.NoError(t, err)
	defer actor.Kill(h, true)
	for want := 11; want <= 16; want++ {
		got, err := core.Get[int](ctx, h.Call("Increment"))
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	id, err := core.Get[string](ctx, h.Call("Info"))
	require.NoError(t, err)
	require.Equal(t, h.ID(), id, "the runtime context names the actor")
}

func TestDataStoreFromTasks(t *testing.T) {
	ctx := testCtx(t)
	h, err := dataStore.Remote(rt)
	require.NoError(t, err)
	defer actor.Kill(h, true)
	var refs []*core.ObjectRef
	for i := range 10 {
		refs = append(refs, writeStore.Remote(rt, h, i))
	}
	_, err = core.GetAll[int](ctx, refs)
	require.NoError(t, err)
	all, err := core.Get[map[string]int](ctx, h.Call("All"))
	require.NoError(t, err)
	require.Len(t, all, 10)
	for i := range 10 {
		require.Equal(t, i*i, all[fmt.Sprint("k", i)])
	}
}

func TestAccounting(t *testing.T) {
	ctx := testCtx(t)
	h, err := accounting.Remote(rt)
	require.NoError(t, err)
	defer actor.Kill(h, true)
	b, err := core.Get[int](ctx, h.Call("Deposit", "ann", 100))
	require.NoError(t, err)
	require.Equal(t, 100, b)
	b, err = core.Get[int](ctx, h.Call("Withdraw", "ann", 30))
	require.NoError(t, err)
	require.Equal(t, 70, b)
	_, err = core.Get[int](ctx, h.Call("Withdraw", "ann", 100))
	require.ErrorIs(t, err, errInsufficient)
	var te *core.TaskError
	require.ErrorAs(t, err, &te)
	require.Contains(t, te.Message, "ann has 70, wants 100")
	b, err = core.Get[int](ctx, h.Call("Deposit", "ann", 0))
	require.NoError(t, err)
	require.Equal(t, 70, b, "the failed call changed nothing")
}

func TestOrdering(t *testing.T) {
	ctx := testCtx(t)
	h, err := counter.Remote(rt, 0)
	require.NoError(t, err)
	defer actor.Kill(h, true)
	const n = 10000
	var last *core.ObjectRef
	for i := range n {
		last = h.Call("Record", i)
	}
	require.NoError(t, waitErr(ctx, last))
	got, err := core.Get[[]int](ctx, h.Call("Recorded"))
	require.NoError(t, err)
	require.Len(t, got, n)
	for i, v := range got {
		if v != i {
			t.Fatalf("call %d ran as number %d: calls from one caller must run in submission order", v, i)
		}
	}
}

func TestMethodErrors(t *testing.T) {
	ctx := testCtx(t)
	h, err := counter.Remote(rt, 5)
	require.NoError(t, err)
	defer actor.Kill(h, true)

	_, err = core.Get[int](ctx, h.Call("Panic"))
	var te *core.TaskError
	require.ErrorAs(t, err, &te)
	require.True(t, te.Panicked)
	require.Contains(t, te.Message, "counter exploded")
	v, err := core.Get[int](ctx, h.Call("Increment"))
	require.NoError(t, err)
	require.Equal(t, 6, v, "the actor kept its state after the panic")

	_, err = core.Get[int](ctx, h.Call("Incr"))
	require.ErrorIs(t, err, core.ErrNotRegistered)
	require.Contains(t, err.Error(), "Add, Increment, Info, Panic, Pid, Record, Recorded, Value")
	_, err = core.Get[int](ctx, h.Call("String"))
	require.ErrorContains(t, err, "does not take a context.Context first")

	_, err = core.Get[int](ctx, h.Call("Add", "one"))
	require.ErrorIs(t, err, core.ErrBadArgument)
	require.ErrorContains(t, err, "want int")
	_, err = core.Get[int](ctx, h.Call("Add", 1, 2))
	require.ErrorIs(t, err, core.ErrBadArgument)

	_, err = counter.Remote(rt, "ten")
	require.ErrorIs(t, err, core.ErrBadArgument)

	f, err := failingCtor.Remote(rt, "no database")
	require.NoError(t, err)
	_, err = core.Get[int](ctx, f.Call("Increment"))
	require.ErrorIs(t, err, core.ErrActorDied)
	require.ErrorContains(t, err, "no database")
}

func TestBadShapeReportedAtRegistration(t *testing.T) {
	type bad struct{}
	require.Panics(t, func() {
		actor.Register("BadShape", func(ctx context.Context) (*badShape, error) { return &badShape{}, nil })
	})
	require.Panics(t, func() { actor.Register("NotPointer", func(ctx context.Context) (bad, error) { return bad{}, nil }) })
}

type badShape struct{}

// NoError has a ctx but no error result: wrong shape.
func (b *badShape) NoError(ctx context.Context) int { return 1 }

func pidOf(t *testing.T, h *actor.Handle) int {
	pid, err := core.Get[int](context.Background(), h.Call("Pid"))
	require.NoError(t, err)
	return pid
}

func TestRestartAfterKill9(t *testing.T) {
	ctx := testCtx(t)
	h, err := counter.Options(actor.MaxRestarts(1)).Remote(rt, 100)
	require.NoError(t, err)
	defer actor.Kill(h, true)
	v, err := core.Get[int](ctx, h.Call("Increment"))
	require.NoError(t, err)
	require.Equal(t, 101, v)
	pid := pidOf(t, h)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	// The constructor re-ran in a new process: state starts over.
	var got int
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err = core.Get[int](ctx, h.Call("Increment"))
		if err == nil || time.Now().After(deadline) {
			break
		}
		// A call sent before the caller saw the death fails (MaxTaskRetries 0).
		require.ErrorIs(t, err, core.ErrActorDied)
	}
	require.NoError(t, err)
	require.Equal(t, 101, got)
	require.NotEqual(t, pid, pidOf(t, h))

	// A second death is past MaxRestarts(1).
	require.NoError(t, syscall.Kill(pidOf(t, h), syscall.SIGKILL))
	err = firstFailure(ctx, h)
	require.ErrorIs(t, err, core.ErrActorDied)
	require.ErrorContains(t, err, "SIGKILL")
	require.ErrorContains(t, err, "no restarts left")
}

func TestTaskRetriesAcrossRestart(t *testing.T) {
	ctx := testCtx(t)
	h, err := counter.Options(actor.MaxRestarts(-1), actor.MaxTaskRetries(-1)).Remote(rt, 0)
	require.NoError(t, err)
	defer actor.Kill(h, true)
	pid := pidOf(t, h)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	// Retried as often as needed: every call succeeds.
	for range 5 {
		_, err := core.Get[int](ctx, h.Call("Increment"))
		require.NoError(t, err)
	}
}

func TestNoRestartDies(t *testing.T) {
	ctx := testCtx(t)
	h, err := counter.Remote(rt, 0)
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pidOf(t, h), syscall.SIGKILL))
	err = firstFailure(ctx, h)
	require.ErrorIs(t, err, core.ErrActorDied)
	require.ErrorContains(t, err, "Counter")
	require.ErrorContains(t, err, "MaxRestarts 0")
}

func TestKillAndNamed(t *testing.T) {
	ctx := testCtx(t)
	h, err := counter.Options(actor.Name("shared"), actor.Namespace("test"), actor.Detached()).Remote(rt, 1)
	require.NoError(t, err)
	_, err = counter.Options(actor.Name("shared"), actor.Namespace("test")).Remote(rt, 1)
	require.ErrorContains(t, err, "already exists")

	g, err := actor.Get(rt, "shared", actor.Namespace("test"))
	require.NoError(t, err)
	v, err := core.Get[int](ctx, g.Call("Increment"))
	require.NoError(t, err)
	require.Equal(t, 2, v)
	_, err = actor.Get(rt, "shared")
	require.Error(t, err, "another namespace")

	require.NoError(t, actor.Kill(h, true))
	_, err = core.Get[int](ctx, h.Call("Increment"))
	require.ErrorIs(t, err, core.ErrActorDied)
	require.ErrorContains(t, err, "killed with actor.Kill")
	_, err = core.Get[int](ctx, g.Call("Increment"))
	require.ErrorIs(t, err, core.ErrActorDied)
	_, err = actor.Get(rt, "shared", actor.Namespace("test"))
	require.Error(t, err, "the name is free once the actor is dead")
}

// Slow sleeps: with MaxConcurrency 4, four run at once.
type Slow struct{}

func (s *Slow) Sleep(ctx context.Context, d time.Duration) (time.Time, error) {
	time.Sleep(d)
	return time.Now(), nil
}

// Wait waits d or until the call is cancelled, and says which.
func (s *Slow) Wait(ctx context.Context, d time.Duration) (string, error) {
	select {
	case <-time.After(d):
		return "slept", nil
	case <-ctx.Done():
		rc, _ := core.RuntimeContextFrom(ctx)
		return "", fmt.Errorf("cancelled=%v: %w", rc.Cancelled, ctx.Err())
	}
}

// Env reads an environment variable of the actor's process.
func (s *Slow) Env(ctx context.Context, k string) (string, error) { return os.Getenv(k), nil }

// Poke calls another actor through a handle it was given.
func (s *Slow) Poke(ctx context.Context, other *actor.Handle) (int, error) {
	return core.Get[int](ctx, other.Call("Increment"))
}

var slow = actor.Register("Slow", func(ctx context.Context) (*Slow, error) { return &Slow{}, nil })

func TestMaxConcurrency(t *testing.T) {
	ctx := testCtx(t)
	h, err := slow.Options(actor.MaxConcurrency(4)).Remote(rt)
	require.NoError(t, err)
	defer actor.Kill(h, true)
	_, err = core.Get[time.Time](ctx, h.Call("Sleep", time.Millisecond)) // started
	require.NoError(t, err)
	start := time.Now()
	var refs []*core.ObjectRef
	for range 4 {
		refs = append(refs, h.Call("Sleep", 300*time.Millisecond))
	}
	_, err = core.GetAll[time.Time](ctx, refs)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 900*time.Millisecond, "4 × 300 ms at once, not one after another")
}

// testCtx bounds a test's waits: a hang fails the test instead of CI.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A detached, named actor outlives the handle of the driver that made it
// and is found by name from a second runtime connected to the cluster,
// which kills it.
func TestDetachedFromSecondRuntime(t *testing.T) {
	ctx := testCtx(t)
	h, err := counter.Options(actor.Name("detached"), actor.Detached()).Remote(rt, 40)
	require.NoError(t, err)
	_, err = core.Get[int](ctx, h.Call("Increment"))
	require.NoError(t, err)

	rt2, err := core.Init(ctx, core.Address(rt.Address()))
	require.NoError(t, err)
	defer rt2.Shutdown()
	g, err := actor.Get(rt2, "detached")
	require.NoError(t, err)
	v, err := core.Get[int](ctx, g.Call("Increment"))
	require.NoError(t, err)
	require.Equal(t, 42, v, "the same actor, with its state")
	require.NoError(t, actor.Kill(g, true))
	require.NoError(t, rt2.Shutdown())

	err = firstFailure(ctx, h)
	require.ErrorIs(t, err, core.ErrActorDied)
	require.ErrorContains(t, err, "killed with actor.Kill")
}

func TestAddressWrongToken(t *testing.T) {
	bad := t.TempDir() + "/token"
	require.NoError(t, os.WriteFile(bad, []byte("0123456789abcdef0123456789abcdef"), 0o600))
	t.Setenv("GORAY_TOKEN_FILE", bad)
	_, err := core.Init(testCtx(t), core.Address(rt.Address()))
	require.Error(t, err)
	require.ErrorContains(t, err, "token")
	t.Log(err)
}

func TestCancelActorCall(t *testing.T) {
	ctx := testCtx(t)
	h, err := slow.Remote(rt)
	require.NoError(t, err)
	defer actor.Kill(h, true)
	ref := h.Call("Wait", time.Minute)
	queued := h.Call("Wait", time.Minute) // behind it
	time.Sleep(200 * time.Millisecond)
	require.Error(t, core.Cancel(ref, true), "force would kill the actor")
	require.NoError(t, core.Cancel(queued, false))
	require.NoError(t, core.Cancel(ref, false))
	_, err = core.Get[string](ctx, ref)
	require.ErrorIs(t, err, core.ErrTaskCancelled)
	_, err = core.Get[string](ctx, queued)
	require.ErrorIs(t, err, core.ErrTaskCancelled)
	v, err := core.Get[string](ctx, h.Call("Wait", time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, "slept", v, "the actor serves the next call")
}

func TestHandlePassedToActor(t *testing.T) {
	ctx := testCtx(t)
	c, err := counter.Remote(rt, 7)
	require.NoError(t, err)
	defer actor.Kill(c, true)
	s, err := slow.Remote(rt)
	require.NoError(t, err)
	defer actor.Kill(s, true)
	v, err := core.Get[int](ctx, s.Call("Poke", c))
	require.NoError(t, err)
	require.Equal(t, 8, v)
	v, err = core.Get[int](ctx, c.Call("Value"))
	require.NoError(t, err)
	require.Equal(t, 8, v)
}

// A GPU actor holds its GPU for life and sees it as CUDA_VISIBLE_DEVICES.
func TestGPUActor(t *testing.T) {
	ctx := testCtx(t)
	before := rt.AvailableResources()["GPU"]
	h, err := slow.Options(core.NumGPUs(1)).Remote(rt)
	require.NoError(t, err)
	dev, err := core.Get[string](ctx, h.Call("Env", "CUDA_VISIBLE_DEVICES"))
	require.NoError(t, err)
	require.Contains(t, []string{"0", "1"}, dev)
	require.Equal(t, before-1, rt.AvailableResources()["GPU"], "held while the actor lives")
	require.NoError(t, actor.Kill(h, true))
	deadline := time.Now().Add(10 * time.Second)
	for rt.AvailableResources()["GPU"] != before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, before, rt.AvailableResources()["GPU"], "given back after Kill")
}

var lateFailure = core.Register("actor.lateFailure", func(ctx context.Context) (int, error) {
	time.Sleep(100 * time.Millisecond)
	return 0, errors.New("the argument's task failed")
})

// A call whose argument fails does not hold up the calls queued behind it.
func TestCallBehindFailedArgument(t *testing.T) {
	ctx := testCtx(t)
	h, err := counter.Remote(rt, 0)
	require.NoError(t, err)
	defer actor.Kill(h, true)
	first := h.Call("Add", lateFailure.Remote(rt))
	second := h.Call("Add", 5)
	_, err = core.Get[int](ctx, first)
	require.ErrorContains(t, err, "the argument's task failed")
	v, err := core.Get[int](ctx, second)
	require.NoError(t, err)
	require.Equal(t, 5, v)
}

// An actor placed in a placement group holds its bundle's resources.
func TestActorInPlacementGroup(t *testing.T) {
	ctx := testCtx(t)
	pg, err := core.NewPlacementGroup(rt, []map[string]float64{{"CPU": 1, "GPU": 1}}, core.PlacementStrictPack)
	require.NoError(t, err)
	require.NoError(t, pg.Ready(ctx))
	defer pg.Remove()
	h, err := slow.Options(core.NumGPUs(1), actor.PlacementGroup(pg, 0)).Remote(rt)
	require.NoError(t, err)
	defer actor.Kill(h, true)
	dev, err := core.Get[string](ctx, h.Call("Env", "CUDA_VISIBLE_DEVICES"))
	require.NoError(t, err)
	require.NotEmpty(t, dev, "the bundle's GPU")
	// An actor that needs more than the bundle holds can never start there.
	h2, err := slow.Options(core.NumGPUs(2), actor.PlacementGroup(pg, 0)).Remote(rt)
	require.NoError(t, err)
	_, err = core.Get[string](ctx, h2.Call("Env", "X"))
	require.ErrorIs(t, err, core.ErrActorDied, "more than the bundle holds")
	require.ErrorContains(t, err, "infeasible")
}

// firstFailure calls Increment until a call fails (the actor's death has
// reached this process) or 20 s pass, and returns that error.
func firstFailure(ctx context.Context, h *actor.Handle) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := core.Get[int](ctx, h.Call("Increment"))
		if err != nil || time.Now().After(deadline) {
			return err
		}
	}
}
