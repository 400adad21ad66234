package nccl

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/tensor"
)

// The backend's logic (non-blocking init, groups, stream polling, aborts,
// error mapping) over a fake NCCL and a fake GPU, so that it runs on every
// machine. The fake keeps NCCL's rules that the backend must follow: group
// calls and enqueues on one OS thread with the device current, no call on
// a communicator after ncclCommAbort or ncclCommDestroy, and polling
// ncclCommGetAsyncError while a non-blocking call is in progress. Data
// moves for real in host memory, as if every rank held the same input.

type fakeNCCL struct {
	t testing.TB

	mu      sync.Mutex
	next    uintptr
	comms   map[uintptr]*fakeCommState
	streams map[uintptr]*fakeStream
	mem     map[uintptr][]byte
	devOn   map[int]int // OS thread id → current device, inside withDevice
	calls   []string
	bad     []string // rule violations
	lastErr string

	// Knobs.
	noConfig     bool // a library without ncclCommInitRankConfig
	initPolls    int  // ncclInProgress polls before init settles
	initResult   int  // what init settles to
	initLast     string
	initHang     bool
	enqueuePolls int // a call returns ncclInProgress for this many polls
	dieAfter     int // async polls with a hung stream before ncclRemoteError
	failEnqueue  int // the next enqueue returns this result

	// Group state (NCCL's is per thread).
	groupTid int
	groupOps []fakeCall
	selfQ    [][]byte
	lastOp   ncOp
	id       UniqueID
}

type fakeCommState struct {
	n, rank   int
	polls     int
	state     int
	hangPolls int
}

type fakeStream struct {
	busy int
	hang bool
}

type fakeCall struct {
	comm uintptr
	op   ncOp
}

func newFake(t testing.TB) *fakeNCCL {
	return &fakeNCCL{t: t, next: 0x1000, comms: map[uintptr]*fakeCommState{}, streams: map[uintptr]*fakeStream{}, mem: map[uintptr][]byte{}, devOn: map[int]int{}}
}

// useFake makes the backend use f until the test ends.
func useFake(t *testing.T, f *fakeNCCL) {
	_ = ncLoaded()
	saved, savedCUDA := ncLib.api, ncCUDA
	savedErr := ncLib.err
	ncLib.api, ncLib.err = f, nil
	ncCUDA.deviceCount = func() (int, error) { return 1, nil }
	ncCUDA.withDevice = f.withDevice
	ncCUDA.query = f.query
	t.Cleanup(func() {
		ncLib.api, ncLib.err, ncCUDA = saved, savedErr, savedCUDA
		f.mu.Lock()
		defer f.mu.Unlock()
		assert.Empty(t, f.bad, "NCCL rules the backend broke")
	})
}

func (f *fakeNCCL) violate(format string, args ...any) {
	f.bad = append(f.bad, fmt.Sprintf(format, args...))
}

func (f *fakeNCCL) called(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c == name {
			return true
		}
	}
	return false
}

// alloc is fake device memory: a tensor whose pointer the fake resolves.
func (f *fakeNCCL) alloc(dt tensor.DType, b []byte, shape ...int) *tensor.Tensor {
	n := dt.Size()
	for _, d := range shape {
		n *= d
	}
	require.True(f.t, len(b) == 0 || len(b) == n, "alloc: %d bytes for %d", len(b), n)
	buf := make([]byte, max(n, 1))
	copy(buf, b)
	p := uintptr(unsafe.Pointer(&buf[0]))
	f.mu.Lock()
	f.mem[p] = buf
	f.mu.Unlock()
	x, err := tensor.FromDevicePtr(dt, tensor.CUDA(0), p, nil, shape...)
	require.NoError(f.t, err)
	return x
}

func (f *fakeNCCL) bytes(x *tensor.Tensor) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.mem[x.DevicePtr()][:x.NumBytes()]...)
}

func (f *fakeNCCL) withDevice(dev int, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	f.mu.Lock()
	prev, had := f.devOn[tid]
	f.devOn[tid] = dev
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if had {
			f.devOn[tid] = prev
		} else {
			delete(f.devOn, tid)
		}
		f.mu.Unlock()
	}()
	return fn()
}

