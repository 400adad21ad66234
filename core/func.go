package core

import (
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/worker"
)

// Func is a registered remote function.
type Func struct {
	f    *worker.Function
	opts []TaskOption
}

// Register registers fn, a func(context.Context, args...) (results...,
// error), under name, and returns it for submission. Register at package
// level (a var, or init): worker processes run the same binary and find
// the function by name. It panics on a bad signature or a duplicate name.
//
// A function whose one result is an iter.Seq[T] or iter.Seq2[T, error] is
// a generator: submit it with RemoteGenerator, and each item it yields
// becomes its own object as soon as it is yielded.
func Register(name string, fn any) *Func { return &Func{f: worker.Register(name, fn)} }

// Name is the function's registered name.
func (f *Func) Name() string { return f.f.Name }

// Options returns a copy of f whose submissions use opts (added to f's).
func (f *Func) Options(opts ...TaskOption) *Func {
	return &Func{f: f.f, opts: append(f.opts[:len(f.opts):len(f.opts)], opts...)}
}

// Remote submits a call of f and returns a ref to its first result (use
// RemoteN for all of them). It never blocks on the work and never fails by
// itself: an invalid call (wrong arity or argument types, a bad option)
// gives a ref that is already failed, whose Get says what is wrong.
// Arguments are values or *ObjectRef; a ref is resolved to its value
// before the task runs (the task waits, not the caller).
func (f *Func) Remote(rt *Runtime, args ...any) *ObjectRef {
	refs := f.submit(rt, args, false)
	for _, r := range refs[1:] {
		Free(r)
	}
	return refs[0]
}

// RemoteN is Remote for a function with several results: one ref per
// result (before the error).
func (f *Func) RemoteN(rt *Runtime, args ...any) []*ObjectRef {
	refs := f.submit(rt, args, false)
	if len(f.f.Out) == 0 {
		for _, r := range refs {
			Free(r)
		}
		return []*ObjectRef{}
	}
	return refs
}

// RemoteGenerator submits a generator function and returns the stream of
// its items.
func (f *Func) RemoteGenerator(rt *Runtime, args ...any) *ObjectRefGenerator {
	if !f.f.Generator {
		refs := f.submit(rt, nil, true)
		return &ObjectRefGenerator{rt: rt, failed: refs[0]}
	}
	refs, gen := f.submitGen(rt, args)
	if gen == nil {
		return &ObjectRefGenerator{rt: rt, failed: refs[0]}
	}
	return &ObjectRefGenerator{rt: rt, g: gen}
}

func (f *Func) submit(rt *Runtime, args []any, wantGen bool) []*ObjectRef {
	if rt == nil {
		panic("core: Remote with a nil *Runtime: pass the one Init (or RuntimeFrom) returned")
	}
	n := max(1, f.f.NumReturns())
	if wantGen {
		return rt.failed(f.f.Name, n, rpc.ErrorKind_ERROR_BAD_ARGUMENT,
			fmt.Sprintf("%s is not a generator (its result is not an iter.Seq or iter.Seq2): submit it with Remote", f.f.Name))
	}
	if f.f.Generator {
		return rt.failed(f.f.Name, n, rpc.ErrorKind_ERROR_BAD_ARGUMENT,
			fmt.Sprintf("%s is a generator: submit it with RemoteGenerator", f.f.Name))
	}
	wargs, opts, err := f.prepare(rt, args)
	if err != nil {
		return rt.failed(f.f.Name, n, kindOf(err), err.Error())
	}
	ids, _ := rt.w.Submit(f.f, wargs, opts)
	return rt.refs(ids)
}

func (f *Func) submitGen(rt *Runtime, args []any) ([]*ObjectRef, *worker.Generator) {
	if rt == nil {
		panic("core: RemoteGenerator with a nil *Runtime")
	}
	wargs, opts, err := f.prepare(rt, args)
	if err != nil {
		return rt.failed(f.f.Name, 1, kindOf(err), err.Error()), nil
	}
	_, gen := rt.w.Submit(f.f, wargs, opts)
	return nil, gen
}

func kindOf(err error) rpc.ErrorKind {
	switch {
	case errors.Is(err, ErrNotRegistered):
		return rpc.ErrorKind_ERROR_NOT_REGISTERED
	case errors.Is(err, ErrShutdown):
		return rpc.ErrorKind_ERROR_SYSTEM
	case errors.Is(err, ErrObjectLost):
		return rpc.ErrorKind_ERROR_OBJECT_LOST
	case errors.Is(err, ErrActorDied):
		return rpc.ErrorKind_ERROR_ACTOR_DIED
	}
	return rpc.ErrorKind_ERROR_BAD_ARGUMENT
}

