package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/objstore"
)

// TaskInfo describes the task a context belongs to (RuntimeFrom, and the
// runtime context).
type TaskInfo struct {
	TaskID  ids.TaskID
	ActorID ids.ActorID // the actor whose method runs (zero in a task)
	Name    string
	Attempt int
	GPUIDs  []int
	Worker  *CoreWorker
	Actor   *HostedActor // a system function run in an actor's process
}

type taskKey struct{}

// FromContext returns the core worker and task of a task's context.
func FromContext(ctx context.Context) (*TaskInfo, bool) {
	ti, ok := ctx.Value(taskKey{}).(*TaskInfo)
	return ti, ok
}

// executor runs the tasks pushed to a worker process: one lease at a time,
// one task at a time, in the order they arrive.
type executor struct {
	w       *CoreWorker
	mu      sync.Mutex
	running map[ids.TaskID]context.CancelFunc
	skip    map[ids.TaskID]bool // cancelled before they started
	loop    sync.WaitGroup
	busy    chan struct{} // one attached lease at a time
	stop    chan struct{}
	once    sync.Once

	leaseID string
	gpus    []int
	actor   *hostedActor // the actor this worker hosts, if any

	gcPending atomic.Bool // collectSoon scheduled a collection
}

// ringWriter is where replies go: a lease's ring, or an actor caller's
// shared by the calls running at once.
type ringWriter interface {
	WriteProto(ctx context.Context, m proto.Message) error
}

// ringOut is a ring writer used by one goroutine.
type ringOut struct{ w *channel.RingWriter }

func (r ringOut) WriteProto(ctx context.Context, m proto.Message) error {
	return writeRing(ctx, r.w, m)
}

// writeProto encodes m straight into the ring's next slot: no buffer, no
// copy.
func writeProto(ctx context.Context, w *channel.RingWriter, m proto.Message) error {
	n := proto.Size(m)
	buf, err := w.Reserve(ctx, n)
	if err != nil {
		return err
	}
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf[:0], m)
	if err == nil && len(out) != n {
		err = fmt.Errorf("encoded %d bytes, sized %d", len(out), n)
	}
	if err != nil {
		w.Commit(channel.KindError) // the slot must go; the reader sees a broken stream
		return fmt.Errorf("encode a ring message: %w", err)
	}
	return w.Commit(channel.KindData)
}

// collectSoon runs the garbage collector shortly after a task that
// borrowed refs: the refs it dropped are then released (runtime.AddCleanup
// runs after a collection), and their owners can free the objects, instead
// of whenever this idle process next collects.
func (e *executor) collectSoon() {
	if e.gcPending.Swap(true) {
		return
	}
	e.w.goBG(func() {
		select {
		case <-time.After(50 * time.Millisecond):
		case <-e.w.stop:
		}
		e.gcPending.Store(false)
		runtime.GC()
	})
}

func newExecutor(w *CoreWorker) *executor {
	return &executor{w: w, running: map[ids.TaskID]context.CancelFunc{}, skip: map[ids.TaskID]bool{},
		busy: make(chan struct{}, 1), stop: make(chan struct{})}
}

func (e *executor) close() {
	e.once.Do(func() { close(e.stop) })
	e.mu.Lock()
	for _, c := range e.running {
		c()
	}
	e.mu.Unlock()
	e.loop.Wait()
}

// attach starts serving a lease's rings.
func (e *executor) attach(ctx context.Context, req *rpc.AttachRequest) error {
	if len(req.ActorId) > 0 {
		return e.attachActor(req)
	}
	select {
	case e.busy <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("attach: the worker still serves another lease: %w", ctx.Err())
	case <-e.stop:
		return errs.ErrShutdown
	}
	fail := func(err error) error { <-e.busy; return fmt.Errorf("attach: %w", err) }
	rings, err := openServedRings(req)
	if err != nil {
		return fail(err)
	}
	gpus := setVisibleGPUs(req.GpuIds)
	e.mu.Lock()
	e.leaseID, e.gpus = string(req.LeaseId), gpus
	e.mu.Unlock()
	e.loop.Add(1)
	go func() {
		defer e.loop.Done()
		defer func() { <-e.busy }()
		defer func() {
			rings.close()
			e.mu.Lock()
			e.leaseID = ""
			e.mu.Unlock()
		}()
		e.serve(rings.rd, rings.wr)
	}()
	return nil
}

