package channel

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goray/goray/internal/shm"
)

// A sleeper wakes now and then to check whether the process it waits for
// is still alive: pollInterval after it fell asleep, then twice as long
// after each check, up to maxPoll. Each wake of a thread blocked in a
// system call makes the Go runtime's monitor thread (sysmon) take its P
// away and then tick every 20 µs for a millisecond: with a sleeper per
// idle ring (a process has a dozen) polling every 50 ms, sysmon woke some
// 4000 times a second, each time taking a core from whoever held it.
const (
	pollInterval = 50 * time.Millisecond
	maxPoll      = time.Second
)

// contendedYield: a yield of the CPU that takes longer than this ran
// another thread.
const contendedYield = 3 * time.Microsecond

// minSpin is the floor of the adaptive spin budget.
const minSpin = 500 * time.Nanosecond

// spinner holds an endpoint's two adaptive busy-wait budgets: how long
// the next wait may spin with a pause instruction, and how long it may then
// keep yielding the CPU before it sleeps.
type spinner struct {
	spin, yield budget
	// contended counts down the waits that skip spinning and yield from
	// the start, because a recent wait found other threads wanting this
	// core. It expires, so a false alarm (a runtime thread that ran once)
	// costs a few slower waits, and a real crowd is found again by the
	// first probe of the next spin.
	contended int
}

// contendedWaits is how many waits yield from the start once contention is
// seen.
const contendedWaits = 32

// newSpinner makes the budgets for Spin(d): spinning up to d, yielding up
// to yieldFactor·d. Spin(0) turns both off.
func newSpinner(d time.Duration) spinner {
	return spinner{spin: newBudget(d), yield: newBudget(yieldFactor * d)}
}

// yieldFactor relates the yield budget to the spin budget: yielding costs
// nothing when another thread wants the core (it runs) and a system call
// per turn when none does, so it may go on longer than spinning.
const yieldFactor = 10

// budget is an adaptive bound on one phase of busy waiting. A phase that
// ends with the condition met restores the full budget: the peer is fast,
// and one hiccup must not push this end onto the futex path, where every
// message would cost a wake-up. A phase that runs out halves the budget,
// down to minSpin: the peer is slow, and busy waiting only takes a core it
// may need. Every probeEvery-th wait below the full budget uses the full
// budget anyway, so an end stuck at the floor finds out when its peer
// speeds up.
type budget struct {
	max, cur time.Duration
	waits    uint32
}

const probeEvery = 16

func newBudget(max time.Duration) budget { return budget{max: max, cur: max} }

// next is how long the coming wait may spend in this phase.
func (b *budget) next() time.Duration {
	b.waits++
	if b.cur < b.max && b.waits%probeEvery == 0 {
		return b.max
	}
	return b.cur
}

func (b *budget) succeeded() { b.cur = b.max }

func (b *budget) failed() {
	if b.cur > minSpin {
		b.cur = max(minSpin, b.cur/2)
	}
}

type wordID int

const (
	dataWord  wordID = iota // readers sleep here for data
	spaceWord               // the writer sleeps here for space
)

// parker puts a waiter to sleep on one of the ring's two futex words and
// wakes it. The shared-memory ring uses the futex; the in-process ring parks
// goroutines, which costs no OS thread.
type parker interface {
	park(ctx context.Context, w wordID, word *uint32, old uint32, timeout time.Duration)
	unpark(w wordID, word *uint32)
	// yield gives the CPU to another runnable thread (or goroutine), if
	// there is one, and returns at once if not.
	yield()
}

type futexParker struct{}

func (futexParker) park(ctx context.Context, _ wordID, word *uint32, old uint32, timeout time.Duration) {
	if ctx.Done() != nil {
		// A cancel must end the sleep now, not at the timeout: bump the
		// word and wake it (a harmless spurious wake for others).
		stop := context.AfterFunc(ctx, func() {
			atomic.AddUint32(word, 1)
			shm.FutexWake(word, math.MaxInt32)
		})
		defer stop()
	}
	shm.FutexWait(word, old, timeout)
}

func (futexParker) unpark(_ wordID, word *uint32) { shm.FutexWake(word, math.MaxInt32) }

func (futexParker) yield() { shm.Yield() }

// goParker parks goroutines: one gate per word, a channel closed to wake
// everyone waiting on it.
type goParker struct {
	gates [2]gate
}

type gate struct {
	mu sync.Mutex
	ch chan struct{}
}

func (p *goParker) park(ctx context.Context, w wordID, word *uint32, old uint32, timeout time.Duration) {
	g := &p.gates[w]
	g.mu.Lock()
	if atomic.LoadUint32(word) != old {
		g.mu.Unlock()
		return
	}
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
	ch := g.ch
	g.mu.Unlock()
	t := time.NewTimer(timeout)
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
}

