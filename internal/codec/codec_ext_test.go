package codec_test

import (
	"bytes"
	"math"
	"math/big"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/internal/codec"
)

type inner struct {
	Tags  []string
	Score map[string]float64
}

type outer struct {
	ID      int64
	Name    string
	Inner   inner
	Items   []inner
	ByName  map[string][]int
	Ptr     *inner
	Blob    []byte
	private int // skipped by the encoder
}

// TestRoundTrip decodes each value into its own type and expects it back.
func TestRoundTrip(t *testing.T) {
	n := 7
	pn := &n
	tests := []struct {
		name string
		v    any
	}{
		{"int zero", 0},
		{"int", -123456},
		{"int max", math.MaxInt},
		{"int min", math.MinInt},
		{"int8", int8(-128)},
		{"int16", int16(math.MaxInt16)},
		{"int32", int32(math.MinInt32)},
		{"int64", int64(math.MinInt64)},
		{"uint", uint(math.MaxUint)},
		{"uint8", uint8(255)},
		{"uint16", uint16(65535)},
		{"uint32", uint32(math.MaxUint32)},
		{"uint64", uint64(math.MaxUint64)},
		{"float32", float32(1.25)},
		{"float64", math.Pi},
		{"float64 inf", math.Inf(-1)},
		{"float64 tiny", math.SmallestNonzeroFloat64},
		{"bool", true},
		{"string empty", ""},
		{"string", "héllo, wörld"},
		{"string invalid utf8", "\xff\xfe\x00"},
		{"bytes", []byte{1, 2, 3}},
		{"bytes empty", []byte{}},
		{"int8s", []int8{-1, 2, math.MinInt8}},
		{"int16s", []int16{-1, 2, math.MaxInt16}},
		{"int32s", []int32{-1, 2, math.MinInt32}},
		{"int64s", []int64{-1, 2, math.MaxInt64}},
		{"ints", []int{-1, 2, math.MinInt}},
		{"uint16s", []uint16{1, 65535}},
		{"uint32s", []uint32{1, math.MaxUint32}},
		{"uint64s", []uint64{1, math.MaxUint64}},
		{"uints", []uint{1, math.MaxUint}},
		{"float32s", []float32{1.5, -0, float32(math.Inf(1))}},
		{"float64s", []float64{1.5, math.MaxFloat64}},
		{"float64s empty", []float64{}},
		{"named slice", Vec{1, 2}},
		{"named elements", []Celsius{21.5, -4}},
		{"struct", outer{
			ID: 1, Name: "o",
			Inner:  inner{Tags: []string{"a", "b"}, Score: map[string]float64{"x": 1}},
			Items:  []inner{{Tags: []string{"c"}}, {}},
			ByName: map[string][]int{"k": {1, 2}, "empty": {}},
			Ptr:    &inner{Tags: []string{"p"}},
			Blob:   []byte("blob"),
		}},
		{"map[string]int", map[string]int{"a": 1, "b": -2}},
		{"map[int]string", map[int]string{1: "a", -2: "b"}},
		{"pointer", pn},
		{"pointer to struct", &Point{1, 2}},
		{"registered", Point{3, 4}},
		{"strings", []string{"a", "", "c"}},
		{"array", [3]int{1, 2, 3}},
		{"duration", 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := codec.Marshal(tc.v)
			if err != nil {
				t.Fatalf("Marshal(%#v): %v", tc.v, err)
			}
			got, err := codec.Decode(data, reflect.TypeOf(tc.v))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := tc.v
			if o, ok := want.(outer); ok {
				o.private = 0
				want = o
			}
			if !reflect.DeepEqual(got.Interface(), want) {
				t.Fatalf("round trip of %T:\n got %#v\nwant %#v", tc.v, got.Interface(), want)
			}
		})
	}
}

