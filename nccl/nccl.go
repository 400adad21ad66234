package nccl

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/tensor"
)

// EnvLibNCCL names the NCCL library to load instead of searching the
// loader path for libnccl.so.2 (for example
// /usr/lib/python3/site-packages/nvidia/nccl/lib/libnccl.so.2).
const EnvLibNCCL = "GORAY_LIBNCCL"

// EnvNCCLBlocking, set to 1, makes Init use the blocking ncclCommInitRank
// (the fallback for NCCL older than 2.14) instead of a non-blocking
// communicator. A blocking init cannot be cancelled, and a blocking
// communicator's calls cannot be interrupted by Abort; it is a diagnostic
// switch, not a mode to run in.
const EnvNCCLBlocking = "GORAY_NCCL_BLOCKING"

// ncclResult_t.
const (
	ncclSuccess            = 0
	ncclUnhandledCudaError = 1
	ncclSystemError        = 2
	ncclInternalError      = 3
	ncclInvalidArgument    = 4
	ncclInvalidUsage       = 5
	ncclRemoteError        = 6
	ncclInProgress         = 7
	ncclTimeout            = 8 // NCCL 2.29+
)

// ncclDataType_t.
const (
	ncclInt8     = 0
	ncclUint8    = 1
	ncclInt32    = 2
	ncclUint32   = 3
	ncclInt64    = 4
	ncclUint64   = 5
	ncclFloat16  = 6
	ncclFloat32  = 7
	ncclFloat64  = 8
	ncclBfloat16 = 9
)

var ncclTypeNames = [...]string{
	ncclInt8: "ncclInt8", ncclUint8: "ncclUint8", ncclInt32: "ncclInt32", ncclUint32: "ncclUint32",
	ncclInt64: "ncclInt64", ncclUint64: "ncclUint64", ncclFloat16: "ncclFloat16", ncclFloat32: "ncclFloat32",
	ncclFloat64: "ncclFloat64", ncclBfloat16: "ncclBfloat16",
}

// ncDataType maps a tensor dtype to the ncclDataType_t that moves it. The
// dtypes NCCL has no type for (Bool, Int16, Uint16) move as bytes
// (bytewise: count is the byte size, type ncclUint8), which only works for
// operations that do not compute on them: a reduction of one is an error.
func ncDataType(dt tensor.DType, reduce bool) (ncType int, bytewise bool, err error) {
	if ty, ok := ncTypes[dt]; ok {
		return ty, false, nil
	}
	switch dt {
	case tensor.Bool, tensor.Int16, tensor.Uint16:
		if reduce {
			return 0, false, fmt.Errorf("%w: NCCL cannot reduce %s tensors (it has no %s type): convert to a type it reduces (int32, float32, ...)", ErrBadArgument, dt, dt)
		}
		return ncclUint8, true, nil
	}
	return 0, false, fmt.Errorf("%w: %s is not a dtype the nccl backend moves", ErrBadArgument, dt)
}

// ncTypes are the dtypes NCCL has a type for.
var ncTypes = map[tensor.DType]int{
	tensor.Float32: ncclFloat32, tensor.Float16: ncclFloat16, tensor.BFloat16: ncclBfloat16, tensor.Float64: ncclFloat64,
	tensor.Int8: ncclInt8, tensor.Int32: ncclInt32, tensor.Int64: ncclInt64,
	tensor.Uint8: ncclUint8, tensor.Uint32: ncclUint32, tensor.Uint64: ncclUint64,
}

// ---------------------------------------------------------------------------
// Loading libnccl.

// ncAPI is the part of NCCL's C API the backend calls: the cgo binding of
// the loaded libnccl (ncCgoAPI), or a fake in tests. Results are
// ncclResult_t values; handles are ncclComm_t.
type ncAPI interface {
	hasConfigInit() bool // ncclCommInitRankConfig is there (2.14+)
	hasFinalize() bool   // ncclCommFinalize is there (2.14+)
	version() (int, int)
	uniqueID(id *UniqueID) int
	commInitRank(id *UniqueID, nranks, rank int) (uintptr, int)
	commInitRankConfig(id *UniqueID, nranks, rank int, blocking bool) (uintptr, int)
	commCount(comm uintptr) (int, int)
	commUserRank(comm uintptr) (int, int)
	// enqueue issues op; it runs with comm's device current on the
	// calling OS thread.
	enqueue(comm uintptr, op *ncOp) int
	groupStart() int
	groupEnd() int
	commGetAsyncError(comm uintptr) (state, result int)
	commAbort(comm uintptr) int
	commDestroy(comm uintptr) int
	commFinalize(comm uintptr) int
	errorString(r int) string
	lastError(comm uintptr) string // "" when there is none
}

var ncLib struct {
	once sync.Once
	path string
	err  error
	api  ncAPI // set when err is nil
}

// ncLoaded opens libnccl once per process and returns why it could not.
func ncLoaded() error {
	ncLib.once.Do(func() {
		ncLib.path, ncLib.err = ncOpenLibrary()
		if ncLib.err == nil {
			ncLib.api = ncBound()
		}
	})
	return ncLib.err
}

