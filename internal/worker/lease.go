package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
)

// Ring shape of a lease: tasks and replies are small (larger values travel
// through the object store), and a lease never holds more tasks than
// leaseSlots, so the submitter never waits to write.
const (
	leaseSlots    = 64
	leaseSlotSize = 1024
	// leaseLinger is how long an idle lease is kept for the next task
	// before it goes back to the raylet: long enough that a loop of
	// synchronous tasks reuses one worker, short enough that idle CPUs
	// return soon.
	leaseLinger = 50 * time.Millisecond
	// borrowerCheck is how often an owner looks for dead borrowers.
	borrowerCheck = 250 * time.Millisecond
)

// leaseConn is a worker leased by this process: the rings to it, and the
// tasks it holds.
type leaseConn struct {
	id        string
	key       *keyQueue
	pid       int
	addr      string
	reqRing   *channel.Ring
	repRing   *channel.Ring
	req       *channel.RingWriter
	rep       *channel.RingReader
	inflight  map[ids.TaskID]*task
	actor     *actorConn // rings to an actor, not a lease
	idleSince time.Time
	broken    bool
	returning bool
	done      chan struct{} // closed when the reply loop has ended
}

// attach makes the lease's rings and hands them to the worker.
func (w *CoreWorker) attach(ctx context.Context, k *keyQueue, rep *rpc.LeaseReply) (*leaseConn, error) {
	l, err := w.attachRings(ctx, "lease."+string(rep.LeaseId)[:8], rep.WorkerAddress, int(rep.WorkerPid), rep, nil)
	if err != nil {
		return nil, err
	}
	l.key = k
	return l, nil
}

// attachRings makes a pair of rings and hands them to the worker at addr:
// for a lease (rep), or for calls to the actor it hosts (actorID).
func (w *CoreWorker) attachRings(ctx context.Context, label, addr string, pid int, rep *rpc.LeaseReply, actorID []byte) (_ *leaseConn, err error) {
	l := &leaseConn{pid: pid, addr: addr, inflight: map[ids.TaskID]*task{}, done: make(chan struct{})}
	req := &rpc.AttachRequest{SubmitterAddress: w.cfg.Address, ActorId: actorID}
	if rep != nil {
		l.id = string(rep.LeaseId)
		req.LeaseId, req.GpuIds = rep.LeaseId, rep.GpuIds
	}
	opts := []channel.Option{channel.Slots(leaseSlots), channel.SlotSize(leaseSlotSize)}
	if l.reqRing, err = channel.NewShm(label+".req", 1, opts...); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if l.req != nil {
				l.req.Close()
			}
			l.closeRings()
		}
	}()
	if l.repRing, err = channel.NewShm(label+".rep", 1, opts...); err != nil {
		return nil, err
	}
	if l.req, err = l.reqRing.Writer(); err != nil {
		return nil, err
	}
	if l.rep, err = l.repRing.Reader(0); err != nil {
		return nil, err
	}
	c, err := w.peer(addr)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req.RequestRing, req.ReplyRing = l.reqRing.Name(), l.repRing.Name()
	if _, err = c.Attach(actx, req); err != nil {
		return nil, fmt.Errorf("attach to worker pid %d: %w", l.pid, err)
	}
	return l, nil
}

// closeRings releases the lease's rings; the owner's Ring.Close removes
// them from /dev/shm. The writing end is closed separately, under the
// core worker's mutex, which every write holds.
func (l *leaseConn) closeRings() {
	if l.rep != nil {
		l.rep.Close()
	}
	if l.reqRing != nil {
		l.reqRing.Close()
	}
	if l.repRing != nil {
		l.repRing.Close()
	}
}

// replyLoop reads a lease's replies until the worker detaches or dies.
func (w *CoreWorker) replyLoop(l *leaseConn) {
	defer close(l.done)
	var rep rpc.RingReply
	var in interner
	for {
		msg, err := l.rep.Read(context.Background())
		if err == nil {
			err = unmarshalReply(msg.Data, &rep, &in)
			msg.Release()
			if err != nil {
				err = fmt.Errorf("undecodable reply from worker pid %d: %w", l.pid, err)
			}
		}
		w.mu.Lock()
		if err != nil && l.actor != nil {
			w.actorBrokenLocked(l)
			l.req.Close()
			w.mu.Unlock()
			l.closeRings()
			return
		}
		if err != nil {
			detached := errors.Is(err, errs.ErrChannelClosed) && l.returning
			if !detached {
				w.leaseBrokenLocked(l, err)
			}
			l.broken = true
			l.req.Close()
			w.mu.Unlock()
			if !detached {
				w.cfg.Raylet.ReturnLease(context.Background(), &rpc.ReturnLeaseRequest{LeaseId: []byte(l.id), WorkerFailed: true})
			}
			l.closeRings()
			return
		}
		w.handleReplyLocked(l, &rep)
		w.mu.Unlock()
		rep.Reset()
		// A Get this reply completed waits in this P's runnext slot: run
		// it now, on this thread, rather than wake another thread for it
		// (a futex wake, 7–70 µs) while this loop spins for the next reply.
		runtime.Gosched()
	}
}

