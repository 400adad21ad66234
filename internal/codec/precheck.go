package codec

import (
	"encoding"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Encode walks a value before handing it to the CBOR library, for three
// reasons: the library follows pointer cycles until the goroutine's stack
// overflows, which kills the process rather than panicking; a value the
// decoder would refuse (deeper than maxNesting) should fail where it was
// made, not in another process; and a time.Time outside years 0..9999
// encodes (as RFC 3339 text) but cannot be decoded. Most types need no walk:
// their nesting is bounded by the type alone and they hold no time.Time
// (nestInfo), so only values of recursive types, of types holding interfaces
// or times, and of absurdly deep types are walked.

// nestInfo is what a type alone says about its values.
type nestInfo struct {
	depth   int  // the most levels a value of the type can nest, if bounded
	bounded bool // false for recursive types and types holding interfaces
	hasTime bool // a value can hold a time.Time, whose year must be checked
}

// needsNoWalk reports whether values of a type with this info, found inside
// depth levels, are encodable whatever they hold.
func (n nestInfo) needsNoWalk(depth int) bool {
	return n.bounded && !n.hasTime && depth+n.depth <= maxNesting
}

// precheck returns an error if v holds what Encode must refuse though the
// library would encode it: nesting beyond maxNesting (a pointer cycle
// included) or a time.Time outside years 0..9999.
func (m *modes) precheck(v any) error {
	rv := reflect.ValueOf(v)
	if m.staticNesting(rv.Type()).needsNoWalk(0) {
		return nil
	}
	return m.walkEncodable(rv, 0, 0)
}

// errTooDeep is reported by walkEncodable and turned into a message naming
// the value by precheck's caller.
var errTooDeep = errors.New("too deep")

// walkEncodable checks v, found inside depth levels of containers and ptrs
// pointers since the last one.
func (m *modes) walkEncodable(v reflect.Value, depth, ptrs int) error {
	switch v.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.String:
		return nil
	case reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return m.walkEncodable(v.Elem(), depth, ptrs)
	case reflect.Pointer:
		// Pointers add no CBOR level, but a cycle of pointers alone (type
		// P *P) must still end.
		if v.IsNil() {
			return nil
		}
		if ptrs >= maxNesting {
			return errTooDeep
		}
		return m.walkEncodable(v.Elem(), depth, ptrs+1)
	}
	t := v.Type()
	if t == timeType {
		return checkYear(v)
	}
	if m.staticNesting(t).needsNoWalk(depth) {
		return nil
	}
	depth++
	if _, ok := m.registered[t]; ok {
		depth++ // the tag
	}
	if depth > maxNesting {
		return errTooDeep
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := m.walkEncodable(v.Index(i), depth, 0); err != nil {
				return err
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if err := m.walkEncodable(it.Key(), depth, 0); err != nil {
				return err
			}
			if err := m.walkEncodable(it.Value(), depth, 0); err != nil {
				return err
			}
		}
	case reflect.Struct:
		return m.walkFields(v, depth)
	}
	return nil
}

// walkFields checks the encoded fields of struct v, at depth; embedded
// structs are flattened into their parent, as the library does.
func (m *modes) walkFields(v reflect.Value, depth int) error {
	for _, f := range encodedFields(v.Type()) {
		fv := v.Field(f.index)
		if f.flatten {
			for fv.Kind() == reflect.Pointer && !fv.IsNil() {
				fv = fv.Elem()
			}
			if fv.Kind() == reflect.Struct && fv.Type() != timeType {
				if err := m.walkFields(fv, depth); err != nil {
					return err
				}
				continue
			}
		}
		if err := m.walkEncodable(fv, depth, 0); err != nil {
			return err
		}
	}
	return nil
}

// checkYear refuses a time.Time that RFC 3339 cannot carry: the library
// would write a 5-digit or negative year that no decoder parses.
func checkYear(v reflect.Value) error {
	if !v.CanInterface() {
		return nil // reached through an unexported embedded struct; the library fails on it anyway
	}
	tm := v.Interface().(time.Time)
	if y := tm.Year(); (y < 0 || y > 9999) && !tm.IsZero() {
		return fmt.Errorf("time %s is outside years 0..9999, which RFC 3339 (CBOR tag 0) cannot carry: "+
			"send it as Unix seconds and nanoseconds instead", tm.Format(time.RFC3339Nano))
	}
	return nil
}

// staticNesting returns what t alone says about its values, memoized per
// snapshot because a registered type's tag is a level.
func (m *modes) staticNesting(t reflect.Type) nestInfo {
	if n, ok := m.nesting.Load(t); ok {
		return n.(nestInfo)
	}
	n := m.computeNesting(t, map[reflect.Type]bool{})
	m.nesting.Store(t, n)
	return n
}

var (
	timeType            = reflect.TypeFor[time.Time]()
	bigIntType          = reflect.TypeFor[big.Int]()
	cborMarshalerType   = reflect.TypeFor[cbor.Marshaler]()
	binaryMarshalerType = reflect.TypeFor[encoding.BinaryMarshaler]()
	unboundedNesting    = nestInfo{}
	leafNesting         = nestInfo{depth: 0, bounded: true}
	selfEncodedNesting  = nestInfo{depth: 1, bounded: true} // a tag around a scalar, or a type's own encoding
	timeNesting         = nestInfo{depth: 1, bounded: true, hasTime: true}
)