func (f *fakeNCCL) query(s cuda.Stream) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.streams[s.Handle()]
	if st == nil {
		return true, nil
	}
	if st.hang {
		return false, nil
	}
	if st.busy > 0 {
		st.busy--
		return false, nil
	}
	return true, nil
}

func (f *fakeNCCL) hasConfigInit() bool { return !f.noConfig }
func (f *fakeNCCL) hasFinalize() bool   { return !f.noConfig }
func (f *fakeNCCL) version() (int, int) { return 23000, ncclSuccess }

func (f *fakeNCCL) uniqueID(id *UniqueID) int {
	for i := range id {
		id[i] = byte(i*31 + 7)
	}
	return ncclSuccess
}

func (f *fakeNCCL) newComm(id *UniqueID, n, rank int, polls int) uintptr {
	f.next += 0x10
	f.comms[f.next] = &fakeCommState{n: n, rank: rank, polls: polls, state: f.initResult}
	f.id = *id
	return f.next
}

func (f *fakeNCCL) commInitRank(id *UniqueID, n, rank int) (uintptr, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "commInitRank")
	f.checkDevice("commInitRank")
	if f.initResult != ncclSuccess {
		f.lastErr = f.initLast
		return 0, f.initResult
	}
	return f.newComm(id, n, rank, 0), ncclSuccess
}

func (f *fakeNCCL) commInitRankConfig(id *UniqueID, n, rank int, blocking bool) (uintptr, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "commInitRankConfig")
	f.checkDevice("commInitRankConfig")
	if blocking {
		f.violate("init asked for a blocking communicator")
	}
	polls := f.initPolls
	if f.initHang {
		polls = math.MaxInt
	}
	return f.newComm(id, n, rank, polls), ncclInProgress
}

// comm returns a live communicator, or records the use of a dead one.
func (f *fakeNCCL) comm(h uintptr, call string) *fakeCommState {
	c := f.comms[h]
	if c == nil {
		f.violate("%s on communicator %#x after abort or destroy (or never made)", call, h)
	}
	return c
}

func (f *fakeNCCL) checkDevice(call string) {
	if dev, ok := f.devOn[unix.Gettid()]; !ok || dev != 0 {
		f.violate("%s without the device current on the calling thread", call)
	}
}

func (f *fakeNCCL) commCount(h uintptr) (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.comm(h, "commCount"); c != nil {
		return c.n, ncclSuccess
	}
	return 0, ncclInvalidArgument
}

func (f *fakeNCCL) commUserRank(h uintptr) (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.comm(h, "commUserRank"); c != nil {
		return c.rank, ncclSuccess
	}
	return 0, ncclInvalidArgument
}

func (f *fakeNCCL) enqueue(h uintptr, op *ncOp) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "enqueue "+op.kind.String())
	c := f.comm(h, "enqueue")
	if c == nil {
		return ncclInvalidArgument
	}
	if c.polls > 0 {
		f.violate("enqueue while the communicator is still in progress")
	}
	f.checkDevice("enqueue")
	f.lastOp = *op
	if r := f.failEnqueue; r != ncclSuccess {
		f.failEnqueue = ncclSuccess
		if r != ncclInvalidArgument {
			c.state = r
		}
		f.lastErr = "fake enqueue failure"
		return r
	}
	if f.groupTid != 0 {
		if f.groupTid != unix.Gettid() {
			f.violate("enqueue inside a group from another OS thread")
		}
		f.groupOps = append(f.groupOps, fakeCall{h, *op})
		return ncclSuccess
	}
	f.run(c, op)
	if f.enqueuePolls > 0 {
		c.polls = f.enqueuePolls
		return ncclInProgress
	}
	return ncclSuccess
}

func (f *fakeNCCL) groupStart() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "groupStart")
	if f.groupTid != 0 {
		f.violate("nested groupStart")
	}
	f.groupTid = unix.Gettid()
	return ncclSuccess
}

