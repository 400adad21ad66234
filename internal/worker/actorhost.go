package worker

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
)

// Hosting actors: a dedicated worker runs an actor's constructor (HostActor,
// from the GCS), then serves its methods to every caller that attaches
// rings, running up to MaxConcurrency calls at once (one by default: then
// each caller's calls run in the order it sent them).

// Class is a registered actor class: its constructor and remote methods.
type Class struct {
	Name    string
	Ctor    *Function    // func(ctx, args...) (*T, error)
	Type    reflect.Type // *T
	methods map[string]*Function
	names   []string // sorted
}

var (
	classMu sync.RWMutex
	classes = map[string]*Class{}
)

// RegisterClass records an actor class. Every exported method of *T whose
// first parameter is a context.Context is remote, and must have the shape
// func(ctx, args...) (results..., error); other exported methods are plain
// Go methods, not callable remotely.
func RegisterClass(name string, ctor any) (*Class, error) {
	f, err := newFunction(name, ctor)
	if err != nil {
		return nil, fmt.Errorf("%w (an actor constructor is func(context.Context, args...) (*T, error))", err)
	}
	if len(f.Out) != 1 || f.Out[0].Kind() != reflect.Pointer || f.Generator {
		return nil, fmt.Errorf("goray: actor %q: the constructor returns %v: %w: want (*T, error), a pointer to the actor's state", name, f.Out, errs.ErrBadArgument)
	}
	c := &Class{Name: name, Ctor: f, Type: f.Out[0], methods: map[string]*Function{}}
	for i := range c.Type.NumMethod() {
		m := c.Type.Method(i)
		mt := m.Type
		if mt.NumIn() < 2 || mt.In(1) != ctxType {
			continue
		}
		mf, err := newFunc(name+"."+m.Name, m.Func, true)
		if err != nil {
			return nil, fmt.Errorf("actor %q: method %s: %w", name, m.Name, err)
		}
		c.methods[m.Name] = mf
		c.names = append(c.names, m.Name)
	}
	slices.Sort(c.names)
	classMu.Lock()
	defer classMu.Unlock()
	if _, dup := classes[name]; dup {
		return nil, fmt.Errorf("goray: actor class %q registered twice: names identify classes across processes and must be unique", name)
	}
	if _, dup := functions[name]; dup {
		return nil, fmt.Errorf("goray: actor class %q: a function has that name: names identify functions and classes across processes and must be unique", name)
	}
	classes[name] = c
	return c, nil
}

// LookupClass finds a registered actor class.
func LookupClass(name string) (*Class, error) {
	classMu.RLock()
	c := classes[name]
	classMu.RUnlock()
	if c == nil {
		return nil, fmt.Errorf("actor class %q is not registered in this binary: %w: register it at package level (a var or init), so that worker processes, which run the same binary, have it too",
			name, errs.ErrNotRegistered)
	}
	return c, nil
}

// Method finds a remote method by name; the error lists the methods.
func (c *Class) Method(name string) (*Function, error) {
	if f := c.methods[name]; f != nil {
		return f, nil
	}
	why := ""
	if m, ok := c.Type.MethodByName(name); ok {
		why = fmt.Sprintf(" (%s is a method of %v, but %v does not take a context.Context first, so it is not remote)", name, c.Type, m.Type)
	}
	return nil, fmt.Errorf("actor %s has no remote method %q%s: %w: its methods are %s", c.Name, name, why, errs.ErrNotRegistered, c.MethodList())
}

// MethodList names the remote methods, for messages.
func (c *Class) MethodList() string {
	if len(c.names) == 0 {
		return "none (no exported method of " + c.Type.String() + " takes a context.Context first)"
	}
	return strings.Join(c.names, ", ")
}

// hostedActor is the actor a worker hosts.
type hostedActor struct {
	class *Class
	inst  reflect.Value
	id    ids.ActorID
	sem   chan struct{} // MaxConcurrency slots
	gpus  []int
}

