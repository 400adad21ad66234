package core

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"

	"github.com/fxamacker/cbor/v2"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/worker"
)

// Refs inside values: an *ObjectRef may sit anywhere in an argument, a
// result or a Put value (a []*ObjectRef, a struct field, a map value, an
// any). It travels as its object ID and owner; the process that decodes it
// borrows the object (see internal/worker/borrow.go for the protocol), so
// the object lives while any process holds a ref. A top-level *ObjectRef
// argument is different: it is resolved, and the task gets the value.

const refTypeName = "goray.ObjectRef"

var refTag = codec.TagFor(refTypeName)

func init() {
	codec.RegisterType(refTypeName, &ObjectRef{})
	worker.ValueRefs.Collect = func(v reflect.Value) ([]worker.NestedRef, error) {
		return nestedRefs(nil, v)
	}
	worker.ValueRefs.Bind = func(w *worker.CoreWorker, v reflect.Value) error {
		rt, _ := w.Owner.(*Runtime)
		if rt == nil {
			return errors.New("no runtime in this process to bind refs to")
		}
		return bindRefs(rt, v)
	}
}

// refWire is an *ObjectRef on the wire.
type refWire struct {
	_     struct{} `cbor:",toarray"`
	ID    []byte
	Owner string
}

// MarshalCBOR encodes the ref for the value codec: its object ID and owner.
// The process that decodes it borrows the object.
func (r *ObjectRef) MarshalCBOR() ([]byte, error) {
	if r.rt == nil {
		if r.owner == "" {
			return nil, fmt.Errorf("core: encode an ObjectRef made without a runtime: %w: use refs from Remote or Put", ErrBadArgument)
		}
		return marshalRef(r.id, r.owner)
	}
	if err := r.check("encode"); err != nil {
		return nil, err
	}
	owner := r.rt.w.OwnerOf(r.id)
	if owner == "" {
		return nil, fmt.Errorf("core: encode %s: %w: this process no longer holds it", r.id, ErrObjectLost)
	}
	return marshalRef(r.id, owner)
}

// marshalRef writes the registered type's tag itself: the codec adds it
// only around types it encodes field by field.
func marshalRef(id ids.ObjectID, owner string) ([]byte, error) {
	return cbor.Marshal(cbor.Tag{Number: refTag, Content: refWire{ID: id[:], Owner: owner}})
}

// UnmarshalCBOR decodes a ref; it is bound to the decoding process's
// runtime (and counted) by Get or by the task that receives it.
func (r *ObjectRef) UnmarshalCBOR(data []byte) error {
	var tag cbor.RawTag
	if err := cbor.Unmarshal(data, &tag); err != nil {
		return fmt.Errorf("core: decode ObjectRef: %w", err)
	}
	if tag.Number != refTag {
		return fmt.Errorf("core: decode ObjectRef: tag %d, want %d", tag.Number, refTag)
	}
	var w refWire
	if err := cbor.Unmarshal(tag.Content, &w); err != nil {
		return fmt.Errorf("core: decode ObjectRef: %w", err)
	}
	if len(w.ID) != ids.ObjectIDSize || w.Owner == "" {
		return fmt.Errorf("core: decode ObjectRef: want a %d-byte ID and an owner, got %d bytes and owner %q", ids.ObjectIDSize, len(w.ID), w.Owner)
	}
	copy(r.id[:], w.ID)
	r.owner = w.Owner
	return nil
}

var refType = reflect.TypeFor[*ObjectRef]()

// mayHold caches, per type, whether its values can contain an *ObjectRef
// (through exported fields, elements, map entries, pointers or interfaces).
// Most types cannot, and for them walking a value costs one map lookup.
var mayHold sync.Map // reflect.Type → bool

func mayHoldRefs(t reflect.Type) bool {
	if v, ok := mayHold.Load(t); ok {
		return v.(bool)
	}
	b := computeMayHold(t, map[reflect.Type]bool{})
	mayHold.Store(t, b)
	return b
}

func computeMayHold(t reflect.Type, inProgress map[reflect.Type]bool) bool {
	if t == refType || t == refType.Elem() {
		return true
	}
	if inProgress[t] {
		return false // a cycle adds nothing the other paths do not find
	}
	inProgress[t] = true
	defer delete(inProgress, t)
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return computeMayHold(t.Elem(), inProgress)
	case reflect.Map:
		return computeMayHold(t.Key(), inProgress) || computeMayHold(t.Elem(), inProgress)
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() && computeMayHold(f.Type, inProgress) {
				return true
			}
		}
	}
	return false
}

// walkRefs calls fn for every non-nil *ObjectRef inside v, as the codec
// would encode it (exported fields only). The codec bounds nesting, so the
// depth bound only guards against pointer cycles, which it rejects too.
func walkRefs(v reflect.Value, fn func(*ObjectRef) error) error {
	if !v.IsValid() || !mayHoldRefs(v.Type()) {
		return nil
	}
	return walk(v, fn, 0)
}

func walk(v reflect.Value, fn func(*ObjectRef) error, depth int) error {
	if depth > 128 {
		return errors.New("value nests too deep (a pointer cycle?)")
	}
	if !v.IsValid() {
		return nil
	}
	t := v.Type()
	if t == refType {
		if v.IsNil() {
			return nil
		}
		return fn(v.Interface().(*ObjectRef))
	}
	if !mayHoldRefs(t) {
		return nil
	}
	switch t.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return walk(v.Elem(), fn, depth+1)
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := walk(v.Index(i), fn, depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if err := walk(it.Key(), fn, depth+1); err != nil {
				return err
			}
			if err := walk(it.Value(), fn, depth+1); err != nil {
				return err
			}
		}
	case reflect.Struct:
		if t == refType.Elem() {
			if v.CanAddr() {
				return fn(v.Addr().Interface().(*ObjectRef))
			}
			return errors.New("an ObjectRef held by value: hold a *ObjectRef")
		}
		for i := range t.NumField() {
			if t.Field(i).IsExported() {
				if err := walk(v.Field(i), fn, depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// nestedRefs lists the refs inside v with their owners; rt, if not nil, is
// the runtime they must belong to.
func nestedRefs(rt *Runtime, v reflect.Value) ([]worker.NestedRef, error) {
	var out []worker.NestedRef
	err := walkRefs(v, func(r *ObjectRef) error {
		if err := r.check("pass"); err != nil {
			return err
		}
		if rt != nil && r.rt.w != rt.w {
			return fmt.Errorf("ref %s inside the value: %w: it belongs to another runtime", r.id, ErrBadArgument)
		}
		owner := r.rt.w.OwnerOf(r.id)
		if owner == "" {
			return fmt.Errorf("ref %s inside the value: %w: this process no longer holds it", r.id, ErrObjectLost)
		}
		out = append(out, worker.NestedRef{ID: r.id, Owner: owner})
		return nil
	})
	return out, err
}

// bindRefs attaches the refs just decoded inside v to rt: each is counted
// as a live ref of this process, borrowing the object from its owner.
func bindRefs(rt *Runtime, v reflect.Value) error {
	return walkRefs(v, func(r *ObjectRef) error {
		if r.rt != nil {
			return nil
		}
		if err := rt.w.Borrow(r.id, r.owner); err != nil {
			return fmt.Errorf("%w: %w", ErrObjectLost, err)
		}
		r.rt = rt
		r.cleanup = runtime.AddCleanup(r, func(h refHandle) { h.w.ReleaseRef(h.id) }, refHandle{rt.w, r.id})
		return nil
	})
}
