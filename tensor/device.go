package tensor

import (
	"fmt"

	"github.com/goray/goray/cuda"
)

// Empty returns an uninitialised tensor on device d: host memory for CPU
// (zeroed, as New), device memory from cudaMalloc for a GPU, released by
// Free. Without a GPU it fails with an error wrapping cuda.ErrNoDriver.
func Empty(dtype DType, d Device, shape ...int) (*Tensor, error) {
	if !d.IsCUDA() {
		return New(dtype, shape...)
	}
	n, err := checkMeta(dtype, shape)
	if err != nil {
		return nil, err
	}
	p, err := cuda.Malloc(d.Index, max(n, 1))
	if err != nil {
		return nil, fmt.Errorf("tensor: allocate %d bytes on %s: %w", n, d, err)
	}
	dev := d.Index
	return &Tensor{dtype: dtype, shape: cloneShape(shape), device: d, nbytes: n, ptr: uintptr(p),
		free: func() { cuda.Free(dev, p) }}, nil
}

// ToDevice copies a host tensor to GPU d (cudaMemcpy host to device). The
// result owns its device memory: Free it.
func (t *Tensor) ToDevice(d Device) (*Tensor, error) {
	if !d.IsCUDA() {
		return nil, fmt.Errorf("%w: ToDevice(%s): name a CUDA device, e.g. tensor.CUDA(0)", ErrBadTensor, d)
	}
	if t.device.IsCUDA() {
		out, err := Empty(t.dtype, d, t.shape...)
		if err != nil {
			return nil, err
		}
		if err := out.CopyFrom(t); err != nil {
			out.Free()
			return nil, err
		}
		return out, nil
	}
	out, err := Empty(t.dtype, d, t.shape...)
	if err != nil {
		return nil, err
	}
	if t.nbytes > 0 {
		if err := cuda.CopyToDevice(d.Index, cuda.Ptr(out.ptr), t.host); err != nil {
			out.Free()
			return nil, fmt.Errorf("tensor: copy %s to %s: %w", t, d, err)
		}
	}
	return out, nil
}

// ToHost copies a device tensor to a new host tensor (cudaMemcpy device to
// host); a host tensor is cloned.
func (t *Tensor) ToHost() (*Tensor, error) { return toHost(t) }

func toHost(t *Tensor) (*Tensor, error) {
	out := &Tensor{dtype: t.dtype, shape: cloneShape(t.shape), device: CPU, nbytes: t.nbytes, host: make([]byte, t.nbytes)}
	if !t.device.IsCUDA() {
		copy(out.host, t.host)
		return out, nil
	}
	if t.nbytes > 0 {
		if err := cuda.CopyToHost(t.device.Index, out.host, cuda.Ptr(t.ptr)); err != nil {
			return nil, fmt.Errorf("tensor: copy %s to the host: %w", t, err)
		}
	}
	return out, nil
}

// CopyFrom copies src's data into t: the same dtype and shape, any devices
// (host to host, host to device, device to host, device to device on one
// GPU).
func (t *Tensor) CopyFrom(src *Tensor) error {
	if !t.SameMeta(src) {
		return fmt.Errorf("%w: CopyFrom %s into %s: dtype and shape must match", ErrBadTensor, src, t)
	}
	if t.nbytes == 0 {
		return nil
	}
	var err error
	switch {
	case !t.device.IsCUDA() && !src.device.IsCUDA():
		copy(t.host, src.host)
	case t.device.IsCUDA() && !src.device.IsCUDA():
		err = cuda.CopyToDevice(t.device.Index, cuda.Ptr(t.ptr), src.host)
	case !t.device.IsCUDA() && src.device.IsCUDA():
		err = cuda.CopyToHost(src.device.Index, t.host, cuda.Ptr(src.ptr))
	case t.device == src.device:
		err = cuda.CopyDevice(t.device.Index, cuda.Ptr(t.ptr), cuda.Ptr(src.ptr), t.nbytes)
	default:
		return fmt.Errorf("%w: CopyFrom %s to %s: copies between two GPUs go through a communicator (package nccl)", ErrBadTensor, src.device, t.device)
	}
	if err != nil {
		return fmt.Errorf("tensor: copy %s into %s: %w", src, t, err)
	}
	return nil
}
