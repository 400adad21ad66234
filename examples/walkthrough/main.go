// Command walkthrough is Ray's core walkthrough as one goray program: parallel
// tasks, a chain of refs, Wait, Put once and pass the ref to many tasks, an
// actor, a named actor, and a failing task's error.
//
//	go run ./examples/walkthrough            # about 2 s
//	go run ./examples/walkthrough -sleep 1s  # longer tasks in the first step
//
// core.Init starts an embedded local cluster of 4 CPUs inside the program:
// its workers are this binary re-executed, so Init comes first in main and
// every function and actor class is registered at package level.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
)

// ErrDivByZero is registered so that errors.Is recognises it in the driver,
// across the process boundary.
var ErrDivByZero = core.RegisterError(errors.New("walkthrough: division by zero"))

var (
	// sleep sleeps d (or until the task is cancelled) and returns d.
	sleep = core.Register("walkthrough.sleep", func(ctx context.Context, d time.Duration) (time.Duration, error) {
		select {
		case <-time.After(d):
			return d, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})

	// fetch, process and combine form a chain of refs.
	fetch = core.Register("walkthrough.fetch", func(_ context.Context, page string) (string, error) {
		return "<html>" + page + "</html>", nil
	})
	process = core.Register("walkthrough.process", func(_ context.Context, html string) (int, error) {
		return len(html), nil
	})
	combine = core.Register("walkthrough.combine", func(_ context.Context, sizes ...int) (int, error) {
		total := 0
		for _, s := range sizes {
			total += s
		}
		return total, nil
	})

	// sumRange sums xs[lo:hi]; xs is read in place from the object store.
	sumRange = core.Register("walkthrough.sumRange", func(_ context.Context, xs []int64, lo, hi int) (int64, error) {
		var s int64
		for _, x := range xs[lo:hi] {
			s += x
		}
		return s, nil
	})

	// hit calls an actor through a handle it was passed: handles are values.
	hit = core.Register("walkthrough.hit", func(ctx context.Context, h *actor.Handle) (int, error) {
		return core.Get[int](ctx, h.Call("Incr", 1))
	})

	divide = core.Register("walkthrough.divide", func(_ context.Context, a, b int) (int, error) {
		if b == 0 {
			return 0, fmt.Errorf("divide %d by %d: %w", a, b, ErrDivByZero)
		}
		return a / b, nil
	})
)

// Counter is an actor: its state lives in its own worker process, and one
// caller's calls run in order.
type Counter struct{ n int }

func (c *Counter) Incr(_ context.Context, by int) (int, error) { c.n += by; return c.n, nil }
func (c *Counter) Value(context.Context) (int, error)          { return c.n, nil }

var counterClass = actor.Register("walkthrough.Counter", func(_ context.Context, start int) (*Counter, error) {
	return &Counter{n: start}, nil
})

// rt is the driver's runtime.
var rt *core.Runtime

func main() {
	var err error
	rt, err = core.Init(context.Background(), core.NumCPUs(4)) // in a worker process: serves tasks, never returns
	check(err)
	defer rt.Shutdown()
	flag.CommandLine.Init("walkthrough", flag.ContinueOnError) // a bad flag goes through check too
	d := flag.Duration("sleep", 500*time.Millisecond, "duration of each of the 8 parallel tasks")
	check(flag.CommandLine.Parse(os.Args[1:]))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// 1. Parallel tasks: Remote returns at once; 8 tasks of 1 CPU run 4 at a time.
	start := time.Now()
	var refs []*core.ObjectRef
	for range 8 {
		refs = append(refs, sleep.Remote(rt, *d))
	}
	_, err = core.GetAll[time.Duration](ctx, refs)
	check(err)
	fmt.Printf("1. parallel: 8 tasks of %v on 4 CPUs took %v (one after another: %v)\n",
		*d, time.Since(start).Round(10*time.Millisecond), 8**d)

	// 2. A chain of refs: each task's ref is the next one's argument; the
	// driver submits everything at once and waits only for the end.
	var sizes []any
	for _, page := range []string{"home", "about", "blog"} {
		sizes = append(sizes, process.Remote(rt, fetch.Remote(rt, page)))
	}
	total, err := core.Get[int](ctx, combine.Remote(rt, sizes...))
	check(err)
	fmt.Printf("2. chain: fetch → process → combine of 3 pages: %d bytes\n", total)

	// 3. Wait: handle results in the order they finish, not submitted.
	pending := []*core.ObjectRef{}
	for _, ms := range []int{400, 100, 300, 200} {
		pending = append(pending, sleep.Remote(rt, time.Duration(ms)*time.Millisecond))
	}
	var order []string
	for len(pending) > 0 {
		ready, rest, err := core.Wait(ctx, pending, 1, -1)
		check(err)
		v, err := core.Get[time.Duration](ctx, ready[0])
		check(err)
		order = append(order, v.String())
		pending = rest
	}
	fmt.Printf("3. wait: submitted 400ms 100ms 300ms 200ms, finished %s\n", strings.Join(order, " "))

	// 4. Put once, pass the ref to many tasks: 8 MiB go into the shared-memory
	// store once, and every task reads that copy in place.
	xs := make([]int64, 1<<20)
	var want int64
	for i := range xs {
		xs[i] = int64(i)
		want += int64(i)
	}
	big, err := core.Put(rt, xs)
	check(err)
	refs = nil
	step := len(xs) / 8
	for lo := 0; lo < len(xs); lo += step {
		refs = append(refs, sumRange.Remote(rt, big, lo, lo+step))
	}
	parts, err := core.GetAll[int64](ctx, refs)
	check(err)
	var got int64
	for _, p := range parts {
		got += p
	}
	if got != want {
		check(fmt.Errorf("put once: the tasks summed %d, the driver %d", got, want))
	}
	fmt.Printf("4. put once: 8 tasks summed one 8 MiB object in place: %d, as the driver did\n", got)

	// 5. An actor: created in its own process; calls run in order.
	c, err := counterClass.Remote(rt, 0)
	check(err)
	var incs []*core.ObjectRef
	for range 3 {
		incs = append(incs, c.Call("Incr", 1))
	}
	vals, err := core.GetAll[int](ctx, incs)
	check(err)
	v, err := core.Get[int](ctx, c.Call("Value"))
	check(err)
	fmt.Printf("5. actor: counter incremented 3 times: %v, value %d\n", vals, v)

	// 6. A named actor: code that has no handle to it finds it by name.
	_, err = counterClass.Options(actor.Name("hits")).Remote(rt, 100)
	check(err)
	hits, err := actor.Get(rt, "hits")
	check(err)
	v, err = core.Get[int](ctx, hits.Call("Incr", 10))
	check(err)
	fmt.Printf("6. named actor: \"hits\", created at 100, found with actor.Get; Incr(10) gives %d\n", v)
	var viaTasks []*core.ObjectRef
	for range 4 { // the handle passed to tasks, which call the actor from their workers
		viaTasks = append(viaTasks, hit.Remote(rt, hits))
	}
	_, err = core.GetAll[int](ctx, viaTasks)
	check(err)
	v, err = core.Get[int](ctx, hits.Call("Value"))
	check(err)
	fmt.Printf("   4 tasks given its handle each called Incr(1): value %d\n", v)

	// 7. Errors: a failed task's Get gives a *core.TaskError, with the remote
	// message, and errors.Is matches the registered sentinel.
	_, err = core.Get[int](ctx, divide.Remote(rt, 1, 0))
	var te *core.TaskError
	if !errors.As(err, &te) {
		check(fmt.Errorf("divide by zero: want a *core.TaskError, got %v", err))
	}
	fmt.Printf("7. error: task %s failed: %q (type %s); errors.Is(err, ErrDivByZero) = %v\n",
		te.Task, te.Message, te.Type, errors.Is(err, ErrDivByZero))
}

// check ends the program on an error: one line, exit code 1, and the cluster
// shut down first (os.Exit skips deferred calls).
func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "walkthrough:", err)
		if rt != nil {
			rt.Shutdown()
		}
		os.Exit(1)
	}
}
