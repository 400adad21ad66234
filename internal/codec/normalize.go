package codec

import (
	"fmt"
	"math/big"
	"reflect"
	"sync"
)

// After the CBOR library decodes, values in interface-typed places get
// goray's conventions, which the library cannot express as options:
//
//   - a map[any]any whose keys are all strings becomes a map[string]any
//     (structs that were not registered arrive as such maps);
//   - a *big.Int that fits in an int64 or a uint64 becomes one, map[any]any
//     keys included (the library gives int64 for plain integers that fit,
//     and *big.Int otherwise);
//   - a registered type registered with a *T sample becomes a *T.
//
// Other map keys are left alone: keys cannot hold maps, and a registered
// type turned into a *T would become a key compared by pointer.

// normalize applies the conventions to x, the content of an interface-typed
// place, and to everything inside it. It mutates slices and maps in place
// and reports whether the caller must store the returned value instead. Its
// only error is a duplicate map key that the library could not see.
func (m *modes) normalize(x any) (any, bool, error) {
	switch y := x.(type) {
	case nil, bool, int64, uint64, float64, string, []byte:
		return x, false, nil
	case []any:
		for i, e := range y {
			n, changed, err := m.normalize(e)
			if err != nil {
				return nil, false, err
			}
			if changed {
				y[i] = n
			}
		}
		return y, false, nil
	case map[any]any:
		return m.normalizeMap(y)
	case *big.Int:
		n := smallInt(y)
		_, still := n.(*big.Int)
		return n, !still, nil
	}
	v := reflect.ValueOf(x)
	t := v.Type()
	pointer := m.registered[t]
	if !pointer && !needsWalk(t) {
		return x, false, nil
	}
	// Copy into an addressable value: the one inside an interface cannot be
	// changed in place.
	p := reflect.New(t)
	p.Elem().Set(v)
	if err := m.walk(p.Elem()); err != nil {
		return nil, false, err
	}
	if pointer {
		return p.Interface(), true, nil
	}
	return p.Elem().Interface(), true, nil
}

// normalizeMap returns a new map: a map[string]any if all of y's keys are
// strings, else a map[any]any. (Rewriting y in place is no option: a NaN key
// is never found again, so y[k] = n would add an entry.)
func (m *modes) normalizeMap(y map[any]any) (any, bool, error) {
	allStrings := true
	for k := range y {
		if _, ok := k.(string); !ok {
			allStrings = false
			break
		}
	}
	if allStrings {
		out := make(map[string]any, len(y))
		for k, e := range y {
			n, _, err := m.normalize(e)
			if err != nil {
				return nil, false, err
			}
			out[k.(string)] = n
		}
		return out, true, nil
	}
	out := make(map[any]any, len(y))
	var keys bigKeys
	for k, e := range y {
		k, err := keys.key(k)
		if err != nil {
			return nil, false, err
		}
		if _, dup := out[k]; dup {
			return nil, false, fmt.Errorf("duplicate map key %v", k)
		}
		n, _, err := m.normalize(e)
		if err != nil {
			return nil, false, err
		}
		out[k] = n
	}
	return out, true, nil
}

// bigKeys turns *big.Int map keys that fit into int64 or uint64 keys, and
// finds the duplicates the library cannot: it compares *big.Int keys by
// pointer, so two equal bignums (or a bignum and an equal plain integer, a
// form only a foreign encoder writes) would otherwise become two entries
// that encode alike, or silently one.
type bigKeys struct {
	seen map[string]bool // big keys beyond 64 bits, by value
}

// key returns the key to store k under. The caller still checks that key
// against those already stored: a bignum equal to a plain integer key turns
// into that key.
func (b *bigKeys) key(k any) (any, error) {
	n, ok := k.(*big.Int)
	if !ok {
		return k, nil
	}
	small := smallInt(n)
	if _, still := small.(*big.Int); !still {
		return small, nil
	}
	if b.seen == nil {
		b.seen = map[string]bool{}
	}
	s := n.String()
	if b.seen[s] {
		return nil, fmt.Errorf("duplicate map key %s", s)
	}
	b.seen[s] = true
	return k, nil
}

