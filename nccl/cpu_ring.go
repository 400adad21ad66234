package nccl

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/tensor"
)

// slotHeader is the 64-byte header of a slot in shared memory (see the
// layout in cpu_layout.go). seq is stored last, atomically: it publishes
// the rest.
type slotHeader struct {
	seq   uint64 // part index + 1
	total uint64 // bytes of the whole operation, as the sender sees it
	n     uint32 // bytes in this slot
	kind  uint8
	dtype uint8
	arg   uint16 // reduce op, or broadcast root
}

// opSig names an operation in every part sent for it, so a receiver can
// tell that its peer is in a different operation, or the same one with a
// different size, dtype, reduction or root.
type opSig struct {
	kind  uint8
	dtype uint8
	arg   uint16
	total uint64
}

const (
	kindP2P = 1 + iota
	kindAllReduce
	kindAllGather
	kindReduceScatter
	kindBroadcast
)

func kindName(k uint8) string {
	switch k {
	case kindP2P:
		return "Send"
	case kindAllReduce:
		return "AllReduce"
	case kindAllGather:
		return "AllGather"
	case kindReduceScatter:
		return "ReduceScatter"
	case kindBroadcast:
		return "Broadcast"
	}
	return fmt.Sprintf("operation %d", k)
}

// ringSlots is what both ends of a ring know: where its slots are.
type ringSlots struct {
	headers unsafe.Pointer // the first slot's header
	data0   unsafe.Pointer // the first slot's data
	tail    *uint64        // parts the consumer has released
	slots   uint64
	chunk   int
	peer    int
	bell    bell // the peer's doorbell
}

func newRingSlots(mem []byte, lay layout, off, peer int, b bell) ringSlots {
	return ringSlots{
		headers: unsafe.Pointer(&mem[off+headersOff]),
		data0:   unsafe.Pointer(&mem[off+lay.dataOff]),
		tail:    u64(mem, off),
		slots:   uint64(lay.slots),
		chunk:   lay.chunk,
		peer:    peer,
		bell:    b,
	}
}

func (r *ringSlots) header(i uint64) *slotHeader {
	return (*slotHeader)(unsafe.Add(r.headers, uintptr(i%r.slots)*slotHdr))
}

func (r *ringSlots) data(i uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(r.data0, uintptr(i%r.slots)*uintptr(r.chunk))), r.chunk)
}

// sendEnd is this rank's end of the ring to a peer: the producer.
type sendEnd struct {
	ringSlots
	head  uint64 // parts published
	freed uint64 // the consumer's tail, as last seen
}

// recvEnd is this rank's end of the ring from a peer: the consumer.
type recvEnd struct {
	ringSlots
	next uint64 // parts consumed (the tail this rank publishes)
}

func newSendEnd(mem []byte, lay layout, off, peer int, b bell) sendEnd {
	return sendEnd{ringSlots: newRingSlots(mem, lay, off, peer, b)}
}

func newRecvEnd(mem []byte, lay layout, off, peer int, b bell) recvEnd {
	return recvEnd{ringSlots: newRingSlots(mem, lay, off, peer, b)}
}

// acquire returns the next slot's data area (chunk bytes), waiting for the
// consumer to free it.
func (c *cpuComm) acquire(ctx context.Context, e *sendEnd) ([]byte, error) {
	if e.head-e.freed >= e.slots {
		e.freed = atomic.LoadUint64(e.tail)
		if e.head-e.freed >= e.slots {
			if err := c.await(ctx, e.tail, e.head-e.slots+1, e.peer); err != nil {
				return nil, err
			}
			e.freed = atomic.LoadUint64(e.tail)
		}
	}
	return e.data(e.head), nil
}

// publish hands the acquired slot, holding n bytes of sig's operation, to
// the consumer.
func (c *cpuComm) publish(e *sendEnd, sig opSig, n int) {
	h := e.header(e.head)
	h.total, h.n, h.kind, h.dtype, h.arg = sig.total, uint32(n), sig.kind, sig.dtype, sig.arg
	e.head++
	atomic.StoreUint64(&h.seq, e.head)
	e.bell.ring()
}

// receive waits for the next part from e's peer and returns its n bytes,
// valid until release. A part of another operation, or of another size,
// fails the communicator.
func (c *cpuComm) receive(ctx context.Context, e *recvEnd, sig opSig, n int) ([]byte, error) {
	h := e.header(e.next)
	want := e.next + 1
	if atomic.LoadUint64(&h.seq) != want {
		if err := c.await(ctx, &h.seq, want, e.peer); err != nil {
			return nil, err
		}
		if got := atomic.LoadUint64(&h.seq); got != want {
			return nil, c.fail(abortMismatch, c.rank, shm.Self().PID, fmt.Errorf("%w: the ring from rank %d is corrupt (part %d where %d was due)", ErrAborted, e.peer, got-1, want-1))
		}
	}
	if h.kind != sig.kind || h.dtype != sig.dtype || h.arg != sig.arg || h.total != sig.total || int(h.n) != n {
		return nil, c.mismatch(e.peer, *h, sig)
	}
	return e.data(e.next)[:n], nil
}

// release frees the part receive returned.
func (c *cpuComm) release(e *recvEnd) {
	e.next++
	atomic.StoreUint64(e.tail, e.next)
	e.bell.ring()
}

