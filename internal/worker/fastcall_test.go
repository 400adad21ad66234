package worker

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type fastKey struct{}

type fastActor struct{ calls int }

type myInt int64
type myFloats []float64
type point struct{ X, Y int }

func (a *fastActor) Count(ctx context.Context) (int, error) {
	a.calls++
	return a.calls, nil
}
func (a *fastActor) Bytes(ctx context.Context, b []byte) ([]byte, error) {
	return append([]byte(ctx.Value(fastKey{}).(string)), b...), nil
}
func (a *fastActor) Floats(_ context.Context, f []float32) ([]float32, error) {
	out := make([]float32, len(f), cap(f)+1)
	for i, x := range f {
		out[i] = 2 * x
	}
	return out, nil
}
func (a *fastActor) Str(_ context.Context, s string) (string, error)     { return strings.ToUpper(s), nil }
func (a *fastActor) Int(_ context.Context, n int) (myInt, error)         { return myInt(n * 3), nil }
func (a *fastActor) Uint(_ context.Context, n uint64) (uint64, error)    { return n + 1, nil }
func (a *fastActor) Float(_ context.Context, f float64) (float64, error) { return f / 2, nil }
func (a *fastActor) Named(_ context.Context, f myFloats) (int, error)    { return len(f), nil }
func (a *fastActor) Ptr(_ context.Context, p *point) (*point, error) {
	if p == nil {
		return nil, nil
	}
	return &point{p.Y, p.X}, nil
}
func (a *fastActor) Fail(_ context.Context, s string) (string, error) {
	return "ignored", errors.New("no: " + s)
}
func (a *fastActor) Panic(_ context.Context, s string) (string, error) {
	panic("boom " + s)
}

// Shapes without a direct call.
func (a *fastActor) Two(_ context.Context, x, y int) (int, error)      { return x + y, nil }
func (a *fastActor) Struct(_ context.Context, p point) (point, error)  { return p, nil }
func (a *fastActor) F32(_ context.Context, f float32) (float32, error) { return f, nil }
func (a *fastActor) Small(_ context.Context, n int32) (int32, error)   { return n, nil }
func (a *fastActor) Any(_ context.Context, x any) (any, error)         { return x, nil }
func (a *fastActor) Pair(_ context.Context) (int, int, error)          { return 1, 2, nil }
func (a *fastActor) Vari(_ context.Context, xs ...int) (int, error)    { return len(xs), nil }
func (a *fastActor) NoResult(_ context.Context, n int) error           { return nil }

// A method with a value receiver (reached through *T's wrapper), one
// promoted from an embedded type, and methods of a generic type.
func (a fastActor) Value(_ context.Context, n int) (int, error) { return n + a.calls, nil }

type inner struct{ tag string }

func (i *inner) Tag(_ context.Context, s string) (string, error) { return i.tag + s, nil }

type outer struct {
	pad [3]int
	*inner
}

type box[T any] struct{ v T }

func (b *box[T]) Put(_ context.Context, v T) (*box[T], error) { b.v = v; return b, nil }
func (b *box[T]) Len(_ context.Context, s []T) (int, error)   { return len(s), nil }

func fastMethod(t *testing.T, name string) *Function {
	return fastMethodOf[*fastActor](t, name)
}

func fastMethodOf[T any](t *testing.T, name string) *Function {
	m, ok := reflect.TypeFor[T]().MethodByName(name)
	require.True(t, ok, name)
	f, err := newFunc("fast."+name, m.Func, true)
	require.NoError(t, err)
	return f
}

// TestFastCallReceivers: value receivers, promoted methods and generic
// types are called directly, with the right receiver.
func TestFastCallReceivers(t *testing.T) {
	ctx := context.Background()
	a := &fastActor{calls: 5}
	f := fastMethod(t, "Value")
	require.NotNil(t, f.fast)
	got, err, perr, _ := inv(f, []reflect.Value{reflect.ValueOf(a), reflect.ValueOf(ctx), reflect.ValueOf(2)})
	require.NoError(t, err)
	require.NoError(t, perr)
	require.Equal(t, 7, got[0].Interface())

	o := &outer{inner: &inner{tag: "t:"}}
	f = fastMethodOf[*outer](t, "Tag")
	require.NotNil(t, f.fast)
	got, _, _, _ = inv(f, []reflect.Value{reflect.ValueOf(o), reflect.ValueOf(ctx), reflect.ValueOf("x")})
	require.Equal(t, "t:x", got[0].Interface())

	b := &box[float64]{}
	f = fastMethodOf[*box[float64]](t, "Put")
	require.NotNil(t, f.fast)
	got, _, _, _ = inv(f, []reflect.Value{reflect.ValueOf(b), reflect.ValueOf(ctx), reflect.ValueOf(2.5)})
	require.Same(t, b, got[0].Interface())
	require.Equal(t, 2.5, b.v)
	bs := &box[string]{}
	f = fastMethodOf[*box[string]](t, "Len")
	require.NotNil(t, f.fast)
	got, _, _, _ = inv(f, []reflect.Value{reflect.ValueOf(bs), reflect.ValueOf(ctx), reflect.ValueOf([]string{"a", "b", "c"})})
	require.Equal(t, 3, got[0].Interface())
}

