// Package tensor is goray's n-dimensional array: a dtype, a shape, a device
// (the host or one CUDA GPU) and the storage behind them.
//
// A host tensor's storage is a []byte that may alias memory the tensor does
// not own: a Go slice (FromSlice), or a read-only view into a shared-memory
// channel slot or object-store buffer when the tensor was decoded there. A
// device tensor's storage is a CUDA device pointer (see package cuda).
//
// Tensors travel through the codec (and so through tasks, actor calls, the
// object store and compiled-graph channels) as a small metadata block plus
// their raw bytes, written with one copy and read back with none: a decoded
// host tensor aliases the buffer it was read from. Over a compiled graph's
// NCCL edge only the metadata crosses shared memory; the data moves through
// a communicator (package nccl).
package tensor
