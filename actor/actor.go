// Package actor is goray's actors: an instance of a registered Go type
// living in its own worker process, whose methods are called remotely and
// run in order.
//
//	type Counter struct{ n int }
//
//	func (c *Counter) Incr(ctx context.Context, by int) (int, error) { c.n += by; return c.n, nil }
//
//	var counter = actor.Register("Counter", func(ctx context.Context, start int) (*Counter, error) {
//		return &Counter{n: start}, nil
//	})
//
//	h, err := counter.Remote(rt, 10)
//	n, err := core.Get[int](ctx, h.Call("Incr", 1)) // 11
//
// Every exported method of *T whose first parameter is a context.Context
// is remote and must have the shape func(ctx, args...) (results...,
// error); Register panics on one that does not. Other exported methods
// stay plain Go methods.
//
// Calls from one caller run in the order they were made (MaxConcurrency
// 1, the default); MaxConcurrency(n) lets up to n run at once, leaving the
// instance's locking to it, as in Ray. A Handle is a value: pass it to
// tasks and to other actors' methods, and call the actor from there.
//
// The actor lives until Kill, until its owner (the process that created
// it) exits, or, with Detached, until Kill only. MaxRestarts(n) re-runs
// the constructor in a new process after the process dies; MaxTaskRetries
// re-sends the calls that process had. Past the limits every call fails
// with core.ErrActorDied, naming the actor and how it died.
package actor

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"

	"github.com/fxamacker/cbor/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/bridge"
	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/worker"
)

// Option configures an actor: Name, Namespace, Detached, MaxRestarts,
// MaxTaskRetries, MaxConcurrency, and core's NumCPUs, NumGPUs, Memory and
// Resources (the actor holds them for its life).
type Option interface {
	ResourceDemand() map[string]float64
}

type option func(*config)

func (option) ResourceDemand() map[string]float64 { return nil }

type config struct {
	name, namespace string
	detached        bool
	maxRestarts     int
	maxTaskRetries  int
	maxConcurrency  int
	resources       map[string]float64
	pg              *core.PlacementGroupHandle
	bundle          int
	errs            []error
}

// Name names the actor, so that actor.Get finds it (unique per namespace).
func Name(name string) Option { return option(func(c *config) { c.name = name }) }

// Namespace puts the name in a namespace ("" is the default namespace).
func Namespace(ns string) Option { return option(func(c *config) { c.namespace = ns }) }

// Detached makes the actor outlive the process that created it: it lives
// until Kill (or the cluster stops).
func Detached() Option { return option(func(c *config) { c.detached = true }) }

// MaxRestarts is how often the actor is restarted (its constructor re-run
// in a new process) after its process dies; -1: always. Default 0.
func MaxRestarts(n int) Option {
	return option(func(c *config) {
		if n < -1 {
			c.errs = append(c.errs, fmt.Errorf("MaxRestarts(%d): want -1 (always) or ≥ 0: %w", n, errs.ErrBadArgument))
		}
		c.maxRestarts = n
	})
}

// MaxTaskRetries is how often a call the actor's process had when it died
// is re-sent to the restarted actor; -1: always. Default 0.
func MaxTaskRetries(n int) Option {
	return option(func(c *config) {
		if n < -1 {
			c.errs = append(c.errs, fmt.Errorf("MaxTaskRetries(%d): want -1 (always) or ≥ 0: %w", n, errs.ErrBadArgument))
		}
		c.maxTaskRetries = n
	})
}

// MaxConcurrency lets up to n calls run at once (Ray's threaded actors);
// the instance must then guard its own state. Default 1: one at a time, in
// order.
func MaxConcurrency(n int) Option {
	return option(func(c *config) {
		if n < 1 {
			c.errs = append(c.errs, fmt.Errorf("MaxConcurrency(%d): want ≥ 1: %w", n, errs.ErrBadArgument))
		}
		c.maxConcurrency = n
	})
}

// PlacementGroup holds the actor's resources in bundle i of pg (-1: any of
// its bundles) for its life.
func PlacementGroup(pg *core.PlacementGroupHandle, bundle int) Option {
	return option(func(c *config) {
		if pg == nil {
			c.errs = append(c.errs, fmt.Errorf("PlacementGroup(nil): %w", errs.ErrBadArgument))
		}
		c.pg, c.bundle = pg, bundle
	})
}