// TestFastCallMatchesReflect: every shape with a direct call gives what
// reflect.Value.Call gives, with the same argument and the same instance.
func TestFastCallMatchesReflect(t *testing.T) {
	a := &fastActor{}
	ctx := context.WithValue(context.Background(), fastKey{}, "ctx:")
	cases := []struct {
		method string
		arg    any
	}{
		{"Count", nil},
		{"Count", nil},
		{"Bytes", []byte("x")},
		{"Bytes", []byte(nil)},
		{"Floats", []float32{1, 2.5, -3}},
		{"Floats", make([]float32, 0, 4)},
		{"Str", "hello"},
		{"Int", 7},
		{"Int", -7},
		{"Uint", uint64(1<<63 + 5)},
		{"Float", 3.0},
		{"Named", myFloats{1, 2, 3}},
		{"Ptr", &point{1, 2}},
		{"Ptr", (*point)(nil)},
	}
	for _, c := range cases {
		f := fastMethod(t, c.method)
		require.NotNil(t, f.fast, "%s has a direct call", c.method)
		in := []reflect.Value{reflect.ValueOf(a), reflect.ValueOf(ctx)}
		if c.arg != nil {
			in = append(in, reflect.ValueOf(c.arg))
		}
		got, err, perr, _ := inv(f, in)
		require.NoError(t, err)
		require.NoError(t, perr)
		require.Len(t, got, 1)
		slow := *f
		slow.fast = nil
		want, err, perr, _ := inv(&slow, in)
		require.NoError(t, err)
		require.NoError(t, perr)
		if c.method == "Count" {
			require.Equal(t, want[0].Int()-1, got[0].Int(), "the same instance: the second call counts one more")
			continue
		}
		require.Equal(t, want[0].Type(), got[0].Type(), c.method)
		require.Equal(t, want[0].Interface(), got[0].Interface(), c.method)
	}
	// A slice's capacity reaches the method unchanged.
	f := fastMethod(t, "Floats")
	got, _, _, _ := inv(f, []reflect.Value{reflect.ValueOf(a), reflect.ValueOf(ctx), reflect.ValueOf(make([]float32, 2, 9))})
	require.Equal(t, 10, got[0].Cap())
}

func TestFastCallErrorsAndPanics(t *testing.T) {
	a := &fastActor{}
	in := []reflect.Value{reflect.ValueOf(a), reflect.ValueOf(context.Background()), reflect.ValueOf("x")}
	res, err, perr, _ := inv(fastMethod(t, "Fail"), in)
	require.Nil(t, res)
	require.EqualError(t, err, "no: x")
	require.NoError(t, perr)
	res, err, perr, stack := inv(fastMethod(t, "Panic"), in)
	require.Nil(t, res)
	require.NoError(t, err)
	require.EqualError(t, perr, "panic: boom x")
	require.Contains(t, string(stack), "fastActor).Panic")
}

func TestFastCallShapesWithout(t *testing.T) {
	for _, m := range []string{"Two", "Struct", "F32", "Small", "Any", "Pair", "Vari", "NoResult"} {
		require.Nil(t, fastMethod(t, m).fast, "%s goes through reflect", m)
	}
	// An argument of another type (assignable, as reflect allows) goes
	// through reflect too.
	a := &fastActor{}
	named := fastMethod(t, "Named")
	require.NotNil(t, named.fast)
	got, err, perr, _ := inv(named, []reflect.Value{reflect.ValueOf(a), reflect.ValueOf(context.Background()), reflect.ValueOf([]float64{1, 2})})
	require.NoError(t, err)
	require.NoError(t, perr)
	require.Equal(t, 2, got[0].Interface())
	// Plain functions (tasks) always do.
	f, err := newFunc("fast.plain", reflect.ValueOf(func(_ context.Context, b []byte) ([]byte, error) { return b, nil }), false)
	require.NoError(t, err)
	require.Nil(t, f.fast)
}

func BenchmarkInvoke(b *testing.B) {
	a := &fastActor{}
	ctx := context.WithValue(context.Background(), fastKey{}, "")
	m, _ := reflect.TypeFor[*fastActor]().MethodByName("Bytes")
	f, err := newFunc("fast.Bytes", m.Func, true)
	require.NoError(b, err)
	in := []reflect.Value{reflect.ValueOf(a), reflect.ValueOf(ctx), reflect.ValueOf([]byte("x"))}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			inv(f, in)
		}
	})
	slow := *f
	slow.fast = nil
	b.Run("reflect", func(b *testing.B) {
		for b.Loop() {
			inv(&slow, in)
		}
	})
}

// inv is invoke with the context taken from in.
func inv(f *Function, in []reflect.Value) ([]reflect.Value, error, error, []byte) {
	return invoke(in[1].Interface().(context.Context), f, in, nil)
}