// host runs an actor's constructor in this worker.
func (e *executor) host(ctx context.Context, req *rpc.HostActorRequest) *rpc.ErrorInfo {
	spec := req.Spec
	fail := func(kind rpc.ErrorKind, msg string) *rpc.ErrorInfo {
		return &rpc.ErrorInfo{Kind: kind, Message: msg, Function: spec.GetClass(), Task: spec.GetClass() + " constructor"}
	}
	if spec == nil || len(spec.ActorId) != ids.ActorIDSize {
		return fail(rpc.ErrorKind_ERROR_BAD_ARGUMENT, "HostActor without an actor spec")
	}
	// A lease this worker served may still be winding down (the raylet
	// counts it returned before its serving goroutine ends): wait for it.
	select {
	case e.busy <- struct{}{}:
		<-e.busy
	case <-ctx.Done():
		return fail(rpc.ErrorKind_ERROR_SYSTEM, fmt.Sprintf("the worker still serves a lease: %v", ctx.Err()))
	case <-e.stop:
		return fail(rpc.ErrorKind_ERROR_SYSTEM, errs.ErrShutdown.Error())
	}
	e.mu.Lock()
	busy := e.actor != nil || e.leaseID != ""
	e.mu.Unlock()
	if busy {
		return fail(rpc.ErrorKind_ERROR_SYSTEM, "this worker already serves a lease or hosts an actor")
	}
	c, err := LookupClass(spec.Class)
	if err != nil {
		return fail(rpc.ErrorKind_ERROR_NOT_REGISTERED, err.Error())
	}
	var id ids.ActorID
	copy(id[:], spec.ActorId)
	gpus := setVisibleGPUs(req.GpuIds)
	fn := c.Ctor
	in := []reflect.Value{{}}
	for i, a := range spec.Args {
		if i >= len(fn.In) && !fn.Variadic {
			break
		}
		pt := fn.ParamType(i)
		v, err := codec.Decode(a.Value, pt)
		if err != nil {
			return fail(rpc.ErrorKind_ERROR_BAD_ARGUMENT, fmt.Sprintf("%s constructor argument %d: want %v: %v", c.Name, i+1, pt, err))
		}
		if len(a.Nested) > 0 && ValueRefs.Bind != nil {
			if err := ValueRefs.Bind(e.w, v); err != nil {
				return fail(rpc.ErrorKind_ERROR_OBJECT_LOST, fmt.Sprintf("%s constructor argument %d: %v", c.Name, i+1, err))
			}
		}
		in = append(in, v)
	}
	if got, want := len(in)-1, len(fn.In); got != want && !(fn.Variadic && got >= want-1) {
		return fail(rpc.ErrorKind_ERROR_BAD_ARGUMENT, fmt.Sprintf("%s constructor takes %d arguments %s after the context, got %d", c.Name, want, fn.Signature(), got))
	}
	ti := &TaskInfo{TaskID: ids.NewTaskID(id), ActorID: id, Name: c.Name + " constructor", Attempt: int(req.Incarnation), GPUIDs: gpus, Worker: e.w}
	in[0] = reflect.ValueOf(context.WithValue(ctx, taskKey{}, ti))
	outs, perr, stack := call(fn.fn, in)
	if perr != nil {
		return infoFromError(c.Name, c.Name+" constructor", perr, stack, true)
	}
	if errv := outs[1]; !errv.IsNil() {
		return infoFromError(c.Name, c.Name+" constructor", errv.Interface().(error), nil, false)
	}
	if outs[0].IsNil() {
		return fail(rpc.ErrorKind_ERROR_APPLICATION, fmt.Sprintf("%s constructor returned a nil %v and no error", c.Name, c.Type))
	}
	conc := max(int(spec.MaxConcurrency), 1)
	e.mu.Lock()
	e.actor = &hostedActor{class: c, inst: outs[0], id: id, sem: make(chan struct{}, conc), gpus: gpus}
	e.mu.Unlock()
	return nil
}

// attachActor starts serving one caller's rings to the hosted actor.
func (e *executor) attachActor(req *rpc.AttachRequest) error {
	e.mu.Lock()
	ha := e.actor
	e.mu.Unlock()
	if ha == nil || string(ha.id[:]) != string(req.ActorId) {
		return fmt.Errorf("attach: %w: this worker does not host actor %x", errs.ErrActorDied, req.ActorId)
	}
	select {
	case <-e.stop:
		return errs.ErrShutdown
	default:
	}
	rings, err := openServedRings(req)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	e.loop.Add(1)
	go func() {
		defer e.loop.Done()
		lw := &lockedWriter{w: rings.wr}
		var calls sync.WaitGroup
		defer func() {
			calls.Wait()
			rings.close()
		}()
		e.serveActor(ha, rings.rd, lw, &calls)
	}()
	return nil
}

