package codec_test

import (
	"testing"

	"github.com/goray/goray/internal/codec"
)

type benchStruct struct {
	ID     int64
	Name   string
	Scores []float64
	Tags   map[string]string
}

var sinkBytes []byte

func BenchmarkEncodeInt(b *testing.B) {
	b.ReportAllocs()
	for i := range b.N {
		data, err := codec.Marshal(i)
		if err != nil {
			b.Fatal(err)
		}
		sinkBytes = data
	}
}

func BenchmarkDecodeInt(b *testing.B) {
	data := mustMarshal(123456789)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := codec.DecodeAs[int](data); err != nil {
			b.Fatal(err)
		}
	}
}

func benchValue() benchStruct {
	return benchStruct{ID: 42, Name: "task-42", Scores: []float64{1, 2, 3}, Tags: map[string]string{"node": "n1"}}
}

func BenchmarkEncodeStruct(b *testing.B) {
	v := benchValue()
	b.ReportAllocs()
	for b.Loop() {
		data, err := codec.Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		sinkBytes = data
	}
}

func BenchmarkDecodeStruct(b *testing.B) {
	data := mustMarshal(benchValue())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := codec.DecodeAs[benchStruct](data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeRaw1MiB is the path a large argument takes into the object
// store: Encode (no copy), then one copy by WriteTo into the store's buffer.
func BenchmarkEncodeRaw1MiB(b *testing.B) {
	src := make([]float64, 1<<17) // 1 MiB
	for i := range src {
		src[i] = float64(i)
	}
	dst := make([]byte, 8+len(src)*8)
	b.SetBytes(int64(len(src) * 8))
	b.ReportAllocs()
	for b.Loop() {
		e, err := codec.Encode(src)
		if err != nil {
			b.Fatal(err)
		}
		e.WriteTo(dst)
	}
}

// BenchmarkDecodeRaw1MiB is the matching read: an aligned buffer aliases.
func BenchmarkDecodeRaw1MiB(b *testing.B) {
	data := at(mustMarshal(make([]float64, 1<<17)), 0)
	b.SetBytes(int64(len(data) - 8))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := codec.DecodeAs[[]float64](data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeAnyMap(b *testing.B) {
	data := mustMarshal(map[string]any{"a": 1, "b": "two", "c": []any{1.5, true}, "d": map[string]int{"x": 1}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := codec.DecodeAs[any](data); err != nil {
			b.Fatal(err)
		}
	}
}