// maxStaticDepth is beyond any real type; it keeps sums from overflowing.
const maxStaticDepth = 1 << 20

func (m *modes) computeNesting(t reflect.Type, inProgress map[reflect.Type]bool) nestInfo {
	switch {
	case t == timeType:
		return timeNesting
	case t == bigIntType:
		return selfEncodedNesting
	case t.Kind() != reflect.Interface && t.Kind() != reflect.Pointer &&
		(t.Implements(cborMarshalerType) || t.Implements(binaryMarshalerType)):
		// The type writes its own encoding; count it as one level, since
		// walking it would not tell what its Marshal writes anyway.
		return selfEncodedNesting
	}
	if inProgress[t] {
		return unboundedNesting
	}
	var n nestInfo
	switch t.Kind() {
	case reflect.Interface:
		return unboundedNesting
	case reflect.Pointer:
		inProgress[t] = true
		n = m.computeNesting(t.Elem(), inProgress)
		delete(inProgress, t)
		return n
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return leafNesting // a byte string
		}
		inProgress[t] = true
		n = m.computeNesting(t.Elem(), inProgress)
	case reflect.Map:
		inProgress[t] = true
		n = deeper(m.computeNesting(t.Key(), inProgress), m.computeNesting(t.Elem(), inProgress))
	case reflect.Struct:
		inProgress[t] = true
		n = m.structNesting(t, inProgress)
	default:
		return leafNesting
	}
	delete(inProgress, t)
	if !n.bounded {
		return unboundedNesting
	}
	n.depth = min(n.depth+1, maxStaticDepth)
	if _, ok := m.registered[t]; ok {
		n.depth++
	}
	return n
}

// deeper combines the infos of two places at the same level.
func deeper(a, b nestInfo) nestInfo {
	return nestInfo{depth: max(a.depth, b.depth), bounded: a.bounded && b.bounded, hasTime: a.hasTime || b.hasTime}
}

// structNesting combines t's encoded fields, embedded structs' fields
// included at the same level.
func (m *modes) structNesting(t reflect.Type, inProgress map[reflect.Type]bool) nestInfo {
	n := leafNesting
	for _, f := range encodedFields(t) {
		ft := t.Field(f.index).Type
		var fn nestInfo
		if et := derefType(ft); f.flatten && et.Kind() == reflect.Struct && et != timeType {
			if inProgress[et] {
				return unboundedNesting
			}
			inProgress[et] = true
			fn = m.structNesting(et, inProgress)
			delete(inProgress, et)
		} else {
			fn = m.computeNesting(ft, inProgress)
		}
		if n = deeper(n, fn); !n.bounded {
			return unboundedNesting
		}
	}
	return n
}

func derefType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// fieldRef is one struct field that the CBOR library encodes.
type fieldRef struct {
	index   int
	flatten bool // an embedded struct whose fields are promoted into the parent
	name    string
}

var fieldCache sync.Map // reflect.Type -> []fieldRef

// encodedFields lists the fields of struct type t that the library encodes:
// exported ones and embedded structs, minus those tagged "-" (the library
// reads the cbor tag, else the json tag).
func encodedFields(t reflect.Type) []fieldRef {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]fieldRef)
	}
	var fs []fieldRef
	for i := range t.NumField() {
		f := t.Field(i)
		embeddedStruct := f.Anonymous && derefType(f.Type).Kind() == reflect.Struct
		if !f.IsExported() && !embeddedStruct {
			continue
		}
		tag, ok := f.Tag.Lookup("cbor")
		if !ok || tag == "" {
			tag = f.Tag.Get("json")
		}
		if tag == "-" {
			continue
		}
		named := tag != "" && !strings.HasPrefix(tag, ",")
		fs = append(fs, fieldRef{index: i, flatten: embeddedStruct && !named, name: f.Name})
	}
	fieldCache.Store(t, fs)
	return fs
}

// findUnencodable returns the path in type t to a place the library cannot
// encode (a func, channel, complex number or unsafe pointer), such as
// ".Spec.Done" or "[].Done", and that place's type; bad is nil if t's fields
// and elements hold none (the culprit then hides behind an interface).
func findUnencodable(t reflect.Type, seen map[reflect.Type]bool) (path string, bad reflect.Type) {
	if seen[t] {
		return "", nil
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return "", t
	case reflect.Pointer:
		return findUnencodable(t.Elem(), seen)
	case reflect.Slice, reflect.Array:
		p, bad := findUnencodable(t.Elem(), seen)
		return "[]" + p, bad
	case reflect.Map:
		if p, bad := findUnencodable(t.Key(), seen); bad != nil {
			return "[key]" + p, bad
		}
		p, bad := findUnencodable(t.Elem(), seen)
		return "[value]" + p, bad
	case reflect.Struct:
		if t == timeType || t == bigIntType || reflect.PointerTo(t).Implements(cborMarshalerType) {
			return "", nil
		}
		for _, f := range encodedFields(t) {
			if p, bad := findUnencodable(t.Field(f.index).Type, seen); bad != nil {
				return "." + f.name + p, bad
			}
		}
	}
	return "", nil
}
