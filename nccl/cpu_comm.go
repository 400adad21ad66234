package nccl

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goray/goray/internal/shm"
)

// cpuComm is one rank of a CPU communicator: a mapping of the shared
// segment and this rank's ends of the rings to and from every peer.
//
// Locks: opMu is held for a whole operation (one at a time per rank, as
// with NCCL); mu guards the mapping and the failure and is taken inside
// opMu, never the other way round. Abort takes only mu, so it never waits
// for an operation.
type cpuComm struct {
	rank, size int
	name       string
	lay        layout
	mem        []byte
	spin       time.Duration

	abortw *uint64   // shared abort word
	states []*uint32 // each rank's state word
	bells  []bell    // each rank's doorbell
	procs  []shm.Process
	out    []sendEnd // by peer: the ring this rank → peer
	in     []recvEnd // by peer: the ring peer → this rank

	claimed bool // Init took this rank's entry in the segment

	opMu     sync.Mutex
	lastLive time.Time // under opMu: the last peer liveness check

	mu      sync.Mutex
	mapped  bool
	failure error       // the first failure; under mu
	aborted atomic.Bool // failure != nil, readable without mu
	closed  atomic.Bool
}

// bell is a rank's doorbell: the one futex word it sleeps on whatever it
// waits for (data from a peer, space towards a peer, an abort), and the
// count of its sleepers, so that a waker pays for FUTEX_WAKE only when the
// rank sleeps.
type bell struct {
	seq, sleepers *uint32
}

// ring rings b: called after publishing something b's rank may wait for.
func (b bell) ring() {
	if atomic.LoadUint32(b.sleepers) != 0 {
		atomic.AddUint32(b.seq, 1)
		shm.FutexWake(b.seq, maxWake)
	}
}

func newCPUComm(name string, lay layout, mem []byte, rank int, spin time.Duration) *cpuComm {
	n := lay.size
	c := &cpuComm{
		rank: rank, size: n, name: name, lay: lay, mem: mem, spin: spin, mapped: true,
		abortw: u64(mem, offAbort),
		states: make([]*uint32, n),
		bells:  make([]bell, n),
		procs:  make([]shm.Process, n),
		out:    make([]sendEnd, n),
		in:     make([]recvEnd, n),
	}
	for r := range n {
		off := lay.rankOff(r)
		c.states[r] = u32(mem, off+rkState)
		c.bells[r] = bell{seq: u32(mem, off+rkBell), sleepers: u32(mem, off+rkSleepers)}
	}
	for p := range n {
		if p == rank {
			continue
		}
		c.out[p] = newSendEnd(mem, lay, lay.ringOff(rank, p), p, c.bells[p])
		c.in[p] = newRecvEnd(mem, lay, lay.ringOff(p, rank), p, c.bells[p])
	}
	return c
}

func (c *cpuComm) Rank() int       { return c.rank }
func (c *cpuComm) Size() int       { return c.size }
func (c *cpuComm) Backend() string { return "cpu" }

// Abort fails this rank's pending and later operations with ErrAborted and
// marks the segment aborted, so every peer fails too.
func (c *cpuComm) Abort() error {
	c.fail(abortUser, c.rank, shm.Self().PID, fmt.Errorf("%w: Abort was called on rank %d", ErrAborted, c.rank))
	return nil
}

// Close detaches this rank. A pending operation fails (and so do the
// peers', which could not complete without it). The last rank to leave
// unlinks the segment; ranks whose processes died do not count.
func (c *cpuComm) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if !c.opMu.TryLock() {
		c.fail(abortClosed, c.rank, shm.Self().PID, fmt.Errorf("%w: Close was called on rank %d during the operation", ErrClosed, c.rank))
		c.opMu.Lock()
	}
	defer c.opMu.Unlock()
	if err := c.leave(); err != nil {
		return fmt.Errorf("nccl: cpu rank %d: Close: %w", c.rank, err)
	}
	return nil
}

