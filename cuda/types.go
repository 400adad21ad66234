package cuda

import "errors"

// ErrNoDriver is returned (wrapped, with the reason) by every function when
// the CUDA runtime library or a GPU driver cannot be found: the process has
// no GPU to use. It is never a crash.
var ErrNoDriver = errors.New("cuda: no CUDA driver")

// Ptr is a CUDA device pointer.
type Ptr uintptr

// Stream is a CUDA stream on one device. The zero Stream is device 0's
// legacy default stream; Default(dev) is another device's.
type Stream struct {
	dev    int
	handle uintptr // cudaStream_t; 0 is the legacy default stream
}

// Default returns device dev's legacy default stream.
func Default(dev int) Stream { return Stream{dev: dev} }

// Device is the stream's device.
func (s Stream) Device() int { return s.dev }

// Handle is the cudaStream_t, for passing to other libraries (NCCL).
func (s Stream) Handle() uintptr { return s.handle }

// IpcMemHandle is cudaIpcMemHandle_t: 64 opaque bytes, passed by value to
// another process on the same node to open the same device memory there.
type IpcMemHandle [64]byte
