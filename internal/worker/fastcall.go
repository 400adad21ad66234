package worker

import (
	"context"
	"reflect"
	"unsafe"
)

// Direct calls of actor methods. reflect.Value.Call costs about half a
// microsecond hot (a frame laid out per call, results in a fresh slice)
// and more when the caches are cold, as they are for a compiled graph's
// actors taking turns on a few cores: it was a fifth of a chain4 hop. A
// method of the common shapes
//
//	func (*T) M(ctx context.Context) (R, error)
//	func (*T) M(ctx context.Context, a A) (R, error)
//
// is instead called straight through its code pointer, as a function of
// the same register shape: Go's internal ABI assigns registers by a type's
// layout alone, so a method taking (*T, context.Context, []float32) is
// called exactly like a function taking (unsafe.Pointer, context.Context,
// []byte). The shapes used, by kind:
//
//	Pointer                               one pointer: unsafe.Pointer
//	Slice (of anything)                   pointer, length, capacity: []byte
//	String                                pointer, length: string
//	Int, Int64, Uint, Uint64, Uintptr     one integer register: int64
//	Float64                               one floating-point register: float64
//
// Other parameter or result types, more parameters or results, variadic
// and generator methods go through reflect.Value.Call as before.

type shape uint8

const (
	shapeNone shape = iota
	shapePtr
	shapeSlice
	shapeString
	shapeInt
	shapeFloat
)

func shapeOf(t reflect.Type) shape {
	switch t.Kind() {
	case reflect.Pointer:
		return shapePtr
	case reflect.Slice:
		return shapeSlice
	case reflect.String:
		return shapeString
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return shapeInt
	case reflect.Float64:
		return shapeFloat
	}
	return shapeNone
}

// fastCall calls a method on the instance recv (a *T's pointer) with its
// argument (ignored by a method of none), and returns its result as an
// interface of the method's own result type.
type fastCall func(recv unsafe.Pointer, ctx context.Context, arg reflect.Value) (any, error)

// fastCallOf is the direct call of method expression fn (func(*T, ctx,
// [A]) (R, error)), or nil if its shape has none.
func fastCallOf(fn reflect.Value) fastCall {
	t := fn.Type()
	if t.IsVariadic() || t.NumIn() < 2 || t.NumIn() > 3 || t.NumOut() != 2 ||
		t.In(0).Kind() != reflect.Pointer || t.In(1) != ctxType || t.Out(1) != errType {
		return nil
	}
	out := t.Out(0)
	rs := shapeOf(out)
	if rs == shapeNone {
		return nil
	}
	if t.NumIn() == 2 {
		switch rs {
		case shapePtr:
			return call0[unsafe.Pointer](fn, out)
		case shapeSlice:
			return call0[[]byte](fn, out)
		case shapeString:
			return call0[string](fn, out)
		case shapeInt:
			return call0[int64](fn, out)
		case shapeFloat:
			return call0[float64](fn, out)
		}
		return nil
	}
	switch shapeOf(t.In(2)) {
	case shapePtr:
		return call1R(fn, out, rs, argPtr)
	case shapeSlice:
		return call1R(fn, out, rs, argSlice)
	case shapeString:
		return call1R(fn, out, rs, argString)
	case shapeInt:
		return call1R(fn, out, rs, argInt)
	case shapeFloat:
		return call1R(fn, out, rs, argFloat)
	}
	return nil
}

// The argument as its shape. v has the parameter's own type (codec
// decodes into it).
func argPtr(v reflect.Value) unsafe.Pointer { return v.UnsafePointer() }

func argSlice(v reflect.Value) []byte {
	// The same pointer, length and capacity, counted in the element type:
	// the callee sees its own slice unchanged.
	return unsafe.Slice((*byte)(v.UnsafePointer()), v.Cap())[:v.Len()]
}

func argString(v reflect.Value) string { return v.String() }

func argInt(v reflect.Value) int64 {
	switch v.Kind() {
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return int64(v.Uint())
	}
	return v.Int()
}

func argFloat(v reflect.Value) float64 { return v.Float() }

func call1R[A any](fn reflect.Value, out reflect.Type, rs shape, arg func(reflect.Value) A) fastCall {
	switch rs {
	case shapePtr:
		return call1[A, unsafe.Pointer](fn, out, arg)
	case shapeSlice:
		return call1[A, []byte](fn, out, arg)
	case shapeString:
		return call1[A, string](fn, out, arg)
	case shapeInt:
		return call1[A, int64](fn, out, arg)
	case shapeFloat:
		return call1[A, float64](fn, out, arg)
	}
	return nil
}

// funcAs reinterprets the function value fn as an F of the same register
// shape.
func funcAs[F any](fn reflect.Value) F {
	i := fn.Interface()
	// A func value is one pointer (to its closure), the interface's data
	// word.
	data := (*[2]unsafe.Pointer)(unsafe.Pointer(&i))[1]
	return *(*F)(unsafe.Pointer(&data))
}

// boxer turns a result of shape R into an interface of the method's result
// type t.
func boxer[R any](t reflect.Type) func(R) any {
	if t.Kind() == reflect.Pointer {
		// A pointer is an interface's data word itself: no allocation.
		typ := (*eface)(unsafe.Pointer(new(reflect.Zero(t).Interface()))).typ
		return func(r R) any {
			var x any
			e := (*eface)(unsafe.Pointer(&x))
			e.typ, e.data = typ, *(*unsafe.Pointer)(unsafe.Pointer(&r))
			return x
		}
	}
	return func(r R) any { return reflect.NewAt(t, unsafe.Pointer(&r)).Elem().Interface() }
}

// eface is the layout of an interface{}.
type eface struct{ typ, data unsafe.Pointer }

func call0[R any](fn reflect.Value, out reflect.Type) fastCall {
	f := funcAs[func(unsafe.Pointer, context.Context) (R, error)](fn)
	box := boxer[R](out)
	return func(recv unsafe.Pointer, ctx context.Context, _ reflect.Value) (any, error) {
		r, err := f(recv, ctx)
		if err != nil {
			return nil, err
		}
		return box(r), nil
	}
}

func call1[A, R any](fn reflect.Value, out reflect.Type, arg func(reflect.Value) A) fastCall {
	f := funcAs[func(unsafe.Pointer, context.Context, A) (R, error)](fn)
	box := boxer[R](out)
	return func(recv unsafe.Pointer, ctx context.Context, a reflect.Value) (any, error) {
		r, err := f(recv, ctx, arg(a))
		if err != nil {
			return nil, err
		}
		return box(r), nil
	}
}

// callFast runs a direct call as call runs a reflect one: a panic becomes
// an error with its stack.
func callFast(f fastCall, recv unsafe.Pointer, ctx context.Context, arg reflect.Value) (out any, err, perr error, stack []byte) {
	defer func() {
		if r := recover(); r != nil {
			perr, stack = panicError(r)
		}
	}()
	out, err = f(recv, ctx, arg)
	return out, err, nil, nil
}