// Class is a registered actor class.
type Class struct {
	c    *worker.Class
	opts []Option
}

// Register registers an actor class under name: ctor is a
// func(context.Context, args...) (*T, error). Register at package level (a
// var or init): worker processes run the same binary and find the class by
// name. It panics on a bad constructor, a remote method of the wrong shape,
// or a duplicate name.
func Register(name string, ctor any) *Class {
	c, err := worker.RegisterClass(name, ctor)
	if err != nil {
		panic(err)
	}
	return &Class{c: c}
}

// Name is the class's registered name.
func (c *Class) Name() string { return c.c.Name }

// Methods lists the remote methods.
func (c *Class) Methods() string { return c.c.MethodList() }

// Options returns a copy of c whose actors use opts (added to c's).
func (c *Class) Options(opts ...Option) *Class {
	return &Class{c: c.c, opts: append(c.opts[:len(c.opts):len(c.opts)], opts...)}
}

func (c *Class) config() (config, error) {
	cfg := config{maxConcurrency: 1}
	for _, o := range c.opts {
		switch o := o.(type) {
		case nil:
		case option:
			o(&cfg)
		default:
			if cfg.resources == nil {
				cfg.resources = map[string]float64{}
			}
			maps.Copy(cfg.resources, o.ResourceDemand())
		}
	}
	return cfg, errors.Join(cfg.errs...)
}

// Remote creates an actor and returns its handle at once; the constructor
// runs in a new worker process, and calls wait for it. A constructor that
// fails makes every call fail with core.ErrActorDied saying why. Remote
// fails only for arguments or options that cannot work (wrong arity or
// types, a name taken in the namespace).
func (c *Class) Remote(rt *core.Runtime, args ...any) (*Handle, error) {
	if rt == nil {
		return nil, fmt.Errorf("actor: %s.Remote with a nil *core.Runtime: %w", c.c.Name, errs.ErrBadArgument)
	}
	if bridge.Closed(rt) {
		return nil, fmt.Errorf("actor: create %s: %w", c.c.Name, errs.ErrShutdown)
	}
	cfg, err := c.config()
	if err != nil {
		return nil, fmt.Errorf("actor: %s options: %w", c.c.Name, err)
	}
	wargs, err := bridge.EncodeArgs(rt, c.c.Ctor, args)
	if err != nil {
		return nil, fmt.Errorf("actor: create %s: %w", c.c.Name, err)
	}
	w := bridge.Worker(rt)
	spec := &rpc.ActorSpec{Class: c.c.Name, Name: cfg.name, Namespace: cfg.namespace, Detached: cfg.detached,
		MaxRestarts: int32(cfg.maxRestarts), MaxTaskRetries: int32(cfg.maxTaskRetries), MaxConcurrency: int32(cfg.maxConcurrency),
		Resources: cfg.resources, OwnerAddress: w.Address(), OwnerPid: int32(os.Getpid())}
	job := w.JobID()
	spec.JobId = job[:]
	if cfg.pg != nil {
		pgID, err := hex.DecodeString(cfg.pg.ID())
		if err != nil {
			return nil, fmt.Errorf("actor: create %s: %w", c.c.Name, err)
		}
		spec.PlacementGroup, spec.BundleIndex = pgID, int32(cfg.bundle)
	}
	id := ids.NewActorID(job)
	spec.ActorId = id[:]
	for i, a := range wargs {
		if a.Ref != nil {
			return nil, fmt.Errorf("actor: create %s: argument %d is an *ObjectRef: %w: pass the value (Get it first), or make the parameter a *core.ObjectRef", c.c.Name, i+1, errs.ErrBadArgument)
		}
		spec.Args = append(spec.Args, &rpc.Arg{Value: a.Value.Bytes(), Nested: nestedRPC(a.Nested)})
	}
	if spec.Resources == nil {
		spec.Resources = map[string]float64{}
	}
	if _, err := w.Gcs().CreateActor(context.Background(), spec); err != nil {
		st := status.Convert(err)
		if st.Code() == codes.AlreadyExists {
			return nil, fmt.Errorf("actor: create %s: %w: %s", c.c.Name, errs.ErrBadArgument, st.Message())
		}
		return nil, fmt.Errorf("actor: create %s: %s", c.c.Name, st.Message())
	}
	return &Handle{id: id, class: c.c, rt: rt, maxTaskRetries: cfg.maxTaskRetries}, nil
}