// nc is the loaded NCCL; only valid after ncLoaded returned nil.
func nc() ncAPI { return ncLib.api }

// ncCUDA is what the backend needs from package cuda (a variable so that
// tests can run the backend over a fake NCCL without a GPU).
var ncCUDA = struct {
	deviceCount func() (int, error)
	withDevice  func(dev int, f func() error) error
	query       func(s cuda.Stream) (bool, error)
}{cuda.DeviceCount, cuda.WithDevice, cuda.Stream.Query}

// ncCandidates are the names dlopen tries, in order.
func ncCandidates() (paths []string, fromEnv bool) {
	if p := os.Getenv(EnvLibNCCL); p != "" {
		return []string{p}, true
	}
	return []string{"libnccl.so.2", "libnccl.so"}, false
}

func ncOpenLibrary() (string, error) {
	if !ncCgo {
		return "", fmt.Errorf("%w: this binary was built without cgo (CGO_ENABLED=0), so it cannot load libnccl.so.2: rebuild with CGO_ENABLED=1 and a C compiler", ErrUnavailable)
	}
	paths, fromEnv := ncCandidates()
	var msgs []string
	for _, p := range paths {
		rc, msg := ncLoad(p)
		if rc == 0 {
			return p, nil
		}
		if rc == -2 {
			return "", fmt.Errorf("%w: %s was loaded but is not a usable NCCL (%s): point %s at libnccl.so.2 from NCCL 2.18 or later", ErrUnavailable, p, msg, EnvLibNCCL)
		}
		msgs = append(msgs, msg)
	}
	return "", ncNotFound(paths, msgs, fromEnv)
}

// ncNotFound says which library was not found, what the loader said, and
// how to make it findable.
func ncNotFound(paths, dlerrs []string, fromEnv bool) error {
	why := strings.Join(dlerrs, "; ")
	if fromEnv {
		return fmt.Errorf("%w: %s=%s could not be loaded (dlopen: %s): set it to the full path of libnccl.so.2 (e.g. site-packages/nvidia/nccl/lib/libnccl.so.2), or unset it to search the loader path (LD_LIBRARY_PATH)", ErrUnavailable, EnvLibNCCL, paths[0], why)
	}
	return fmt.Errorf("%w: libnccl.so.2 was not found (dlopen: %s): install NCCL (e.g. pip install nvidia-nccl-cu12) and put its lib folder (site-packages/nvidia/nccl/lib) on LD_LIBRARY_PATH, or set %s to the library's full path; on a machine without a GPU use the cpu backend", ErrUnavailable, why, EnvLibNCCL)
}

// Version returns the loaded NCCL's version code (NCCL_VERSION_CODE:
// major*10000 + minor*100 + patch, so 22703 for 2.27.3), or an error
// wrapping ErrUnavailable when there is no libnccl.
func Version() (int, error) {
	if err := ncLoaded(); err != nil {
		return 0, err
	}
	v, r := nc().version()
	if r != ncclSuccess {
		return 0, fmt.Errorf("%w: ncclGetVersion: %s", ErrUnavailable, ncMessage(r, ""))
	}
	return v, nil
}

// ncResultNames are nccl.h's descriptions of the results, for when the
// library is not there to say.
var ncResultNames = [...]string{
	ncclSuccess:            "no error",
	ncclUnhandledCudaError: "unhandled cuda error",
	ncclSystemError:        "unhandled system error",
	ncclInternalError:      "internal error",
	ncclInvalidArgument:    "invalid argument",
	ncclInvalidUsage:       "invalid usage",
	ncclRemoteError:        "remote process exited or there was a network error",
	ncclInProgress:         "NCCL operation in progress",
	ncclTimeout:            "timeout",
}

// ncErrorName is ncclGetErrorString(r), or the built-in description.
func ncErrorName(r int) string {
	if ncLoaded() == nil {
		if s := nc().errorString(r); s != "" {
			return s
		}
	}
	if r >= 0 && r < len(ncResultNames) {
		return ncResultNames[r]
	}
	return "unknown result"
}

// ncMessage is NCCL's text for result r, with its last error message.
func ncMessage(r int, last string) string {
	s := fmt.Sprintf("%s (ncclResult_t %d)", ncErrorName(r), r)
	if last != "" {
		s += ": " + last
	}
	return s
}

// ncResultError turns a failed result into an error wrapping the sentinel
// that fits: a lost peer or connection (ErrPeerDied), a bad call
// (ErrBadArgument, when badArg), anything else (ErrAborted).
func ncResultError(what string, r int, last string, badArg bool) error {
	sentinel := ErrAborted
	switch r {
	case ncclRemoteError, ncclSystemError, ncclTimeout:
		sentinel = ErrPeerDied
	case ncclInvalidArgument, ncclInvalidUsage:
		if badArg {
			sentinel = ErrBadArgument
		}
	}
	return fmt.Errorf("%w: %s: %s", sentinel, what, ncMessage(r, last))
}