func TestRoundTripNilAndNaN(t *testing.T) {
	var nilInts []int
	for _, v := range []any{nil, nilInts, []byte(nil), map[string]int(nil), (*Point)(nil)} {
		data := mustMarshal(v)
		if codec.IsRaw(data) {
			t.Errorf("Marshal(%#v) is raw; nil must travel as CBOR null", v)
		}
		got, err := codec.DecodeAs[any](data)
		if err != nil || got != nil {
			t.Errorf("DecodeAs[any](Marshal(%#v)) = %#v, %v; want nil", v, got, err)
		}
	}
	ints, err := codec.DecodeAs[[]int](mustMarshal(nilInts))
	if err != nil || ints != nil {
		t.Errorf("nil []int came back as %#v, %v", ints, err)
	}
	empty, err := codec.DecodeAs[[]int](mustMarshal([]int{}))
	if err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("empty []int came back as %#v, %v; want empty, not nil", empty, err)
	}
	nan, err := codec.DecodeAs[float64](mustMarshal(math.NaN()))
	if err != nil || !math.IsNaN(nan) {
		t.Errorf("NaN came back as %v, %v", nan, err)
	}
}

func TestTimeRoundTrip(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.FixedZone("X", 3600))
	got, err := codec.DecodeAs[time.Time](mustMarshal(now))
	if err != nil || !got.Equal(now) {
		t.Fatalf("time.Time came back as %v, %v; want %v", got, err, now)
	}
	anyT, err := codec.DecodeAs[any](mustMarshal([]any{now}))
	if err != nil {
		t.Fatal(err)
	}
	if tt, ok := anyT.([]any)[0].(time.Time); !ok || !tt.Equal(now) {
		t.Fatalf("time.Time in []any came back as %#v; want a time.Time equal to %v", anyT, now)
	}
}

