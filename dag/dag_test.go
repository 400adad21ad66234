package dag_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
	"github.com/goray/goray/dag"
)

// Stage is the test actor: it adds its amount, multiplies, fails, sleeps.
type Stage struct {
	add   int
	calls int
}

func (s *Stage) Add(ctx context.Context, x int) (int, error) { s.calls++; return x + s.add, nil }
func (s *Stage) Mul(ctx context.Context, x, by int) (int, error) {
	s.calls++
	return x * by, nil
}
func (s *Stage) Sum(ctx context.Context, xs ...int) (int, error) {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t, nil
}
func (s *Stage) Pair(ctx context.Context, x int) (int, string, error) {
	return x * 2, fmt.Sprint("n", x), nil
}
func (s *Stage) Concat(ctx context.Context, a int, b string) (string, error) {
	return fmt.Sprint(b, "/", a), nil
}
func (s *Stage) FailIf(ctx context.Context, x int) (int, error) {
	if x < 0 {
		return 0, fmt.Errorf("negative input %d", x)
	}
	return x, nil
}
func (s *Stage) Sleep(ctx context.Context, x int, d time.Duration) (int, error) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return x, nil
}
func (s *Stage) Pid(ctx context.Context) (int, error)   { return os.Getpid(), nil }
func (s *Stage) Calls(ctx context.Context) (int, error) { return s.calls, nil }
func (s *Stage) Upper(ctx context.Context, p Point) (string, error) {
	return strings.ToUpper(p.Name) + fmt.Sprint(p.X), nil
}
func (s *Stage) Bytes(ctx context.Context, b []byte) ([]byte, error) {
	return append([]byte("<"), b...), nil
}

type Point struct {
	Name string
	X    int
}

var stageClass = actor.Register("dag.Stage", func(ctx context.Context, add int) (*Stage, error) { return &Stage{add: add}, nil })

func newStages(t *testing.T, adds ...int) []*actor.Handle {
	t.Helper()
	hs := make([]*actor.Handle, len(adds))
	for i, a := range adds {
		h, err := stageClass.Remote(rt, a)
		require.NoError(t, err)
		hs[i] = h
		t.Cleanup(func() { actor.Kill(h, true) })
	}
	for _, h := range hs { // started
		_, err := core.Get[int](testCtx(t), h.Call("Calls"))
		require.NoError(t, err)
	}
	return hs
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func compile(t *testing.T, out dag.Node, opts ...dag.CompileOption) *dag.CompiledDAG {
	t.Helper()
	g, err := dag.Compile(testCtx(t), out, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { g.Teardown() })
	return g
}

func run[T any](t *testing.T, g *dag.CompiledDAG, args ...any) T {
	t.Helper()
	ctx := testCtx(t)
	f, err := g.Execute(ctx, args...)
	require.NoError(t, err)
	v, err := dag.Get[T](ctx, f)
	require.NoError(t, err)
	return v
}

func TestChain(t *testing.T) {
	for _, n := range []int{1, 4} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			adds := make([]int, n)
			want := 0
			for i := range adds {
				adds[i] = i + 1
				want += i + 1
			}
			hs := newStages(t, adds...)
			in := dag.Input()
			var node dag.Node = in
			for _, h := range hs {
				node = dag.Bind(h, "Add", node)
			}
			g := compile(t, node)
			for x := range 20 {
				require.Equal(t, x+want, run[int](t, g, x))
			}
		})
	}
}

func TestScatterGather(t *testing.T) {
	hs := newStages(t, 1, 2, 3, 4, 0)
	in := dag.Input()
	var branches []any
	for _, h := range hs[:4] {
		branches = append(branches, dag.Bind(h, "Add", in))
	}
	sum := dag.Bind(hs[4], "Sum", branches...)
	g := compile(t, dag.MultiOutput(sum, branches[0].(dag.Node)))
	v := run[[]any](t, g, 10)
	require.Equal(t, []any{11 + 12 + 13 + 14, 11}, v)
}

