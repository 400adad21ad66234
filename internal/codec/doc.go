// Package codec is goray's one value codec: every task argument, task result
// and stored object is turned into bytes here, and back. One codec means one
// set of rules for what can cross a process boundary, one place to check
// bytes that come from another process, and one zero-copy path for bulk data.
//
// It is not a general serialization library: it has no streaming, no schema
// evolution beyond what CBOR's maps give structs, and no options. Framing
// (lengths, checksums) belongs to whoever stores or sends the bytes.
//
// # Usage
//
// Writing a value into a buffer someone else owns (an object-store buffer),
// with one copy of a large payload:
//
//	e, err := codec.Encode(v) // []byte and numeric slices: aliases v, copies nothing yet
//	if err != nil { ... }     // a func, a chan, a pointer cycle ...
//	buf := store.Create(id, e.Size())
//	e.WriteTo(buf)            // the one copy
//
// Or simply:
//
//	data, err := codec.Marshal(v)
//
// Reading it back:
//
//	x, err := codec.DecodeAs[[]float32](data) // aliases data when aligned
//	var job Job
//	err = codec.Unmarshal(data, &job)
//	v, err := codec.Decode(data, reflect.TypeFor[Result]()) // for callers holding a reflect.Type
//
// # Format
//
// Every encoding starts with an 8-byte header:
//
//	byte 0     'g' (0x67), the magic
//	byte 1     1, the version
//	byte 2     the format: 1 CBOR, 2 raw bytes, 3 raw numeric slice
//	byte 3     the element kind of a raw numeric slice, else 0:
//	           1 int8, 2 int16, 3 int32, 4 int64, 5 uint16, 6 uint32,
//	           7 uint64, 8 float32, 9 float64, 10 int, 11 uint
//	           (int and uint are 64-bit on the wire on every host)
//	bytes 4-7  reserved, zero
//
// then the payload: one CBOR data item (RFC 8949), or the bytes of a []byte,
// or the little-endian elements of a numeric slice. A []byte or one of the
// numeric slice types ([]int8, []int16, []int32, []int64, []int, []uint16,
// []uint32, []uint64, []uint, []float32, []float64; exactly those types, not
// named ones) takes the raw formats; every other value, nil included, is
// CBOR. A nil slice is CBOR null, so that nil and empty stay distinct.
// Decode rejects an unknown version, format, kind, or non-zero reserved
// byte, naming it, so the format can grow without old binaries
// misreading new bytes.
//
// # Zero copy
//
// The header is 8 bytes so that a raw payload is 8-byte aligned whenever
// the buffer is, and object-store buffers are 64-byte aligned. When Decode
// finds a raw payload whose address suits the element type, and the target
// is that slice type (or an interface), it returns a slice that aliases the
// input (unsafe.Slice over the payload): no copy, whatever the size. When
// the address is misaligned, or the host is big-endian, it copies.
//
// Only those whole-value raw payloads alias: a []byte inside a struct or a
// []any travels as a CBOR byte string and decodes as a copy.
//
// An aliased result shares the buffer it came from. In goray that buffer is
// shared object-store memory that other readers see too: treat the slice as
// read-only, and do not keep it past the buffer's lifetime (the object's
// release). Copy it (slices.Clone) to own it. Encode aliases in the other
// direction: the Encoded holds the caller's slice until WriteTo, so the
// caller must not modify it in between.
//
// # Interface-typed places and RegisterType
//
// CBOR says what a value is (a map, an array, an integer), not which Go type
// it had. Decoding into a typed place (a struct field of type Point) uses the
// Go type; decoding into an interface-typed place (a top-level any, a field
// of type any, the elements of a []any) uses the natural Go value:
// map[string]any for maps with string keys, and so for structs; map[any]any
// for other maps; []any; int64 (uint64 above MaxInt64, *big.Int beyond);
// float64; string; bool; time.Time; nil.
//
// To get a struct back as itself through an interface-typed place, register
// it once, at init, under a name that is stable across builds:
//
//	func init() { codec.RegisterType("geo.Point", Point{}) }
//
// Its values are then written with a CBOR tag derived from the name (a hash,
// so processes agree without sharing a table) and come back as Point, or as
// *Point if the sample was &Point{}.
//
// # Why CBOR, and why github.com/fxamacker/cbor
//
// CBOR is a compact, self-describing binary encoding with a standard
// (RFC 8949), typed integers and floats, byte strings, and tags, which carry
// registered types through interface-typed places without a side channel.
// fxamacker/cbor is maintained, fuzzed, and used in security-sensitive
// projects; above all its decoder takes explicit limits: nesting depth,
// array and map sizes, duplicate keys, indefinite lengths. The bytes a
// worker decodes come from another process and may be damaged, so the
// limits are set (see modes.go) and FuzzDecode checks that no input panics.
// Encode checks the same nesting limit, so what one process encodes another
// can decode, and a pointer cycle is an error rather than a crash.
//
// Encoding is deterministic: the same value always gives the same bytes
// (sorted map keys, shortest integers, floats at their Go width).
package codec
