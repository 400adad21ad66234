package codec_test

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/tensor"
)

// FuzzDecode feeds arbitrary bytes to Decode. Whatever the bytes, Decode must
// not panic, and every error must wrap ErrBadEncoding; whatever it decodes
// into any must survive being encoded again.
func FuzzDecode(f *testing.F) {
	for _, v := range []any{
		nil, 0, -1, int64(math.MaxInt64), uint64(math.MaxUint64), 1.5, float32(2), true, "s", "",
		[]byte("bytes"), []byte{}, []float64{1, 2}, []float32{1}, []int{-1}, []int8{1}, []uint16{2},
		Point{1, 2}, &Job{Name: "j", Args: []any{Point{}, "x", map[string]any{"k": 1}}},
		Envelope{Kind: "k", Payload: []any{map[int]string{1: "a"}}},
		map[string]any{"a": []any{1, "b", nil}, "m": map[string]int{"x": 1}},
		outer{ID: 1, Items: []inner{{Tags: []string{"t"}}}, ByName: map[string][]int{"a": {1}}},
		tensor.Zeros(tensor.Float16, 2, 3), tensor.Zeros(tensor.Int64), tensor.Zeros(tensor.Uint8, 0, 4),
	} {
		f.Add(mustMarshal(v))
	}
	targets := []reflect.Type{
		reflect.TypeFor[any](),
		reflect.TypeFor[int](),
		reflect.TypeFor[string](),
		reflect.TypeFor[[]byte](),
		reflect.TypeFor[[]float64](),
		reflect.TypeFor[Envelope](),
		reflect.TypeFor[outer](),
		reflect.TypeFor[map[string]any](),
		reflect.TypeFor[*Job](),
		reflect.TypeFor[*tensor.Tensor](),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range targets {
			v, err := codec.Decode(data, typ)
			if err != nil {
				if !errors.Is(err, codec.ErrBadEncoding) {
					t.Fatalf("Decode into %v: error %q does not wrap ErrBadEncoding", typ, err)
				}
				continue
			}
			if v.Type() != typ {
				t.Fatalf("Decode into %v returned a %v", typ, v.Type())
			}
			// Encoding what was decoded may fail (an unknown tag's content,
			// say) but must not panic; once encoded, decoding and encoding
			// again must give the same bytes.
			b1, err := codec.Marshal(v.Interface())
			if err != nil {
				continue
			}
			v2, err := codec.Decode(b1, typ)
			var dup *cbor.DupMapKeyError
			if errors.As(err, &dup) {
				// Two map keys that are different *big.Int pointers (from
				// bignum tags beyond 64 bits) encode alike: fine to refuse.
				continue
			}
			if err != nil {
				t.Fatalf("Decode into %v of our own encoding % x failed: %v", typ, b1, err)
			}
			b2, err := codec.Marshal(v2.Interface())
			if err != nil || !bytes.Equal(b1, b2) {
				t.Fatalf("into %v: encoding not stable: % x, then % x (%v)", typ, b1, b2, err)
			}
		}
	})
}
