package dag

import (
	"context"
	"fmt"
	"reflect"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/cuda"
	"github.com/goray/goray/tensor"
)

// CUDA IPC edges: between actors on one GPU, a device tensor is copied
// into one of the producer's staging buffers on that GPU (one per ring
// slot, so a buffer is reused only once every reader has released the
// message that named it), and the message carries the tensor's metadata
// and the buffer's IPC handle; a reader opens the handle (once per
// buffer) and copies the tensor out into memory of its own. A host tensor
// on such an edge travels as an ordinary value.

// tagIPC: metadata, then the 64-byte cudaIpcMemHandle_t.
const tagIPC byte = 3

// ipcStaging is a producer's staging buffers for one ring.
type ipcStaging struct {
	dev  int
	bufs []ipcBuf // one per slot
	old  []cuda.Ptr
}

type ipcBuf struct {
	p      cuda.Ptr
	size   int
	handle cuda.IpcMemHandle
}

// writeIPC writes a result to an IPC edge: a device tensor through a
// staging buffer, anything else as a value.
func (l *loop) writeIPC(ctx context.Context, wi int, w *channel.RingWriter, v reflect.Value) error {
	t, ok := v.Interface().(*tensor.Tensor)
	if !ok || t == nil || !t.Device().IsCUDA() {
		var err error
		l.enc, err = writeValue(ctx, w, v, l.enc)
		return err
	}
	m := t.Meta()
	buf, err := w.Reserve(ctx, msgHdr+tensor.MetaSize(len(m.Shape))+len(cuda.IpcMemHandle{}))
	if err != nil {
		return err
	}
	// The slot this message takes is free, so is its staging buffer.
	st := l.staging[wi]
	if st == nil {
		st = &ipcStaging{dev: t.Device().Index, bufs: make([]ipcBuf, max(l.spec.Slots, 1))}
		l.staging[wi] = st
	}
	b := &st.bufs[int(w.Seq())%len(st.bufs)]
	if b.size < t.NumBytes() || st.dev != t.Device().Index {
		if b.p != 0 {
			st.old = append(st.old, b.p) // a reader may hold it open: freed when the loop ends
		}
		*b = ipcBuf{}
		st.dev = t.Device().Index
		if b.p, err = cuda.Malloc(st.dev, max(t.NumBytes(), 1)); err != nil {
			return fmt.Errorf("CUDA IPC staging buffer of %d bytes: %w", t.NumBytes(), err)
		}
		b.size = t.NumBytes()
		if b.handle, err = cuda.IpcGetMemHandle(st.dev, b.p); err != nil {
			return fmt.Errorf("CUDA IPC handle: %w", err)
		}
	}
	if t.NumBytes() > 0 {
		if err := cuda.CopyDevice(st.dev, b.p, cuda.Ptr(t.DevicePtr()), t.NumBytes()); err != nil {
			return fmt.Errorf("copy %s to its CUDA IPC staging buffer: %w", t, err)
		}
	}
	putHeader(buf, tagIPC)
	out := tensor.AppendMeta(buf[msgHdr:msgHdr], m)
	copy(buf[msgHdr+len(out):], b.handle[:])
	return w.Commit(channel.KindData)
}

// readIPC copies a tensor out of a producer's staging buffer into a
// tensor of this process's GPU, reused by the next execution (see reuse).
func (l *loop) readIPC(reader int, data []byte) (*tensor.Tensor, error) {
	m, n, err := tensor.ParseMeta(data)
	if err != nil {
		return nil, err
	}
	var h cuda.IpcMemHandle
	if len(data)-n != len(h) {
		return nil, fmt.Errorf("a CUDA IPC message of %d bytes after the metadata, want %d", len(data)-n, len(h))
	}
	copy(h[:], data[n:])
	dev := 0 // CUDA_VISIBLE_DEVICES holds the actor's GPU
	src, ok := l.opened[h]
	if !ok {
		if src, err = cuda.IpcOpenMemHandle(dev, h); err != nil {
			return nil, fmt.Errorf("open a CUDA IPC handle: %w", err)
		}
		l.opened[h] = src
	}
	t, err := reuse(&l.ipcBufs[reader], tensor.CUDA(dev), m.DType, m.Shape)
	if err != nil {
		return nil, err
	}
	if t.NumBytes() > 0 {
		if err := cuda.CopyDevice(dev, cuda.Ptr(t.DevicePtr()), src, t.NumBytes()); err != nil {
			return nil, fmt.Errorf("copy a tensor out of a CUDA IPC buffer: %w", err)
		}
	}
	return t, nil
}

// closeIPC closes the handles this loop opened and frees its staging
// buffers.
func (l *loop) closeIPC() {
	for _, p := range l.opened {
		cuda.IpcCloseMemHandle(0, p)
	}
	clear(l.opened)
	for _, st := range l.staging {
		if st == nil {
			continue
		}
		for _, b := range st.bufs {
			if b.p != 0 {
				cuda.Free(st.dev, b.p)
			}
		}
		for _, p := range st.old {
			cuda.Free(st.dev, p)
		}
	}
	clear(l.staging)
	for _, t := range l.ipcBufs {
		t.Free()
	}
}