func (p *goParker) yield() { runtime.Gosched() }

func (p *goParker) unpark(w wordID, _ *uint32) {
	g := &p.gates[w]
	g.mu.Lock()
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
	g.mu.Unlock()
}

// waitFor is the slow path of every blocking call: spin with a pause
// instruction for the endpoint's budget, then sleep on word, announcing the
// sleep in *sleepers so that the other side pays for a wake only when
// someone sleeps. ready is re-checked after announcing (the other side
// publishes, then reads sleepers; this side announces, then re-checks: one
// of the two always sees the other). peer reports a dead peer.
func (r *ring) waitFor(ctx context.Context, sp *spinner, w wordID, word, sleepers *uint32,
	ready func() bool, peer func() error, op, what string) error {
	start := time.Now()
	done := ctx.Done()
	deadline, hasDeadline := ctx.Deadline()
	// Phase 1: spin with a pause instruction, so a peer on another core
	// hands over in well under a microsecond. About every microsecond,
	// check the clock and ctx and yield the CPU once: if
	// that yield takes long, another thread wanted this core (more
	// processes than cores, as in a chain of actors on a small machine),
	// and spinning on would only delay the process holding the message.
	if sp.contended > 0 {
		sp.contended--
	} else if sp.spin.max > 0 {
		limit := sp.spin.next()
		for i := 1; ; i++ {
			if ready() {
				sp.spin.succeeded()
				return nil
			}
			if r.isClosed() {
				return ErrChannelClosed
			}
			shm.Pause(1)
			if i&31 == 0 {
				now := time.Now()
				if now.Sub(start) > limit {
					break
				}
				if stopped(done) {
					return ctxError(ctx, op, what, start)
				}
				// No runtime.Gosched here: it hands the goroutine to the
				// global queue and wakes an idle thread to look for work,
				// which often takes the goroutine over while this one
				// goes to sleep, two thread switches per turn (chain4
				// lost 1.5 µs to them, single_actor 0.6). A goroutine
				// this one readied meanwhile is stolen by an idle P's
				// thread, which readying it woke.
				r.parker.yield()
				if time.Since(now) > contendedYield {
					sp.contended = contendedWaits
					break
				}
			}
		}
		sp.spin.failed()
	}
	// Phase 2: yield the CPU in a loop. When other threads want the cores
	// they run, the one holding the message among them; when none does,
	// each turn is one cheap system call.
	if sp.yield.max > 0 {
		limit := sp.yield.next()
		ystart := time.Now()
		for i := 1; ; i++ {
			if ready() {
				sp.yield.succeeded()
				return nil
			}
			if r.isClosed() {
				return ErrChannelClosed
			}
			r.parker.yield()
			if i&7 == 0 {
				if time.Since(ystart) > limit {
					break
				}
				if stopped(done) {
					return ctxError(ctx, op, what, start)
				}
			}
		}
		sp.yield.failed()
	}
	// Phase 3: sleep on the futex word.
	lastPeerCheck := time.Now()
	poll := pollInterval
	for {
		old := atomic.LoadUint32(word)
		atomic.AddUint32(sleepers, 1)
		if ready() {
			atomic.AddUint32(sleepers, ^uint32(0))
			return nil
		}
		if r.isClosed() {
			atomic.AddUint32(sleepers, ^uint32(0))
			return ErrChannelClosed
		}
		timeout := poll
		if hasDeadline {
			rem := time.Until(deadline)
			if rem <= 0 {
				atomic.AddUint32(sleepers, ^uint32(0))
				return &TimeoutError{Op: op, After: time.Since(start), What: what}
			}
			timeout = min(timeout, rem)
		}
		r.parker.park(ctx, w, word, old, timeout)
		atomic.AddUint32(sleepers, ^uint32(0))
		if ready() {
			return nil
		}
		if r.isClosed() {
			return ErrChannelClosed
		}
		if err := ctx.Err(); err != nil {
			return ctxError(ctx, op, what, start)
		}
		if hasDeadline && !time.Now().Before(deadline) {
			return &TimeoutError{Op: op, After: time.Since(start), What: what}
		}
		if time.Since(lastPeerCheck) >= poll {
			lastPeerCheck = time.Now()
			if peer != nil {
				if err := peer(); err != nil {
					return err
				}
			}
			poll = min(2*poll, maxPoll)
		}
	}
}

// stopped reports, without blocking, whether done (a ctx.Done()) is closed.
func stopped(done <-chan struct{}) bool {
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func ctxError(ctx context.Context, op, what string, start time.Time) error {
	if ctx.Err() == context.DeadlineExceeded {
		return &TimeoutError{Op: op, After: time.Since(start), What: what}
	}
	return fmt.Errorf("channel: %s: %w", op, ctx.Err())
}
