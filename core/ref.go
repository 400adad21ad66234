package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"reflect"
	"runtime"
	"sync"
	"time"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/worker"
)

// ObjectRef refers to an object: a task's result, or a value Put. The
// object lives while any process holds a ref to it; this process's refs
// are counted until Free, or until the ObjectRef becomes unreachable.
type ObjectRef struct {
	id      ids.ObjectID
	rt      *Runtime
	owner   string // decoded and not yet bound to rt
	mu      sync.Mutex
	cleanup runtime.Cleanup
	freed   bool
}

type refHandle struct {
	w  *worker.CoreWorker
	id ids.ObjectID
}

// newRef wraps an object with one live ref already counted for it.
func (rt *Runtime) newRef(id ids.ObjectID) *ObjectRef {
	r := &ObjectRef{id: id, rt: rt}
	r.cleanup = runtime.AddCleanup(r, func(h refHandle) { h.w.ReleaseRef(h.id) }, refHandle{rt.w, id})
	return r
}

func (rt *Runtime) refs(idList []ids.ObjectID) []*ObjectRef {
	out := make([]*ObjectRef, len(idList))
	for i, id := range idList {
		out[i] = rt.newRef(id)
	}
	return out
}

func (rt *Runtime) failed(fn string, n int, kind rpc.ErrorKind, msg string) []*ObjectRef {
	return rt.refs(rt.w.Failed(fn, n, kind, msg))
}

// ID is the object's ID (hex).
func (r *ObjectRef) ID() string { return r.id.String() }

func (r *ObjectRef) String() string { return "ObjectRef(" + r.id.String() + ")" }

// Free releases refs now rather than when they become unreachable; the
// object is deleted once no process holds a ref. A freed ref must not be
// used again.
func Free(refs ...*ObjectRef) {
	for _, r := range refs {
		if r == nil {
			continue
		}
		r.mu.Lock()
		if !r.freed {
			r.freed = true
			r.cleanup.Stop()
			r.rt.w.ReleaseRef(r.id)
		}
		r.mu.Unlock()
	}
}

func (r *ObjectRef) check(op string) error {
	if r == nil {
		return fmt.Errorf("core: %s: nil *ObjectRef: %w", op, ErrBadArgument)
	}
	if r.rt == nil {
		return fmt.Errorf("core: %s %s: %w: the ref was decoded outside a Get or a task's arguments, so no runtime counts it", op, r.id, ErrBadArgument)
	}
	r.mu.Lock()
	freed := r.freed
	r.mu.Unlock()
	if freed {
		return fmt.Errorf("core: %s %s: %w: the ref was freed with Free", op, r.id, ErrObjectLost)
	}
	if r.rt.w.Closed() {
		return fmt.Errorf("core: %s %s: %w: the ref belongs to a runtime that was shut down", op, r.id, ErrShutdown)
	}
	return nil
}

// Get waits for the object and decodes it as a T. A failed task gives its
// *TaskError. ctx bounds the wait (a deadline gives ErrTimeout).
//
// A []byte or numeric-slice result of an object in the shared-memory store
// aliases that memory, read-only and without a copy: it stays valid while
// ref is reachable (keep ref, or runtime.KeepAlive(ref), while you use it;
// copy what must outlive it). Writing to it faults.
func Get[T any](ctx context.Context, ref *ObjectRef) (T, error) {
	var out T
	if err := ref.check("get"); err != nil {
		return out, err
	}
	v, err := ref.rt.w.Get(ctx, ref.id)
	if err != nil {
		return out, err
	}
	if dv, direct, err := worker.ResolveDirect(ctx, ids.ActorID{}, v.Data, reflect.TypeFor[T]()); direct {
		// A tensor kept by the actor that made it (actor.Class.KeepTensors).
		if err != nil {
			return out, fmt.Errorf("core: get %s: %w", ref.id, err)
		}
		reflect.ValueOf(&out).Elem().Set(dv)
		return out, nil
	}
	if err := decodeInto(v.Data, &out); err != nil {
		return out, fmt.Errorf("core: get %s: %w", ref.id, err)
	}
	if err := bindRefs(ref.rt, reflect.ValueOf(&out).Elem()); err != nil {
		return out, fmt.Errorf("core: get %s: %w", ref.id, err)
	}
	runtime.KeepAlive(ref)
	return out, nil
}

func decodeInto[T any](data []byte, out *T) error {
	t := reflect.TypeFor[T]()
	v, err := codec.Decode(data, t)
	if err != nil {
		return fmt.Errorf("decode as %v: %w", t, err)
	}
	if v.IsValid() {
		reflect.ValueOf(out).Elem().Set(v)
	}
	return nil
}