func TestSameActorThreeTimes(t *testing.T) {
	hs := newStages(t, 0)
	in := dag.Input()
	a := dag.Bind(hs[0], "Mul", in, 3)
	b := dag.Bind(hs[0], "Mul", a, 3)
	c := dag.Bind(hs[0], "Mul", b, 3)
	g := compile(t, c)
	require.Equal(t, 108, run[int](t, g, 4))
	require.Equal(t, 27, run[int](t, g, 1))
}

func TestABA(t *testing.T) {
	hs := newStages(t, 1, 10)
	in := dag.Input()
	x := dag.Bind(hs[0], "Add", in)
	y := dag.Bind(hs[1], "Add", x)
	z := dag.Bind(hs[0], "Add", y)
	g := compile(t, z)
	require.Equal(t, 12+5, run[int](t, g, 5))
}

func TestSameInputTwice(t *testing.T) {
	hs := newStages(t, 0)
	in := dag.Input()
	g := compile(t, dag.Bind(hs[0], "Sum", in, in))
	require.Equal(t, 14, run[int](t, g, 7))
}

func TestDriverAndActorReadOneOutput(t *testing.T) {
	hs := newStages(t, 1, 100)
	in := dag.Input()
	x := dag.Bind(hs[0], "Add", in)
	y := dag.Bind(hs[1], "Add", x)
	g := compile(t, dag.MultiOutput(x, y))
	require.Equal(t, []any{6, 106}, run[[]any](t, g, 5))
}

func TestSeveralResultsAndAttributes(t *testing.T) {
	hs := newStages(t, 0, 0)
	in := dag.Input()
	p := dag.Bind(hs[0], "Pair", in.At(0))
	c := dag.Bind(hs[1], "Concat", p, p.Output(1))
	s := dag.Bind(hs[1], "Add", in.At(1))
	g := compile(t, dag.MultiOutput(c, s))
	require.Equal(t, []any{"n4/8", 9}, run[[]any](t, g, 4, 9))
	require.NoError(t, g.Teardown())

	in2 := dag.Input()
	g2 := compile(t, dag.Bind(hs[0], "Concat", in2.Key("X"), in2.Key("Name")))
	require.Equal(t, "p/3", run[string](t, g2, Point{Name: "p", X: 3}))
	_ = g2.Teardown()
	in3 := dag.Input()
	g3 := compile(t, dag.Bind(hs[0], "Upper", in3))
	require.Equal(t, "Q7", run[string](t, g3, Point{Name: "q", X: 7}))
	_ = g3.Teardown()
	in4 := dag.Input()
	g4 := compile(t, dag.Bind(hs[0], "Bytes", in4))
	require.Equal(t, []byte("<raw"), run[[]byte](t, g4, []byte("raw")))
}

func TestOutOfOrderGets(t *testing.T) {
	hs := newStages(t, 1, 2)
	in := dag.Input()
	g := compile(t, dag.Bind(hs[1], "Add", dag.Bind(hs[0], "Add", in)), dag.MaxInflight(16))
	ctx := testCtx(t)
	for round := 0; round < 1000; round += 16 {
		n := min(16, 1000-round)
		fs := make([]*dag.Future, n)
		for i := range fs {
			f, err := g.Execute(ctx, round+i)
			require.NoError(t, err)
			fs[i] = f
		}
		for _, i := range rand.Perm(n) {
			v, err := dag.Get[int](ctx, fs[i])
			require.NoError(t, err)
			require.Equal(t, round+i+3, v)
		}
	}
}