func (f *fakeNCCL) groupEnd() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "groupEnd")
	if f.groupTid != unix.Gettid() {
		f.violate("groupEnd on another OS thread than groupStart")
	}
	f.groupTid = 0
	ops := f.groupOps
	f.groupOps = nil
	// Sends first, so that a Recv from this rank finds its data.
	for _, pass := range []bool{true, false} {
		for _, o := range ops {
			if (o.op.kind == ncSend) == pass {
				if c := f.comms[o.comm]; c != nil {
					f.run(c, &o.op)
				}
			}
		}
	}
	if f.enqueuePolls > 0 && len(ops) > 0 {
		f.comms[ops[0].comm].polls = f.enqueuePolls
		return ncclInProgress
	}
	return ncclSuccess
}

// run does op as if every rank held the same input.
func (f *fakeNCCL) run(c *fakeCommState, op *ncOp) {
	size := map[int]int{ncclInt8: 1, ncclUint8: 1, ncclInt32: 4, ncclUint32: 4, ncclInt64: 8, ncclUint64: 8, ncclFloat16: 2, ncclFloat32: 4, ncclFloat64: 8, ncclBfloat16: 2}[op.dtype]
	nb := int(op.count) * size
	buf := func(p uintptr, n int) []byte {
		b, ok := f.mem[p]
		if !ok || len(b) < n {
			f.violate("%s: %d bytes at %#x is not fake device memory", op.kind, n, p)
			return make([]byte, n)
		}
		return b[:n]
	}
	st := f.streams[op.stream.Handle()]
	if st == nil {
		st = &fakeStream{}
		f.streams[op.stream.Handle()] = st
	}
	st.busy = 3
	f32 := func(b []byte, i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])) }
	put := func(b []byte, i int, v float32) { binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v)) }
	switch op.kind {
	case ncAllReduce:
		in, out := buf(op.in, nb), buf(op.out, nb)
		if op.dtype != ncclFloat32 {
			copy(out, in)
			return
		}
		for i := 0; i < int(op.count); i++ {
			x := f32(in, i)
			v := x
			switch ReduceOp(op.redop) {
			case Sum:
				v = x * float32(c.n)
			case Prod:
				v = float32(math.Pow(float64(x), float64(c.n)))
			}
			put(out, i, v)
		}
	case ncAllGather:
		in, out := buf(op.in, nb), buf(op.out, nb*c.n)
		for r := 0; r < c.n; r++ {
			copy(out[r*nb:], in)
		}
	case ncReduceScatter:
		in, out := buf(op.in, nb*c.n), buf(op.out, nb)
		for i := 0; i < int(op.count); i++ {
			put(out, i, f32(in, c.rank*int(op.count)+i)*float32(c.n))
		}
	case ncBroadcast:
		copy(buf(op.out, nb), buf(op.in, nb))
	case ncSend:
		if op.peer == c.rank {
			f.selfQ = append(f.selfQ, append([]byte(nil), buf(op.in, nb)...))
		}
	case ncRecv:
		if op.peer == c.rank && len(f.selfQ) > 0 {
			copy(buf(op.out, nb), f.selfQ[0])
			f.selfQ = f.selfQ[1:]
			return
		}
		st.hang = true // the peer never sends
	}
}

func (f *fakeNCCL) commGetAsyncError(h uintptr) (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.comm(h, "commGetAsyncError")
	if c == nil {
		return 0, ncclInvalidArgument
	}
	if c.polls > 0 {
		if c.polls != math.MaxInt {
			c.polls--
		}
		if c.polls == 0 && c.state != ncclSuccess {
			f.lastErr = f.initLast
		}
		return ncclInProgress, ncclSuccess
	}
	if f.dieAfter > 0 {
		for _, st := range f.streams {
			if st.hang {
				c.hangPolls++
			}
		}
		if c.hangPolls >= f.dieAfter {
			c.state = ncclRemoteError
			f.lastErr = "fake: peer 1 exited"
		}
	}
	return c.state, ncclSuccess
}

