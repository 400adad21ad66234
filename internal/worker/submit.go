package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
)

type taskState uint8

const (
	taskWaitingDeps taskState = iota
	taskQueued
	taskRunning
	taskDone
)

// task is a submitted task, from submission until its returns are ready
// (and after, as the lineage of its returns while it may be re-run).
type task struct {
	id          ids.TaskID
	fn, name    string
	spec        *rpc.TaskSpec
	deps        []argDep
	nested      []NestedRef    // refs inside argument values
	held        []ids.ObjectID // those of nested held until the task ends
	pendingDeps int
	counted     int // deps whose submitted count this task raised (a prefix of deps)
	returns     []ids.ObjectID
	ret1        [1]ids.ObjectID // backs returns when there is one
	key         *keyQueue
	retriesLeft int
	maxRetries  int
	retryOn     []string
	state       taskState
	lease       *leaseConn
	cancelled   bool
	force       bool
	gen         *Generator
	sent        time.Time
	actor       *actorConn // an actor call
	seq         uint64     // its place among the calls to actor
}

type argDep struct {
	idx int
	id  ids.ObjectID
}

// Arg is one argument of a submission: an encoded value or a ref.
type Arg struct {
	Value  codec.Encoded
	Nested []NestedRef // refs inside Value: held until the task ends
	Ref    *ids.ObjectID
	Owner  string // the ref's owner
}

// SubmitOptions are a task's options.
type SubmitOptions struct {
	Resources      map[string]float64
	PlacementGroup []byte // run in this placement group's bundle
	Bundle         int    // -1: any of its bundles
	Strategy       rpc.Strategy
	NodeID         []byte
	Soft           bool
	MaxRetries     int
	RetryOn        []error
	Name           string
}

// keyQueue is the tasks of one scheduling key (resource shape and
// strategy), and the workers leased for them.
type keyQueue struct {
	key         string
	req         *rpc.LeaseRequest // template
	queue       []*task
	leases      []*leaseConn
	requesting  int
	cancelLease map[string]context.CancelFunc
	avgExec     time.Duration // moving average of a task's time on a worker
	failures    int           // consecutive lease failures
}

// depth is how many tasks a leased worker of this key may hold at once.
// Long or unknown tasks: one, so that new leases spread them over the
// node. Short tasks: enough to cover about a millisecond of work, so a
// worker never waits for its next task.
func (k *keyQueue) depth() int {
	if k.avgExec == 0 || k.avgExec > 200*time.Microsecond {
		return 1
	}
	return int(min(32, max(2, time.Millisecond/max(k.avgExec, time.Microsecond))))
}

const maxLeaseRequests = 16

// Submit submits fn with args. It never blocks on the work: dependencies
// are awaited, workers leased and tasks pushed in the background. It
// returns the return objects' IDs, each with one live ref (the caller's),
// and for a generator the stream of its items.
func (w *CoreWorker) Submit(fn *Function, args []Arg, opts SubmitOptions) ([]ids.ObjectID, *Generator) {
	t := &task{
		id: ids.NewTaskID(ids.NilActorIDOf(w.cfg.JobID)), fn: fn.Name, name: opts.Name,
		retriesLeft: opts.MaxRetries, maxRetries: opts.MaxRetries,
	}
	if t.name == "" {
		t.name = fn.Name
	}
	for _, e := range opts.RetryOn {
		t.retryOn = append(t.retryOn, e.Error())
	}
	t.spec = &rpc.TaskSpec{TaskId: t.id[:], Function: fn.Name, NumReturns: uint32(fn.NumReturns()),
		Generator: fn.Generator, OwnerAddress: w.cfg.Address, Name: opts.Name}
	t.setArgs(args, fn.NumReturns())
	if fn.Generator {
		t.gen = &Generator{w: w, task: t.id, notify: make(chan struct{}, 1)}
	}
	keyName, req := leaseKey(fn.Name, opts)

	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range t.returns {
		o := newObject(id, true, "")
		o.local = 1
		if t.maxRetries > 0 {
			o.lineage = t
		}
		w.objects[id] = o
	}
	if w.closed {
		w.failTaskLocked(t, shutdownInfo(t))
		return t.returns, t.gen
	}
	k := w.keys[keyName]
	if k == nil {
		k = &keyQueue{key: keyName, req: req, cancelLease: map[string]context.CancelFunc{}}
		w.keys[keyName] = k
	}
	t.key = k
	w.tasks[t.id] = t
	w.trackArgsLocked(t)
	return t.returns, t.gen
}

