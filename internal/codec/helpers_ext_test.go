package codec_test

import (
	"unsafe"

	"github.com/goray/goray/internal/codec"
)

// Types registered for the tests. Each test binary registers once, in init,
// as real programs do.

type Point struct{ X, Y int }

type Job struct {
	Name string
	Args []any
}

type Envelope struct {
	Kind    string
	Payload any
}

type Celsius float64

type Vec []float64

func init() {
	codec.RegisterType("codec_test.Point", Point{})
	codec.RegisterType("codec_test.Job", &Job{}) // pointer form: interface places get *Job
}

// at copies data into fresh memory that starts off bytes after an 8-byte
// boundary, so tests control the alignment Decode sees.
func at(data []byte, off int) []byte {
	words := make([]uint64, (len(data)+off+7)/8+1)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	out := buf[off : off+len(data) : off+len(data)]
	copy(out, data)
	return out
}

// aliases reports whether s starts at data's payload, i.e. Decode did not copy.
func aliases[T any](s []T, data []byte) bool {
	return len(s) > 0 && unsafe.Pointer(unsafe.SliceData(s)) == unsafe.Pointer(&data[8])
}

func mustMarshal(v any) []byte {
	b, err := codec.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
