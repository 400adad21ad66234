package cuda

/*
#cgo noescape gr_event_create
#cgo nocallback gr_event_create
#cgo nocallback gr_event_record
#cgo nocallback gr_event_synchronize
#cgo nocallback gr_event_query
#cgo noescape gr_event_elapsed
#cgo nocallback gr_event_elapsed
#cgo nocallback gr_event_destroy
#include "cudart.h"
*/
import "C"

import (
	"time"
)

// Event is a CUDA event on one device: a marker recorded into a stream that
// completes when the work queued before it has, and that carries a
// timestamp for Elapsed. The zero Event is no event.
type Event struct {
	dev    int
	handle uintptr // cudaEvent_t
}

// NewEvent creates an event on device dev, with timing enabled
// (cudaEventCreateWithFlags with cudaEventDefault). Destroy it when done.
func NewEvent(dev int) (Event, error) {
	if err := Load(); err != nil {
		return Event{}, err
	}
	var h C.uintptr_t
	if r := C.gr_event_create(C.int(dev), &h); r != 0 {
		return Event{}, callErr(r, dev, "cudaEventCreateWithFlags", "dev=%d, cudaEventDefault", dev)
	}
	return Event{dev: dev, handle: uintptr(h)}, nil
}

// Device is the event's device.
func (e Event) Device() int { return e.dev }

// Handle is the cudaEvent_t, for passing to other libraries.
func (e Event) Handle() uintptr { return e.handle }

// Record queues e on stream s, which must be on the event's device: e
// completes when the work queued on s before it has.
func (e Event) Record(s Stream) error {
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_event_record(C.int(e.dev), C.uintptr_t(e.handle), C.uintptr_t(s.handle)); r != 0 {
		return callErr(r, e.dev, "cudaEventRecord", "dev=%d, event=%#x, stream=%#x", e.dev, e.handle, s.handle)
	}
	return nil
}

// Synchronize waits until e has completed (at once if it was never
// recorded).
func (e Event) Synchronize() error {
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_event_synchronize(C.int(e.dev), C.uintptr_t(e.handle)); r != 0 {
		return callErr(r, e.dev, "cudaEventSynchronize", "dev=%d, event=%#x", e.dev, e.handle)
	}
	return nil
}

// Query reports whether e has completed, without waiting (cudaEventQuery).
func (e Event) Query() (bool, error) {
	if err := Load(); err != nil {
		return false, err
	}
	switch r := C.gr_event_query(C.int(e.dev), C.uintptr_t(e.handle)); r {
	case 0:
		return true, nil
	case codeNotReady:
		return false, nil
	default:
		return false, callErr(r, e.dev, "cudaEventQuery", "dev=%d, event=%#x", e.dev, e.handle)
	}
}

// Elapsed returns the device time between two completed events recorded
// with timing (cudaEventElapsedTime, about half a microsecond of
// resolution).
func Elapsed(start, end Event) (time.Duration, error) {
	if err := Load(); err != nil {
		return 0, err
	}
	var ms C.float
	if r := C.gr_event_elapsed(C.int(start.dev), &ms, C.uintptr_t(start.handle), C.uintptr_t(end.handle)); r != 0 {
		return 0, callErr(r, start.dev, "cudaEventElapsedTime", "dev=%d, start=%#x, end=%#x", start.dev, start.handle, end.handle)
	}
	return time.Duration(float64(ms) * float64(time.Millisecond)), nil
}

// Destroy releases an event that NewEvent made, once. For the zero Event
// it does nothing.
func (e Event) Destroy() error {
	if e.handle == 0 {
		return nil
	}
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_event_destroy(C.int(e.dev), C.uintptr_t(e.handle)); r != 0 {
		return callErr(r, e.dev, "cudaEventDestroy", "dev=%d, event=%#x", e.dev, e.handle)
	}
	return nil
}