// leaseKey is a task's scheduling key: its function (as Ray's, so that
// each function's task length steers its own pipelining) and its demand.
func leaseKey(fn string, opts SubmitOptions) (string, *rpc.LeaseRequest) {
	var b strings.Builder
	b.WriteString(fn)
	b.WriteByte(';')
	for _, k := range slices.Sorted(maps.Keys(opts.Resources)) {
		fmt.Fprintf(&b, "%s=%g;", k, opts.Resources[k])
	}
	fmt.Fprintf(&b, "s=%d;n=%x;%v;pg=%x/%d", opts.Strategy, opts.NodeID, opts.Soft, opts.PlacementGroup, opts.Bundle)
	return b.String(), &rpc.LeaseRequest{Resources: opts.Resources, Strategy: opts.Strategy, NodeId: opts.NodeID, Soft: opts.Soft,
		PlacementGroup: opts.PlacementGroup, BundleIndex: int32(opts.Bundle)}
}

// setArgs fills in t's spec arguments (values inline, refs to resolve)
// and its return IDs; n is the function's number of returns.
func (t *task) setArgs(args []Arg, n int) {
	t.spec.Args = make([]*rpc.Arg, len(args))
	for i, a := range args {
		if a.Ref != nil {
			t.spec.Args[i] = &rpc.Arg{}
			t.deps = append(t.deps, argDep{i, *a.Ref})
		} else {
			t.spec.Args[i] = &rpc.Arg{Value: a.Value.Bytes(), Nested: nestedToRPC(a.Nested)}
			t.nested = append(t.nested, a.Nested...)
		}
	}
	if n == 1 && t.returns == nil {
		t.returns = t.ret1[:0:1]
	}
	for i := range n {
		t.returns = append(t.returns, ids.NewObjectID(t.id, uint32(i+1)))
	}
}

// trackArgsLocked holds t's arguments (the refs nested in values, and a
// submitted count on each ref argument) and resolves t once they are
// ready; a ref this process no longer holds fails t.
func (w *CoreWorker) trackArgsLocked(t *task) {
	t.held = w.holdNestedLocked(t.nested)
	for _, d := range t.deps {
		o := w.objects[d.id]
		if o == nil {
			w.failTaskLocked(t, &rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_OBJECT_LOST, Function: t.fn, Task: t.name,
				Message: fmt.Sprintf("argument %d: object %s: %v: this process holds no ref to it (freed?)", d.idx, d.id, errs.ErrObjectLost)})
			return
		}
		o.submitted++
		t.counted++
		if o.state == objPending {
			t.pendingDeps++
			o.dependents = append(o.dependents, t)
			if !o.owned && !o.fetching {
				w.fetchLocked(o)
			}
		}
	}
	if t.pendingDeps == 0 {
		w.resolveLocked(t)
	}
}

// depReadyLocked is one of t's arguments becoming ready.
func (w *CoreWorker) depReadyLocked(t *task) {
	t.pendingDeps--
	if t.pendingDeps == 0 && t.state == taskWaitingDeps {
		w.resolveLocked(t)
	}
}

// resolveLocked fills in t's ref arguments (all ready) and queues it. An
// argument that failed fails the task with the same error, as Ray does.
func (w *CoreWorker) resolveLocked(t *task) {
	for _, d := range t.deps {
		o := w.objects[d.id]
		switch o.state {
		case objFailed:
			info := proto.Clone(o.err).(*rpc.ErrorInfo)
			w.failTaskLocked(t, info)
			if t.actor != nil {
				w.dispatchActorLocked(t.actor) // the calls queued behind it may go now
			}
			return
		case objInline:
			t.spec.Args[d.idx] = &rpc.Arg{Value: o.value}
		case objInStore:
			t.spec.Args[d.idx] = &rpc.Arg{ObjectId: d.id[:], InStore: true}
		}
	}
	t.state = taskQueued
	if t.actor != nil {
		w.dispatchActorLocked(t.actor) // already in the actor's queue, in order
		return
	}
	t.key.queue = append(t.key.queue, t)
	w.dispatchLocked(t.key)
}

