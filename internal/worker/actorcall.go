package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/shm"
)

// Calling actors. Each process that calls an actor keeps one actorConn to
// it: a pair of shared-memory rings to the worker hosting the actor (as a
// lease has, but made by the caller, not granted by the raylet) and the
// calls in submission order. Calls are sent in order, one after another as
// their arguments become ready; the actor runs each caller's calls in the
// order they arrive. When the actor's process dies, the caller asks the GCS
// what became of it: restarted (the calls it had sent are re-sent while
// their MaxTaskRetries allow, the unsent ones follow) or dead (every call
// fails with ErrActorDied, saying why).

type actorConn struct {
	id    ids.ActorID
	class string
	// queue holds the calls not yet sent, in submission order; the head
	// goes out when its arguments are ready.
	queue       []*task
	conn        *leaseConn // rings to the current incarnation; nil while (re)connecting
	connecting  bool
	incarnation uint32         // the incarnation conn (or the next connect) reaches
	dead        *rpc.ErrorInfo // the actor is dead: every call fails with this
	seq         uint64
	// orphans were sent to a process that died, with no retry left: they
	// fail once the GCS says how it died.
	orphans []*task
	lostPid int
}

// ActorCallOptions are one call's options.
type ActorCallOptions struct {
	Name string
	// MaxRetries is how often a call the actor was running (or had queued)
	// when its process died is re-sent to the restarted actor; -1: forever.
	MaxRetries int
	// System: method is a registered function run in the actor's process
	// with access to the instance (HostedActorFrom), not a method of it.
	System bool
}

// SubmitActorCall sends a call of method to the actor id (of class). Like
// Submit, it never blocks: a call that cannot run gives failed refs.
func (w *CoreWorker) SubmitActorCall(id ids.ActorID, class string, method *Function, args []Arg, opts ActorCallOptions) []ids.ObjectID {
	t := &task{
		id: ids.NewTaskID(id), fn: method.Name, name: opts.Name,
		retriesLeft: opts.MaxRetries, maxRetries: opts.MaxRetries,
	}
	if t.name == "" {
		t.name = t.fn
	}
	t.spec = &rpc.TaskSpec{TaskId: t.id[:], Function: class, Method: strings.TrimPrefix(method.Name, class+"."), ActorId: id[:],
		NumReturns: uint32(method.NumReturns()), OwnerAddress: w.cfg.Address, Name: opts.Name}
	if opts.System {
		t.spec.Function, t.spec.Method = method.Name, ""
	}
	t.setArgs(args, method.NumReturns())

	w.mu.Lock()
	defer w.mu.Unlock()
	for _, rid := range t.returns {
		o := newObject(rid, true, "")
		o.local = 1
		w.objects[rid] = o
	}
	if w.closed {
		w.failTaskLocked(t, shutdownInfo(t))
		return t.returns
	}
	ac := w.actors[id]
	if ac == nil {
		ac = &actorConn{id: id, class: class}
		w.actors[id] = ac
	}
	if ac.dead != nil {
		w.failTaskLocked(t, ac.deadInfo(t))
		return t.returns
	}
	t.actor = ac
	ac.seq++
	t.seq = ac.seq
	w.tasks[t.id] = t
	ac.queue = append(ac.queue, t) // in submission order, also while its arguments are pending
	w.trackArgsLocked(t)
	if t.state == taskDone {
		w.dispatchActorLocked(ac) // failed at once: the calls behind it go on
	}
	return t.returns
}

func (ac *actorConn) deadInfo(t *task) *rpc.ErrorInfo {
	return &rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_ACTOR_DIED, Function: t.fn, Task: t.name, Message: ac.dead.Message}
}

// dispatchActorLocked sends the calls at the head of the queue whose
// arguments are ready, and connects to the actor when there is none.
func (w *CoreWorker) dispatchActorLocked(ac *actorConn) {
	if w.closed {
		return
	}
	for len(ac.queue) > 0 {
		t := ac.queue[0]
		if t.state == taskDone { // failed while queued (a failed argument, cancel)
			ac.queue = ac.queue[1:]
			continue
		}
		if ac.conn == nil || ac.conn.broken {
			if !ac.connecting {
				w.connectActorLocked(ac)
			}
			return
		}
		if t.state != taskQueued || len(ac.conn.inflight) >= leaseSlots {
			return
		}
		ac.queue[0] = nil
		ac.queue = ac.queue[1:]
		w.sendLocked(ac.conn, t)
	}
	ac.queue = nil
}

// connectActorLocked finds the actor (waiting while it starts or
// restarts) and attaches rings to its worker, in the background.
func (w *CoreWorker) connectActorLocked(ac *actorConn) {
	ac.connecting = true
	minInc := ac.incarnation
	w.goBG(func() {
		info, l, err := w.connectActor(ac, minInc)
		w.mu.Lock()
		defer w.mu.Unlock()
		ac.connecting = false
		w.failOrphansLocked(ac, info, err)
		switch {
		case w.closed:
			if l != nil { // attached as the process closed: no reply loop runs for it
				l.req.Close()
				l.closeRings()
			}
			return
		case err != nil && !errors.Is(err, errActorUnknown):
			// Unreachable for now (the GCS, or an attach that kept
			// failing): these calls fail, later ones try again.
			info := systemError(rpc.ErrorKind_ERROR_SYSTEM, "", "", fmt.Sprintf("actor %s (%s) is unreachable: %v", ac.id, ac.class, err))
			q := ac.queue
			ac.queue = nil
			for _, t := range q {
				if t.state != taskDone {
					w.failTaskLocked(t, proto.Clone(info).(*rpc.ErrorInfo))
				}
			}
			return
		case err != nil:
			ac.dead = &rpc.ErrorInfo{Message: fmt.Sprintf("%v: actor %s (%s): %v", errs.ErrActorDied, ac.id, ac.class, err)}
		case info.State == rpc.ActorState_ACTOR_DEAD:
			ac.dead = &rpc.ErrorInfo{Message: fmt.Sprintf("%v: actor %s (%s) is dead: %s", errs.ErrActorDied, ac.id, ac.class, info.DeathCause)}
		default:
			ac.incarnation = info.Incarnation
			ac.conn = l
			w.goBG(func() { w.replyLoop(l) })
			w.dispatchActorLocked(ac)
			return
		}
		q := ac.queue
		ac.queue = nil
		for _, t := range q {
			if t.state != taskDone {
				w.failTaskLocked(t, ac.deadInfo(t))
			}
		}
	})
}

