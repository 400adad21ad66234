package codec_test

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/goray/goray/internal/codec"
)

func TestRawAliasing(t *testing.T) {
	check := func(t *testing.T, name string, src any) {
		t.Helper()
		data := mustMarshal(src)
		if !codec.IsRaw(data) {
			t.Fatalf("%s: Marshal(%T) is not raw", name, src)
		}
		aligned, misaligned := at(data, 0), at(data, 1)
		for _, c := range []struct {
			data  []byte
			alias bool
		}{{aligned, true}, {misaligned, false}} {
			for _, typ := range []reflect.Type{reflect.TypeOf(src), reflect.TypeFor[any]()} {
				v, err := codec.Decode(c.data, typ)
				if err != nil {
					t.Fatalf("%s: Decode into %v: %v", name, typ, err)
				}
				got := v.Interface()
				if !reflect.DeepEqual(got, src) {
					t.Fatalf("%s: Decode into %v = %#v, want %#v", name, typ, got, src)
				}
				ptr := reflect.ValueOf(got).Pointer()
				aliased := ptr == uintptr(reflect.ValueOf(&c.data[8]).Pointer())
				// One-byte elements are always aligned; a 32-bit host's int
				// and uint are narrower than their 64-bit wire form.
				elem := reflect.TypeOf(src).Elem()
				wantAlias := c.alias || elem.Size() == 1
				if k := elem.Kind(); (k == reflect.Int || k == reflect.Uint) && strconv.IntSize == 32 {
					wantAlias = false
				}
				if aliased != wantAlias {
					t.Fatalf("%s: Decode into %v at offset %d: aliased=%v, want %v",
						name, typ, reflect.ValueOf(&c.data[0]).Pointer()%8, aliased, wantAlias)
				}
			}
		}
	}
	check(t, "bytes", []byte("hello world"))
	check(t, "int8", []int8{1, -2, 3})
	check(t, "int16", []int16{1, -2, 3})
	check(t, "int32", []int32{1, -2, 3})
	check(t, "int64", []int64{1, -2, 3})
	check(t, "int", []int{1, -2, 3})
	check(t, "uint16", []uint16{1, 2, 3})
	check(t, "uint32", []uint32{1, 2, 3})
	check(t, "uint64", []uint64{1, 2, 3})
	check(t, "uint", []uint{1, 2, 3})
	check(t, "float32", []float32{1, 2.5, -3})
	check(t, "float64", []float64{1, 2.5, -3})
}

// TestRawIntWidth: int and uint are 64 bits on the wire, so a 32-bit host
// reads what fits and refuses what does not.
func TestRawIntWidth(t *testing.T) {
	data := mustMarshal([]int64{1, 1 << 40})
	data[3] = 10 // the element kind of []int: same wire layout
	got, err := codec.DecodeAs[[]int](data)
	if strconv.IntSize == 64 {
		if err != nil || len(got) != 2 || int64(got[1]) != 1<<40 {
			t.Fatalf("got %v, %v", got, err)
		}
		return
	}
	if !errors.Is(err, codec.ErrBadEncoding) || !strings.Contains(err.Error(), "overflows this host's 32-bit int") {
		t.Fatalf("got %v, %v; want an overflow error", got, err)
	}
}

func TestRawEncodeAliasesSource(t *testing.T) {
	src := []float64{1, 2, 3}
	e, err := codec.Encode(src)
	if err != nil {
		t.Fatal(err)
	}
	src[0] = 42 // Encode made no copy: the write shows in what WriteTo writes
	got, err := codec.DecodeAs[[]float64](e.Bytes())
	if err != nil || got[0] != 42 {
		t.Fatalf("got %v, %v; want the source's current contents", got, err)
	}
}

func TestRawBytesAppendStaysInPayload(t *testing.T) {
	data := at(append(mustMarshal([]byte("ab")), "tail"...), 0)
	data = data[:len(data)-4]
	b, err := codec.DecodeAs[[]byte](data)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(b, 'X')
	if string(data[len(data):len(data)+1]) != "t" {
		t.Fatal("appending to a decoded []byte wrote past the payload")
	}
}

func TestRawIntoOtherTargets(t *testing.T) {
	s, err := codec.DecodeAs[string](mustMarshal([]byte("text")))
	if err != nil || s != "text" {
		t.Fatalf("raw bytes into string = %q, %v", s, err)
	}
	type blob []byte
	b, err := codec.DecodeAs[blob](mustMarshal([]byte("b")))
	if err != nil || string(b) != "b" {
		t.Fatalf("raw bytes into named []byte = %q, %v", b, err)
	}
	p, err := codec.DecodeAs[*[]float32](mustMarshal([]float32{1}))
	if err != nil || p == nil || !reflect.DeepEqual(*p, []float32{1}) {
		t.Fatalf("raw float32 into *[]float32 = %v, %v", p, err)
	}
	v, err := codec.DecodeAs[Vec](mustMarshal([]float64{1, 2}))
	if err != nil || !reflect.DeepEqual(v, Vec{1, 2}) {
		t.Fatalf("raw float64 into Vec = %v, %v", v, err)
	}
	c, err := codec.DecodeAs[[]Celsius](mustMarshal([]float64{20}))
	if err != nil || !reflect.DeepEqual(c, []Celsius{20}) {
		t.Fatalf("raw float64 into []Celsius = %v, %v", c, err)
	}
}

func TestEncodedWriting(t *testing.T) {
	for _, v := range []any{[]float32{1, 2, 3}, []byte("raw"), "cbor", Point{1, 2}, nil} {
		e, err := codec.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		want := mustMarshal(v)
		if e.Size() != len(want) {
			t.Errorf("%T: Size() = %d, want %d", v, e.Size(), len(want))
		}
		dst := make([]byte, e.Size()+3)
		if n := e.WriteTo(dst); n != e.Size() || !bytes.Equal(dst[:n], want) {
			t.Errorf("%T: WriteTo wrote %d bytes % x, want % x", v, n, dst[:n], want)
		}
		if got := e.AppendTo([]byte("pre")); string(got[:3]) != "pre" || !bytes.Equal(got[3:], want) {
			t.Errorf("%T: AppendTo = % x", v, got)
		}
		if !bytes.Equal(e.Bytes(), want) {
			t.Errorf("%T: Bytes() = % x, want % x", v, e.Bytes(), want)
		}
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "dst has") {
					t.Errorf("%T: WriteTo into a short dst: recovered %v; want a panic naming the sizes", v, r)
				}
			}()
			e.WriteTo(make([]byte, e.Size()-1))
		}()
	}
	var zero codec.Encoded
	if zero.Size() != 0 || zero.WriteTo(nil) != 0 || len(zero.Bytes()) != 0 {
		t.Error("the zero Encoded is not empty")
	}
}

func TestIsRaw(t *testing.T) {
	for _, c := range []struct {
		v   any
		raw bool
	}{{[]byte{1}, true}, {[]byte{}, true}, {[]float64{1}, true}, {[]int8{}, true},
		{[]byte(nil), false}, {"s", false}, {Point{}, false}, {Vec{1}, false}, {[]any{1}, false}} {
		if got := codec.IsRaw(mustMarshal(c.v)); got != c.raw {
			t.Errorf("IsRaw(Marshal(%#v)) = %v, want %v", c.v, got, c.raw)
		}
	}
	if codec.IsRaw([]byte{'g', 1, 2}) || codec.IsRaw([]byte("x\x01\x02\x00\x00\x00\x00\x00")) {
		t.Error("IsRaw accepted a short or foreign buffer")
	}
}