// servedRings are the ends a worker serves a submitter's rings with:
// requests in, replies out.
type servedRings struct {
	reqRing, repRing *channel.Ring
	rd               *channel.RingReader
	wr               *channel.RingWriter
}

func openServedRings(req *rpc.AttachRequest) (_ *servedRings, err error) {
	s := &servedRings{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.reqRing, err = channel.OpenShm(req.RequestRing); err != nil {
		return nil, err
	}
	if s.repRing, err = channel.OpenShm(req.ReplyRing); err != nil {
		return nil, err
	}
	if s.rd, err = s.reqRing.Reader(0); err != nil {
		return nil, err
	}
	if s.wr, err = s.repRing.Writer(); err != nil {
		return nil, err
	}
	return s, nil
}

// close ends the reply stream in-band and lets go of every end.
func (s *servedRings) close() {
	if s.wr != nil {
		s.wr.CloseWrite(context.Background())
		s.wr.Close()
	}
	if s.rd != nil {
		s.rd.Close()
	}
	for _, r := range []*channel.Ring{s.reqRing, s.repRing} {
		if r != nil {
			r.Close()
		}
	}
}

// setVisibleGPUs makes the assigned GPUs this process's CUDA devices.
func setVisibleGPUs(ids []int32) []int {
	gpus := make([]int, len(ids))
	strs := make([]string, len(ids))
	for i, g := range ids {
		gpus[i], strs[i] = int(g), strconv.Itoa(int(g))
	}
	if len(gpus) > 0 {
		os.Setenv("CUDA_VISIBLE_DEVICES", strings.Join(strs, ","))
	}
	return gpus
}

func (e *executor) serve(rd *channel.RingReader, wr *channel.RingWriter) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-e.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var req rpc.RingRequest
	var in interner
	for {
		msg, err := rd.Read(ctx)
		if err != nil {
			return // detached (closed), submitter died, or shutdown
		}
		err = unmarshalRequest(msg.Data, &req, &in)
		msg.Release()
		if err != nil {
			e.w.cfg.Logf("goray worker: undecodable task spec: %v", err)
			return
		}
		spec := req.GetTask()
		if spec == nil {
			continue
		}
		out := e.run(ctx, spec, ringOut{wr})
		if out == nil {
			continue
		}
		if err := writeRing(ctx, wr, &rpc.RingReply{Kind: &rpc.RingReply_Reply{Reply: out}}); err != nil {
			return
		}
		req.Reset()
	}
}

// cancel cancels a running or queued task.
func (e *executor) cancel(id ids.TaskID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.running[id]; c != nil {
		c()
		return true
	}
	e.skip[id] = true
	return false
}