// ---------------------------------------------------------------------------
// The backend.

type ncclBackend struct{}

func init() { Register(ncclBackend{}) }

func (ncclBackend) Name() string { return "nccl" }

// NewUniqueID calls ncclGetUniqueId. It needs libnccl but no GPU: the ID
// names a bootstrap socket of this process, which must stay alive until
// every rank has joined.
func (ncclBackend) NewUniqueID() (UniqueID, error) {
	var id UniqueID
	if err := ncLoaded(); err != nil {
		return id, err
	}
	if r := nc().uniqueID(&id); r != ncclSuccess {
		return UniqueID{}, fmt.Errorf("%w: ncclGetUniqueId: %s", ErrUnavailable, ncMessage(r, nc().lastError(0)))
	}
	return id, nil
}

func (ncclBackend) Init(ctx context.Context, id UniqueID, rank, size, device int) (Communicator, error) {
	c, err := InitNCCL(ctx, id, rank, size, device)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ---------------------------------------------------------------------------
// The communicator.

// NCCLComm is a communicator of the nccl backend: one rank, on one GPU, of
// an NCCL communicator. Besides Communicator it has Group (fuse several
// operations into one NCCL group), NoWait (operations that return once
// enqueued) and Wait.
//
// Operations enqueue on the given stream (a zero Stream is the legacy
// default stream of the communicator's device) and then wait for it to
// complete: they poll the stream, spinning briefly and then sleeping, and
// on each poll check ctx, Abort, Close and NCCL's asynchronous error. A
// failure, or the end of ctx once the operation is enqueued, aborts the
// communicator (an NCCL operation cannot be left half done) and returns an
// error wrapping ErrPeerDied or ErrAborted (and ctx.Err()), with NCCL's
// message; a ctx that ended before the operation was enqueued only returns
// ctx.Err(). A bad argument NCCL rejects leaves the communicator usable.
//
// The communicator may be used from several goroutines, but NCCL orders
// operations by the order they are issued, and every rank must issue the
// same collectives in the same order; while a Group is being recorded every
// operation issued on the communicator, from any goroutine, joins it.
type NCCLComm struct {
	st     *ncState
	nowait bool
}

type ncState struct {
	rank, size, dev int
	nonblocking     bool

	aborted atomic.Bool
	closed  atomic.Bool

	mu     sync.Mutex // serialises NCCL calls on handle; guards the fields below
	handle uintptr    // ncclComm_t; 0 once aborted or destroyed
	group  *ncGroup   // the Group being recorded
	cause  error      // why the communicator was aborted; nil for Abort
}

type ncGroup struct{ ops []ncOp }

type ncKind uint8

const (
	ncSend ncKind = iota + 1
	ncRecv
	ncAllReduce
	ncAllGather
	ncReduceScatter
	ncBroadcast
)

var ncKindNames = [...]string{ncSend: "send", ncRecv: "recv", ncAllReduce: "allreduce", ncAllGather: "allgather", ncReduceScatter: "reducescatter", ncBroadcast: "broadcast"}

func (k ncKind) String() string {
	if int(k) < len(ncKindNames) && ncKindNames[k] != "" {
		return ncKindNames[k]
	}
	return fmt.Sprintf("op(%d)", int(k))
}

// ncOp is one NCCL call: peer is the peer of Send/Recv and the root of
// Broadcast; count is in NCCL elements (sendcount for AllGather, recvcount
// for ReduceScatter).
type ncOp struct {
	kind    ncKind
	in, out uintptr
	count   uint64
	dtype   int
	redop   int
	peer    int
	stream  cuda.Stream
}

// InitNCCL joins communicator id as rank of size on GPU device and
// returns once every rank has joined, or ctx ends (then the half-made
// communicator is aborted). Without libnccl or without a GPU the error
// wraps ErrUnavailable and says why.
func InitNCCL(ctx context.Context, id UniqueID, rank, size, device int) (*NCCLComm, error) {
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("%w: nccl init: rank %d of size %d", ErrBadArgument, rank, size)
	}
	if device < 0 {
		return nil, fmt.Errorf("%w: nccl init: device %d: the nccl backend needs a GPU index (0, 1, ...); use the cpu backend without a GPU", ErrBadArgument, device)
	}
	if err := ncLoaded(); err != nil {
		return nil, err
	}
	n, err := ncCUDA.deviceCount()
	if err != nil {
		return nil, fmt.Errorf("%w: no GPU for NCCL: %w", ErrUnavailable, err)
	}
	if device >= n {
		return nil, fmt.Errorf("%w: nccl init: device %d, but this process sees %d GPU(s) (CUDA_VISIBLE_DEVICES applies)", ErrBadArgument, device, n)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nccl init rank %d of %d: %w", rank, size, err)
	}
	st := &ncState{rank: rank, size: size, dev: device}
	c := &NCCLComm{st: st}
	what := fmt.Sprintf("init rank %d of %d on cuda:%d", rank, size, device)
	if nc().hasConfigInit() && os.Getenv(EnvNCCLBlocking) != "1" {
		var h uintptr
		var r int
		var last string
		ran := false
		err := ncCUDA.withDevice(device, func() error {
			ran = true
			h, r = nc().commInitRankConfig(&id, size, rank, false)
			if r != ncclSuccess && r != ncclInProgress {
				last = nc().lastError(h)
			}
			return nil
		})
		if !ran {
			return nil, fmt.Errorf("%w: nccl %s: %w", ErrUnavailable, what, err)
		}
		if r != ncclSuccess && r != ncclInProgress {
			if h != 0 {
				nc().commAbort(h)
			}
			return nil, ncResultError(what, r, last, true)
		}
		st.handle, st.nonblocking = h, true
		if err := c.settle(ctx, what, true); err != nil {
			return nil, err
		}
	} else if err := c.initBlocking(ctx, id, what); err != nil {
		return nil, err
	}
	if err := c.checkShape(what); err != nil {
		c.abort(err)
		return nil, err
	}
	return c, nil
}