func TestConcurrentExecute(t *testing.T) {
	hs := newStages(t, 1)
	in := dag.Input()
	g := compile(t, dag.Bind(hs[0], "Add", in), dag.MaxInflight(8))
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				x := w*1000 + i
				f, err := g.Execute(ctx, x)
				if err != nil {
					errs <- err
					return
				}
				v, err := dag.Get[int](ctx, f)
				if err != nil || v != x+1 {
					errs <- fmt.Errorf("execute(%d) = %d, %v", x, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestApplicationErrorTravels(t *testing.T) {
	hs := newStages(t, 0, 5)
	in := dag.Input()
	g := compile(t, dag.Bind(hs[1], "Add", dag.Bind(hs[0], "FailIf", in)))
	ctx := testCtx(t)
	f, err := g.Execute(ctx, -3)
	require.NoError(t, err)
	_, err = f.Get(ctx)
	var te *core.TaskError
	require.ErrorAs(t, err, &te)
	require.Contains(t, te.Message, "negative input -3")
	require.Equal(t, 8, run[int](t, g, 3), "later executions work")
}

func TestFailingBranchFailsFast(t *testing.T) {
	hs := newStages(t, 0, 0)
	in := dag.Input()
	slow := dag.Bind(hs[0], "Sleep", in, 2*time.Second)
	fail := dag.Bind(hs[1], "FailIf", in)
	g := compile(t, dag.MultiOutput(slow, fail))
	ctx := testCtx(t)
	f, err := g.Execute(ctx, -1)
	require.NoError(t, err)
	start := time.Now()
	_, err = f.Get(ctx)
	require.ErrorContains(t, err, "negative input")
	require.Less(t, time.Since(start), time.Second, "did not wait for the slow branch")
	require.Equal(t, []any{4, 4}, run[[]any](t, g, 4), "the slow branch's late value is skipped; the next execution is right")
}

func TestBackPressureAndTimeouts(t *testing.T) {
	hs := newStages(t, 0)
	in := dag.Input()
	g := compile(t, dag.Bind(hs[0], "Add", in), dag.MaxInflight(2), dag.SubmitTimeout(100*time.Millisecond),
		dag.GetTimeout(300*time.Millisecond))
	ctx := testCtx(t)
	f1, err := g.Execute(ctx, 1)
	require.NoError(t, err)
	f2, err := g.Execute(ctx, 2)
	require.NoError(t, err)
	start := time.Now()
	_, err = g.Execute(ctx, 3)
	require.ErrorIs(t, err, dag.ErrCapacityExceeded)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	v, err := dag.Get[int](ctx, f2) // out of order: f1's result is buffered
	require.NoError(t, err)
	require.Equal(t, 2, v)
	_, err = f2.Get(ctx)
	require.Error(t, err, "Get twice")
	v, err = dag.Get[int](ctx, f1)
	require.NoError(t, err)
	require.Equal(t, 1, v)

	// A Get that times out leaves the graph usable.
	g.Teardown()
	in2 := dag.Input()
	g2 := compile(t, dag.Bind(hs[0], "Sleep", in2, time.Second), dag.GetTimeout(300*time.Millisecond))
	f, err := g2.Execute(ctx, 5)
	require.NoError(t, err)
	start = time.Now()
	_, err = f.Get(ctx)
	el := time.Since(start)
	require.ErrorIs(t, err, dag.ErrTimeout)
	require.InDelta(t, 300, float64(el.Milliseconds()), 30+10, "within 10%% of the timeout (%v)", el)
	time.Sleep(800 * time.Millisecond)
	v, err = dag.Get[int](ctx, f)
	require.NoError(t, err, "the result came later and is still there")
	require.Equal(t, 5, v)
}

func TestTeardown(t *testing.T) {
	hs := newStages(t, 1)
	in := dag.Input()
	g, err := dag.Compile(testCtx(t), dag.Bind(hs[0], "Sleep", in, 50*time.Millisecond))
	require.NoError(t, err)
	ctx := testCtx(t)
	var fs []*dag.Future
	for i := range 5 {
		f, err := g.Execute(ctx, i)
		require.NoError(t, err)
		fs = append(fs, f)
	}
	require.NoError(t, g.Teardown())
	require.NoError(t, g.Teardown(), "idempotent")
	_, err = g.Execute(ctx, 1)
	require.ErrorIs(t, err, dag.ErrChannelClosed)
	_, err = fs[4].Get(ctx)
	require.ErrorIs(t, err, dag.ErrChannelClosed)
	shm, _ := filepath.Glob("/dev/shm/*dag." + g.ID() + "*")
	require.Empty(t, shm, "no segment left")
	// The actor is alive and usable, also in a new graph.
	v, err := core.Get[int](ctx, hs[0].Call("Add", 1))
	require.NoError(t, err)
	require.Equal(t, 2, v)
	in2 := dag.Input()
	g2 := compile(t, dag.Bind(hs[0], "Add", in2))
	require.Equal(t, 3, run[int](t, g2, 2))
}

func TestActorDiesMidStream(t *testing.T) {
	hs := newStages(t, 1, 2, 3)
	in := dag.Input()
	g := compile(t, dag.Bind(hs[2], "Add", dag.Bind(hs[1], "Add", dag.Bind(hs[0], "Add", in))))
	ctx := testCtx(t)
	require.Equal(t, 6, run[int](t, g, 0))
	pid, err := core.Get[int](ctx, hs[1].Call("Pid"))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	var gerr error
	for i := 0; i < 50 && gerr == nil; i++ {
		f, err := g.Execute(ctx, i)
		if err != nil {
			gerr = err
			break
		}
		_, gerr = f.Get(ctx)
	}
	require.ErrorIs(t, gerr, dag.ErrActorDied)
	_, err = g.Execute(ctx, 1)
	require.ErrorIs(t, err, dag.ErrActorDied)
	// The survivors work in a new graph.
	in2 := dag.Input()
	g2 := compile(t, dag.Bind(hs[2], "Add", dag.Bind(hs[0], "Add", in2)))
	require.Equal(t, 4, run[int](t, g2, 0))
}

func TestCompileErrors(t *testing.T) {
	hs := newStages(t, 0, 0)
	ctx := testCtx(t)
	cases := map[string]struct {
		out  func(in *dag.InputNode) dag.Node
		want string
	}{
		"no input":       {func(*dag.InputNode) dag.Node { return dag.Bind(hs[0], "Add", 1) }, "does not depend on an Input"},
		"unknown method": {func(in *dag.InputNode) dag.Node { return dag.Bind(hs[0], "Ad", in) }, `no remote method "Ad"`},
		"arity":          {func(in *dag.InputNode) dag.Node { return dag.Bind(hs[0], "Add", in, 2) }, "takes 1 arguments"},
		"hidden node": {func(in *dag.InputNode) dag.Node { return dag.Bind(hs[0], "Sum", in, []any{in}) },
			"a Node inside a constant"},
		"bad constant": {func(in *dag.InputNode) dag.Node { return dag.Bind(hs[0], "Mul", in, "three") }, "does not fit"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := dag.Compile(ctx, c.out(dag.Input()))
			require.ErrorIs(t, err, core.ErrBadArgument)
			require.ErrorContains(t, err, c.want)
		})
	}
	t.Run("leaves", func(t *testing.T) {
		in := dag.Input()
		a := dag.Bind(hs[0], "Add", in)
		dag.Bind(hs[1], "Add", a)
		dag.Bind(hs[1], "Add", in)
		_, err := dag.Compile(ctx, a)
		require.ErrorContains(t, err, "2 leaf node(s)")
	})
	t.Run("mixed input", func(t *testing.T) {
		in := dag.Input()
		_, err := dag.Compile(ctx, dag.Bind(hs[0], "Sum", in, in.At(0)))
		require.ErrorContains(t, err, "not both")
	})
	t.Run("unused attribute", func(t *testing.T) {
		in := dag.Input()
		in.At(1)
		_, err := dag.Compile(ctx, dag.Bind(hs[0], "Add", in.At(0)))
		require.ErrorContains(t, err, "not used")
	})
	t.Run("two live graphs", func(t *testing.T) {
		in := dag.Input()
		g := compile(t, dag.Bind(hs[0], "Add", in))
		in2 := dag.Input()
		_, err := dag.Compile(ctx, dag.Bind(hs[0], "Add", in2))
		require.ErrorContains(t, err, "already part of graph")
		require.NoError(t, g.Teardown())
		in3 := dag.Input()
		compile(t, dag.Bind(hs[0], "Add", in3)).Teardown()
	})
	t.Run("execute arity", func(t *testing.T) {
		in := dag.Input()
		g := compile(t, dag.Bind(hs[0], "Sum", in.At(0), in.At(1)))
		_, err := g.Execute(ctx, 1)
		require.ErrorContains(t, err, "takes 2 arguments")
		require.Equal(t, 3, run[int](t, g, 1, 2))
	})
}

func TestVisualize(t *testing.T) {
	hs := newStages(t, 1, 2)
	in := dag.Input()
	x := dag.Bind(hs[0], "Add", in)
	y := dag.Bind(hs[0], "Mul", x, 2)
	z := dag.Bind(hs[1], "Add", y)
	g := compile(t, dag.MultiOutput(z, x))
	dot := g.Visualize()
	// Actor IDs differ per run: compare with them masked.
	for i, h := range hs {
		dot = strings.ReplaceAll(dot, h.ID()[:8], fmt.Sprintf("ACTOR%d", i))
	}
	golden := filepath.Join("testdata", "visualize.dot")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		require.NoError(t, os.WriteFile(golden, []byte(dot), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), dot)
}

var _ = errors.New

func TestProfilingEvents(t *testing.T) {
	hs := newStages(t, 1, 2)
	in := dag.Input()
	g := compile(t, dag.Bind(hs[1], "Add", dag.Bind(hs[0], "Add", in)), dag.Profiling())
	for i := range 3 {
		require.Equal(t, i+3, run[int](t, g, i))
	}
	ev, err := g.Events(testCtx(t))
	require.NoError(t, err)
	require.Len(t, ev, 3*2*3, "3 executions × 2 calls × READ, COMPUTE, WRITE")
	seen := map[string]int{}
	for _, e := range ev {
		require.False(t, e.End.Before(e.Start))
		require.Equal(t, "dag.Stage.Add", e.Method)
		seen[e.Op]++
	}
	require.Equal(t, map[string]int{"READ": 6, "COMPUTE": 6, "WRITE": 6}, seen)
	again, err := g.Events(testCtx(t))
	require.NoError(t, err)
	require.Empty(t, again, "taken")

	require.NoError(t, g.Teardown())
	in2 := dag.Input()
	g2 := compile(t, dag.Bind(hs[0], "Add", in2))
	run[int](t, g2, 1)
	none, err := g2.Events(testCtx(t))
	require.NoError(t, err)
	require.Empty(t, none, "off by default")
}

// A value larger than a channel slot still travels (through a segment of
// its own), and comes back intact.
func TestLargerThanSlot(t *testing.T) {
	hs := newStages(t, 0)
	in := dag.Input()
	g := compile(t, dag.Bind(hs[0], "Bytes", in), dag.BufferSize(1024))
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(i)
	}
	for range 3 {
		got := run[[]byte](t, g, big)
		require.Equal(t, append([]byte("<"), big...), got)
	}
}

// A call skipped for an error still reads each of its inputs once, so the
// next execution pairs the right messages.
func TestErrorKeepsInputsInStep(t *testing.T) {
	hs := newStages(t, 0, 0, 0)
	in := dag.Input()
	a := dag.Bind(hs[0], "FailIf", in)
	b := dag.Bind(hs[1], "Add", in)
	g := compile(t, dag.Bind(hs[2], "Sum", a, b))
	ctx := testCtx(t)
	f, err := g.Execute(ctx, -1)
	require.NoError(t, err)
	_, err = f.Get(ctx)
	require.ErrorContains(t, err, "negative input -1")
	for x := range 5 {
		require.Equal(t, 2*x, run[int](t, g, x))
	}
}
