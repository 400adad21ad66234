package nccl

import (
	"fmt"
	"unsafe"

	"github.com/goray/goray/tensor"
)

// reduceFn computes dst[i] = a[i] op b[i] over the elements of three byte
// slices of equal length; dst may be a.
type reduceFn func(dst, a, b []byte)

// finishFn turns the sums in dst into averages over n ranks.
type finishFn func(dst []byte, n int)

type number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

func sumOf[T number](d, a, b []T) {
	a, b = a[:len(d)], b[:len(d)]
	for i := range d {
		d[i] = a[i] + b[i]
	}
}

func prodOf[T number](d, a, b []T) {
	a, b = a[:len(d)], b[:len(d)]
	for i := range d {
		d[i] = a[i] * b[i]
	}
}

func maxOf[T number](d, a, b []T) {
	a, b = a[:len(d)], b[:len(d)]
	for i := range d {
		d[i] = max(a[i], b[i])
	}
}

func minOf[T number](d, a, b []T) {
	a, b = a[:len(d)], b[:len(d)]
	for i := range d {
		d[i] = min(a[i], b[i])
	}
}

// view is b as a []T, if b is aligned for T.
func view[T any](b []byte) ([]T, bool) {
	var z T
	if len(b) == 0 {
		return nil, true
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%unsafe.Alignof(z) != 0 {
		return nil, false
	}
	return unsafe.Slice((*T)(p), len(b)/int(unsafe.Sizeof(z))), true
}

func asBytes[T any](s []T) []byte {
	var z T
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(z)))
}

// elementwise makes a reduceFn of a kernel over []T. Tensors built with
// FromBytes over an odd offset may be misaligned for T: those go through
// aligned buffers on the stack.
func elementwise[T any](k func(d, a, b []T)) reduceFn {
	return func(dst, a, b []byte) {
		d, ok1 := view[T](dst)
		x, ok2 := view[T](a)
		y, ok3 := view[T](b)
		if ok1 && ok2 && ok3 {
			k(d, x, y)
			return
		}
		var bd, bx, by [512]T
		sz := int(unsafe.Sizeof(bd[0]))
		for off := 0; off < len(dst); off += len(bd) * sz {
			n := min(len(bd)*sz, len(dst)-off)
			m := n / sz
			copy(asBytes(bx[:m]), a[off:off+n])
			copy(asBytes(by[:m]), b[off:off+n])
			k(bd[:m], bx[:m], by[:m])
			copy(dst[off:off+n], asBytes(bd[:m]))
		}
	}
}

func averaging[T number]() finishFn {
	return func(dst []byte, n int) {
		apply := func(d []T) {
			for i := range d {
				d[i] /= T(n)
			}
		}
		if d, ok := view[T](dst); ok {
			apply(d)
			return
		}
		var buf [512]T
		sz := int(unsafe.Sizeof(buf[0]))
		for off := 0; off < len(dst); off += len(buf) * sz {
			k := min(len(buf)*sz, len(dst)-off)
			copy(asBytes(buf[:k/sz]), dst[off:off+k])
			apply(buf[:k/sz])
			copy(dst[off:off+k], asBytes(buf[:k/sz]))
		}
	}
}

// Half precision reduces through float32, rounding every partial result
// back to the dtype (as NCCL's ring does). The loops are written out per
// format and reduction: a conversion behind a function value costs more
// than the arithmetic.

func f16Kernel(op ReduceOp) func(d, a, b []uint16) {
	dec, enc := tensor.F16ToFloat32, tensor.F16
	switch op {
	case Prod:
		return func(d, a, b []uint16) {
			a, b = a[:len(d)], b[:len(d)]
			for i := range d {
				d[i] = enc(dec(a[i]) * dec(b[i]))
			}
		}
	case Max:
		return func(d, a, b []uint16) {
			a, b = a[:len(d)], b[:len(d)]
			for i := range d {
				d[i] = enc(max(dec(a[i]), dec(b[i])))
			}
		}
	case Min:
		return func(d, a, b []uint16) {
			a, b = a[:len(d)], b[:len(d)]
			for i := range d {
				d[i] = enc(min(dec(a[i]), dec(b[i])))
			}
		}
	}
	return func(d, a, b []uint16) {
		a, b = a[:len(d)], b[:len(d)]
		for i := range d {
			d[i] = enc(dec(a[i]) + dec(b[i]))
		}
	}
}