// initBlocking runs ncclCommInitRank on a locked OS thread in a goroutine.
// If ctx ends first, Init returns and the goroutine destroys the
// communicator whenever NCCL returns it.
func (c *NCCLComm) initBlocking(ctx context.Context, id UniqueID, what string) error {
	st := c.st
	type result struct {
		h    uintptr
		r    int
		last string
		ran  bool
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		var out result
		out.err = ncCUDA.withDevice(st.dev, func() error {
			out.ran = true
			out.h, out.r = nc().commInitRank(&id, st.size, st.rank)
			if out.r != ncclSuccess {
				out.last = nc().lastError(out.h)
			}
			return nil
		})
		ch <- out
	}()
	select {
	case out := <-ch:
		if !out.ran {
			return fmt.Errorf("%w: nccl %s: %w", ErrUnavailable, what, out.err)
		}
		if out.r != ncclSuccess {
			return ncResultError(what, out.r, out.last, true)
		}
		st.handle = out.h
		return nil
	case <-ctx.Done():
		go func() {
			if out := <-ch; out.ran && out.r == ncclSuccess && out.h != 0 {
				nc().commAbort(out.h)
			}
		}()
		return fmt.Errorf("nccl %s: %w (the blocking ncclCommInitRank goes on until the other ranks join or fail; unset %s or use NCCL 2.14+ for a cancellable init)", what, ctx.Err(), EnvNCCLBlocking)
	}
}

// checkShape compares NCCL's idea of rank and size with ours.
func (c *NCCLComm) checkShape(what string) error {
	st := c.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.handle == 0 {
		return c.stateErrLocked()
	}
	n, r1 := nc().commCount(st.handle)
	rank, r2 := nc().commUserRank(st.handle)
	if r1 != ncclSuccess || r2 != ncclSuccess {
		return fmt.Errorf("%w: nccl %s: ncclCommCount/ncclCommUserRank: %s / %s", ErrAborted, what, ncMessage(r1, ""), ncMessage(r2, ""))
	}
	if n != st.size || rank != st.rank {
		return fmt.Errorf("%w: nccl %s: NCCL made rank %d of %d", ErrAborted, what, rank, n)
	}
	return nil
}

// Rank is this rank.
func (c *NCCLComm) Rank() int { return c.st.rank }

// Size is the number of ranks.
func (c *NCCLComm) Size() int { return c.st.size }

// Device is the GPU this rank uses.
func (c *NCCLComm) Device() int { return c.st.dev }

// Backend is "nccl".
func (c *NCCLComm) Backend() string { return "nccl" }

func (c *NCCLComm) String() string {
	return fmt.Sprintf("nccl communicator rank %d of %d on cuda:%d", c.st.rank, c.st.size, c.st.dev)
}

// NoWait returns a view of the same communicator whose operations return
// once they are enqueued on their stream, without waiting for them to
// complete: for pipelining. Wait (or synchronising the stream) tells when
// they are done; a failure shows up there or in a later operation.
func (c *NCCLComm) NoWait() *NCCLComm { return &NCCLComm{st: c.st, nowait: true} }

// Wait waits until everything enqueued on stream is complete, checking
// ctx, Abort and NCCL's asynchronous error as the operations do.
func (c *NCCLComm) Wait(ctx context.Context, stream cuda.Stream) error {
	s, err := c.stream("wait", stream)
	if err != nil {
		return err
	}
	if err := c.stateErr(); err != nil {
		return err
	}
	return c.waitStream(ctx, "wait", s)
}