func (f *fakeNCCL) commAbort(h uintptr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "commAbort")
	if f.comm(h, "commAbort") == nil {
		return ncclInvalidArgument
	}
	delete(f.comms, h)
	for _, st := range f.streams {
		st.hang, st.busy = false, 0 // the kernels are killed
	}
	return ncclSuccess
}

func (f *fakeNCCL) commFinalize(h uintptr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "commFinalize")
	c := f.comm(h, "commFinalize")
	if c == nil {
		return ncclInvalidArgument
	}
	c.polls = 2
	return ncclInProgress
}

func (f *fakeNCCL) commDestroy(h uintptr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "commDestroy")
	if c := f.comm(h, "commDestroy"); c == nil {
		return ncclInvalidArgument
	} else if c.polls > 0 {
		f.violate("commDestroy while finalize is in progress")
	}
	delete(f.comms, h)
	return ncclSuccess
}

func (f *fakeNCCL) errorString(r int) string { return "" }

func (f *fakeNCCL) lastError(h uintptr) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

func (f *fakeNCCL) live() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.comms)
}

// fakeInit makes rank 0 of size over f.
func fakeInit(t *testing.T, f *fakeNCCL, size int) *NCCLComm {
	t.Helper()
	var id UniqueID
	f.uniqueID(&id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Lookup("nccl")
	require.NoError(t, err)
	comm, err := b.Init(ctx, id, 0, size, 0)
	require.NoError(t, err)
	assert.Equal(t, id, f.id, "the unique id reaches NCCL unchanged")
	return comm.(*NCCLComm)
}

func TestNCCLFakeCollectives(t *testing.T) {
	f := newFake(t)
	f.initPolls = 3
	useFake(t, f)
	c := fakeInit(t, f, 2)
	assert.True(t, f.called("commInitRankConfig"))
	assert.Equal(t, 2, c.Size())
	ctx := context.Background()
	var s cuda.Stream
	in := ramp(64, 0.5)

	for _, tc := range []struct {
		op   ReduceOp
		want func(x float32) float32
	}{
		{Sum, func(x float32) float32 { return 2 * x }},
		{Prod, func(x float32) float32 { return x * x }},
		{Max, func(x float32) float32 { return x }},
		{Avg, func(x float32) float32 { return x }},
	} {
		x := f.alloc(tensor.Float32, f32Bytes(in), 64)
		y := f.alloc(tensor.Float32, nil, 8, 8)
		require.NoError(t, c.AllReduce(ctx, x, y, tc.op, s))
		got := bytesF32(f.bytes(y))
		for i, v := range in {
			require.Equal(t, tc.want(v), got[i], "%s of element %d", tc.op, i)
		}
		assert.Equal(t, int(tc.op), f.lastOp.redop)
	}

	x := f.alloc(tensor.Float32, f32Bytes(in), 64)
	y := f.alloc(tensor.Float32, make([]byte, 2*4*64), 128)
	require.NoError(t, c.AllGather(ctx, x, y, s))
	assert.Equal(t, append(append([]float32{}, in...), in...), bytesF32(f.bytes(y)))
	assert.Equal(t, uint64(64), f.lastOp.count, "allgather passes sendcount")

	z := f.alloc(tensor.Float32, nil, 32)
	require.NoError(t, c.ReduceScatter(ctx, x, z, Sum, s))
	for i, v := range bytesF32(f.bytes(z)) {
		require.Equal(t, 2*in[i], v)
	}
	assert.Equal(t, uint64(32), f.lastOp.count, "reducescatter passes recvcount")

	raw := []byte{1, 2, 3, 4, 5, 6}
	w := f.alloc(tensor.Int16, raw, 3)
	require.NoError(t, c.Broadcast(ctx, w, 1, s))
	assert.Equal(t, raw, f.bytes(w))
	assert.Equal(t, ncOp{kind: ncBroadcast, in: w.DevicePtr(), out: w.DevicePtr(), count: 6, dtype: ncclUint8, peer: 1, stream: cuda.Default(0)}, f.lastOp)

	require.NoError(t, c.Close())
	assert.True(t, f.called("commFinalize"))
	assert.True(t, f.called("commDestroy"))
	assert.Zero(t, f.live())
}

func TestNCCLFakeGroupSelf(t *testing.T) {
	f := newFake(t)
	useFake(t, f)
	c := fakeInit(t, f, 1)
	ctx := context.Background()
	var s cuda.Stream
	in := ramp(100, 2)
	a := f.alloc(tensor.Float32, f32Bytes(in), 100)
	b := f.alloc(tensor.Float32, nil, 100)
	require.NoError(t, c.Group(ctx, func() error {
		// From inside f the calls only record; NCCL sees them all between
		// groupStart and groupEnd on one thread.
		if err := c.Send(ctx, a, 0, s); err != nil {
			return err
		}
		return c.Recv(ctx, b, 0, s)
	}))
	assert.Equal(t, in, bytesF32(f.bytes(b)))
	assert.True(t, f.called("groupStart"))

	// A non-blocking enqueue (ncclInProgress) is settled before the stream
	// is waited for; NoWait returns before the stream is done.
	f.enqueuePolls = 2
	b2 := f.alloc(tensor.Float32, nil, 100)
	nw := c.NoWait()
	require.NoError(t, nw.Group(ctx, func() error {
		if err := nw.Send(ctx, a, 0, s); err != nil {
			return err
		}
		return nw.Recv(ctx, b2, 0, s)
	}))
	done, _ := f.query(cuda.Default(0))
	assert.False(t, done, "NoWait returned before the stream finished")
	require.NoError(t, c.Wait(ctx, s))
	assert.Equal(t, in, bytesF32(f.bytes(b2)))
	require.NoError(t, c.AllReduce(ctx, a, a, Sum, s))
	require.NoError(t, c.Close())
}

func TestNCCLFakeContextEndsWait(t *testing.T) {
	f := newFake(t)
	useFake(t, f)
	c := fakeInit(t, f, 2)
	x := f.alloc(tensor.Float32, nil, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Recv(ctx, x, 1, cuda.Stream{})
	assert.Less(t, time.Since(start), 2*time.Second)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, ErrAborted)
	assert.True(t, f.called("commAbort"))
	err = c.AllReduce(context.Background(), x, x, Sum, cuda.Stream{})
	assert.ErrorIs(t, err, ErrAborted)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "later errors say why the communicator was aborted")
	require.NoError(t, c.Close())
	require.NoError(t, c.Abort())
	assert.Zero(t, f.live())
}