// dispatchLocked pushes queued tasks to leased workers with room, and asks
// for more workers while tasks wait.
func (w *CoreWorker) dispatchLocked(k *keyQueue) {
	if w.closed {
		return
	}
	depth := k.depth()
	for len(k.queue) > 0 {
		var best *leaseConn
		for _, l := range k.leases {
			if !l.broken && !l.returning && len(l.inflight) < depth && (best == nil || len(l.inflight) < len(best.inflight)) {
				best = l
			}
		}
		if best == nil {
			break
		}
		t := k.queue[0]
		k.queue[0] = nil
		k.queue = k.queue[1:]
		w.sendLocked(best, t)
	}
	if len(k.queue) == 0 {
		k.queue = nil // let the backing array go
		for id, c := range k.cancelLease {
			c()
			delete(k.cancelLease, id)
		}
		return
	}
	for k.requesting < min(len(k.queue), maxLeaseRequests) {
		w.requestLeaseLocked(k)
	}
}

// sendLocked pushes t to a leased worker's request ring. The ring has room:
// a lease never holds more tasks than the ring has slots.
func (w *CoreWorker) sendLocked(l *leaseConn, t *task) {
	t.state, t.lease, t.sent = taskRunning, l, time.Now()
	l.inflight[t.id] = t
	l.idleSince = time.Time{}
	if err := writeSpec(context.Background(), l.req, t.spec); err != nil {
		// The worker is gone; the reply loop sees it and retries t.
		l.broken = true
	}
}

// failTaskLocked fails every return of t with info.
func (w *CoreWorker) failTaskLocked(t *task, info *rpc.ErrorInfo) {
	if info.Function == "" {
		info.Function = t.fn
	}
	if info.Task == "" {
		info.Task = t.name
	}
	for _, id := range t.returns {
		w.failObjectLocked(id, info)
	}
	if t.gen != nil {
		t.gen.finishLocked(info)
	}
	w.finishTaskLocked(t)
}

// finishTaskLocked ends t: its arguments are released.
func (w *CoreWorker) finishTaskLocked(t *task) {
	if t.state == taskDone {
		return
	}
	if t.lease != nil {
		delete(t.lease.inflight, t.id)
		t.lease = nil
	}
	t.state = taskDone
	delete(w.tasks, t.id)
	for _, d := range t.deps[:t.counted] { // only the counts this task raised
		if o := w.objects[d.id]; o != nil && o.submitted > 0 {
			o.submitted--
			w.maybeFreeLocked(o)
		}
	}
	t.counted = 0
	held := t.held
	t.held = nil
	w.releaseHeldLocked(held)
	if t.maxRetries == 0 {
		t.spec = nil
	}
}

// retryLocked queues t again if it has retries left.
func (w *CoreWorker) retryLocked(t *task) bool {
	if t.retriesLeft <= 0 || t.cancelled || w.closed || t.actor != nil {
		return false
	}
	t.retriesLeft--
	t.spec.Attempt++
	t.lease = nil
	t.state = taskQueued
	t.key.queue = append([]*task{t}, t.key.queue...)
	return true
}

// ---------------------------------------------------------------- replies

func (w *CoreWorker) handleReplyLocked(l *leaseConn, rep *rpc.RingReply) {
	switch k := rep.Kind.(type) {
	case *rpc.RingReply_Reply:
		tr := k.Reply
		t := l.inflight[taskIDOf(tr.TaskId)]
		if t == nil {
			return
		}
		delete(l.inflight, t.id)
		if t.key != nil {
			el := time.Since(t.sent)
			if t.key.avgExec == 0 {
				t.key.avgExec = el
			} else {
				t.key.avgExec = (7*t.key.avgExec + el) / 8
			}
		}
		if len(l.inflight) == 0 {
			l.idleSince = time.Now()
		}
		switch {
		case t.cancelled:
			for _, ret := range tr.Returns {
				w.dropNestedLocked(ret.Nested) // results that will not be adopted
			}
			w.failTaskLocked(t, cancelledInfo(t))
		case tr.Error != nil:
			if tr.Error.Kind == rpc.ErrorKind_ERROR_APPLICATION && retryable(t, tr.Error) && w.retryLocked(t) {
				break
			}
			w.failTaskLocked(t, tr.Error)
		default:
			for _, ret := range tr.Returns {
				w.completeLocked(ret)
			}
			if t.gen != nil {
				t.gen.finishLocked(nil)
			}
			w.finishTaskLocked(t)
		}
		if l.actor != nil {
			w.dispatchActorLocked(l.actor)
		} else {
			w.dispatchLocked(l.key)
		}
	case *rpc.RingReply_Item:
		it := k.Item
		t := l.inflight[taskIDOf(it.TaskId)]
		if t == nil || t.gen == nil || it.Object == nil {
			return
		}
		t.gen.itemLocked(int(it.Index), it.Object)
	}
}

func retryable(t *task, info *rpc.ErrorInfo) bool {
	for _, want := range t.retryOn {
		if slices.Contains(info.Sentinels, want) {
			return true
		}
	}
	return false
}

