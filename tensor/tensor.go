package tensor

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"

	"github.com/x448/float16"
)

// ErrBadTensor is wrapped by every error about a tensor's dtype, shape,
// device or size not fitting what was asked.
var ErrBadTensor = errors.New("tensor: bad tensor")

// DeviceKind says where a tensor's storage lives.
type DeviceKind uint8

// The device kinds. Part of the wire format.
const (
	KindCPU  DeviceKind = 0
	KindCUDA DeviceKind = 1
)

// Device is a tensor's device: the host (CPU) or CUDA GPU Index, an index
// among the GPUs the process sees (CUDA_VISIBLE_DEVICES applies).
type Device struct {
	Kind  DeviceKind
	Index int
}

// CPU is the host.
var CPU = Device{}

// CUDA returns GPU i of this process.
func CUDA(i int) Device { return Device{Kind: KindCUDA, Index: i} }

// IsCUDA reports whether d is a GPU.
func (d Device) IsCUDA() bool { return d.Kind == KindCUDA }

// String is "cpu" or "cuda:N".
func (d Device) String() string {
	if d.Kind == KindCUDA {
		return "cuda:" + strconv.Itoa(d.Index)
	}
	if d.Kind == KindCPU {
		return "cpu"
	}
	return fmt.Sprintf("device(%d:%d)", d.Kind, d.Index)
}

// MaxDims bounds a tensor's rank; the wire format rejects more.
const MaxDims = 16

// Tensor is an n-dimensional array. The zero Tensor is invalid; build one
// with New, Zeros, FromSlice, FromBytes or (on a GPU) Empty.
//
// A Tensor is not safe for concurrent mutation of its storage; its metadata
// never changes after construction.
type Tensor struct {
	dtype  DType
	shape  []int
	device Device
	nbytes int
	host   []byte  // host storage (KindCPU)
	ptr    uintptr // device pointer (KindCUDA)
	free   func()  // releases owned storage; nil when the storage is borrowed
}

// New returns a zeroed host tensor.
func New(dtype DType, shape ...int) (*Tensor, error) {
	n, err := checkMeta(dtype, shape)
	if err != nil {
		return nil, err
	}
	return &Tensor{dtype: dtype, shape: cloneShape(shape), device: CPU, nbytes: n, host: make([]byte, n)}, nil
}

// Zeros is New for callers whose dtype and shape are known to be valid; it
// panics on a bad one.
func Zeros(dtype DType, shape ...int) *Tensor {
	t, err := New(dtype, shape...)
	if err != nil {
		panic(err)
	}
	return t
}

// FromSlice returns a host tensor that aliases data: writes through either
// are seen by both. With no shape the tensor is one-dimensional.
func FromSlice[T Elem](data []T, shape ...int) (*Tensor, error) {
	if len(shape) == 0 {
		shape = []int{len(data)}
	}
	dt := DTypeOf[T]()
	n, err := checkMeta(dt, shape)
	if err != nil {
		return nil, err
	}
	var z T
	if got := len(data) * int(unsafe.Sizeof(z)); got != n {
		return nil, fmt.Errorf("%w: %d %s elements do not fill shape %v (%d elements)", ErrBadTensor, len(data), dt, shape, n/dt.Size())
	}
	var b []byte
	if n > 0 {
		b = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(data))), n)
	}
	return &Tensor{dtype: dt, shape: cloneShape(shape), device: CPU, nbytes: n, host: b}, nil
}

// FromBytes returns a host tensor whose storage is b (aliased, not copied).
// len(b) must be exactly the size of dtype × shape.
func FromBytes(dtype DType, b []byte, shape ...int) (*Tensor, error) {
	n, err := checkMeta(dtype, shape)
	if err != nil {
		return nil, err
	}
	if len(b) != n {
		return nil, fmt.Errorf("%w: %d bytes for a %s tensor of shape %v, which needs %d", ErrBadTensor, len(b), dtype, shape, n)
	}
	return &Tensor{dtype: dtype, shape: cloneShape(shape), device: CPU, nbytes: n, host: b}, nil
}

// FromDevicePtr wraps device memory the caller owns (free, if not nil, is
// called by Free). It does not check that ptr is a valid allocation of size
// bytes on device d.
func FromDevicePtr(dtype DType, d Device, ptr uintptr, free func(), shape ...int) (*Tensor, error) {
	n, err := checkMeta(dtype, shape)
	if err != nil {
		return nil, err
	}
	if !d.IsCUDA() {
		return nil, fmt.Errorf("%w: FromDevicePtr needs a CUDA device, not %s: use FromBytes for host memory", ErrBadTensor, d)
	}
	return &Tensor{dtype: dtype, shape: cloneShape(shape), device: d, nbytes: n, ptr: ptr, free: free}, nil
}

func checkMeta(dtype DType, shape []int) (int, error) {
	if !dtype.Valid() {
		return 0, fmt.Errorf("%w: %s is not a dtype", ErrBadTensor, dtype)
	}
	if len(shape) > MaxDims {
		return 0, fmt.Errorf("%w: %d dimensions; at most %d are supported", ErrBadTensor, len(shape), MaxDims)
	}
	n := dtype.Size()
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: dimension %d of shape %v is negative", ErrBadTensor, i, shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, fmt.Errorf("%w: shape %v of %s overflows", ErrBadTensor, shape, dtype)
		}
		n *= d
	}
	return n, nil
}

func cloneShape(s []int) []int {
	if len(s) == 0 {
		return []int{}
	}
	return append([]int(nil), s...)
}

