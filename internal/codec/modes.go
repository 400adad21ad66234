package codec

import (
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/fxamacker/cbor/v2"
)

// maxNesting is how deep a CBOR value may nest (each array, map and tag is a
// level). Encode enforces it too, so that what one process encodes another
// can decode, and so that a pointer cycle is an error instead of a fatal
// stack overflow.
const maxNesting = 64

// maxElements bounds the elements of one CBOR array and the pairs of one
// map. The decoder checks well-formedness before allocating, so a lying
// length cannot make it allocate more than the input justifies; the bound
// only stops absurd values. Bulk data belongs in raw payloads anyway.
const maxElements = 1 << 24

// encOptions make encoding deterministic for a given Go value (the same
// value always gives the same bytes, which lets goray compare and hash
// encodings): map keys sorted bytewise (RFC 8949 core deterministic order),
// definite lengths only, and integers as short as possible, which the
// library always does. Floats are the exception to "core deterministic":
// they keep their Go width and NaN payloads (no float16 shortening), which
// is cheaper, lossless, and just as deterministic.
var encOptions = cbor.EncOptions{
	Sort:          cbor.SortCoreDeterministic,
	ShortestFloat: cbor.ShortestFloatNone,
	NaNConvert:    cbor.NaNConvertNone,
	InfConvert:    cbor.InfConvertNone,
	IndefLength:   cbor.IndefLengthForbidden,
	// time.Time as tag 0 with nanoseconds: lossless to the nanosecond (the
	// default is whole Unix seconds), and the tag brings a time.Time back,
	// not a string, in interface-typed places.
	Time:    cbor.TimeRFC3339Nano,
	TimeTag: cbor.EncTagRequired,
	// nil slices and maps encode as null (the library's default), like nil
	// raw slices do.
	NilContainers: cbor.NilContainerAsNull,
}

// decOptions assume the bytes may be damaged or come from another binary:
// every limit is explicit.
var decOptions = cbor.DecOptions{
	MaxNestedLevels:  maxNesting,
	MaxArrayElements: maxElements,
	MaxMapPairs:      maxElements,
	// Duplicate map keys are an error, not "last one wins". Our encoder never
	// writes them (Go maps and structs cannot hold two equal keys), so a
	// duplicate means a foreign or broken encoder, and silently dropping one
	// value hides that. The cost is a small set per decoded map.
	DupMapKey:   cbor.DupMapKeyEnforcedAPF,
	IndefLength: cbor.IndefLengthForbidden, // never written by us; less input surface
	// Go strings may hold any bytes, and must round-trip.
	UTF8: cbor.UTF8DecodeInvalid,
	// Integers in interface-typed places come back as int64 (Go code usually
	// sent an int), above MaxInt64 as uint64 (see normalize), and beyond that
	// as *big.Int: no uint64-for-positive, int64-for-negative surprise.
	IntDec:    cbor.IntDecConvertSignedOrBigInt,
	BigIntDec: cbor.BigIntDecodePointer,
	// DefaultMapType stays nil (map[any]any): map[string]any would make maps
	// with other keys undecodable into interface-typed places. Instead,
	// normalize turns a map[any]any whose keys are all strings into a
	// map[string]any, which is what Go code expects for struct-like data.
}

// modes is one immutable snapshot of the codec's configuration: the CBOR
// modes with the registered tags, and what normalize and checkNesting need
// to know about registered types. RegisterType publishes a new snapshot; the
// hot path loads it with one atomic read and takes no lock.
type modes struct {
	em cbor.UserBufferEncMode
	dm cbor.DecMode
	// registered holds every registered type (always the non-pointer type),
	// and whether it was registered with a pointer sample.
	registered map[reflect.Type]bool
	// nesting caches staticNesting per type; it depends on the registered
	// set (a tag is a level), hence per snapshot.
	nesting sync.Map // reflect.Type -> nestInfo
}

var current atomic.Pointer[modes]

func init() {
	current.Store(buildModes(nil))
}

// buildModes returns a snapshot for the given registrations. Options are
// constants of this package, so an error is a bug here and panics.
func buildModes(regs []registration) *modes {
	m := &modes{registered: make(map[reflect.Type]bool, len(regs))}
	tags := cbor.NewTagSet()
	for _, r := range regs {
		m.registered[r.typ] = r.pointer
		opts := cbor.TagOptions{EncTag: cbor.EncTagRequired, DecTag: cbor.DecTagOptional}
		if err := tags.Add(opts, r.typ, r.tag); err != nil {
			panic("codec: register " + r.typ.String() + ": " + err.Error())
		}
	}
	em, err := encOptions.UserBufferEncModeWithTags(tags)
	if err != nil {
		panic("codec: encode options: " + err.Error())
	}
	dm, err := decOptions.DecModeWithTags(tags)
	if err != nil {
		panic("codec: decode options: " + err.Error())
	}
	m.em = em
	m.dm = dm
	return m
}