func (c *cpuComm) mismatch(peer int, h slotHeader, sig opSig) error {
	var err error
	if h.kind == kindP2P && sig.kind == kindP2P {
		err = fmt.Errorf("%w: rank %d sent %d bytes, this rank receives %d: Recv's tensor must have the size of the matching Send's",
			ErrBadArgument, peer, h.total, sig.total)
	} else {
		err = fmt.Errorf("%w: rank %d sent part of %s, this rank is in %s: every rank must call the same collectives in the same order, with tensors of the same dtype and size (and the same reduction or root)",
			ErrBadArgument, peer, describe(h.kind, h.dtype, h.arg, h.total), describe(sig.kind, sig.dtype, sig.arg, sig.total))
	}
	return c.fail(abortMismatch, c.rank, shm.Self().PID, err)
}

func describe(kind, dtype uint8, arg uint16, total uint64) string {
	switch kind {
	case kindP2P:
		return fmt.Sprintf("a Send of %d bytes", total)
	case kindAllReduce, kindReduceScatter:
		return fmt.Sprintf("a %s of %d bytes of %s with %s", kindName(kind), total, tensor.DType(dtype), ReduceOp(arg))
	case kindBroadcast:
		return fmt.Sprintf("a Broadcast of %d bytes of %s from root %d", total, tensor.DType(dtype), arg)
	}
	return fmt.Sprintf("a %s of %d bytes of %s", kindName(kind), total, tensor.DType(dtype))
}

// Waiting. Data usually arrives within microseconds of asking (the peer is
// in the same collective), and a futex wake costs 7-70µs, so a waiter first
// spins on the word it waits for, then yields the CPU, and only then
// sleeps on its doorbell, with a timeout: a dead peer never rings it.
const (
	yieldFactor = 4                    // yield for yieldFactor × Spin after spinning
	sleepPoll   = 2 * time.Millisecond // the longest futex sleep
	// contendedYield: a sched_yield that takes longer ran another thread,
	// so this core is wanted and spinning on would only delay the peer.
	contendedYield = 3 * time.Microsecond
)

// await waits until *word ≥ target, a word that rank peer advances. It
// fails if ctx ends (aborting the communicator), if the communicator is
// aborted here or by any rank, or if peer dies or leaves.
func (c *cpuComm) await(ctx context.Context, word *uint64, target uint64, peer int) error {
	done := ctx.Done()
	if c.spin > 0 {
		start := time.Now()
		spinning := true
		for i := 1; ; i++ {
			if atomic.LoadUint64(word) >= target {
				return nil
			}
			if c.aborted.Load() || atomic.LoadUint64(c.abortw) != 0 {
				return c.abortErr()
			}
			if spinning {
				shm.Pause(1)
				if i&63 != 0 {
					continue
				}
			} else {
				shm.Yield()
				if i&7 != 0 {
					continue
				}
			}
			if stopped(done) {
				return c.cancelled(ctx.Err())
			}
			now := time.Now()
			if spinning {
				if now.Sub(start) > c.spin {
					spinning = false
					continue
				}
				// Let a goroutine rank sharing this P run, then find
				// out whether another thread wants this core.
				runtime.Gosched()
				shm.Yield()
				if time.Since(now) > contendedYield {
					spinning = false
				}
			} else {
				runtime.Gosched()
				if now.Sub(start) > c.spin*(1+yieldFactor) {
					break
				}
			}
		}
	}
	b := c.bells[c.rank]
	deadline, hasDeadline := ctx.Deadline()
	for {
		old := atomic.LoadUint32(b.seq)
		atomic.AddUint32(b.sleepers, 1)
		if atomic.LoadUint64(word) < target && !c.aborted.Load() && atomic.LoadUint64(c.abortw) == 0 {
			timeout := sleepPoll
			if hasDeadline {
				timeout = max(min(timeout, time.Until(deadline)), time.Microsecond)
			}
			shm.FutexWait(b.seq, old, timeout)
		}
		atomic.AddUint32(b.sleepers, ^uint32(0))
		if atomic.LoadUint64(word) >= target {
			return nil
		}
		if c.aborted.Load() || atomic.LoadUint64(c.abortw) != 0 {
			return c.abortErr()
		}
		if stopped(done) {
			return c.cancelled(ctx.Err())
		}
		if reason := c.lostPeer(peer); reason != 0 {
			// What it published before it went still counts.
			if atomic.LoadUint64(word) >= target {
				return nil
			}
			return c.peerFailed(peer, reason)
		}
	}
}

func (c *cpuComm) abortErr() error {
	if c.aborted.Load() {
		return c.failureErr()
	}
	return c.sharedAbort(atomic.LoadUint64(c.abortw))
}

// lostPeer checks, at most every liveEvery, whether the awaited peer has
// died or left; it returns abortPeerDied, abortLeft or 0. Only the awaited
// peer counts: one that finished its part and closed, or even died, breaks
// nothing this rank still needs, and a rank stuck behind a lost one learns
// of it from the rank that waits on that one directly, which aborts the
// communicator for all.
func (c *cpuComm) lostPeer(awaited int) int {
	now := time.Now()
	if now.Sub(c.lastLive) < liveEvery {
		return 0
	}
	c.lastLive = now
	return c.peerGone(awaited)
}

func (c *cpuComm) peerGone(r int) int {
	if atomic.LoadUint32(c.states[r]) == rankLeft {
		return abortLeft
	}
	if p := c.procs[r]; p != shm.Self() && !p.Alive() {
		return abortPeerDied
	}
	return 0
}

func (c *cpuComm) peerFailed(r, reason int) error {
	p := c.procs[r]
	if reason == abortLeft {
		return c.fail(abortLeft, r, p.PID, fmt.Errorf("%w: rank %d (pid %d) closed the communicator while rank %d waited for it", ErrAborted, r, p.PID, c.rank))
	}
	return c.fail(abortPeerDied, r, p.PID, fmt.Errorf("%w: rank %d (pid %d) died; the communicator is aborted (%w)", ErrPeerDied, r, p.PID, ErrAborted))
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