func cancelledInfo(t *task) *rpc.ErrorInfo {
	return &rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_CANCELLED, Function: t.fn, Task: t.name,
		Message: fmt.Sprintf("%v: task %s was cancelled", errs.ErrTaskCancelled, t.name)}
}

// leaseBrokenLocked handles a leased worker that died (or whose rings
// failed): its tasks are retried or failed.
func (w *CoreWorker) leaseBrokenLocked(l *leaseConn, cause error) {
	l.broken = true
	k := l.key
	k.leases = slices.DeleteFunc(k.leases, func(x *leaseConn) bool { return x == l })
	inflight := slices.SortedFunc(maps.Values(l.inflight), func(a, b *task) int { return a.sent.Compare(b.sent) })
	for i := len(inflight) - 1; i >= 0; i-- { // retried in their original order
		t := inflight[i]
		delete(l.inflight, t.id)
		switch {
		case t.cancelled:
			w.failTaskLocked(t, cancelledInfo(t))
		case w.retryLocked(t):
		default:
			w.failTaskLocked(t, &rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_WORKER_DIED, Function: t.fn, Task: t.name,
				Message: fmt.Sprintf("%v: worker pid %d died while running task %s (%d retries used; raise MaxRetries to retry more): %v",
					errs.ErrWorkerDied, l.pid, t.name, t.maxRetries, cause)})
		}
	}
	w.dispatchLocked(k)
}

// ---------------------------------------------------------------- leases

func newLeaseID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (w *CoreWorker) requestLeaseLocked(k *keyQueue) {
	id := newLeaseID()
	ctx, cancel := context.WithCancel(context.Background())
	k.cancelLease[id] = cancel
	k.requesting++
	req := proto.Clone(k.req).(*rpc.LeaseRequest)
	req.LeaseId = []byte(id)
	req.SubmitterAddress = w.cfg.Address
	req.SubmitterPid = int32(w.self.PID)
	req.JobId = w.cfg.JobID[:]
	w.goBG(func() {
		defer cancel()
		rep, err := w.cfg.Raylet.RequestLease(ctx, req)
		var l *leaseConn
		if err == nil {
			l, err = w.attach(ctx, k, rep)
			if err != nil {
				w.cfg.Raylet.ReturnLease(context.Background(), &rpc.ReturnLeaseRequest{LeaseId: rep.LeaseId, WorkerFailed: true})
			}
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		k.requesting--
		delete(k.cancelLease, id)
		if err != nil {
			if ctx.Err() != nil || w.closed {
				// Not needed any more. The raylet may have granted it just
				// as this side gave up, and replied to nobody: give it back
				// (returning a lease it does not hold is a no-op).
				w.goBG(func() {
					rctx, cancel := context.WithTimeout(context.Background(), time.Second)
					defer cancel()
					w.cfg.Raylet.ReturnLease(rctx, &rpc.ReturnLeaseRequest{LeaseId: []byte(id)})
				})
				return
			}
			w.leaseFailedLocked(k, err)
			return
		}
		if w.closed {
			w.goBG(func() { w.returnLease(l, false) })
			return
		}
		k.failures = 0
		k.leases = append(k.leases, l)
		l.idleSince = time.Now()
		w.goBG(func() { w.replyLoop(l) })
		w.dispatchLocked(k)
	})
}

// leaseFailedLocked: the raylet refused (an infeasible demand, workers that
// cannot start) or the worker could not be reached. The first fails the
// queued tasks at once; the others are retried a few times.
func (w *CoreWorker) leaseFailedLocked(k *keyQueue, err error) {
	k.failures++
	st, _ := status.FromError(err)
	kind, msg := rpc.ErrorKind_ERROR_SYSTEM, st.Message()
	if st.Code() == codes.FailedPrecondition || st.Code() == codes.InvalidArgument || k.failures >= 3 {
		if st.Code() == codes.InvalidArgument {
			kind = rpc.ErrorKind_ERROR_BAD_ARGUMENT
		}
		q := k.queue
		k.queue = nil
		for _, t := range q {
			info := &rpc.ErrorInfo{Kind: kind, Message: msg}
			if strings.Contains(msg, errs.ErrInfeasible.Error()) {
				info.Sentinels = []string{errs.ErrInfeasible.Error()}
			}
			w.failTaskLocked(t, info)
		}
		return
	}
	w.cfg.Logf("goray: lease request failed (%v); trying again", err)
	w.dispatchLocked(k)
}