// GetAll gets every ref, in order. It fails with the first error.
func GetAll[T any](ctx context.Context, refs []*ObjectRef) ([]T, error) {
	out := make([]T, len(refs))
	for i, r := range refs {
		v, err := Get[T](ctx, r)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Wait waits until numReturns of refs are ready (done or failed), the
// timeout passes (negative: none) or ctx ends, and splits refs into ready
// and not ready, each in the order given.
func Wait(ctx context.Context, refs []*ObjectRef, numReturns int, timeout time.Duration) (ready, notReady []*ObjectRef, err error) {
	if numReturns < 0 || numReturns > len(refs) {
		return nil, refs, fmt.Errorf("core: wait: numReturns %d with %d refs: %w: want 0 ≤ numReturns ≤ len(refs)", numReturns, len(refs), ErrBadArgument)
	}
	if len(refs) == 0 {
		return nil, nil, nil
	}
	rt := refs[0].rt
	idList := make([]ids.ObjectID, len(refs))
	for i, r := range refs {
		if err := r.check("wait"); err != nil {
			return nil, refs, err
		}
		if r.rt != rt {
			return nil, refs, fmt.Errorf("core: wait: refs from two runtimes: %w", ErrBadArgument)
		}
		idList[i] = r.id
	}
	ok, err := rt.w.Wait(ctx, idList, numReturns, timeout)
	if err != nil {
		return nil, refs, fmt.Errorf("core: wait: %w", err)
	}
	for i, r := range refs {
		if ok[i] && len(ready) < numReturns {
			ready = append(ready, r)
		} else {
			notReady = append(notReady, r)
		}
	}
	return ready, notReady, nil
}

// Put stores v as an object owned by this process and returns its ref.
// Values up to 100 KiB stay in this process's memory; larger ones go to
// the node's shared-memory store, written once ([]byte and numeric slices
// without encoding) and then read in place by every task that takes them.
func Put(rt *Runtime, v any) (*ObjectRef, error) {
	if rt == nil {
		return nil, fmt.Errorf("core: put: nil *Runtime: %w", ErrBadArgument)
	}
	if rt.w.Closed() {
		return nil, fmt.Errorf("core: put: %w", ErrShutdown)
	}
	if _, isRef := v.(*ObjectRef); isRef {
		return nil, fmt.Errorf("core: put: the value is an *ObjectRef: %w: pass the ref itself", ErrBadArgument)
	}
	nested, err := nestedRefs(rt, reflect.ValueOf(v))
	if err != nil {
		return nil, fmt.Errorf("core: put: %w", err)
	}
	enc, err := codec.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("core: put: %w: %w", ErrBadArgument, err)
	}
	id, err := rt.w.Put(enc, nested)
	if err != nil {
		return nil, fmt.Errorf("core: %w", err)
	}
	return rt.newRef(id), nil
}

// Cancel cancels the task that makes ref. A task not yet running never
// runs; a running one sees its context cancelled (force: its worker
// process is killed). Its refs then fail with ErrTaskCancelled. A finished
// task is not affected. Only the submitter can cancel.
func Cancel(ref *ObjectRef, force bool) error {
	if err := ref.check("cancel"); err != nil {
		return err
	}
	if err := ref.rt.w.Cancel(ref.id, force); err != nil {
		return fmt.Errorf("core: %w", err)
	}
	return nil
}

// ObjectRefGenerator is the stream of a generator task's items.
type ObjectRefGenerator struct {
	rt     *Runtime
	g      *worker.Generator
	failed *ObjectRef
	done   bool
}

// Next waits for the next item and returns its ref; io.EOF after the last
// one, or the task's error if it failed.
func (g *ObjectRefGenerator) Next(ctx context.Context) (*ObjectRef, error) {
	if g.failed != nil {
		_, err := Get[any](ctx, g.failed)
		if err == nil {
			err = errors.New("core: generator failed")
		}
		return nil, err
	}
	if g.done {
		return nil, io.EOF
	}
	id, ok, err := g.g.Next(ctx)
	if err != nil {
		if ctx.Err() == nil {
			g.done = true
		}
		return nil, err
	}
	if !ok {
		g.done = true
		return nil, io.EOF
	}
	return g.rt.newRef(id), nil
}

// All ranges over the items: each ref, then at most one error (not
// io.EOF) if the task failed.
func (g *ObjectRefGenerator) All(ctx context.Context) iter.Seq2[*ObjectRef, error] {
	return func(yield func(*ObjectRef, error) bool) {
		for {
			r, err := g.Next(ctx)
			if err == io.EOF {
				return
			}
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

// Close drops the items not yet taken.
func (g *ObjectRefGenerator) Close() {
	if g.g != nil {
		g.g.Close()
	}
}
