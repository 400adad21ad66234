// Package fakecuda builds a fake CUDA runtime for tests: one "GPU" whose
// memory is host shared memory, with working copies, streams, events and
// IPC handles between processes. Tests point package cuda at it (Install)
// to run the device-tensor paths of tensor, dag and actor on machines
// without a GPU. It checks goray's plumbing, not CUDA's semantics.
package fakecuda
