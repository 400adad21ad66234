package cuda

/*
#include "cudart.h"
*/
import "C"

import (
	"fmt"
)

// cudaError_t values this package acts on (driver_types.h, CUDA 10.1 and
// later).
const (
	codeInvalidValue       = 1
	codeStubLibrary        = 34
	codeInsufficientDriver = 35
	codeNoDevice           = 100
	codeNotReady           = 600
)

// Error is a failed CUDA runtime call: Op names the call (and the device
// when it matters), Code is the cudaError_t, Name and Msg are what
// cudaGetErrorName and cudaGetErrorString say about it. Arguments this
// package rejects before calling CUDA are reported the same way, with
// Code 1 (cudaErrorInvalidValue). errors.Is(err, ErrNoDriver) holds for the
// codes that mean the process has no usable GPU (no device, no or too old a
// driver, the driver's stub library).
type Error struct {
	Op   string
	Code int
	Name string
	Msg  string
}

// Error formats the failure as "cuda: <op>: <name> (<code>): <msg>".
func (e *Error) Error() string {
	return fmt.Sprintf("cuda: %s: %s (%d): %s", e.Op, e.Name, e.Code, e.Msg)
}

// Is reports whether e means that no GPU is usable, for
// errors.Is(err, ErrNoDriver).
func (e *Error) Is(target error) bool {
	return target == ErrNoDriver && noDriverCode(e.Code)
}

func noDriverCode(code int) bool {
	return code == codeNoDevice || code == codeInsufficientDriver || code == codeStubLibrary
}

// noDriverHint says how to fix a code for which noDriverCode holds.
func noDriverHint(code int) string {
	switch code {
	case codeInsufficientDriver:
		return "the NVIDIA driver is older than this CUDA runtime: upgrade the driver " +
			"or load an older runtime (set " + EnvLibCUDART + "=libcudart.so.12)"
	case codeStubLibrary:
		return "the libcuda.so found is the toolkit's stub: put the directory holding the real " +
			"driver's libcuda.so.1 ahead of it on LD_LIBRARY_PATH"
	default:
		return "this process sees no GPU: check nvidia-smi, install the NVIDIA driver, " +
			"and check CUDA_VISIBLE_DEVICES"
	}
}

// newError describes code, a cudaError_t returned by op. The runtime is
// loaded: only a call into it yields a code.
func newError(op string, code int) error {
	e := &Error{
		Op:   op,
		Code: code,
		Name: C.GoString(C.gr_error_name(C.int(code))),
		Msg:  C.GoString(C.gr_error_string(C.int(code))),
	}
	if noDriverCode(code) {
		return fmt.Errorf("%w; %s", e, noDriverHint(code))
	}
	return e
}

// callErr turns the result of a gr_* call into an error. r is 0 on success,
// a cudaError_t from the call named by op, or a negated cudaError_t from
// cudaSetDevice(dev), which the call made first. format and args describe
// the call's arguments for the message; they are formatted only on failure.
func callErr(r C.int, dev int, op, format string, args ...any) error {
	if r == 0 {
		return nil
	}
	if r < 0 {
		return newError(fmt.Sprintf("cudaSetDevice(%d) for %s", dev, op), int(-r))
	}
	if format != "" {
		op += "(" + fmt.Sprintf(format, args...) + ")"
	}
	return newError(op, int(r))
}

// invalid reports an argument rejected before any CUDA call.
func invalid(op, format string, args ...any) error {
	return &Error{Op: op, Code: codeInvalidValue, Name: "cudaErrorInvalidValue", Msg: fmt.Sprintf(format, args...)}
}
