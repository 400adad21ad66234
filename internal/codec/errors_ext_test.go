package codec_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/goray/goray/internal/codec"
)

func TestMismatchErrors(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		target  reflect.Type
		message string // the exact message, or a fragment when prefixed by "~"
	}{
		{"raw float32 into []float64", mustMarshal([]float32{1}), reflect.TypeFor[[]float64](),
			"codec: decode into []float64: payload is raw []float32 (element kind float32): decode into []float32 or convert"},
		{"raw int into []int64", mustMarshal([]int{1}), reflect.TypeFor[[]int64](),
			"codec: decode into []int64: payload is raw []int (element kind int): decode into []int or convert"},
		{"raw bytes into int", mustMarshal([]byte{1}), reflect.TypeFor[int](),
			"codec: decode into int: payload is raw []byte: decode into []byte, string or any"},
		{"raw numeric into fmt.Stringer", mustMarshal([]int32{1}), reflect.TypeFor[interface{ String() string }](),
			"~payload is raw []int32"},
		{"CBOR string into int", mustMarshal("five"), reflect.TypeFor[int](),
			"~codec: decode into int: cbor: cannot unmarshal UTF-8 text string into Go value of type int"},
		{"CBOR int into string", mustMarshal(5), reflect.TypeFor[string](), "~codec: decode into string: "},
		{"CBOR struct into []int", mustMarshal(Point{}), reflect.TypeFor[[]int](), "~codec: decode into []int: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := codec.Decode(tc.data, tc.target)
			if err == nil {
				t.Fatal("Decode succeeded; want a mismatch error")
			}
			if !errors.Is(err, codec.ErrBadEncoding) || !errors.Is(err, codec.ErrTypeMismatch) {
				t.Errorf("error %q does not wrap ErrBadEncoding and ErrTypeMismatch", err)
			}
			if frag, ok := strings.CutPrefix(tc.message, "~"); ok {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("error %q does not contain %q", err, frag)
				}
			} else if err.Error() != tc.message {
				t.Errorf("error\n got %q\nwant %q", err, tc.message)
			}
		})
	}
	_, err := codec.DecodeAs[int](mustMarshal("five"))
	var ute *cbor.UnmarshalTypeError
	if !errors.As(err, &ute) {
		t.Errorf("CBOR mismatch error %q does not wrap *cbor.UnmarshalTypeError", err)
	}
}

func TestBadEncodingErrors(t *testing.T) {
	good := mustMarshal(Point{1, 2})
	raw := mustMarshal([]float64{1, 2})
	with := func(b []byte, i int, v byte) []byte {
		b = bytes.Clone(b)
		b[i] = v
		return b
	}
	tests := []struct {
		name string
		data []byte
		want string // a fragment of the message
	}{
		{"empty", nil, "0 bytes is too short for the 8-byte header"},
		{"truncated header", good[:5], "5 bytes is too short for the 8-byte header"},
		{"bad magic", with(good, 0, 'x'), "bad magic byte 0x78"},
		{"bad version", with(good, 1, 2), "encoding version 2, but this binary reads version 1"},
		{"unknown format", with(good, 2, 9), "unknown payload format 9"},
		{"format zero", with(good, 2, 0), "unknown payload format 0"},
		{"kind on CBOR", with(good, 3, 1), "element kind 1 in a CBOR payload"},
		{"kind on bytes", with(mustMarshal([]byte{1}), 3, 4), "element kind 4 in a raw bytes payload"},
		{"unknown kind", with(raw, 3, 99), "unknown element kind 99"},
		{"no kind", with(raw, 3, 0), "unknown element kind 0"},
		{"reserved byte", with(good, 6, 1), "reserved header bytes 4..7 are 00 00 01 00"},
		{"ragged numeric", raw[:len(raw)-3], "raw []float64 payload of 13 bytes is not a multiple of the element size 8"},
		{"empty CBOR body", good[:8], "bad CBOR payload"},
		{"truncated CBOR", good[:len(good)-1], "bad CBOR payload"},
		{"trailing bytes", append(bytes.Clone(good), 0), "bad CBOR payload"},
		{"duplicate map key", append(bytes.Clone(good[:8]), 0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02), "duplicate map key"},
		{"indefinite length", append(bytes.Clone(good[:8]), 0x9f, 0xff), "bad CBOR payload"},
	}
	targets := []reflect.Type{reflect.TypeFor[any](), reflect.TypeFor[Point](), reflect.TypeFor[[]float64](), reflect.TypeFor[map[string]int]()}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, typ := range targets {
				_, err := codec.Decode(tc.data, typ)
				if err == nil {
					if tc.name == "duplicate map key" && typ == reflect.TypeFor[Point]() {
						continue // no field named "a": skipped before duplicates matter
					}
					t.Fatalf("Decode into %v succeeded; want an error", typ)
				}
				if !errors.Is(err, codec.ErrBadEncoding) {
					t.Errorf("error %q does not wrap ErrBadEncoding", err)
				}
				if !strings.HasPrefix(err.Error(), "codec: decode into "+typ.String()+": ") {
					t.Errorf("error %q does not start by naming the target %v", err, typ)
				}
				if tc.name != "duplicate map key" && typ != reflect.TypeFor[map[string]int]() && !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not contain %q", err, tc.want)
				}
			}
		})
	}
}

