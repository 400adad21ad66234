package objstore

import (
	"fmt"
	"unsafe"

	"github.com/goray/goray/internal/ids"
)

// Number is the element types a typed view may have.
type Number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// View returns o's bytes as a []T without copying. Like Data, it maps the
// arena read-only (a write through it faults) and is valid until Release.
// The object's size must be a multiple of T's size; objects are
// Alignment-aligned, so any T is aligned.
func View[T Number](o *Object) ([]T, error) { return asSlice[T](o.Data(), o.ID()) }

// Writable returns the buffer's memory as a []T, for filling typed data
// before Seal. Same size rules as View.
func Writable[T Number](b *Buffer) ([]T, error) { return asSlice[T](b.Data(), b.ID()) }

func asSlice[T Number](d []byte, id ids.ObjectID) ([]T, error) {
	var zero T
	n := int(unsafe.Sizeof(zero))
	if len(d)%n != 0 {
		return nil, fmt.Errorf("objstore: view %s as %T: %d bytes is not a multiple of %d: %w", id, zero, len(d), n, ErrBadArgument)
	}
	if len(d) == 0 {
		return []T{}, nil
	}
	if uintptr(unsafe.Pointer(&d[0]))%uintptr(n) != 0 {
		return nil, fmt.Errorf("objstore: view %s as %T: misaligned: %w", id, zero, ErrBadArgument)
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&d[0])), len(d)/n), nil
}