// Group runs f, which issues operations on c (typically Sends and Recvs
// to several peers, or to this rank itself), and then issues them all as
// one NCCL group (ncclGroupStart ... ncclGroupEnd), which lets them
// progress together; it waits for all of them unless c is a NoWait view.
// The operations inside f only check their arguments and record
// themselves; an error from f or from any of them discards the group.
// Groups nest: an inner Group joins the outer one.
func (c *NCCLComm) Group(ctx context.Context, f func() error) error {
	st := c.st
	if err := c.stateErr(); err != nil {
		return err
	}
	st.mu.Lock()
	if st.group != nil {
		st.mu.Unlock()
		return f()
	}
	g := &ncGroup{}
	st.group = g
	st.mu.Unlock()
	done := false
	defer func() {
		if !done {
			st.mu.Lock()
			st.group = nil
			st.mu.Unlock()
		}
	}()
	err := f()
	st.mu.Lock()
	st.group = nil
	st.mu.Unlock()
	done = true
	if err != nil {
		return err
	}
	if len(g.ops) == 0 {
		return nil
	}
	return c.launch(ctx, "group", g.ops)
}

// Send sends t to rank peer.
func (c *NCCLComm) Send(ctx context.Context, t *tensor.Tensor, peer int, stream cuda.Stream) error {
	return c.p2p(ctx, ncSend, t, peer, stream)
}

// Recv receives into t from rank peer.
func (c *NCCLComm) Recv(ctx context.Context, t *tensor.Tensor, peer int, stream cuda.Stream) error {
	return c.p2p(ctx, ncRecv, t, peer, stream)
}

func (c *NCCLComm) p2p(ctx context.Context, kind ncKind, t *tensor.Tensor, peer int, stream cuda.Stream) error {
	what := kind.String()
	if err := c.devTensor(what, "", t); err != nil {
		return err
	}
	if peer < 0 || peer >= c.st.size {
		return fmt.Errorf("%w: nccl %s: peer %d is not a rank of a communicator of size %d", ErrBadArgument, what, peer, c.st.size)
	}
	ty, count, err := c.typeCount(what, t, false)
	if err != nil {
		return err
	}
	s, err := c.stream(what, stream)
	if err != nil {
		return err
	}
	op := ncOp{kind: kind, count: count, dtype: ty, peer: peer, stream: s}
	if kind == ncSend {
		op.in = t.DevicePtr()
	} else {
		op.out = t.DevicePtr()
	}
	return c.issue(ctx, op)
}

// AllReduce reduces in over all ranks into out (which may be in).
func (c *NCCLComm) AllReduce(ctx context.Context, in, out *tensor.Tensor, op ReduceOp, stream cuda.Stream) error {
	const what = "allreduce"
	if err := c.devTensor(what, "in ", in); err != nil {
		return err
	}
	if err := c.devTensor(what, "out ", out); err != nil {
		return err
	}
	if err := ncCheckRedOp(what, op); err != nil {
		return err
	}
	if in.DType() != out.DType() || in.NumElements() != out.NumElements() {
		return fmt.Errorf("%w: nccl %s: in %s and out %s differ in dtype or size", ErrBadArgument, what, in, out)
	}
	ty, count, err := c.typeCount(what, in, true)
	if err != nil {
		return err
	}
	s, err := c.stream(what, stream)
	if err != nil {
		return err
	}
	return c.issue(ctx, ncOp{kind: ncAllReduce, in: in.DevicePtr(), out: out.DevicePtr(), count: count, dtype: ty, redop: int(op), stream: s})
}

// AllGather concatenates every rank's in, in rank order, into out.
func (c *NCCLComm) AllGather(ctx context.Context, in, out *tensor.Tensor, stream cuda.Stream) error {
	const what = "allgather"
	if err := c.devTensor(what, "in ", in); err != nil {
		return err
	}
	if err := c.devTensor(what, "out ", out); err != nil {
		return err
	}
	if in.DType() != out.DType() || out.NumElements() != c.st.size*in.NumElements() {
		return fmt.Errorf("%w: nccl %s: out %s must hold %d × in %s (same dtype)", ErrBadArgument, what, out, c.st.size, in)
	}
	ty, count, err := c.typeCount(what, in, false)
	if err != nil {
		return err
	}
	s, err := c.stream(what, stream)
	if err != nil {
		return err
	}
	return c.issue(ctx, ncOp{kind: ncAllGather, in: in.DevicePtr(), out: out.DevicePtr(), count: count, dtype: ty, stream: s})
}

// ReduceScatter reduces in over all ranks and leaves block Rank in out.
func (c *NCCLComm) ReduceScatter(ctx context.Context, in, out *tensor.Tensor, op ReduceOp, stream cuda.Stream) error {
	const what = "reducescatter"
	if err := c.devTensor(what, "in ", in); err != nil {
		return err
	}
	if err := c.devTensor(what, "out ", out); err != nil {
		return err
	}
	if err := ncCheckRedOp(what, op); err != nil {
		return err
	}
	if in.DType() != out.DType() || in.NumElements() != c.st.size*out.NumElements() {
		return fmt.Errorf("%w: nccl %s: in %s must hold %d × out %s (same dtype)", ErrBadArgument, what, in, c.st.size, out)
	}
	ty, count, err := c.typeCount(what, out, true)
	if err != nil {
		return err
	}
	s, err := c.stream(what, stream)
	if err != nil {
		return err
	}
	return c.issue(ctx, ncOp{kind: ncReduceScatter, in: in.DevicePtr(), out: out.DevicePtr(), count: count, dtype: ty, redop: int(op), stream: s})
}