func TestUnmarshal(t *testing.T) {
	m := map[string]int{"old": 1}
	if err := codec.Unmarshal(mustMarshal(map[string]int{"new": 2}), &m); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, map[string]int{"new": 2}) {
		t.Fatalf("Unmarshal merged instead of replacing: %v", m)
	}
	p := Point{X: 9, Y: 9}
	if err := codec.Unmarshal(mustMarshal(map[string]int{"X": 1}), &p); err != nil {
		t.Fatal(err)
	}
	if p != (Point{X: 1}) {
		t.Fatalf("Unmarshal into a used struct = %+v, want {X:1 Y:0}", p)
	}
	str := "stale"
	if err := codec.Unmarshal(mustMarshal(nil), &str); err != nil || str != "" {
		t.Fatalf("Unmarshal of nil into a used string = %q, %v; want \"\"", str, err)
	}
	var a any = "stale"
	if err := codec.Unmarshal(mustMarshal(3), &a); err != nil || a != int64(3) {
		t.Fatalf("Unmarshal into any = %#v, %v", a, err)
	}
	for _, bad := range []any{nil, 3, (*int)(nil)} {
		err := codec.Unmarshal(mustMarshal(3), bad)
		if err == nil || !errors.Is(err, codec.ErrBadEncoding) || !strings.Contains(err.Error(), "non-nil pointer") {
			t.Errorf("Unmarshal(_, %#v) = %v; want a non-nil-pointer error", bad, err)
		}
	}
	if _, err := codec.Decode(mustMarshal(3), nil); err == nil {
		t.Error("Decode with a nil type succeeded")
	}
}