func TestNCCLFakePeerDies(t *testing.T) {
	f := newFake(t)
	f.dieAfter = 5
	useFake(t, f)
	c := fakeInit(t, f, 2)
	x := f.alloc(tensor.Float32, nil, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.Recv(ctx, x, 1, cuda.Stream{})
	require.ErrorIs(t, err, ErrPeerDied)
	assert.Contains(t, err.Error(), "fake: peer 1 exited")
	assert.Contains(t, err.Error(), "remote process exited")
	err = c.Send(ctx, x, 1, cuda.Stream{})
	assert.ErrorIs(t, err, ErrAborted)
	assert.ErrorIs(t, err, ErrPeerDied)
	require.NoError(t, c.Close())
	assert.Zero(t, f.live())
}

func TestNCCLFakeAbortAndCloseWhileWaiting(t *testing.T) {
	for _, stop := range []string{"abort", "close"} {
		t.Run(stop, func(t *testing.T) {
			f := newFake(t)
			useFake(t, f)
			c := fakeInit(t, f, 2)
			x := f.alloc(tensor.Float32, nil, 16)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(20 * time.Millisecond)
				if stop == "abort" {
					assert.NoError(t, c.Abort())
				} else {
					assert.NoError(t, c.Close())
				}
			}()
			err := c.Recv(context.Background(), x, 1, cuda.Stream{})
			wg.Wait()
			if stop == "abort" {
				assert.ErrorIs(t, err, ErrAborted)
			} else {
				assert.ErrorIs(t, err, ErrClosed)
			}
			require.NoError(t, c.Close())
			assert.Zero(t, f.live())
		})
	}
}

