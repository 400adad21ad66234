package nccl

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/tensor"
)

// Errors every backend wraps.
var (
	// ErrAborted: the communicator was aborted (Abort, or a peer's failure
	// detected); every pending and later operation returns it.
	ErrAborted = errors.New("nccl: communicator aborted")
	// ErrPeerDied: a peer process of the communicator died; the operation
	// waiting on it failed instead of hanging.
	ErrPeerDied = errors.New("nccl: peer died")
	// ErrClosed: the communicator was closed.
	ErrClosed = errors.New("nccl: communicator closed")
	// ErrBadArgument: a rank, peer, buffer size, dtype or device does not fit
	// the operation.
	ErrBadArgument = errors.New("nccl: bad argument")
	// ErrUnavailable: the backend cannot run here (no libnccl, no GPU).
	ErrUnavailable = errors.New("nccl: backend unavailable")
)

// ReduceOp is a reduction for AllReduce and ReduceScatter. The numbers are
// NCCL's ncclRedOp_t.
type ReduceOp int

// The reductions.
const (
	Sum  ReduceOp = 0
	Prod ReduceOp = 1
	Max  ReduceOp = 2
	Min  ReduceOp = 3
	Avg  ReduceOp = 4
)

func (op ReduceOp) String() string {
	switch op {
	case Sum:
		return "sum"
	case Prod:
		return "prod"
	case Max:
		return "max"
	case Min:
		return "min"
	case Avg:
		return "avg"
	}
	return fmt.Sprintf("ReduceOp(%d)", int(op))
}

// UniqueID identifies one communicator among its ranks: 128 opaque bytes,
// made by one participant (Backend.NewUniqueID) and passed by value to
// every rank's Backend.Init (it is safe to ship over RPC). It is NCCL's
// ncclUniqueId; the CPU backend puts its shared-memory segment's name in it.
type UniqueID [128]byte

// Communicator is a group of Size ranks that move tensors among themselves.
// Every operation blocks until this rank's part of it is done (for NCCL: is
// enqueued on stream and, unless the backend says otherwise, complete), or
// ctx ends, or the communicator fails: a dead or aborted peer gives an error
// wrapping ErrPeerDied or ErrAborted, never a hang. After a failure the
// communicator is aborted; make a new one.
//
// Collectives must be called by every rank, in the same order, with tensors
// of matching dtype and shape; point-to-point Send and Recv pair up in the
// order each pair issues them. Tensors must be on the backend's device: host
// tensors for the CPU backend, this rank's GPU for NCCL. stream is ignored
// by backends without streams.
type Communicator interface {
	Rank() int
	Size() int
	// Backend is the name of the backend that made it ("nccl", "cpu", ...).
	Backend() string
	// Send sends t to rank peer, which must Recv a tensor of the same size.
	Send(ctx context.Context, t *tensor.Tensor, peer int, stream cuda.Stream) error
	// Recv receives into t, which must have the size the sender sent.
	Recv(ctx context.Context, t *tensor.Tensor, peer int, stream cuda.Stream) error
	// AllReduce reduces in over all ranks with op and writes the result to
	// out on every rank; in and out have the same dtype and shape and may be
	// the same tensor.
	AllReduce(ctx context.Context, in, out *tensor.Tensor, op ReduceOp, stream cuda.Stream) error
	// AllGather concatenates every rank's in, in rank order, into out, which
	// holds Size times as many elements.
	AllGather(ctx context.Context, in, out *tensor.Tensor, stream cuda.Stream) error
	// ReduceScatter reduces in (Size × len(out) elements) over all ranks and
	// leaves block Rank of the result in out.
	ReduceScatter(ctx context.Context, in, out *tensor.Tensor, op ReduceOp, stream cuda.Stream) error
	// Broadcast copies root's t into every other rank's t.
	Broadcast(ctx context.Context, t *tensor.Tensor, root int, stream cuda.Stream) error
	// Abort fails every pending and later operation on this rank with
	// ErrAborted, and lets the peers see the abort. It is safe to call from
	// any goroutine, more than once, and after Close.
	Abort() error
	// Close releases the communicator; pending operations fail. Idempotent.
	Close() error
}

// DeviceCommunicator is a communicator that moves GPU tensors: those on
// its Device (an index among the GPUs the process sees). A Communicator
// that is not one moves host tensors. The nccl backend's communicators are
// DeviceCommunicators; a backend of your own that wraps one should be too.
type DeviceCommunicator interface {
	Communicator
	Device() int
}

// Backend makes communicators. A backend is registered by name (Register)
// so that every process of the binary (the workers that host actors) can
// find it: a compiled graph names the backend, one participant calls
// NewUniqueID, and each rank calls Init in its own process.
type Backend interface {
	Name() string
	// NewUniqueID makes a fresh communicator ID.
	NewUniqueID() (UniqueID, error)
	// Init joins the communicator id as rank of size, on GPU device (for
	// backends that use one; -1 for none). It returns once every rank has
	// joined, or ctx ends.
	Init(ctx context.Context, id UniqueID, rank, size, device int) (Communicator, error)
}

var (
	backendsMu sync.RWMutex
	backends   = map[string]Backend{}
)

// Register makes b findable by its name in every process of the binary.
// Call it from an init function. Registering a name twice panics.
func Register(b Backend) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	if _, dup := backends[b.Name()]; dup {
		panic("nccl: backend " + b.Name() + " registered twice")
	}
	backends[b.Name()] = b
}

// Lookup returns the backend registered as name.
func Lookup(name string) (Backend, error) {
	backendsMu.RLock()
	b, ok := backends[name]
	backendsMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: no communicator backend %q is registered (have %v): call nccl.Register in an init function of the binary", ErrUnavailable, name, Names())
	}
	return b, nil
}

// Names lists the registered backends, sorted.
func Names() []string {
	backendsMu.RLock()
	defer backendsMu.RUnlock()
	out := make([]string, 0, len(backends))
	for n := range backends {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
