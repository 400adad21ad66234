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

// pollInterval bounds every sleep: a sleeper wakes at least this often to
// check whether the process it waits for is still alive.
const pollInterval = 50 * time.Millisecond

// minSpin is the floor of the adaptive spin budget.
const minSpin = 500 * time.Nanosecond

// spinner is an endpoint's adaptive spin budget. A spin that ends with
// the condition met restores the full budget: the peer is fast, and one
// hiccup must not push this end onto the futex path, where every message
// would cost a wake-up. A spin that fails halves the budget, down to
// minSpin: the peer is slow, and spinning only takes a core it may need.
// Every probeEvery-th wait below the full budget spins the full budget
// anyway, so an end stuck at the floor finds out when its peer speeds up.
type spinner struct {
	max, cur time.Duration
	waits    uint32
}

const probeEvery = 16

func newSpinner(max time.Duration) spinner { return spinner{max: max, cur: max} }

// budget is how long the next wait may spin.
func (s *spinner) budget() time.Duration {
	s.waits++
	if s.cur < s.max && s.waits%probeEvery == 0 {
		return s.max
	}
	return s.cur
}

func (s *spinner) succeeded() { s.cur = s.max }

func (s *spinner) failed() {
	if s.cur > minSpin {
		s.cur = max(minSpin, s.cur/2)
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
	if sp.max > 0 {
		budget := sp.budget()
		for i := 1; ; i++ {
			if ready() {
				sp.succeeded()
				return nil
			}
			if r.isClosed() {
				return ErrChannelClosed
			}
			shm.Pause(1)
			// Every 64 turns (about 2 µs: a pause costs tens of ns):
			// check the clock and ctx, and yield the P. The yield
			// matters: a goroutine this one woke waits in this P's
			// runnext slot, and would otherwise run only when the spin
			// ends, or when another P steals it (which waits 3 µs
			// first).
			if i&63 == 0 {
				if time.Since(start) > budget {
					break
				}
				if done != nil {
					select {
					case <-done:
						return ctxError(ctx, op, what, start)
					default:
					}
				}
				runtime.Gosched()
			}
		}
		sp.failed()
	}
	lastPeerCheck := time.Now()
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
		timeout := pollInterval
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
		if peer != nil && time.Since(lastPeerCheck) >= pollInterval {
			lastPeerCheck = time.Now()
			if err := peer(); err != nil {
				return err
			}
		}
	}
}

func ctxError(ctx context.Context, op, what string, start time.Time) error {
	if ctx.Err() == context.DeadlineExceeded {
		return &TimeoutError{Op: op, After: time.Since(start), What: what}
	}
	return fmt.Errorf("channel: %s: %w", op, ctx.Err())
}
