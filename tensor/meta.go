package tensor

import (
	"encoding/binary"
	"fmt"
)

// Meta is what a receiver needs to allocate a tensor before its data
// arrives: dtype, shape and device. It is what crosses shared memory on a
// compiled graph's NCCL edge.
type Meta struct {
	DType  DType
	Shape  []int
	Device Device
}

// Meta returns t's metadata.
func (t *Tensor) Meta() Meta {
	return Meta{DType: t.dtype, Shape: cloneShape(t.shape), Device: t.device}
}

// NumBytes is the storage size the metadata describes.
func (m Meta) NumBytes() (int, error) { return checkMeta(m.DType, m.Shape) }

// MetaSize is the encoded size of metadata with ndim dimensions: 8 bytes of
// fixed fields and 8 per dimension, so data written after it stays 8-byte
// aligned.
func MetaSize(ndim int) int { return 8 + 8*ndim }

// AppendMeta appends m's encoding: dtype, device kind, ndim, a reserved
// byte, the device index (uint32), then each dimension as a little-endian
// int64.
func AppendMeta(dst []byte, m Meta) []byte {
	var fixed [8]byte
	fixed[0] = byte(m.DType)
	fixed[1] = byte(m.Device.Kind)
	fixed[2] = byte(len(m.Shape))
	binary.LittleEndian.PutUint32(fixed[4:], uint32(m.Device.Index))
	dst = append(dst, fixed[:]...)
	for _, d := range m.Shape {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(d))
	}
	return dst
}

// ParseMeta decodes metadata written by AppendMeta from the front of b and
// returns it with the number of bytes it used. Bytes from outside are
// checked: an unknown dtype or device, too many or negative dimensions, or a
// size that overflows is an error wrapping ErrBadTensor.
func ParseMeta(b []byte) (Meta, int, error) {
	if len(b) < 8 {
		return Meta{}, 0, fmt.Errorf("%w: metadata of %d bytes is truncated (at least 8 needed)", ErrBadTensor, len(b))
	}
	m := Meta{DType: DType(b[0]), Device: Device{Kind: DeviceKind(b[1]), Index: int(binary.LittleEndian.Uint32(b[4:8]))}}
	ndim := int(b[2])
	if !m.DType.Valid() {
		return Meta{}, 0, fmt.Errorf("%w: metadata names unknown dtype %d", ErrBadTensor, b[0])
	}
	if m.Device.Kind != KindCPU && m.Device.Kind != KindCUDA {
		return Meta{}, 0, fmt.Errorf("%w: metadata names unknown device kind %d", ErrBadTensor, b[1])
	}
	if m.Device.Kind == KindCPU && m.Device.Index != 0 || m.Device.Index > 1<<16 {
		return Meta{}, 0, fmt.Errorf("%w: metadata names device index %d", ErrBadTensor, m.Device.Index)
	}
	if ndim > MaxDims {
		return Meta{}, 0, fmt.Errorf("%w: metadata has %d dimensions; at most %d are supported", ErrBadTensor, ndim, MaxDims)
	}
	n := MetaSize(ndim)
	if len(b) < n {
		return Meta{}, 0, fmt.Errorf("%w: metadata of %d bytes is truncated (%d needed for %d dimensions)", ErrBadTensor, len(b), n, ndim)
	}
	m.Shape = make([]int, ndim)
	for i := range m.Shape {
		d := binary.LittleEndian.Uint64(b[8+8*i:])
		if d > 1<<62 {
			return Meta{}, 0, fmt.Errorf("%w: dimension %d is %d", ErrBadTensor, i, int64(d))
		}
		m.Shape[i] = int(d)
	}
	if _, err := checkMeta(m.DType, m.Shape); err != nil {
		return Meta{}, 0, err
	}
	return m, n, nil
}