func nestedRPC(n []worker.NestedRef) []*rpc.NestedRef {
	var out []*rpc.NestedRef
	for _, r := range n {
		out = append(out, &rpc.NestedRef{ObjectId: r.ID[:], OwnerAddress: r.Owner})
	}
	return out
}

// Handle calls an actor. It is a value: pass it to tasks and to other
// actors' methods (it travels as the actor's ID), and call it there.
type Handle struct {
	id             ids.ActorID
	class          *worker.Class
	rt             *core.Runtime // nil: decoded; bound to this process's runtime at first use
	maxTaskRetries int
}

// ID is the actor's ID (hex).
func (h *Handle) ID() string { return h.id.String() }

// Class is the actor's class name.
func (h *Handle) Class() string { return h.class.Name }

func (h *Handle) String() string { return "Actor(" + h.class.Name + ", " + h.id.String() + ")" }

func (h *Handle) runtime() (*core.Runtime, error) {
	if h.rt != nil {
		return h.rt, nil
	}
	rt, _ := bridge.ProcessRuntime().(*core.Runtime)
	if rt == nil {
		return nil, fmt.Errorf("actor %s: the handle was decoded in a process without a runtime: %w: call core.Init first", h.id, errs.ErrBadArgument)
	}
	return rt, nil
}

// Call calls method with args and returns a ref to its first result (see
// CallN). It never blocks and never fails by itself: an unknown method,
// wrong arguments or a dead actor give a ref that is already failed, whose
// Get says what is wrong.
func (h *Handle) Call(method string, args ...any) *core.ObjectRef {
	rt, idList, failed := h.submit(method, args)
	if failed == nil && len(idList) == 1 {
		return bridge.Ref(rt, idList[0]).(*core.ObjectRef) // the common case: no slice
	}
	refs := failed
	if refs == nil {
		refs = bridge.Refs(rt, idList).([]*core.ObjectRef)
	}
	for _, r := range refs[1:] {
		core.Free(r)
	}
	return refs[0]
}

// CallN is Call for a method with several results: one ref per result
// (at least one).
func (h *Handle) CallN(method string, args ...any) []*core.ObjectRef {
	rt, idList, failed := h.submit(method, args)
	if failed != nil {
		return failed
	}
	return bridge.Refs(rt, idList).([]*core.ObjectRef)
}

// submit sends a call: the IDs of its results (each with a live ref
// counted), or refs that are already failed.
func (h *Handle) submit(method string, args []any) (rt any, idList []ids.ObjectID, failed []*core.ObjectRef) {
	rt, err := h.runtime()
	if err != nil {
		panic(err)
	}
	m, err := h.class.Method(method)
	if err != nil {
		return rt, nil, bridge.Failed(rt, h.class.Name+"."+method, 1, err).([]*core.ObjectRef)
	}
	fn := m.Name
	n := max(1, m.NumReturns())
	if m.Generator {
		return rt, nil, bridge.Failed(rt, fn, n, fmt.Errorf("%s is a generator method: %w: actor generator methods are not supported yet", fn, errs.ErrBadArgument)).([]*core.ObjectRef)
	}
	wargs, err := bridge.EncodeArgs(rt, m, args)
	if err != nil {
		return rt, nil, bridge.Failed(rt, fn, n, err).([]*core.ObjectRef)
	}
	w := bridge.Worker(rt)
	return rt, w.SubmitActorCall(h.id, h.class.Name, m, wargs, worker.ActorCallOptions{MaxRetries: h.maxTaskRetries}), nil
}

func init() {
	bridge.HandleInfo = func(x any) (ids.ActorID, *worker.Class, any, error) {
		h := x.(*Handle)
		rt, err := h.runtime()
		return h.id, h.class, rt, err
	}
	bridge.SystemCall = func(x any, fn *worker.Function, args []any) any {
		h := x.(*Handle)
		rt, err := h.runtime()
		if err != nil {
			panic(err)
		}
		wargs, err := bridge.EncodeArgs(rt, fn, args)
		if err != nil {
			return bridge.Failed(rt, fn.Name, max(1, fn.NumReturns()), err)
		}
		idList := bridge.Worker(rt).SubmitActorCall(h.id, h.class.Name, fn, wargs, worker.ActorCallOptions{System: true})
		return bridge.Refs(rt, idList)
	}
}