// smallInt returns b as an int64 or uint64 if it fits, else b. The library
// gives *big.Int for integers beyond int64 and for every bignum tag, even
// one holding a small value, which only a foreign encoder writes.
func smallInt(b *big.Int) any {
	switch {
	case b.IsInt64():
		return b.Int64()
	case b.IsUint64():
		return b.Uint64()
	}
	return b
}

// walk applies normalize to every interface-typed place inside v, which must
// be settable.
func (m *modes) walk(v reflect.Value) error {
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return nil
		}
		n, changed, err := m.normalize(v.Interface())
		if err != nil {
			return err
		}
		if changed {
			if nv := reflect.ValueOf(n); nv.Type().AssignableTo(v.Type()) {
				v.Set(nv)
			}
		}
	case reflect.Pointer:
		if !v.IsNil() && needsWalk(v.Type().Elem()) {
			return m.walk(v.Elem())
		}
	case reflect.Slice, reflect.Array:
		if needsWalk(v.Type().Elem()) {
			for i := range v.Len() {
				if err := m.walk(v.Index(i)); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		return m.walkMap(v)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() && needsWalk(f.Type()) {
				if err := m.walk(f); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// walkMap walks the values of map v, and its keys if they are interfaces
// (which may hold *big.Int; see bigKeys).
func (m *modes) walkMap(v reflect.Value) error {
	kt, et := v.Type().Key(), v.Type().Elem()
	anyKeys := kt.Kind() == reflect.Interface
	if !anyKeys && !needsWalk(et) {
		return nil
	}
	// Rewrite values in place where keys are findable again; else (float,
	// interface or composite keys, which may hold NaN) build a new map.
	dst, rebuilt := v, !findableKeys(kt)
	if rebuilt {
		dst = reflect.MakeMapWithSize(v.Type(), v.Len())
	}
	var keys bigKeys
	e := reflect.New(et).Elem()
	for it := v.MapRange(); it.Next(); {
		k := it.Key()
		if anyKeys && !k.IsNil() { // then rebuilt, so dst holds only keys already walked
			nk, err := keys.key(k.Interface())
			if err != nil {
				return err
			}
			if dst.MapIndex(reflect.ValueOf(nk)).IsValid() {
				return fmt.Errorf("duplicate map key %v", nk)
			}
			k = reflect.New(kt).Elem()
			k.Set(reflect.ValueOf(nk))
		}
		e.Set(it.Value())
		if err := m.walk(e); err != nil {
			return err
		}
		dst.SetMapIndex(k, e)
	}
	if rebuilt {
		v.Set(dst)
	}
	return nil
}

// findableKeys reports whether every key of type t equals itself, so that
// assigning to m[k] for a k from ranging over m replaces, never adds.
func findableKeys(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

// walkCache memoizes needsWalk. It does not depend on registrations, so it
// is global rather than per snapshot.
var walkCache sync.Map // reflect.Type -> bool

// needsWalk reports whether a value of type t can hold an interface-typed
// place that the decoder fills, i.e. whether walk can change anything.
func needsWalk(t reflect.Type) bool {
	if r, ok := walkCache.Load(t); ok {
		return r.(bool)
	}
	r := holdsInterface(t, map[reflect.Type]bool{})
	walkCache.Store(t, r)
	return r
}

func holdsInterface(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false // a recursive type: its other paths decide
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return holdsInterface(t.Elem(), seen)
	case reflect.Map: // interface keys may hold *big.Int (see bigKeys)
		return t.Key().Kind() == reflect.Interface || holdsInterface(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() && holdsInterface(f.Type, seen) {
				return true
			}
		}
	}
	return false
}