// prepare checks and encodes the arguments and options of a submission.
func (f *Func) prepare(rt *Runtime, args []any) ([]worker.Arg, worker.SubmitOptions, error) {
	if rt.w.Closed() {
		return nil, worker.SubmitOptions{}, fmt.Errorf("submit %s: %w", f.f.Name, ErrShutdown)
	}
	cfg := defaultTaskConfig()
	for _, o := range f.opts {
		o.applyTask(&cfg)
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, worker.SubmitOptions{}, fmt.Errorf("%s options: %w", f.f.Name, err)
	}
	opts := worker.SubmitOptions{Resources: cfg.resources, MaxRetries: cfg.maxRetries, RetryOn: cfg.retryOn,
		Name: cfg.name, Strategy: cfg.strategy.kind, Soft: cfg.strategy.soft, Bundle: -1}
	if pg := cfg.strategy.pg; pg != nil {
		if pg.rt != rt {
			return nil, opts, fmt.Errorf("%s options: a placement group of another runtime: %w", f.f.Name, ErrBadArgument)
		}
		opts.PlacementGroup, opts.Bundle = pg.id, cfg.strategy.bundle
	}
	if cfg.strategy.nodeID != "" {
		id, err := hex.DecodeString(cfg.strategy.nodeID)
		if err != nil {
			return nil, opts, fmt.Errorf("NodeAffinity(%q): %w: want a node ID as RuntimeContext.NodeID gives it", cfg.strategy.nodeID, ErrBadArgument)
		}
		opts.NodeID = id
	}
	out, err := encodeArgs(rt, f.f, args)
	return out, opts, err
}

// encodeArgs checks arguments against fn's parameters and encodes them:
// values (with the refs inside them), and top-level refs to resolve.
func encodeArgs(rt *Runtime, fn *worker.Function, args []any) ([]worker.Arg, error) {
	given := make([]reflect.Type, len(args))
	for i, a := range args {
		if r, ok := a.(*ObjectRef); ok && r != nil {
			given[i] = reflect.TypeFor[*ObjectRef]()
		} else if a != nil {
			given[i] = reflect.TypeOf(a)
		}
	}
	if err := fn.CheckArity(given); err != nil {
		return nil, err
	}
	out := make([]worker.Arg, len(args))
	for i, a := range args {
		want := fn.ParamType(i)
		// A ref is resolved (the task gets its value), unless the
		// parameter is itself a *ObjectRef: then the task borrows the ref.
		if r, ok := a.(*ObjectRef); ok && want != refType {
			if r == nil {
				return nil, fmt.Errorf("%s argument %d: a nil *ObjectRef: %w", fn.Name, i+1, ErrBadArgument)
			}
			if r.rt.w != rt.w {
				return nil, fmt.Errorf("%s argument %d: a ref from another runtime: %w", fn.Name, i+1, ErrBadArgument)
			}
			id := r.id
			out[i] = worker.Arg{Ref: &id}
			continue
		}
		v, err := convertArg(a, want)
		if err != nil {
			return nil, fmt.Errorf("%s argument %d: %w", fn.Name, i+1, err)
		}
		nested, err := nestedRefs(rt, reflect.ValueOf(v))
		if err != nil {
			return nil, fmt.Errorf("%s argument %d: %w", fn.Name, i+1, err)
		}
		enc, err := codec.Encode(v)
		if err != nil {
			return nil, fmt.Errorf("%s argument %d: %w: %w", fn.Name, i+1, ErrBadArgument, err)
		}
		out[i] = worker.Arg{Value: enc, Nested: nested}
	}
	return out, nil
}

// convertArg checks a value against its parameter's type. Untyped Go
// constants arrive as int or float64, so numbers convert to the
// parameter's numeric type when the value fits exactly.
func convertArg(a any, want reflect.Type) (any, error) {
	if a == nil {
		switch want.Kind() {
		case reflect.Interface, reflect.Pointer, reflect.Slice, reflect.Map:
			return nil, nil
		}
		return nil, fmt.Errorf("got nil, want %v: %w", want, ErrBadArgument)
	}
	v := reflect.ValueOf(a)
	if v.Type().AssignableTo(want) {
		return a, nil
	}
	if isNumber(v.Kind()) && isNumber(want.Kind()) && v.CanConvert(want) {
		c := v.Convert(want)
		if c.Convert(v.Type()).Equal(v) {
			return c.Interface(), nil
		}
		return nil, fmt.Errorf("got %v %v, want %v: %w: the value does not fit", v.Type(), a, want, ErrBadArgument)
	}
	return nil, fmt.Errorf("got %v, want %v: %w", v.Type(), want, ErrBadArgument)
}

func isNumber(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Float64
}