// Broadcast copies root's t into every other rank's t.
func (c *NCCLComm) Broadcast(ctx context.Context, t *tensor.Tensor, root int, stream cuda.Stream) error {
	const what = "broadcast"
	if err := c.devTensor(what, "", t); err != nil {
		return err
	}
	if root < 0 || root >= c.st.size {
		return fmt.Errorf("%w: nccl %s: root %d is not a rank of a communicator of size %d", ErrBadArgument, what, root, c.st.size)
	}
	ty, count, err := c.typeCount(what, t, false)
	if err != nil {
		return err
	}
	s, err := c.stream(what, stream)
	if err != nil {
		return err
	}
	return c.issue(ctx, ncOp{kind: ncBroadcast, in: t.DevicePtr(), out: t.DevicePtr(), count: count, dtype: ty, peer: root, stream: s})
}

func ncCheckRedOp(what string, op ReduceOp) error {
	if op < Sum || op > Avg {
		return fmt.Errorf("%w: nccl %s: %s is not a reduction", ErrBadArgument, what, op)
	}
	return nil
}

// devTensor checks that t is device memory on this rank's GPU.
func (c *NCCLComm) devTensor(what, role string, t *tensor.Tensor) error {
	if t == nil {
		return fmt.Errorf("%w: nccl %s: %stensor is nil", ErrBadArgument, what, role)
	}
	d := t.Device()
	if !d.IsCUDA() {
		return fmt.Errorf("%w: nccl %s: %s%s is on the host: the nccl backend moves GPU tensors; use the cpu backend for host tensors", ErrBadArgument, what, role, t)
	}
	if d.Index != c.st.dev {
		return fmt.Errorf("%w: nccl %s: %s%s is on %s, but this rank's GPU is cuda:%d", ErrBadArgument, what, role, t, d, c.st.dev)
	}
	if t.DevicePtr() == 0 && t.NumBytes() > 0 {
		return fmt.Errorf("%w: nccl %s: %s%s has no device memory (freed?)", ErrBadArgument, what, role, t)
	}
	return nil
}

// typeCount is t's NCCL type and element count.
func (c *NCCLComm) typeCount(what string, t *tensor.Tensor, reduce bool) (int, uint64, error) {
	ty, bytewise, err := ncDataType(t.DType(), reduce)
	if err != nil {
		return 0, 0, fmt.Errorf("nccl %s: %w", what, err)
	}
	if bytewise {
		return ty, uint64(t.NumBytes()), nil
	}
	return ty, uint64(t.NumElements()), nil
}

// stream resolves a zero stream to the device's legacy default stream and
// checks that a stream is on this rank's GPU.
func (c *NCCLComm) stream(what string, s cuda.Stream) (cuda.Stream, error) {
	if s.Handle() == 0 {
		return cuda.Default(c.st.dev), nil
	}
	if s.Device() != c.st.dev {
		return s, fmt.Errorf("%w: nccl %s: the stream is on cuda:%d, but this rank's GPU is cuda:%d", ErrBadArgument, what, s.Device(), c.st.dev)
	}
	return s, nil
}

// issue records op in the Group being built, or launches it alone.
func (c *NCCLComm) issue(ctx context.Context, op ncOp) error {
	st := c.st
	if err := c.stateErr(); err != nil {
		return err
	}
	st.mu.Lock()
	if g := st.group; g != nil {
		g.ops = append(g.ops, op)
		st.mu.Unlock()
		return nil
	}
	st.mu.Unlock()
	if (op.kind == ncSend || op.kind == ncRecv) && op.peer == st.rank {
		// It would wait for its own matching half forever.
		return fmt.Errorf("%w: nccl %s to itself (rank %d) outside a Group: issue the Send and the Recv together inside NCCLComm.Group", ErrBadArgument, op.kind, st.rank)
	}
	return c.launch(ctx, op.kind.String(), []ncOp{op})
}