// returnLease detaches from a leased worker (the worker finishes what it
// holds, then sees the request ring close) and gives it back.
func (w *CoreWorker) returnLease(l *leaseConn, failed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	w.mu.Lock()
	l.returning = true
	err := errors.New("lease broken")
	if !l.broken {
		err = l.req.CloseWrite(ctx)
	}
	w.mu.Unlock()
	cancel()
	if err == nil {
		select {
		case <-l.done:
		case <-time.After(5 * time.Second):
			err = errors.New("worker did not detach")
		}
	}
	if err != nil {
		failed = true
		l.repRing.Close() // wakes the reply loop
		<-l.done
	}
	w.cfg.Raylet.ReturnLease(context.Background(), &rpc.ReturnLeaseRequest{LeaseId: []byte(l.id), WorkerFailed: failed})
}

// shutdown is returnLease at Close: tasks still held fail with ErrShutdown.
func (l *leaseConn) shutdown() {
	l.repRing.Close() // wakes the reply loop, which closes the rest
	<-l.done
}

// housekeeping returns leases that stayed idle past leaseLinger.
func (w *CoreWorker) housekeeping() {
	t := time.NewTicker(leaseLinger / 4)
	defer t.Stop()
	lastBorrowerCheck := time.Now()
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			var idle []*leaseConn
			w.mu.Lock()
			if now.Sub(lastBorrowerCheck) >= borrowerCheck {
				lastBorrowerCheck = now
				w.dropDeadBorrowersLocked()
			}
			for _, k := range w.keys {
				for _, l := range k.leases {
					if len(l.inflight) == 0 && !l.returning && !l.broken && len(k.queue) == 0 &&
						!l.idleSince.IsZero() && now.Sub(l.idleSince) > leaseLinger {
						l.returning = true
						idle = append(idle, l)
					}
				}
				for _, l := range idle {
					if l.key == k {
						k.leases = deleteLease(k.leases, l)
					}
				}
			}
			w.mu.Unlock()
			for _, l := range idle {
				w.goBG(func() { w.returnLease(l, false) })
			}
		}
	}
}

func deleteLease(ls []*leaseConn, l *leaseConn) []*leaseConn {
	for i, x := range ls {
		if x == l {
			return append(ls[:i], ls[i+1:]...)
		}
	}
	return ls
}

// Start begins the core worker's background work.
func (w *CoreWorker) Start() {
	w.goBG(w.housekeeping)
	if w.cfg.Gcs != nil {
		w.goBG(w.flushEvents)
	}
}

// ---------------------------------------------------------------- cancel

// Cancel cancels the task that makes id: a queued task never runs; a
// running one has its context cancelled (force: its worker is killed).
// Either way its returns fail with ErrTaskCancelled. A finished task is
// not affected.
func (w *CoreWorker) Cancel(id ids.ObjectID, force bool) error {
	w.mu.Lock()
	o := w.objects[id]
	if o != nil && !o.owned {
		w.mu.Unlock()
		return fmt.Errorf("cancel %s: %w: only the owner (the process that submitted the task) can cancel it", id, errs.ErrBadArgument)
	}
	t := w.tasks[id.Task()]
	if t == nil || t.state == taskDone {
		w.mu.Unlock()
		return nil
	}
	if force && t.actor != nil {
		w.mu.Unlock()
		return fmt.Errorf("cancel %s: %w: force-cancelling an actor call would kill the actor; cancel without force (the call's context is cancelled), or actor.Kill", id, errs.ErrBadArgument)
	}
	t.cancelled, t.force = true, force
	switch t.state {
	case taskWaitingDeps:
		w.failTaskLocked(t, cancelledInfo(t))
		if t.actor != nil {
			w.dispatchActorLocked(t.actor) // the calls queued behind it may go now
		}
	case taskQueued:
		if t.actor == nil {
			t.key.queue = deleteTask(t.key.queue, t)
		} // an actor's queue skips finished calls
		w.failTaskLocked(t, cancelledInfo(t))
		if t.actor != nil {
			w.dispatchActorLocked(t.actor)
		}
	case taskRunning:
		l := t.lease
		if l == nil {
			break // between an actor's processes: fails as cancelled when re-sent or lost
		}
		leaseID, addr := l.id, l.addr
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if force {
			_, err := w.cfg.Raylet.KillWorker(ctx, &rpc.KillWorkerRequest{LeaseId: []byte(leaseID), Reason: "Cancel(force)"})
			return err
		}
		c, err := w.peer(addr)
		if err != nil {
			return err
		}
		_, err = c.CancelTask(ctx, &rpc.CancelTaskRequest{TaskId: t.id[:]})
		return err
	}
	w.mu.Unlock()
	return nil
}