func bf16Kernel(op ReduceOp) func(d, a, b []uint16) {
	dec, enc := tensor.BF16ToFloat32, tensor.BF16
	switch op {
	case Prod:
		return func(d, a, b []uint16) {
			a, b = a[:len(d)], b[:len(d)]
			for i := range d {
				d[i] = enc(dec(a[i]) * dec(b[i]))
			}
		}
	case Max:
		return func(d, a, b []uint16) {
			a, b = a[:len(d)], b[:len(d)]
			for i := range d {
				d[i] = enc(max(dec(a[i]), dec(b[i])))
			}
		}
	case Min:
		return func(d, a, b []uint16) {
			a, b = a[:len(d)], b[:len(d)]
			for i := range d {
				d[i] = enc(min(dec(a[i]), dec(b[i])))
			}
		}
	}
	return func(d, a, b []uint16) {
		a, b = a[:len(d)], b[:len(d)]
		for i := range d {
			d[i] = enc(dec(a[i]) + dec(b[i]))
		}
	}
}

func halfAveraging(dec func(uint16) float32, enc func(float32) uint16) finishFn {
	return func(dst []byte, n int) {
		k := func(d, _, _ []uint16) {
			for i := range d {
				d[i] = enc(dec(d[i]) / float32(n))
			}
		}
		elementwise(k)(dst, dst, dst)
	}
}

func boolKernel(op ReduceOp) func(d, a, b []uint8) {
	return func(d, a, b []uint8) {
		a, b = a[:len(d)], b[:len(d)]
		for i := range d {
			x, y := a[i] != 0, b[i] != 0
			var r bool
			if op == Max {
				r = x || y
			} else {
				r = x && y
			}
			d[i] = 0
			if r {
				d[i] = 1
			}
		}
	}
}

const numOps = int(Avg) + 1

// reducers[dtype][op], and finishers[dtype] for Avg; built once, so an
// operation looks its kernel up without allocating.
var (
	reducers  [32][numOps]reduceFn
	finishers [32]finishFn
)

func numericKernels[T number](dt tensor.DType) {
	reducers[dt] = [numOps]reduceFn{
		Sum:  elementwise(sumOf[T]),
		Prod: elementwise(prodOf[T]),
		Max:  elementwise(maxOf[T]),
		Min:  elementwise(minOf[T]),
		Avg:  elementwise(sumOf[T]),
	}
	finishers[dt] = averaging[T]()
}

func init() {
	numericKernels[float32](tensor.Float32)
	numericKernels[float64](tensor.Float64)
	numericKernels[int8](tensor.Int8)
	numericKernels[int16](tensor.Int16)
	numericKernels[int32](tensor.Int32)
	numericKernels[int64](tensor.Int64)
	numericKernels[uint8](tensor.Uint8)
	numericKernels[uint16](tensor.Uint16)
	numericKernels[uint32](tensor.Uint32)
	numericKernels[uint64](tensor.Uint64)
	for op := range ReduceOp(numOps) {
		reducers[tensor.Float16][op] = elementwise(f16Kernel(op))
		reducers[tensor.BFloat16][op] = elementwise(bf16Kernel(op))
	}
	finishers[tensor.Float16] = halfAveraging(tensor.F16ToFloat32, tensor.F16)
	finishers[tensor.BFloat16] = halfAveraging(tensor.BF16ToFloat32, tensor.BF16)
	reducers[tensor.Bool][Max] = elementwise(boolKernel(Max))
	reducers[tensor.Bool][Min] = elementwise(boolKernel(Min))
}

// reducerFor returns the kernel for op over dt, and for Avg the step that
// divides by the number of ranks.
func reducerFor(dt tensor.DType, op ReduceOp) (reduceFn, finishFn, error) {
	if op < 0 || int(op) >= numOps {
		return nil, nil, fmt.Errorf("%w: reduction %s: use Sum, Prod, Max, Min or Avg", ErrBadArgument, op)
	}
	if !dt.Valid() || int(dt) >= len(reducers) {
		return nil, nil, fmt.Errorf("%w: %s is not a dtype", ErrBadArgument, dt)
	}
	red := reducers[dt][op]
	if red == nil {
		if dt == tensor.Bool {
			return nil, nil, fmt.Errorf("%w: bool tensors reduce only with Max (or) and Min (and), not %s", ErrBadArgument, op)
		}
		return nil, nil, fmt.Errorf("%w: the cpu backend cannot reduce %s with %s", ErrBadArgument, dt, op)
	}
	if op == Avg {
		return red, finishers[dt], nil
	}
	return red, nil, nil
}
