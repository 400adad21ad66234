package dag

import (
	"bytes"
	"reflect"
	"testing"
	"unsafe"

	"github.com/goray/goray/internal/codec"
)

func encodeAll(t testing.TB, vs ...any) []codec.Encoded {
	var out []codec.Encoded
	for _, v := range vs {
		e, err := codec.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// Every attribute of an input message starts 8-byte aligned (relative to
// the message), so numeric slices decode in place.
func TestFramesAligned(t *testing.T) {
	frames := encodeAll(t, "odd", []float32{1, 2, 3}, []byte("12345"), int64(7))
	msg := make([]byte, msgHdr, 256)
	putHeader(msg, tagValue)
	msg = appendFrames(msg, frames)
	aligned := make([]byte, len(msg)+64)
	off := (8 - int(uintptr(unsafe.Pointer(&aligned[0]))%8)) % 8
	buf := aligned[off : off+len(msg)]
	copy(buf, msg)
	got, err := splitFrames(nil, buf[msgHdr:])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(frames) {
		t.Fatalf("%d frames, want %d", len(got), len(frames))
	}
	for i, f := range got {
		if uintptr(unsafe.Pointer(&f[0]))%8 != 0 {
			t.Errorf("frame %d is not 8-byte aligned", i)
		}
		if !bytes.Equal(f, frames[i].Bytes()) {
			t.Errorf("frame %d: % x, want % x", i, f, frames[i].Bytes())
		}
	}
	v, err := codec.Decode(got[1], reflect.TypeFor[[]float32]())
	if err != nil {
		t.Fatal(err)
	}
	if s := v.Interface().([]float32); unsafe.Pointer(&s[0]) != unsafe.Pointer(&got[1][8]) {
		t.Error("the []float32 attribute was copied, not aliased")
	}
}

// splitFrames reads bytes written by another process: whatever they are,
// it returns frames within them or an error, and never panics.
func FuzzSplitFrames(f *testing.F) {
	f.Add(appendFrames(nil, encodeAll(f, "a", []float64{1}, nil)))
	f.Add(appendFrames(nil, nil))
	f.Add([]byte{})
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, err := splitFrames(nil, b)
		if err != nil {
			return
		}
		total := 8
		for _, fr := range frames {
			total += 8 + len(fr)
		}
		if total > len(b) {
			t.Fatalf("frames of %d bytes from %d", total, len(b))
		}
	})
}
