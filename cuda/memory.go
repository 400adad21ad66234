package cuda

/*
#cgo noescape gr_malloc
#cgo nocallback gr_malloc
#cgo nocallback gr_free
#cgo nocallback gr_memset
#cgo noescape gr_malloc_host
#cgo nocallback gr_malloc_host
#cgo nocallback gr_free_host
#cgo nocallback gr_memcpy
#cgo noescape gr_memcpy_to_device
#cgo nocallback gr_memcpy_to_device
#cgo noescape gr_memcpy_to_host
#cgo nocallback gr_memcpy_to_host
#include "cudart.h"
*/
import "C"

import (
	"strconv"
	"unsafe"
)

// Malloc allocates n bytes of memory on device dev (cudaMalloc). Free it
// with Free.
func Malloc(dev, n int) (Ptr, error) {
	if n < 0 {
		return 0, invalid("Malloc", "negative size %d", n)
	}
	if err := Load(); err != nil {
		return 0, err
	}
	var p C.uintptr_t
	if r := C.gr_malloc(C.int(dev), &p, C.size_t(n)); r != 0 {
		return 0, callErr(r, dev, "cudaMalloc", "dev=%d, n=%d", dev, n)
	}
	return Ptr(p), nil
}

// Free releases memory that Malloc returned for device dev. Freeing 0 does
// nothing.
func Free(dev int, p Ptr) error {
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_free(C.int(dev), C.uintptr_t(p)); r != 0 {
		return callErr(r, dev, "cudaFree", "dev=%d, p=%#x", dev, uintptr(p))
	}
	return nil
}

// Memset sets n bytes of device memory at p to v (cudaMemset). Like
// cudaMemset, it may return before the device has written them; later work
// on the legacy default stream, and the synchronous copies, see the result.
func Memset(dev int, p Ptr, v byte, n int) error {
	if n < 0 {
		return invalid("Memset", "negative size %d", n)
	}
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_memset(C.int(dev), C.uintptr_t(p), C.int(v), C.size_t(n)); r != 0 {
		return callErr(r, dev, "cudaMemset", "dev=%d, p=%#x, n=%d", dev, uintptr(p), n)
	}
	return nil
}

// MallocHost allocates n bytes of page-locked (pinned) host memory
// (cudaMallocHost): copies from and to it run at full speed and can be
// asynchronous. The slice is C memory, never moved or collected by Go;
// release it with FreeHost, passing the slice MallocHost returned (or a
// reslice that starts at the same byte).
func MallocHost(n int) ([]byte, error) {
	if n < 0 {
		return nil, invalid("MallocHost", "negative size %d", n)
	}
	if err := Load(); err != nil {
		return nil, err
	}
	if n == 0 {
		return []byte{}, nil
	}
	var p unsafe.Pointer
	if r := C.gr_malloc_host(&p, C.size_t(n)); r != 0 {
		return nil, callErr(r, 0, "cudaMallocHost", "n=%d", n)
	}
	return unsafe.Slice((*byte)(p), n), nil
}

// FreeHost releases memory that MallocHost returned. A slice with no
// capacity (MallocHost(0), nil) is ignored.
func FreeHost(b []byte) error {
	if err := Load(); err != nil {
		return err
	}
	if cap(b) == 0 {
		return nil
	}
	if r := C.gr_free_host(unsafe.Pointer(unsafe.SliceData(b))); r != 0 {
		return callErr(r, 0, "cudaFreeHost", "p=%p", unsafe.SliceData(b))
	}
	return nil
}

// MemcpyKind is the direction of a copy (cudaMemcpyKind).
type MemcpyKind int

// The copy directions. DefaultKind lets CUDA infer the direction from the
// pointers (unified virtual addressing, every 64-bit platform).
const (
	HostToHost     MemcpyKind = 0
	HostToDevice   MemcpyKind = 1
	DeviceToHost   MemcpyKind = 2
	DeviceToDevice MemcpyKind = 3
	DefaultKind    MemcpyKind = 4
)

// String names the direction as CUDA does ("cudaMemcpyHostToDevice").
func (k MemcpyKind) String() string {
	switch k {
	case HostToHost:
		return "cudaMemcpyHostToHost"
	case HostToDevice:
		return "cudaMemcpyHostToDevice"
	case DeviceToHost:
		return "cudaMemcpyDeviceToHost"
	case DeviceToDevice:
		return "cudaMemcpyDeviceToDevice"
	case DefaultKind:
		return "cudaMemcpyDefault"
	}
	return "MemcpyKind(" + strconv.Itoa(int(k)) + ")"
}

// Memcpy copies n bytes from src to dst (cudaMemcpy) with dev current.
// Addresses are raw: device memory (a Ptr), pinned host memory (from
// MallocHost) or C memory. For Go slices use CopyToDevice and CopyToHost,
// which keep the slice valid for the call. A device-to-device copy may
// return before the device has made it; later work on the legacy default
// stream and the synchronous copies see its result.
func Memcpy(dev int, dst, src uintptr, n int, kind MemcpyKind) error {
	if n < 0 {
		return invalid("Memcpy", "negative size %d", n)
	}
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_memcpy(C.int(dev), C.uintptr_t(dst), C.uintptr_t(src), C.size_t(n), C.int(kind)); r != 0 {
		return callErr(r, dev, "cudaMemcpy", "dev=%d, dst=%#x, src=%#x, n=%d, %v", dev, dst, src, n, kind)
	}
	return nil
}

// CopyToDevice copies src into device memory at dst on device dev. When it
// returns, src may be reused.
func CopyToDevice(dev int, dst Ptr, src []byte) error {
	if err := Load(); err != nil {
		return err
	}
	if len(src) == 0 {
		return nil
	}
	if r := C.gr_memcpy_to_device(C.int(dev), C.uintptr_t(dst), unsafe.Pointer(unsafe.SliceData(src)), C.size_t(len(src))); r != 0 {
		return callErr(r, dev, "cudaMemcpy", "dev=%d, dst=%#x, n=%d, cudaMemcpyHostToDevice", dev, uintptr(dst), len(src))
	}
	return nil
}

// CopyToHost fills dst with len(dst) bytes of device memory at src on
// device dev, after the work queued before it on the legacy default stream.
func CopyToHost(dev int, dst []byte, src Ptr) error {
	if err := Load(); err != nil {
		return err
	}
	if len(dst) == 0 {
		return nil
	}
	if r := C.gr_memcpy_to_host(C.int(dev), unsafe.Pointer(unsafe.SliceData(dst)), C.uintptr_t(src), C.size_t(len(dst))); r != 0 {
		return callErr(r, dev, "cudaMemcpy", "dev=%d, src=%#x, n=%d, cudaMemcpyDeviceToHost", dev, uintptr(src), len(dst))
	}
	return nil
}

// CopyDevice copies n bytes of device memory from src to dst on device dev
// (or between devices, with unified addressing). Like Memcpy's
// device-to-device case it may return before the copy is made; later work
// on the legacy default stream, CopyToHost included, sees it.
func CopyDevice(dev int, dst, src Ptr, n int) error {
	if n < 0 {
		return invalid("CopyDevice", "negative size %d", n)
	}
	return Memcpy(dev, uintptr(dst), uintptr(src), n, DeviceToDevice)
}