// run executes one task and returns its reply.
func (e *executor) run(parent context.Context, spec *rpc.TaskSpec, wr ringWriter) (reply *rpc.TaskReply) {
	tid := taskIDOf(spec.TaskId)
	reply = &rpc.TaskReply{TaskId: spec.TaskId}
	name := spec.Name
	if name == "" {
		name = spec.Function // an actor call's becomes its method's Class.Method below
	}
	start := time.Now()
	var fn *Function
	defer func() { e.w.taskEvent(spec, fn, name, start, reply) }()
	fail := func(info *rpc.ErrorInfo) *rpc.TaskReply {
		info.Function, info.Task = spec.Function, name
		reply.Error = info
		return reply
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	e.mu.Lock()
	if e.skip[tid] {
		delete(e.skip, tid)
		e.mu.Unlock()
		return fail(&rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_CANCELLED, Message: errs.ErrTaskCancelled.Error()})
	}
	e.running[tid] = cancel
	gpus := e.gpus
	ha := e.actor
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.running, tid)
		e.mu.Unlock()
	}()

	var err error
	var recv reflect.Value
	var actorID ids.ActorID
	if spec.Method != "" {
		if ha == nil || string(spec.ActorId) != string(ha.id[:]) {
			return fail(systemError(rpc.ErrorKind_ERROR_ACTOR_DIED, "", "", fmt.Sprintf("%v: this worker does not host actor %x", errs.ErrActorDied, spec.ActorId)))
		}
		fn, err = ha.class.Method(spec.Method)
		if err != nil {
			return fail(systemError(rpc.ErrorKind_ERROR_NOT_REGISTERED, "", "", err.Error()))
		}
		if spec.Name == "" {
			name = fn.Name // Class.Method, made once at registration
		}
		recv, actorID, gpus = ha.inst, ha.id, ha.gpus
	} else if fn, err = Lookup(spec.Function); err != nil {
		return fail(systemError(rpc.ErrorKind_ERROR_NOT_REGISTERED, "", "", err.Error()))
	}
	var hosted *HostedActor
	if len(spec.ActorId) > 0 && spec.Method == "" { // a system function run in an actor
		if ha == nil || string(spec.ActorId) != string(ha.id[:]) {
			return fail(systemError(rpc.ErrorKind_ERROR_ACTOR_DIED, "", "", fmt.Sprintf("%v: this worker does not host actor %x", errs.ErrActorDied, spec.ActorId)))
		}
		hosted, actorID, gpus = &HostedActor{ha: ha, w: e.w}, ha.id, ha.gpus
	}
	if len(fn.In) == 0 && len(spec.Args) > 0 || !fn.arityOK(len(spec.Args)) {
		return fail(systemError(rpc.ErrorKind_ERROR_BAD_ARGUMENT, "", "",
			fmt.Sprintf("%s takes %d arguments %s after the context, got %d", fn.Name, len(fn.In), fn.Signature(), len(spec.Args))))
	}
	// in is the receiver (a method's), the context, then the arguments.
	first := 0
	if recv.IsValid() {
		first = 1
	}
	in := make([]reflect.Value, first+1, first+1+len(spec.Args))
	var pins []*objstore.Object
	defer func() {
		for _, p := range pins {
			p.Release()
		}
	}()
	for i, a := range spec.Args {
		data := a.Value
		if a.InStore {
			obj, err := e.w.cfg.Store.Get(ctx, objectIDOf(a.ObjectId))
			if err != nil {
				return fail(systemError(rpc.ErrorKind_ERROR_OBJECT_LOST, "", "",
					fmt.Sprintf("argument %d: object %x: %v", i, a.ObjectId, err)))
			}
			pins = append(pins, obj)
			data = obj.Data()
		}
		pt := fn.ParamType(i)
		var reader ids.ActorID // the actor whose method this is, if any
		if recv.IsValid() {
			reader = actorID
		}
		v, direct, err := ResolveDirect(ctx, reader, data, pt)
		if !direct {
			v, err = codec.Decode(data, pt)
		}
		if err != nil {
			return fail(systemError(rpc.ErrorKind_ERROR_BAD_ARGUMENT, "", "",
				fmt.Sprintf("%s argument %d: want %v: %v", fn.Name, i+1, pt, err)))
		}
		if len(a.Nested) > 0 && ValueRefs.Bind != nil {
			if err := ValueRefs.Bind(e.w, v); err != nil {
				return fail(systemError(rpc.ErrorKind_ERROR_OBJECT_LOST, "", "",
					fmt.Sprintf("%s argument %d: a ref inside it: %v", fn.Name, i+1, err)))
			}
			defer e.collectSoon()
		}
		in = append(in, v)
	}
	ti := &TaskInfo{TaskID: tid, ActorID: actorID, Name: name, Attempt: int(spec.Attempt), GPUIDs: gpus, Worker: e.w, Actor: hosted}
	tctx := context.WithValue(ctx, taskKey{}, ti)
	in[first] = reflect.ValueOf(tctx)
	if first == 1 {
		in[0] = recv
	}

	results, err, perr, stack := invoke(tctx, fn, in, nil)
	if perr != nil {
		return fail(infoFromError(fn.Name, name, perr, stack, true))
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return fail(&rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_CANCELLED, Message: fmt.Sprintf("%v: %v", errs.ErrTaskCancelled, err)})
		}
		return fail(infoFromError(fn.Name, name, err, nil, false))
	}
	if fn.Generator {
		n, info := e.generate(ctx, fn, name, spec.OwnerAddress, tid, results[0], wr)
		reply.GeneratorItems = uint32(n)
		if info != nil {
			return fail(info)
		}
		return reply
	}
	if len(results) == 0 {
		results = []reflect.Value{reflect.Zero(reflect.TypeFor[any]())}
	}
	for i, v := range results {
		oid := ids.NewObjectID(tid, uint32(i+1))
		if fn.KeepTensors && Direct.Keep != nil && ha != nil {
			if v, err = Direct.Keep(ctx, ha.id, ha.class, oid, v); err != nil {
				return fail(infoFromError(fn.Name, name, err, nil, false))
			}
		}
		ret, info := e.encodeResult(ctx, oid, v, spec.OwnerAddress)
		if info != nil {
			// The results encoded so far will not reach the owner: undo
			// the borrower registrations made for the refs inside them.
			for _, r := range reply.Returns {
				e.w.unregisterNested(nestedFromRPC(r.Nested), spec.OwnerAddress)
			}
			reply.Returns = nil
			return fail(info)
		}
		reply.Returns = append(reply.Returns, ret)
	}
	return reply
}

