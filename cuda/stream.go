package cuda

/*
#cgo noescape gr_stream_create
#cgo nocallback gr_stream_create
#cgo nocallback gr_stream_synchronize
#cgo nocallback gr_stream_query
#cgo nocallback gr_stream_destroy
#cgo nocallback gr_stream_wait_event
#cgo nocallback gr_memcpy_async
#include "cudart.h"
*/
import "C"

// NewStream creates a stream on device dev that does not synchronize with
// the legacy default stream (cudaStreamCreateWithFlags with
// cudaStreamNonBlocking). Destroy it when done.
func NewStream(dev int) (Stream, error) {
	if err := Load(); err != nil {
		return Stream{}, err
	}
	var h C.uintptr_t
	if r := C.gr_stream_create(C.int(dev), &h); r != 0 {
		return Stream{}, callErr(r, dev, "cudaStreamCreateWithFlags", "dev=%d, cudaStreamNonBlocking", dev)
	}
	return Stream{dev: dev, handle: uintptr(h)}, nil
}

// Synchronize waits until all work queued on s has finished.
func (s Stream) Synchronize() error {
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_stream_synchronize(C.int(s.dev), C.uintptr_t(s.handle)); r != 0 {
		return callErr(r, s.dev, "cudaStreamSynchronize", "dev=%d, stream=%#x", s.dev, s.handle)
	}
	return nil
}

// Query reports whether all work queued on s has finished, without waiting
// (cudaStreamQuery).
func (s Stream) Query() (done bool, err error) {
	if err := Load(); err != nil {
		return false, err
	}
	switch r := C.gr_stream_query(C.int(s.dev), C.uintptr_t(s.handle)); r {
	case 0:
		return true, nil
	case codeNotReady:
		return false, nil
	default:
		return false, callErr(r, s.dev, "cudaStreamQuery", "dev=%d, stream=%#x", s.dev, s.handle)
	}
}

// Destroy releases a stream that NewStream made, once; work already queued
// on it still runs. For a default stream it does nothing.
func (s Stream) Destroy() error {
	if s.handle == 0 {
		return nil
	}
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_stream_destroy(C.int(s.dev), C.uintptr_t(s.handle)); r != 0 {
		return callErr(r, s.dev, "cudaStreamDestroy", "dev=%d, stream=%#x", s.dev, s.handle)
	}
	return nil
}

// WaitEvent makes work queued on s after this call wait until e's last
// recorded work has finished (cudaStreamWaitEvent), without blocking the
// caller: the way to order two streams.
func (s Stream) WaitEvent(e Event) error {
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_stream_wait_event(C.int(s.dev), C.uintptr_t(s.handle), C.uintptr_t(e.handle)); r != 0 {
		return callErr(r, s.dev, "cudaStreamWaitEvent", "dev=%d, stream=%#x, event=%#x", s.dev, s.handle, e.handle)
	}
	return nil
}

// MemcpyAsync queues a copy of n bytes from src to dst on stream s
// (cudaMemcpyAsync) and returns. The memory must stay valid until the copy
// has run (s.Synchronize, s.Query, or an event recorded after it): use
// device memory and pinned host memory from MallocHost. With pageable host
// memory CUDA may copy synchronously.
func MemcpyAsync(dst, src uintptr, n int, kind MemcpyKind, s Stream) error {
	if n < 0 {
		return invalid("MemcpyAsync", "negative size %d", n)
	}
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_memcpy_async(C.int(s.dev), C.uintptr_t(dst), C.uintptr_t(src), C.size_t(n), C.int(kind), C.uintptr_t(s.handle)); r != 0 {
		return callErr(r, s.dev, "cudaMemcpyAsync", "dev=%d, dst=%#x, src=%#x, n=%d, %v, stream=%#x", s.dev, dst, src, n, kind, s.handle)
	}
	return nil
}