func TestEncodeRejects(t *testing.T) {
	type withChan struct {
		Name string
		Done chan int
	}
	type withSkippedChan struct {
		Name string
		Done chan int `cbor:"-"`
	}
	type node struct {
		Next *node
		V    int
	}
	cyclic := &node{}
	cyclic.Next = cyclic
	selfSlice := make([]any, 1)
	selfSlice[0] = selfSlice
	selfMap := map[string]any{}
	selfMap["me"] = selfMap
	type ptrLoop *ptrLoop
	var pl ptrLoop
	pl = &pl

	tests := []struct {
		name string
		v    any
		want string
	}{
		{"chan", make(chan int), "codec: encode chan int: type cannot be encoded: send plain data (structs, slices, maps, numbers, strings)"},
		{"func", func() {}, "codec: encode func(): type cannot be encoded: send plain data (structs, slices, maps, numbers, strings)"},
		{"complex", complex(1, 2), "codec: encode complex128: type cannot be encoded"},
		{"struct field", withChan{}, "codec: encode codec_test.withChan: Done has type chan int, which cannot be encoded"},
		{"nested field", []withChan{{}}, "codec: encode []codec_test.withChan: [].Done has type chan int"},
		{"behind interface", []any{1, make(chan int)}, "codec: encode []interface {}: it holds a chan int, which cannot be encoded"},
		{"pointer cycle", cyclic, "codec: encode *codec_test.node: value nests deeper than 64 levels"},
		{"slice cycle", selfSlice, "value nests deeper than 64 levels"},
		{"map cycle", selfMap, "value nests deeper than 64 levels"},
		{"pointer-only cycle", pl, "value nests deeper than 64 levels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := codec.Encode(tc.v)
			if err == nil {
				t.Fatal("Encode succeeded; want an error")
			}
			if !errors.Is(err, codec.ErrUnsupportedType) {
				t.Errorf("error %q does not wrap ErrUnsupportedType", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "codec: encode ") {
				t.Errorf("error\n got %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
	type stamped struct{ At time.Time }
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, v := range []any{far, stamped{At: far}, []any{far}, &stamped{At: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}} {
		_, err := codec.Encode(v)
		if !errors.Is(err, codec.ErrUnsupportedType) || !strings.Contains(err.Error(), "outside years 0..9999") {
			t.Errorf("Encode(%v) = %v; want an error about the year", v, err)
		}
	}
	if _, err := codec.Encode(stamped{At: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}); err != nil {
		t.Errorf("a time in year 9999 must encode: %v", err)
	}
	if _, err := codec.Encode(withSkippedChan{Name: "ok"}); err != nil {
		t.Errorf("a chan field tagged cbor:\"-\" is not encoded, so it must not fail: %v", err)
	}
}

// TestNestingLimit: what Encode accepts, Decode accepts, and one level more
// fails at Encode.
func TestNestingLimit(t *testing.T) {
	nest := func(levels int) any {
		var v any = 1
		for range levels {
			v = []any{v}
		}
		return v
	}
	data, err := codec.Marshal(nest(64))
	if err != nil {
		t.Fatalf("64 levels: %v", err)
	}
	if _, err := codec.DecodeAs[any](data); err != nil {
		t.Fatalf("64 levels do not decode: %v", err)
	}
	if _, err := codec.Marshal(nest(65)); !errors.Is(err, codec.ErrUnsupportedType) {
		t.Fatalf("65 levels: err = %v; want ErrUnsupportedType", err)
	}
	// A registered type's tag is a level too.
	var v any = Point{}
	for range 62 {
		v = []any{v}
	}
	if data, err = codec.Marshal(v); err != nil {
		t.Fatalf("62 levels around a registered struct: %v", err)
	}
	if _, err := codec.DecodeAs[any](data); err != nil {
		t.Fatalf("62 levels around a registered struct do not decode: %v", err)
	}
	if _, err := codec.Marshal([]any{v}); err == nil {
		t.Fatal("63 levels around a registered struct (65 with its map and tag) encoded")
	}
	// Data too deep for the decoder, written by hand, fails cleanly.
	deep := append([]byte{'g', 1, 1, 0, 0, 0, 0, 0}, bytes.Repeat([]byte{0x81}, 65)...)
	if _, err := codec.DecodeAs[any](append(deep, 0x01)); !errors.Is(err, codec.ErrBadEncoding) {
		t.Fatalf("65 levels of CBOR: err = %v", err)
	}
}

// TestBignumKeyDuplicates: the library compares *big.Int map keys by
// pointer; equal ones must still be duplicates.
func TestBignumKeyDuplicates(t *testing.T) {
	hdr := []byte{'g', 1, 1, 0, 0, 0, 0, 0}
	big70 := []byte{0xc2, 0x49, 0x40, 0, 0, 0, 0, 0, 0, 0, 0} // tag 2: 2^70
	anyT, mapT, envT := reflect.TypeFor[any](), reflect.TypeFor[map[any]int](), reflect.TypeFor[Envelope]()
	for _, c := range []struct {
		name    string
		body    []byte
		targets []reflect.Type
	}{
		{"two equal bignums", append(append(append([]byte{0xa2}, big70...), 0x01), append(big70, 0x02)...), []reflect.Type{anyT, mapT}},
		{"bignum equal to an int", []byte{0xa2, 0x20, 0x01, 0xc3, 0x40, 0x02}, []reflect.Type{anyT, mapT}}, // -1, and tag 3 of no bytes (-1)
		{"equal bignums in a field", append([]byte{0xa2, 0x67, 'P', 'a', 'y', 'l', 'o', 'a', 'd', 0xa2},
			append(append(append(big70, 0x01), append(big70, 0x02)...), 0x64, 'K', 'i', 'n', 'd', 0x60)...), []reflect.Type{anyT, envT}},
	} {
		for _, typ := range c.targets {
			_, err := codec.Decode(append(hdr, c.body...), typ)
			if !errors.Is(err, codec.ErrBadEncoding) || !strings.Contains(err.Error(), "duplicate map key") {
				t.Errorf("%s into %v: err = %v; want a duplicate map key error", c.name, typ, err)
			}
		}
	}
}