// Get finds a named actor (in the default namespace, or Namespace(ns)).
func Get(rt *core.Runtime, name string, opts ...Option) (*Handle, error) {
	if rt == nil {
		return nil, fmt.Errorf("actor: Get(%q) with a nil *core.Runtime: %w", name, errs.ErrBadArgument)
	}
	cfg, err := (&Class{opts: opts}).config()
	if err != nil {
		return nil, fmt.Errorf("actor: Get(%q): %w", name, err)
	}
	info, err := bridge.Worker(rt).Gcs().GetActor(context.Background(), &rpc.GetActorRequest{Name: name, Namespace: cfg.namespace})
	if err != nil {
		return nil, fmt.Errorf("actor: Get(%q): %w: %s", name, errs.ErrNotRegistered, status.Convert(err).Message())
	}
	if info.State == rpc.ActorState_ACTOR_DEAD {
		return nil, fmt.Errorf("actor: Get(%q): %w: %s", name, errs.ErrActorDied, info.DeathCause)
	}
	c, err := worker.LookupClass(info.Class)
	if err != nil {
		return nil, fmt.Errorf("actor: Get(%q): %w", name, err)
	}
	var id ids.ActorID
	copy(id[:], info.ActorId)
	return &Handle{id: id, class: c, rt: rt, maxTaskRetries: int(info.MaxTaskRetries)}, nil
}

// Kill kills the actor's process. With noRestart the actor is dead for
// good: pending and later calls fail with core.ErrActorDied. Otherwise it
// restarts as after a crash, within MaxRestarts.
func Kill(h *Handle, noRestart bool) error {
	if h == nil {
		return fmt.Errorf("actor: Kill(nil): %w", errs.ErrBadArgument)
	}
	rt, err := h.runtime()
	if err != nil {
		return err
	}
	w := bridge.Worker(rt)
	if _, err := w.Gcs().KillActor(context.Background(), &rpc.KillActorRequest{ActorId: h.id[:], NoRestart: noRestart}); err != nil {
		return fmt.Errorf("actor: kill %s: %s", h.id, status.Convert(err).Message())
	}
	if noRestart {
		w.ActorDead(h.id, "it was killed with actor.Kill")
	}
	return nil
}

// Handles travel inside values as the actor's ID, class and retry count.

const handleTypeName = "goray.ActorHandle"

var handleTag = codec.TagFor(handleTypeName)

func init() { codec.RegisterType(handleTypeName, &Handle{}) }

type handleWire struct {
	_              struct{} `cbor:",toarray"`
	ID             []byte
	Class          string
	MaxTaskRetries int
}

// MarshalCBOR encodes the handle for the value codec.
func (h *Handle) MarshalCBOR() ([]byte, error) {
	return cbor.Marshal(cbor.Tag{Number: handleTag, Content: handleWire{ID: h.id[:], Class: h.class.Name, MaxTaskRetries: h.maxTaskRetries}})
}

// UnmarshalCBOR decodes a handle; it calls through this process's runtime.
func (h *Handle) UnmarshalCBOR(data []byte) error {
	var tag cbor.RawTag
	if err := cbor.Unmarshal(data, &tag); err != nil {
		return fmt.Errorf("actor: decode handle: %w", err)
	}
	if tag.Number != handleTag {
		return fmt.Errorf("actor: decode handle: tag %d, want %d", tag.Number, handleTag)
	}
	var w handleWire
	if err := cbor.Unmarshal(tag.Content, &w); err != nil {
		return fmt.Errorf("actor: decode handle: %w", err)
	}
	if len(w.ID) != ids.ActorIDSize {
		return fmt.Errorf("actor: decode handle: want a %d-byte actor ID, got %d bytes", ids.ActorIDSize, len(w.ID))
	}
	c, err := worker.LookupClass(w.Class)
	if err != nil {
		return fmt.Errorf("actor: decode handle: %w", err)
	}
	copy(h.id[:], w.ID)
	h.class, h.maxTaskRetries, h.rt = c, w.MaxTaskRetries, nil
	return nil
}

// compile-time check: core's resource options are actor options.
var _ Option = core.NumCPUs(1)
