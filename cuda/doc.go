// Package cuda is goray's binding of the CUDA runtime and of NVML: device
// count and properties, device and pinned host memory, copies, streams,
// events, CUDA IPC memory handles (device memory shared by two processes of
// one node), and discovery of the node's GPUs and their links. Package
// tensor keeps device tensors in its memory, package nccl runs collectives
// on its streams, and Discover is how a node learns which GPUs it has.
//
// # No CUDA at build time
//
// The package declares the few C types and functions it uses itself and
// opens the CUDA runtime with dlopen when first used (Load): $GORAY_LIBCUDART
// if set, else the first of libcudart.so.13, libcudart.so.12 and
// libcudart.so that the installed driver supports. It builds with a plain C
// compiler, without CUDA headers or libraries, and on a machine without a
// GPU every function returns an error wrapping ErrNoDriver that names the
// cause and the fix; nothing crashes or exits.
// Discover uses github.com/NVIDIA/go-nvml, which opens libnvidia-ml.so.1
// (or $GORAY_LIBNVML) the same way.
//
// # Devices and threads
//
// CUDA's current device belongs to the OS thread. Every function here that
// acts on a device takes it as dev (or from its Stream or Event) and makes
// it current in the same C call that uses it (leaving it current on that
// thread), so callers need no thread locking and may move between
// goroutines freely. Code that calls another
// CUDA library acting on the current device (NCCL) wraps that in
// WithDevice, which locks the goroutine to its thread for the duration.
//
// Failed CUDA calls return *Error, with the call, the cudaError_t and
// CUDA's own name and description of it.
package cuda