// launch enqueues ops (as one NCCL group when there are several) and, for
// a waiting communicator, waits for their streams.
func (c *NCCLComm) launch(ctx context.Context, what string, ops []ncOp) error {
	st := c.st
	select {
	case <-ctx.Done():
		return fmt.Errorf("nccl %s: %w", what, ctx.Err())
	default:
	}
	st.mu.Lock()
	if st.handle == 0 {
		err := c.stateErrLocked()
		st.mu.Unlock()
		return err
	}
	h := st.handle
	r := ncclSuccess
	var last string
	ran := false
	werr := ncCUDA.withDevice(st.dev, func() error {
		ran = true
		grouped := len(ops) > 1
		if grouped {
			if r = nc().groupStart(); r != ncclSuccess {
				last = nc().lastError(h)
				return nil
			}
		}
		for i := range ops {
			r = nc().enqueue(h, &ops[i])
			if r != ncclSuccess && r != ncclInProgress {
				what = fmt.Sprintf("%s (%s)", what, ops[i].kind)
				break
			}
		}
		if grouped {
			if r2 := nc().groupEnd(); r == ncclSuccess || r == ncclInProgress {
				r = r2
			}
		}
		if r != ncclSuccess && r != ncclInProgress {
			last = nc().lastError(h)
		}
		return nil
	})
	st.mu.Unlock()
	if !ran {
		return fmt.Errorf("%w: nccl %s: cannot make cuda:%d current: %w", ErrAborted, what, st.dev, werr)
	}
	switch r {
	case ncclSuccess:
	case ncclInProgress:
		// A non-blocking communicator is still enqueueing: wait until it
		// is done before the stream can be waited for.
		if err := c.settle(ctx, what, false); err != nil {
			return err
		}
	default:
		return c.callFailed(what, r, last)
	}
	if c.nowait {
		return nil
	}
	var seen []cuda.Stream
	for _, op := range ops {
		dup := false
		for _, s := range seen {
			if s == op.stream {
				dup = true
			}
		}
		if dup {
			continue
		}
		seen = append(seen, op.stream)
		if err := c.waitStream(ctx, what, op.stream); err != nil {
			return err
		}
	}
	return nil
}

// callFailed handles a failed enqueue: a bad argument leaves a healthy
// communicator usable; anything else aborts it.
func (c *NCCLComm) callFailed(what string, r int, last string) error {
	if r == ncclInvalidArgument || r == ncclInvalidUsage {
		st := c.st
		st.mu.Lock()
		healthy := false
		if st.handle != 0 {
			state, qr := nc().commGetAsyncError(st.handle)
			healthy = qr == ncclSuccess && (state == ncclSuccess || state == ncclInProgress)
		}
		st.mu.Unlock()
		if healthy {
			return ncResultError(what, r, last, true)
		}
	}
	err := ncResultError(what, r, last, false)
	c.abort(err)
	return err
}

// asyncErr asks NCCL for the communicator's asynchronous state: done
// reports whether it is past ncclInProgress; err is a failure (the
// communicator is then aborted).
func (c *NCCLComm) asyncErr(what string) (done bool, err error) {
	st := c.st
	st.mu.Lock()
	if st.handle == 0 {
		err := c.stateErrLocked()
		st.mu.Unlock()
		return true, err
	}
	state, r := nc().commGetAsyncError(st.handle)
	var last string
	if r != ncclSuccess {
		state = r
	}
	if state != ncclSuccess && state != ncclInProgress {
		last = nc().lastError(st.handle)
	}
	st.mu.Unlock()
	switch state {
	case ncclSuccess:
		return true, nil
	case ncclInProgress:
		return false, nil
	}
	err = ncResultError(what, state, last, false)
	c.abort(err)
	return true, err
}

// settle polls a non-blocking communicator until it is no longer
// ncclInProgress (after init, or after an enqueue that returned it). init
// says the failure is of Init: a bad argument then is ErrBadArgument.
func (c *NCCLComm) settle(ctx context.Context, what string, init bool) error {
	st := c.st
	sleep := time.Microsecond
	for {
		st.mu.Lock()
		h := st.handle
		if h == 0 {
			err := c.stateErrLocked()
			st.mu.Unlock()
			return err
		}
		state, r := nc().commGetAsyncError(h)
		if r != ncclSuccess {
			state = r
		}
		var last string
		if state != ncclSuccess && state != ncclInProgress {
			last = nc().lastError(h)
		}
		st.mu.Unlock()
		switch state {
		case ncclSuccess:
			return nil
		case ncclInProgress:
		default:
			err := ncResultError(what, state, last, init)
			c.abort(err)
			return err
		}
		select {
		case <-ctx.Done():
			err := fmt.Errorf("%w: nccl %s interrupted: %w", ErrAborted, what, ctx.Err())
			c.abort(err)
			return err
		default:
		}
		time.Sleep(sleep)
		if sleep < time.Millisecond {
			sleep *= 2
		}
	}
}

// Waiting for a stream: spin this long, querying the stream, before
// sleeping between queries; the sleeps grow to ncSleepMax.
const (
	ncSpin     = 50 * time.Microsecond
	ncSleepMax = 500 * time.Microsecond
)

// waitStream polls s until its work is complete. On each poll it checks
// Abort and Close, ctx (whose end aborts the communicator: the GPU work
// cannot be left half done), and every few polls NCCL's asynchronous
// error.
func (c *NCCLComm) waitStream(ctx context.Context, what string, s cuda.Stream) error {
	st := c.st
	start := time.Now()
	sleep := 2 * time.Microsecond
	for i := 0; ; i++ {
		done, err := ncCUDA.query(s)
		if err != nil {
			err = fmt.Errorf("%w: nccl %s: stream of cuda:%d: %w", ErrAborted, what, s.Device(), err)
			c.abort(err)
			return err
		}
		// Abort kills the kernels, which then complete: a done stream of an
		// aborted communicator has not done its work.
		if st.aborted.Load() || st.closed.Load() {
			return c.stateErr()
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			err := fmt.Errorf("%w: nccl %s interrupted: %w", ErrAborted, what, ctx.Err())
			c.abort(err)
			return err
		default:
		}
		spinning := time.Since(start) < ncSpin
		if !spinning || i%16 == 15 {
			if _, err := c.asyncErr(what); err != nil {
				return err
			}
		}
		if spinning {
			continue
		}
		time.Sleep(sleep)
		if sleep < ncSleepMax {
			sleep *= 2
		}
	}
}