// TestDecodeIntoAny checks the natural decoding of each value into an
// interface-typed target.
func TestDecodeIntoAny(t *testing.T) {
	type plain struct {
		A int
		B []string
	}
	tests := []struct {
		name string
		v    any
		want any
	}{
		{"int", 5, int64(5)},
		{"big int", 1000000, int64(1000000)},
		{"negative", -3, int64(-3)},
		{"uint64 above MaxInt64", uint64(math.MaxUint64), uint64(math.MaxUint64)},
		{"float32", float32(1.5), 1.5},
		{"float64", 2.5, 2.5},
		{"string", "s", "s"},
		{"bool", false, false},
		{"bytes", []byte{9}, []byte{9}},
		{"float32s", []float32{1, 2}, []float32{1, 2}},
		{"ints", []int{1, 2}, []int{1, 2}},
		{"uint16s", []uint16{7}, []uint16{7}},
		{"string keys", map[string]int{"a": 1}, map[string]any{"a": int64(1)}},
		{"int keys", map[int]string{1: "a"}, map[any]any{int64(1): "a"}},
		{"nested maps", map[string]any{"m": map[string]int{"k": 1}, "l": []any{map[string]bool{"t": true}}},
			map[string]any{"m": map[string]any{"k": int64(1)}, "l": []any{map[string]any{"t": true}}}},
		{"unregistered struct", plain{A: 1, B: []string{"x"}}, map[string]any{"A": int64(1), "B": []any{"x"}}},
		{"registered value", Point{1, 2}, Point{1, 2}},
		{"registered via pointer", &Point{1, 2}, Point{1, 2}},
		{"pointer-registered value", Job{Name: "j"}, &Job{Name: "j"}},
		{"pointer-registered", &Job{Name: "j", Args: []any{Point{5, 6}, map[string]any{"k": "v"}, uint64(1 << 63)}},
			&Job{Name: "j", Args: []any{Point{5, 6}, map[string]any{"k": "v"}, uint64(1 << 63)}}},
		{"[]any of registered", []any{Point{1, 2}, "x", &Job{Name: "j"}, nil},
			[]any{Point{1, 2}, "x", &Job{Name: "j"}, nil}},
		{"map of registered", map[string]any{"p": Point{7, 8}}, map[string]any{"p": Point{7, 8}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := codec.DecodeAs[any](mustMarshal(tc.v))
			if err != nil {
				t.Fatalf("DecodeAs[any]: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("into any:\n got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestInterfaceFieldHoldsRegisteredType(t *testing.T) {
	in := Envelope{Kind: "point", Payload: Point{1, 2}}
	got, err := codec.DecodeAs[Envelope](mustMarshal(in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("got %#v, want %#v", got, in)
	}
	// Fields of type any inside typed targets follow the same conventions.
	in = Envelope{Kind: "map", Payload: map[string]any{"job": &Job{Name: "j"}, "n": 1}}
	got, err = codec.DecodeAs[Envelope](mustMarshal(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Envelope{Kind: "map", Payload: map[string]any{"job": &Job{Name: "j"}, "n": int64(1)}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
	typed, err := codec.DecodeAs[map[string][]any](mustMarshal(map[string][]any{"k": {map[string]int{"a": 1}}}))
	if err != nil {
		t.Fatal(err)
	}
	if wantTyped := map[string][]any{"k": {map[string]any{"a": int64(1)}}}; !reflect.DeepEqual(typed, wantTyped) {
		t.Fatalf("got %#v, want %#v", typed, wantTyped)
	}
}

func TestDeterministic(t *testing.T) {
	m := map[string]any{}
	for i := range 100 {
		m[strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('A'+i/26))] = i
	}
	first := mustMarshal(m)
	for range 20 {
		if !bytes.Equal(mustMarshal(m), first) {
			t.Fatal("two encodings of the same map differ")
		}
	}
}

// TestNaNKeys: maps whose keys include NaN keep their size through the
// conversions applied in interface-typed places (a NaN key is never found
// again, so rewriting m[k] would add entries).
func TestNaNKeys(t *testing.T) {
	nan := math.NaN()
	in := map[any]any{nan: uint64(math.MaxUint64), 1: Point{}}
	in[nan] = Job{} // a second NaN key; Job comes back as *Job
	got, err := codec.DecodeAs[any](mustMarshal(in))
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := got.(map[any]any); !ok || len(m) != 3 {
		t.Fatalf("got %#v; want a map[any]any of 3 entries", got)
	}
	typed, err := codec.DecodeAs[map[float64]any](mustMarshal(map[float64]any{nan: Job{}, math.NaN(): 1, 2: Job{}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(typed) != 3 || !reflect.DeepEqual(typed[2], &Job{}) {
		t.Fatalf("got %#v; want 3 entries with *Job values", typed)
	}
}

func TestBigIntsIntoAny(t *testing.T) {
	huge, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	got, err := codec.DecodeAs[any](mustMarshal([]any{huge, big.NewInt(-5), new(big.Int).SetUint64(math.MaxUint64)}))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{huge, int64(-5), uint64(math.MaxUint64)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

// TestConcurrentUse runs encoders and decoders while types are registered;
// run it with -race.
func TestConcurrentUse(t *testing.T) {
	type late1 struct{ A int }
	type late2 struct{ B string }
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				v := Envelope{Kind: "k", Payload: []any{Point{g, i}, []float64{float64(i)}}}
				got, err := codec.DecodeAs[Envelope](mustMarshal(v))
				if err != nil {
					t.Error(err)
					return
				}
				if !reflect.DeepEqual(got.Payload.([]any)[0], Point{g, i}) {
					t.Errorf("got %#v", got)
					return
				}
			}
		})
	}
	wg.Go(func() {
		codec.RegisterType("codec_test.late1", late1{})
		codec.RegisterType("codec_test.late2", &late2{})
	})
	wg.Wait()
	got, err := codec.DecodeAs[any](mustMarshal(late1{A: 1}))
	if err != nil || got != (late1{A: 1}) {
		t.Fatalf("type registered late: got %#v, %v", got, err)
	}
}
