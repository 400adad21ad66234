package codec

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
)

// TestScalarMatchesLibrary: the hand-written scalar encodings are the bytes
// the library writes, so a value's encoding does not depend on whether it
// sits at the top level or inside a struct.
func TestScalarMatchesLibrary(t *testing.T) {
	values := []any{
		0, 1, 23, 24, 255, 256, 65535, 65536, int64(math.MaxUint32), int64(math.MaxUint32 + 1), math.MaxInt,
		-1, -24, -25, -256, -257, -65537, math.MinInt,
		int8(-128), int16(-300), int32(math.MinInt32), int64(math.MaxInt64),
		uint(7), uint8(200), uint16(300), uint32(70000), uint64(math.MaxUint64),
		0.0, -0.0, 1.5, math.Inf(1), math.NaN(), float32(2.5), float32(math.Inf(-1)),
		true, false, "", "x", strings.Repeat("y", 23), strings.Repeat("z", 24), strings.Repeat("w", 300), "\xff",
	}
	m := current.Load()
	for _, v := range values {
		fast, ok := encodeScalar(v)
		if !ok {
			t.Fatalf("encodeScalar(%T) not handled", v)
		}
		lib, err := m.em.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast[headerSize:], lib) {
			t.Errorf("%T %v: fast path % x, library % x", v, v, fast[headerSize:], lib)
		}
		// And the fast decode paths agree with the library's decoding.
		for _, ptr := range []any{new(int), new(int64), new(uint64), new(float64), new(bool), new(string), new(any)} {
			fastPtr := reflect.New(reflect.TypeOf(ptr).Elem())
			libPtr := reflect.New(reflect.TypeOf(ptr).Elem())
			handled := decodeScalar(lib, fastPtr.Interface())
			libErr := m.dm.Unmarshal(lib, libPtr.Interface())
			if x, changed, _ := m.normalize(libPtr.Elem().Interface()); changed && libPtr.Elem().Kind() == reflect.Interface {
				libPtr.Elem().Set(reflect.ValueOf(x))
			}
			if !handled {
				continue
			}
			if libErr != nil {
				t.Errorf("%T %v into %s: fast path decoded %v, library failed: %v", v, v, libPtr.Elem().Type(), fastPtr.Elem(), libErr)
				continue
			}
			if f, l := fastPtr.Elem().Interface(), libPtr.Elem().Interface(); !reflect.DeepEqual(f, l) && !bothNaN(f, l) {
				t.Errorf("%T %v into %s: fast path %#v, library %#v", v, v, libPtr.Elem().Type(), f, l)
			}
		}
	}
}

func bothNaN(a, b any) bool {
	fa, ok1 := a.(float64)
	fb, ok2 := b.(float64)
	return ok1 && ok2 && math.IsNaN(fa) && math.IsNaN(fb)
}

// TestElementwisePath forces the copy path that big-endian hosts take and
// checks it decodes and encodes the same values.
func TestElementwisePath(t *testing.T) {
	values := []any{
		[]int8{-1, 2}, []int16{-1, 300}, []int32{-1, 70000}, []int64{-1, math.MinInt64},
		[]int{-1, math.MaxInt}, []uint16{1, 65535}, []uint32{1, math.MaxUint32},
		[]uint64{math.MaxUint64}, []uint{math.MaxUint}, []float32{1.5, -2}, []float64{math.Pi},
	}
	var encodings [][]byte
	for _, v := range values {
		b, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		encodings = append(encodings, b)
	}
	hostLittleEndian = false
	defer func() { hostLittleEndian = true }()
	for i, v := range values {
		b, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, encodings[i]) {
			t.Errorf("%T: element-by-element encoding % x, aliased % x", v, b, encodings[i])
		}
		got, err := Decode(b, reflect.TypeOf(v))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Interface(), v) {
			t.Errorf("%T: element-by-element decoding %v, want %v", v, got, v)
		}
		if got.Pointer() == uintptr(unsafe.Pointer(&b[headerSize])) {
			t.Errorf("%T: element-by-element decoding aliased the buffer", v)
		}
	}
}

func TestTagsInPrivateRange(t *testing.T) {
	for _, name := range []string{"", "a", "codec_test.Point", "mypkg.Point"} {
		tag := tagFor(name)
		if tag < tagBase || tag >= tagBase+tagSpan || tag != tagFor(name) {
			t.Errorf("tagFor(%q) = %d, outside [%d, %d) or unstable", name, tag, uint64(tagBase), uint64(tagBase+tagSpan))
		}
	}
	// The head of a tag in the range is 5 bytes.
	type probe struct{ A int }
	ts := cbor.NewTagSet()
	if err := ts.Add(cbor.TagOptions{EncTag: cbor.EncTagRequired, DecTag: cbor.DecTagRequired}, reflect.TypeFor[probe](), tagFor("x")); err != nil {
		t.Fatal(err)
	}
	em, _ := encOptions.EncModeWithTags(ts)
	b, _ := em.Marshal(probe{})
	if b[0] != 0xda {
		t.Errorf("tag head starts % x, want 0xda (a 4-byte tag number)", b[:5])
	}
}

func TestStaticNesting(t *testing.T) {
	type flat struct {
		A int
		B []byte
		C map[string][]int
	}
	type embeds struct {
		flat
		D string
	}
	type rec struct{ Next *rec }
	type stamped struct {
		At   time.Time
		Tags []string
	}
	m := current.Load()
	for _, c := range []struct {
		typ  reflect.Type
		want nestInfo
	}{
		{reflect.TypeFor[int](), leafNesting},
		{reflect.TypeFor[[]byte](), leafNesting},
		{reflect.TypeFor[[][]float64](), nestInfo{depth: 2, bounded: true}},
		{reflect.TypeFor[flat](), nestInfo{depth: 3, bounded: true}},
		{reflect.TypeFor[embeds](), nestInfo{depth: 3, bounded: true}},
		{reflect.TypeFor[*flat](), nestInfo{depth: 3, bounded: true}},
		{reflect.TypeFor[rec](), nestInfo{}},
		{reflect.TypeFor[stamped](), nestInfo{depth: 2, bounded: true, hasTime: true}},
		{reflect.TypeFor[[]stamped](), nestInfo{depth: 3, bounded: true, hasTime: true}},
		{reflect.TypeFor[[]any](), nestInfo{}},
	} {
		if got := m.staticNesting(c.typ); got != c.want {
			t.Errorf("staticNesting(%v) = %+v, want %+v", c.typ, got, c.want)
		}
	}
}