// stateErr is the error for an operation on a closed or aborted
// communicator, or nil.
func (c *NCCLComm) stateErr() error {
	st := c.st
	if !st.closed.Load() && !st.aborted.Load() {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return c.stateErrLocked()
}

func (c *NCCLComm) stateErrLocked() error {
	st := c.st
	switch {
	case st.closed.Load():
		return fmt.Errorf("%w: %s", ErrClosed, c)
	case st.cause != nil:
		return fmt.Errorf("%w: %s, after: %w", ErrAborted, c, st.cause)
	case st.aborted.Load():
		return fmt.Errorf("%w: %s was aborted", ErrAborted, c)
	}
	return fmt.Errorf("%w: %s has no NCCL communicator", ErrAborted, c)
}

// abort marks the communicator aborted (remembering the first cause) and
// calls ncclCommAbort once. It returns the ncclCommAbort failure, if any.
func (c *NCCLComm) abort(cause error) error {
	st := c.st
	st.aborted.Store(true)
	st.mu.Lock()
	if st.cause == nil && cause != nil {
		st.cause = cause
	}
	h := st.handle
	st.handle = 0
	st.mu.Unlock()
	if h == 0 {
		return nil
	}
	r := ncclSuccess
	ran := false
	_ = ncCUDA.withDevice(st.dev, func() error {
		ran = true
		r = nc().commAbort(h)
		return nil
	})
	if !ran {
		r = nc().commAbort(h)
	}
	if r != ncclSuccess && r != ncclInProgress {
		return fmt.Errorf("%w: ncclCommAbort: %s", ErrAborted, ncMessage(r, ""))
	}
	return nil
}

// Abort aborts the communicator (ncclCommAbort): every pending and later
// operation fails with ErrAborted, and the peers' operations with this
// rank fail instead of hanging. Safe from any goroutine, more than once,
// and after Close.
func (c *NCCLComm) Abort() error { return c.abort(nil) }

// ncCloseTimeout bounds ncclCommFinalize in Close; past it the
// communicator is aborted instead.
const ncCloseTimeout = 10 * time.Second

// Close flushes and frees the communicator (ncclCommFinalize, then
// ncclCommDestroy); if that fails or takes longer than 10 s it aborts
// instead. Pending operations fail with ErrClosed. Idempotent.
func (c *NCCLComm) Close() error {
	st := c.st
	if !st.closed.CompareAndSwap(false, true) {
		return nil
	}
	st.mu.Lock()
	h := st.handle
	st.handle = 0
	st.mu.Unlock()
	if h == 0 {
		return nil
	}
	var err error
	ran := false
	werr := ncCUDA.withDevice(st.dev, func() error {
		ran = true
		err = ncFinalizeDestroy(h, st.nonblocking)
		return nil
	})
	if !ran {
		nc().commAbort(h)
		return fmt.Errorf("%w: nccl close: cannot make cuda:%d current (aborted instead): %w", ErrAborted, st.dev, werr)
	}
	return err
}

// ncFinalizeDestroy finalizes (when the library has ncclCommFinalize and
// the communicator is non-blocking, so that it can be bounded) and
// destroys h, aborting it on failure or timeout.
func ncFinalizeDestroy(h uintptr, nonblocking bool) error {
	if nonblocking && nc().hasFinalize() {
		r := nc().commFinalize(h)
		deadline := time.Now().Add(ncCloseTimeout)
		sleep := time.Microsecond
		for r == ncclInProgress || r == ncclSuccess {
			state, qr := nc().commGetAsyncError(h)
			if qr != ncclSuccess {
				state = qr
			}
			if state != ncclInProgress {
				r = state
				break
			}
			if time.Now().After(deadline) {
				nc().commAbort(h)
				return fmt.Errorf("%w: nccl close: ncclCommFinalize did not finish within %v (a peer gone?); aborted instead", ErrAborted, ncCloseTimeout)
			}
			time.Sleep(sleep)
			if sleep < time.Millisecond {
				sleep *= 2
			}
		}
		if r != ncclSuccess {
			last := nc().lastError(h)
			nc().commAbort(h)
			return ncResultError("close: ncclCommFinalize (aborted instead)", r, last, false)
		}
	}
	if r := nc().commDestroy(h); r != ncclSuccess && r != ncclInProgress {
		return ncResultError("close: ncclCommDestroy", r, "", false)
	}
	return nil
}

var _ DeviceCommunicator = (*NCCLComm)(nil)
