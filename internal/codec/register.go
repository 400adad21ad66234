package codec

import (
	"fmt"
	"hash/fnv"
	"reflect"
	"sync"
)

// registration is one RegisterType call.
type registration struct {
	name    string
	typ     reflect.Type // never a pointer type
	tag     uint64
	pointer bool // registered with a *T sample: interface places get *T
}

var (
	regMu sync.Mutex
	regs  []registration // guarded by regMu; published through current
)

// Registered types get CBOR tags in [tagBase, tagBase+tagSpan): the upper
// half of the 32-bit tag numbers, whose heads are 5 bytes. IANA has assigned
// almost nothing there, and only goray's own decoder reads these tags, so a
// clash with an IANA tag would be harmless anyway.
const (
	tagBase = 1 << 31
	tagSpan = 1 << 31
)

// TagFor is the CBOR tag RegisterType gives name. A registered type that
// writes its own encoding (a cbor.Marshaler) must write this tag around it
// to come back as itself in interface-typed places.
func TagFor(name string) uint64 { return tagFor(name) }

// tagFor hashes a registration name into its tag: the same name gives the
// same tag in every process and every build, with no registry to share.
func tagFor(name string) uint64 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return tagBase + uint64(h.Sum32())%tagSpan
}

// RegisterType makes values of sample's type round-trip through
// interface-typed places (a field of type any, a []any, a map[string]any, a
// top-level any target): they are encoded under a CBOR tag derived from name,
// and decoded back as their Go type instead of as a map[string]any.
//
// sample may be a T or a *T, and that choice is what comes back in
// interface-typed places: register T{} to get T values, &T{} to get *T. Both
// T and *T values are encoded with the tag either way, and typed places (a
// field of type T or *T) decode either way.
//
// The tag is a hash of name, so every process that registers the same name
// for the same type agrees on it without coordination: pick a name that is
// stable across builds (e.g. "mypkg.Point"), not one derived from a
// reflect.Type string that refactoring may change. A process that has not
// registered a tag decodes it, in interface-typed places, as a cbor.Tag.
//
// Call it from init, before any Encode or Decode that involves the type.
// It panics if name or the type is already registered, if two names hash to
// the same tag, or if the type cannot carry a tag (an unnamed type, an
// interface, time.Time, big.Int).
func RegisterType(name string, sample any) {
	if name == "" {
		panic("codec: RegisterType: empty name: give the type a stable name such as \"mypkg.Point\"")
	}
	if sample == nil {
		panic(fmt.Sprintf("codec: RegisterType(%q, nil): pass a value of the type, e.g. Point{} or &Point{}", name))
	}
	t := reflect.TypeOf(sample)
	pointer := false
	if t.Kind() == reflect.Pointer {
		t, pointer = t.Elem(), true
		if t.Kind() == reflect.Pointer {
			panic(fmt.Sprintf("codec: RegisterType(%q, %T): pointer to pointer: pass a T or a *T", name, sample))
		}
	}
	if t.Name() == "" || t.PkgPath() == "" {
		panic(fmt.Sprintf("codec: RegisterType(%q, %T): %s is not a named type of a package: declare a type (type Point struct{...}) and register that", name, sample, t))
	}
	r := registration{name: name, typ: t, tag: tagFor(name), pointer: pointer}

	regMu.Lock()
	defer regMu.Unlock()
	for _, o := range regs {
		switch {
		case o.name == name:
			panic(fmt.Sprintf("codec: RegisterType(%q, %s): name already registered for %s: use another name", name, t, o.typ))
		case o.typ == t:
			panic(fmt.Sprintf("codec: RegisterType(%q, %s): type already registered as %q: register each type once", name, t, o.name))
		case o.tag == r.tag:
			panic(fmt.Sprintf("codec: RegisterType(%q, %s): name hashes to tag %d, like %q for %s: rename one of them", name, t, r.tag, o.name, o.typ))
		}
	}
	next := append(regs[:len(regs):len(regs)], r)
	current.Store(buildModes(next)) // panics, leaving everything as it was, if cbor rejects the type
	regs = next
}