// connectActor waits for the actor to be alive at incarnation min or
// later (or dead), and attaches to it.
func (w *CoreWorker) connectActor(ac *actorConn, minInc uint32) (*rpc.ActorInfo, *leaseConn, error) {
	if w.cfg.Gcs == nil {
		return nil, nil, fmt.Errorf("this process has no GCS client")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for attempt := 0; ; attempt++ {
		info, err := w.cfg.Gcs.GetActor(ctx, &rpc.GetActorRequest{ActorId: ac.id[:], Wait: true, MinIncarnation: minInc})
		if status.Code(err) == codes.NotFound {
			return nil, nil, fmt.Errorf("%w: %s", errActorUnknown, status.Convert(err).Message())
		}
		if err != nil {
			return nil, nil, fmt.Errorf("ask the GCS where it is: %s", status.Convert(err).Message())
		}
		if info.State != rpc.ActorState_ACTOR_ALIVE {
			return info, nil, nil
		}
		// Each connection's rings get their own name: the rings of the
		// previous one may not be unlinked yet.
		label := "actor." + ac.id.String()[:8] + "." + newLeaseID()[:8]
		l, err := w.attachRings(ctx, label, info.Address, int(info.Pid), nil, ac.id[:])
		if err == nil {
			l.actor = ac
			return info, l, nil
		}
		if ctx.Err() != nil || attempt >= 5 {
			return nil, nil, err
		}
		w.cfg.Logf("goray: attach to actor %s at %s: %v", ac.id, info.Address, err)
		if p, perr := shm.ProcessOf(int(info.Pid)); perr != nil || !p.Alive() {
			// The process died as we attached: wait for the next incarnation.
			minInc = info.Incarnation + 1
		}
		time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
	}
}

// actorBrokenLocked handles the end of the rings to an actor's process: it
// died, or this process is closing. The calls it had are re-sent (within
// their retries) once the GCS says the actor restarted, or fail.
func (w *CoreWorker) actorBrokenLocked(l *leaseConn) {
	ac := l.actor
	l.broken = true
	if ac.conn == l {
		ac.conn = nil
	}
	inflight := slices.SortedFunc(maps.Values(l.inflight), func(a, b *task) int { return int(a.seq - b.seq) })
	clear(l.inflight)
	var resend []*task
	for _, t := range inflight {
		switch {
		case t.cancelled:
			w.failTaskLocked(t, cancelledInfo(t))
		case w.closed:
			w.failTaskLocked(t, shutdownInfo(t))
		case t.retriesLeft != 0:
			if t.retriesLeft > 0 {
				t.retriesLeft--
			}
			t.spec.Attempt++
			t.lease, t.state = nil, taskQueued
			resend = append(resend, t)
		default:
			t.lease = nil
			ac.orphans = append(ac.orphans, t)
		}
	}
	ac.lostPid = l.pid
	ac.queue = append(resend, ac.queue...)
	ac.incarnation++ // the next connect waits for the restart
	if w.closed {
		return
	}
	if len(ac.queue) > 0 {
		w.dispatchActorLocked(ac)
	}
	if len(ac.orphans) > 0 && !ac.connecting {
		w.connectActorLocked(ac) // to learn how it died
	}
}

// failOrphansLocked fails the calls lost with a dead process, saying how
// it died (info's cause) when the GCS could tell.
func (w *CoreWorker) failOrphansLocked(ac *actorConn, info *rpc.ActorInfo, err error) {
	orphans := ac.orphans
	ac.orphans = nil
	how := "it died"
	switch {
	case info != nil && info.DeathCause != "":
		how = info.DeathCause
	case err != nil:
		how = err.Error()
	}
	for _, t := range orphans {
		if t.state == taskDone {
			continue
		}
		w.failTaskLocked(t, &rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_ACTOR_DIED, Function: t.fn, Task: t.name,
			Message: fmt.Sprintf("%v: actor %s (%s): the call %s was sent to its process (pid %d), and then %s; MaxTaskRetries (%d) allows no retry",
				errs.ErrActorDied, ac.id, ac.class, t.name, ac.lostPid, how, t.maxRetries)})
	}
}

// errActorUnknown: the GCS has no such actor (it will not come back).
var errActorUnknown = errors.New("the GCS does not know it")

// ActorDead records that an actor is dead for good (this process killed
// it): later calls fail at once.
func (w *CoreWorker) ActorDead(id ids.ActorID, why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ac := w.actors[id]
	if ac == nil {
		ac = &actorConn{id: id}
		w.actors[id] = ac
	}
	if ac.dead == nil {
		ac.dead = &rpc.ErrorInfo{Message: fmt.Sprintf("%v: actor %s: %s", errs.ErrActorDied, id, why)}
	}
}
