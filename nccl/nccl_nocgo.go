//go:build !cgo

package nccl

// Without cgo the NCCL backend cannot load libnccl: it still registers, and
// Version, NewUniqueID and Init report ErrUnavailable (ncOpenLibrary says
// why before anything here is needed).

const ncCgo = false

func ncTryOpen(path string) string     { return "built without cgo" }
func ncLoad(path string) (int, string) { return -1, "built without cgo" }
func ncBound() ncAPI                   { return nil }