// leave marks this rank gone, unlinks the segment if no live rank is
// still attached, and unmaps it. Callers hold opMu (or own c alone, in
// Init).
func (c *cpuComm) leave() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mapped {
		return nil
	}
	if c.claimed {
		atomic.StoreUint32(c.states[c.rank], rankLeft)
	}
	// Peers waiting on this rank notice it left at their next check.
	c.wakeAllLocked()
	last := true
	self := shm.Self()
	for r := range c.size {
		switch atomic.LoadUint32(c.states[r]) {
		case rankClaimed:
			last = false
		case rankJoined:
			if p := c.peerProcess(r); p == self || p.Alive() {
				last = false
			}
		}
	}
	var err error
	if last {
		err = shm.Unlink(c.name)
	}
	c.mapped = false
	if uerr := shm.Unmap(c.mem); uerr != nil && err == nil {
		err = uerr
	}
	c.mem = nil
	return err
}

// fail records err as this rank's failure (the first one wins), marks
// the segment aborted by (reason, who, pid) unless a peer did first, and
// wakes every rank. It returns err.
func (c *cpuComm) fail(reason, who, pid int, err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failure == nil {
		c.failure = err
	}
	c.aborted.Store(true)
	if c.mapped {
		atomic.CompareAndSwapUint64(c.abortw, 0, packAbort(reason, who, pid))
		c.wakeAllLocked()
	}
	return err
}

// abortShared marks the segment aborted (during Init, before c is a
// communicator anyone holds).
func (c *cpuComm) abortShared(reason, who, pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mapped {
		atomic.CompareAndSwapUint64(c.abortw, 0, packAbort(reason, who, pid))
		c.wakeAllLocked()
	}
}

// wakeAllLocked wakes every rank's sleepers and every rank in Init.
func (c *cpuComm) wakeAllLocked() {
	for _, b := range c.bells {
		atomic.AddUint32(b.seq, 1)
		shm.FutexWake(b.seq, maxWake)
	}
	shm.FutexWake(u32(c.mem, offJoined), maxWake)
}

// failureErr is the recorded failure, for an operation that finds the
// communicator aborted while it waits.
func (c *cpuComm) failureErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failure == nil {
		return ErrAborted
	}
	return c.failure
}

// sharedAbort adopts a peer's abort as this rank's failure.
func (c *cpuComm) sharedAbort(w uint64) error {
	err := abortError(w)
	c.mu.Lock()
	if c.failure == nil {
		c.failure = err
	}
	c.aborted.Store(true)
	c.mu.Unlock()
	return c.failureErr()
}

// begin starts an operation: it takes opMu and fails if the communicator
// is closed or aborted, or ctx has ended. On success the caller must
// unlock opMu.
func (c *cpuComm) begin(ctx context.Context, op string) error {
	c.opMu.Lock()
	var err error
	switch {
	case c.closed.Load():
		err = fmt.Errorf("%w: it was closed on rank %d", ErrClosed, c.rank)
	case c.aborted.Load():
		err = laterError(c.failureErr())
	default:
		if w := atomic.LoadUint64(c.abortw); w != 0 {
			err = laterError(c.sharedAbort(w))
		} else if cerr := ctx.Err(); cerr != nil {
			err = c.cancelled(cerr)
		}
	}
	if err != nil {
		c.opMu.Unlock()
		return c.opError(op, err)
	}
	return nil
}

func (c *cpuComm) opError(op string, err error) error {
	return fmt.Errorf("nccl: cpu rank %d: %s: %w", c.rank, op, err)
}

// cancelled aborts the communicator after ctx ended an operation: where
// the ranks' streams stand is unknown, so none may go on.
func (c *cpuComm) cancelled(cerr error) error {
	c.fail(abortCancel, c.rank, shm.Self().PID, fmt.Errorf("%w: an operation on rank %d was cancelled (%v)", ErrAborted, c.rank, cerr))
	return fmt.Errorf("%w (the communicator is aborted: its ranks may have stopped mid-operation)", cerr)
}

// laterError is what an operation returns when the communicator failed
// before it began.
func laterError(f error) error {
	if errors.Is(f, ErrAborted) {
		return f
	}
	return fmt.Errorf("%w after an earlier failure: %v", ErrAborted, f)
}