// call invokes fn, turning a panic into an error with its stack.
func call(fn reflect.Value, in []reflect.Value) (outs []reflect.Value, perr error, stack []byte) {
	defer func() {
		if r := recover(); r != nil {
			perr, stack = panicError(r)
		}
	}()
	return fn.Call(in), nil, nil
}

// invoke calls fn with in (the receiver of a method, the context ctx, then
// the arguments): directly where fn has a fast path, else through reflect.
// It returns the results before the error (a direct call's in buf, reused),
// the error, and a panic's error and stack.
func invoke(ctx context.Context, fn *Function, in, buf []reflect.Value) (results []reflect.Value, err, perr error, stack []byte) {
	if fn.fast != nil && len(in) == 2+len(fn.In) && (len(in) == 2 || in[2].IsValid() && in[2].Type() == fn.In[0]) {
		var arg reflect.Value
		if len(in) > 2 {
			arg = in[2]
		}
		out, err, perr, stack := callFast(fn.fast, in[0].UnsafePointer(), ctx, arg)
		if perr != nil || err != nil {
			return nil, err, perr, stack
		}
		return append(buf[:0], reflect.ValueOf(out)), nil, nil, nil
	}
	outs, perr, stack := call(fn.fn, in)
	if perr != nil {
		return nil, nil, perr, stack
	}
	if e := outs[len(outs)-1]; !e.IsNil() {
		return nil, e.Interface().(error), nil, nil
	}
	return outs[:len(outs)-1], nil, nil, nil
}

// panicError describes a recovered panic, with the stack where it
// happened (call from the deferred function).
func panicError(r any) (error, []byte) {
	stack := debug.Stack()
	if err, ok := r.(error); ok {
		return fmt.Errorf("panic: %w", err), stack
	}
	return fmt.Errorf("panic: %v", r), stack
}