func TestNCCLFakeEnqueueErrors(t *testing.T) {
	f := newFake(t)
	useFake(t, f)
	c := fakeInit(t, f, 2)
	ctx := context.Background()
	x := f.alloc(tensor.Float32, nil, 16)
	f.failEnqueue = ncclInvalidArgument
	err := c.AllReduce(ctx, x, x, Sum, cuda.Stream{})
	require.ErrorIs(t, err, ErrBadArgument)
	require.NoError(t, c.AllReduce(ctx, x, x, Sum, cuda.Stream{}), "a rejected call leaves the communicator usable")
	f.failEnqueue = ncclSystemError
	err = c.AllReduce(ctx, x, x, Sum, cuda.Stream{})
	require.ErrorIs(t, err, ErrPeerDied)
	assert.ErrorIs(t, c.AllReduce(ctx, x, x, Sum, cuda.Stream{}), ErrAborted)
	require.NoError(t, c.Close())
	assert.Zero(t, f.live())
}

func TestNCCLFakeInitFailures(t *testing.T) {
	var id UniqueID
	t.Run("duplicate gpu", func(t *testing.T) {
		f := newFake(t)
		f.initPolls, f.initResult = 2, ncclInvalidUsage
		f.initLast = "Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 1000"
		useFake(t, f)
		c, err := InitNCCL(context.Background(), id, 1, 2, 0)
		require.Error(t, err)
		assert.Nil(t, c)
		assert.ErrorIs(t, err, ErrBadArgument)
		assert.Contains(t, err.Error(), "Duplicate GPU detected")
		assert.Zero(t, f.live(), "the failed communicator is aborted")
	})
	t.Run("cancelled", func(t *testing.T) {
		f := newFake(t)
		f.initHang = true
		useFake(t, f)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		c, err := InitNCCL(ctx, id, 0, 2, 0)
		assert.Nil(t, c)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Zero(t, f.live(), "the half-made communicator is aborted")
	})
	t.Run("device out of range", func(t *testing.T) {
		f := newFake(t)
		useFake(t, f)
		_, err := InitNCCL(context.Background(), id, 0, 1, 3)
		assert.ErrorIs(t, err, ErrBadArgument)
	})
	t.Run("no gpu", func(t *testing.T) {
		f := newFake(t)
		useFake(t, f)
		ncCUDA.deviceCount = func() (int, error) { return 0, fmt.Errorf("%w: fake", cuda.ErrNoDriver) }
		_, err := InitNCCL(context.Background(), id, 0, 1, 0)
		assert.ErrorIs(t, err, ErrUnavailable)
		assert.ErrorIs(t, err, cuda.ErrNoDriver)
	})
}

func TestNCCLFakeBlockingInit(t *testing.T) {
	for _, mode := range []string{"old library", "env"} {
		t.Run(mode, func(t *testing.T) {
			f := newFake(t)
			if mode == "env" {
				t.Setenv(EnvNCCLBlocking, "1")
			} else {
				f.noConfig = true
			}
			useFake(t, f)
			c := fakeInit(t, f, 1)
			assert.True(t, f.called("commInitRank"))
			assert.False(t, f.called("commInitRankConfig"))
			x := f.alloc(tensor.Float32, f32Bytes(ramp(8, 1)), 8)
			require.NoError(t, c.AllReduce(context.Background(), x, x, Sum, cuda.Stream{}))
			require.NoError(t, c.Close())
			assert.False(t, f.called("commFinalize"), "a blocking communicator is destroyed without an unbounded finalize")
			assert.Zero(t, f.live())
		})
	}
}

func TestNCCLFakeVersion(t *testing.T) {
	f := newFake(t)
	useFake(t, f)
	v, err := Version()
	require.NoError(t, err)
	assert.Equal(t, 23000, v)
	assert.ErrorIs(t, ncResultError("x", ncclTimeout, "", false), ErrPeerDied)
	assert.Contains(t, ncResultError("x", ncclTimeout, "", false).Error(), "timeout")
}