func deleteTask(q []*task, t *task) []*task {
	for i, x := range q {
		if x == t {
			return append(q[:i], q[i+1:]...)
		}
	}
	return q
}

// ---------------------------------------------------------------- lineage

// reconstructLocked re-runs the task that made o, whose store copy is
// gone. Its returns become pending again.
func (w *CoreWorker) reconstructLocked(o *object) error {
	t := o.lineage
	if t == nil || t.spec == nil {
		return errors.New("it cannot be rebuilt: the task that made it is not retryable (MaxRetries 0) or it was Put")
	}
	if t.state != taskDone {
		return nil // already being re-run
	}
	if t.retriesLeft <= 0 {
		return fmt.Errorf("rebuilding it would re-run task %s, whose retries (%d) are used up", t.name, t.maxRetries)
	}
	for _, d := range t.deps {
		if w.objects[d.id] == nil {
			return fmt.Errorf("rebuilding it needs argument %d of task %s, which is freed", d.idx, t.name)
		}
	}
	for _, d := range t.deps {
		w.objects[d.id].submitted++
	}
	t.counted = len(t.deps)
	t.retriesLeft--
	t.spec.Attempt++
	t.cancelled = false
	for _, id := range t.returns {
		if r := w.objects[id]; r != nil && r.state != objPending {
			r.unpin()
			if r.state == objInStore {
				w.cfg.Store.Delete(id)
			}
			r.state, r.value, r.err = objPending, nil, nil
		}
	}
	t.state = taskQueued
	w.tasks[t.id] = t
	t.key.queue = append(t.key.queue, t)
	w.dispatchLocked(t.key)
	return nil
}

// ---------------------------------------------------------------- generators

// Generator is the stream of a generator task's items: one object per item,
// as the task yields them.
type Generator struct {
	w      *CoreWorker
	task   ids.TaskID
	items  []ids.ObjectID
	next   int
	done   bool
	err    *rpc.ErrorInfo
	notify chan struct{}
}

func (g *Generator) itemLocked(index int, ret *rpc.ReturnObject) {
	if index != len(g.items) || g.done {
		return // a retried generator re-yields items already delivered
	}
	id := ids.NewObjectID(g.task, uint32(index+1))
	ret.ObjectId = id[:]
	o := newObject(id, true, "")
	o.local = 1 // the stream's, until Next hands it out
	g.w.objects[id] = o
	g.w.completeLocked(ret)
	g.items = append(g.items, id)
	g.wake()
}

func (g *Generator) finishLocked(info *rpc.ErrorInfo) {
	if g.done {
		return
	}
	g.done, g.err = true, info
	g.wake()
}

func (g *Generator) wake() {
	select {
	case g.notify <- struct{}{}:
	default:
	}
}

// Next returns the next item's object ID, with one live ref handed to the
// caller; ok is false at the end, and err the task's failure, if any.
func (g *Generator) Next(ctx context.Context) (id ids.ObjectID, ok bool, err error) {
	for {
		g.w.mu.Lock()
		if g.next < len(g.items) {
			id = g.items[g.next]
			g.next++
			g.w.mu.Unlock()
			return id, true, nil
		}
		if g.done {
			info := g.err
			g.w.mu.Unlock()
			if info != nil {
				return id, false, errorFromInfo(info)
			}
			return id, false, nil
		}
		g.w.mu.Unlock()
		select {
		case <-g.notify:
		case <-ctx.Done():
			return id, false, ctx.Err()
		case <-g.w.stop:
			return id, false, errs.ErrShutdown
		}
	}
}

// Close drops the items not yet taken.
func (g *Generator) Close() {
	g.w.mu.Lock()
	rest := g.items[g.next:]
	g.next = len(g.items)
	g.w.mu.Unlock()
	for _, id := range rest {
		g.w.ReleaseRef(id)
	}
}