// encodeResult encodes one return value: inline, or into the store.
func (e *executor) encodeResult(ctx context.Context, id ids.ObjectID, v reflect.Value, owner string) (*rpc.ReturnObject, *rpc.ErrorInfo) {
	enc, err := codec.Encode(v.Interface())
	if err != nil {
		return nil, systemError(rpc.ErrorKind_ERROR_BAD_ARGUMENT, "", "", fmt.Sprintf("result of type %v: %v", v.Type(), err))
	}
	ret := &rpc.ReturnObject{ObjectId: id[:]}
	if ValueRefs.Collect != nil {
		nested, err := ValueRefs.Collect(v)
		if err == nil {
			err = e.w.registerNested(ctx, nested, owner)
		}
		if err != nil {
			return nil, systemError(rpc.ErrorKind_ERROR_OBJECT_LOST, "", "", fmt.Sprintf("result of type %v: %v", v.Type(), err))
		}
		ret.Nested = nestedToRPC(nested)
	}
	if enc.Size() <= InlineLimit {
		ret.Value = enc.Bytes()
		return ret, nil
	}
	if err := e.w.storeEncoded(id, enc); err != nil && !errors.Is(err, objstore.ErrObjectExists) {
		kind := rpc.ErrorKind_ERROR_SYSTEM
		if errors.Is(err, errs.ErrObjectStoreFull) {
			kind = rpc.ErrorKind_ERROR_OBJECT_STORE_FULL
		}
		return nil, systemError(kind, "", "", fmt.Sprintf("store result %s (%d bytes): %v", id, enc.Size(), err))
	}
	ret.InStore = true
	return ret, nil
}

// generate drains a generator's iterator, sending each item as it comes.
func (e *executor) generate(ctx context.Context, fn *Function, name, owner string, tid ids.TaskID, seq reflect.Value, wr ringWriter) (int, *rpc.ErrorInfo) {
	n := 0
	var failed *rpc.ErrorInfo
	yieldType := seq.Type().In(0)
	yield := reflect.MakeFunc(yieldType, func(args []reflect.Value) []reflect.Value {
		stop := []reflect.Value{reflect.ValueOf(false)}
		if failed != nil || ctx.Err() != nil {
			return stop
		}
		if fn.seq2 && !args[1].IsNil() {
			failed = infoFromError(fn.Name, name, args[1].Interface().(error), nil, false)
			return stop
		}
		ret, info := e.encodeResult(ctx, ids.NewObjectID(tid, uint32(n+1)), args[0], owner)
		if info != nil {
			failed = info
			return stop
		}
		err := wr.WriteProto(ctx, &rpc.RingReply{Kind: &rpc.RingReply_Item{Item: &rpc.GeneratorItem{TaskId: tid[:], Index: uint32(n), Object: ret}}})
		if err != nil {
			failed = systemError(rpc.ErrorKind_ERROR_SYSTEM, "", "", fmt.Sprintf("send item %d: %v", n, err))
			return stop
		}
		n++
		return []reflect.Value{reflect.ValueOf(true)}
	})
	_, perr, stack := call(seq, []reflect.Value{yield})
	if perr != nil {
		return n, infoFromError(fn.Name, name, perr, stack, true)
	}
	if failed == nil && ctx.Err() != nil {
		failed = &rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_CANCELLED, Message: errs.ErrTaskCancelled.Error()}
	}
	return n, failed
}

// setBlocked tells the raylet that the task this worker runs waits in Get
// (its CPUs may run what it waits for), or no longer does.
func (w *CoreWorker) setBlocked(blocked bool) bool {
	if w.exec == nil {
		return false
	}
	w.exec.mu.Lock()
	lease := w.exec.leaseID
	w.exec.mu.Unlock()
	if lease == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*1e9)
	defer cancel()
	_, err := w.cfg.Raylet.SetBlocked(ctx, &rpc.SetBlockedRequest{LeaseId: []byte(lease), Blocked: blocked})
	return err == nil
}