// DType is the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Shape returns a copy of the tensor's dimensions.
func (t *Tensor) Shape() []int { return cloneShape(t.shape) }

// Dim returns dimension i.
func (t *Tensor) Dim(i int) int { return t.shape[i] }

// NDim is the number of dimensions.
func (t *Tensor) NDim() int { return len(t.shape) }

// Device is where the storage lives.
func (t *Tensor) Device() Device { return t.device }

// NumElements is the product of the shape.
func (t *Tensor) NumElements() int {
	if t.dtype.Size() == 0 {
		return 0
	}
	return t.nbytes / t.dtype.Size()
}

// NumBytes is the storage size in bytes.
func (t *Tensor) NumBytes() int { return t.nbytes }

// Bytes returns a host tensor's storage (aliased); nil for a device tensor.
func (t *Tensor) Bytes() []byte {
	if t.device.IsCUDA() {
		return nil
	}
	return t.host
}

// DevicePtr returns a device tensor's CUDA pointer; 0 for a host tensor.
func (t *Tensor) DevicePtr() uintptr { return t.ptr }

// Free releases storage the tensor owns (device memory from Empty or
// ToDevice); a tensor that aliases memory it does not own only forgets it.
// The tensor must not be used afterwards. Free is idempotent.
func (t *Tensor) Free() {
	if t == nil {
		return
	}
	if f := t.free; f != nil {
		t.free = nil
		f()
	}
	t.host, t.ptr = nil, 0
}

// HasShape reports whether t's shape is shape (without copying it).
func (t *Tensor) HasShape(shape []int) bool {
	if len(t.shape) != len(shape) {
		return false
	}
	for i := range shape {
		if t.shape[i] != shape[i] {
			return false
		}
	}
	return true
}

// SameMeta reports whether t and u have the same dtype and shape.
func (t *Tensor) SameMeta(u *Tensor) bool { return t.dtype == u.dtype && t.HasShape(u.shape) }

// String describes the tensor, as in "tensor(float16, [2 3], cuda:0)".
func (t *Tensor) String() string {
	if t == nil {
		return "tensor(nil)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tensor(%s, %v, %s)", t.dtype, t.shape, t.device)
	return b.String()
}

// As returns a host tensor's elements as a []T aliasing its storage. T must
// match the dtype (uint16 for Float16 and BFloat16).
func As[T Elem](t *Tensor) ([]T, error) {
	if t.device.IsCUDA() {
		return nil, fmt.Errorf("%w: %s is on %s: copy it to the host with ToHost first", ErrBadTensor, t, t.device)
	}
	want := DTypeOf[T]()
	if want != t.dtype && !(want == Uint16 && (t.dtype == Float16 || t.dtype == BFloat16)) {
		return nil, fmt.Errorf("%w: %s holds %s, not %s", ErrBadTensor, t, t.dtype, want)
	}
	var z T
	if len(t.host) == 0 {
		return []T{}, nil
	}
	p := unsafe.Pointer(unsafe.SliceData(t.host))
	if uintptr(p)%unsafe.Alignof(z) != 0 {
		out := make([]T, t.nbytes/int(unsafe.Sizeof(z)))
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), t.nbytes), t.host)
		return out, nil
	}
	return unsafe.Slice((*T)(p), t.nbytes/int(unsafe.Sizeof(z))), nil
}

// Clone returns a host tensor with its own copy of t's storage. A device
// tensor is copied to the host (ToHost).
func (t *Tensor) Clone() (*Tensor, error) { return toHost(t) }

// Equal reports whether t and u are host tensors with the same dtype, shape
// and bytes.
func (t *Tensor) Equal(u *Tensor) bool {
	if !t.SameMeta(u) || t.device.IsCUDA() || u.device.IsCUDA() {
		return false
	}
	return string(t.host) == string(u.host)
}

// F16 converts a float32 to IEEE 754 half precision bits.
func F16(f float32) uint16 { return uint16(float16.Fromfloat32(f)) }

// F16ToFloat32 converts half precision bits to a float32.
func F16ToFloat32(h uint16) float32 { return float16.Frombits(h).Float32() }

// BF16 converts a float32 to bfloat16 bits, rounding to nearest even.
func BF16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f { // NaN: keep it a quiet NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16ToFloat32 converts bfloat16 bits to a float32.
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// MarshalBinary encodes a host tensor (metadata, then data) for encoders
// that know nothing of tensors, e.g. a tensor inside a struct field sent
// through CBOR. The codec sends a tensor on its own without this copy.
func (t *Tensor) MarshalBinary() ([]byte, error) {
	if t.device.IsCUDA() {
		return nil, fmt.Errorf("%w: %s is on %s: copy it to the host (ToHost) before serializing it", ErrBadTensor, t, t.device)
	}
	if !t.dtype.Valid() {
		return nil, fmt.Errorf("%w: the zero Tensor cannot be serialized: build one with New or FromSlice", ErrBadTensor)
	}
	out := AppendMeta(make([]byte, 0, MetaSize(len(t.shape))+t.nbytes), t.Meta())
	return append(out, t.host...), nil
}

// UnmarshalBinary decodes MarshalBinary's encoding into t, copying the data.
func (t *Tensor) UnmarshalBinary(b []byte) error {
	m, n, err := ParseMeta(b)
	if err != nil {
		return err
	}
	if m.Device.IsCUDA() {
		return fmt.Errorf("%w: the encoding names device %s: only host tensors are serialized", ErrBadTensor, m.Device)
	}
	u, err := FromBytes(m.DType, append([]byte(nil), b[n:]...), m.Shape...)
	if err != nil {
		return err
	}
	*t = *u
	return nil
}