// lockedWriter serialises the replies of calls that run at once.
type lockedWriter struct {
	mu sync.Mutex
	w  *channel.RingWriter
}

func (l *lockedWriter) WriteProto(ctx context.Context, m proto.Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return writeRing(ctx, l.w, m)
}

// serveActor runs one caller's calls: one at a time, in order, sharing the
// actor's slots with the other callers (MaxConcurrency 1: the actor runs
// one call at a time); with MaxConcurrency > 1 calls start in order and
// run at once.
func (e *executor) serveActor(ha *hostedActor, rd *channel.RingReader, wr *lockedWriter, calls *sync.WaitGroup) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-e.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	concurrent := cap(ha.sem) > 1
	var in interner
	for {
		msg, err := rd.Read(ctx)
		if err != nil {
			return // the caller detached or died, or shutdown
		}
		req := &rpc.RingRequest{}
		err = unmarshalRequest(msg.Data, req, &in)
		msg.Release()
		if err != nil {
			e.w.cfg.Logf("goray worker: undecodable actor call: %v", err)
			return
		}
		spec := req.GetTask()
		if spec == nil {
			continue
		}
		select {
		case ha.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		do := func() bool {
			defer func() { <-ha.sem }()
			out := e.run(ctx, spec, wr)
			if out == nil {
				return true
			}
			return wr.WriteProto(ctx, &rpc.RingReply{Kind: &rpc.RingReply_Reply{Reply: out}}) == nil
		}
		if !concurrent {
			if !do() {
				return
			}
			continue
		}
		calls.Add(1)
		go func() {
			defer calls.Done()
			if !do() {
				cancel()
			}
		}()
	}
}

// HostedActor gives a system function run in an actor's process (package
// dag's execution loop) the actor's methods. Invoke shares the actor's
// concurrency slots with its ordinary calls, so a loop's calls and the
// actor's other calls never run at once beyond MaxConcurrency.
type HostedActor struct {
	ha *hostedActor
	w  *CoreWorker
}

// HostedActorFrom returns the actor of a system function's context.
func HostedActorFrom(ctx context.Context) (*HostedActor, bool) {
	ti, ok := FromContext(ctx)
	if !ok || ti.Actor == nil {
		return nil, false
	}
	return ti.Actor, true
}

// ID is the actor's ID.
func (h *HostedActor) ID() ids.ActorID { return h.ha.id }

// Class is the actor's class.
func (h *HostedActor) Class() *Class { return h.ha.class }

// Worker is the core worker of the actor's process.
func (h *HostedActor) Worker() *CoreWorker { return h.w }

// Invoke calls method m (of the actor's class) with args (after the
// context). A panic becomes err with its stack; an error result is err.
func (h *HostedActor) Invoke(ctx context.Context, m *Function, args []reflect.Value) (results []reflect.Value, err error, stack []byte, panicked bool) {
	in := make([]reflect.Value, 0, 2+len(args))
	in = append(in, h.ha.inst, reflect.ValueOf(ctx))
	in = append(in, args...)
	return h.InvokeIn(ctx, m, in, nil)
}

// Instance is the actor's instance, as InvokeIn's first argument.
func (h *HostedActor) Instance() reflect.Value { return h.ha.inst }

// InvokeIn is Invoke with the whole argument list given: the instance,
// the context (ctx itself), then the method's arguments (a loop reuses one
// list). A method called directly (fastcall.go) returns its result in buf,
// which a loop may reuse too.
func (h *HostedActor) InvokeIn(ctx context.Context, m *Function, in, buf []reflect.Value) (results []reflect.Value, err error, stack []byte, panicked bool) {
	select {
	case h.ha.sem <- struct{}{}: // a free slot: the common case, without the two-way select
	default:
		select {
		case h.ha.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err(), nil, false
		}
	}
	results, err, perr, stk := invoke(ctx, m, in, buf) // recovers panics: the slot is always given back
	<-h.ha.sem
	if perr != nil {
		return nil, perr, stk, true
	}
	return results, err, nil, false
}

// ErrorInfoOf describes an error from Invoke for the wire (the same
// description a failed task's reply carries).
func ErrorInfoOf(fn, task string, err error, stack []byte, panicked bool) *rpc.ErrorInfo {
	return infoFromError(fn, task, err, stack, panicked)
}

// ErrorFromInfo is the *TaskError a described failure gives.
func ErrorFromInfo(info *rpc.ErrorInfo) error { return errorFromInfo(info) }
