package nccl

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/internal/testutil"
	"github.com/goray/goray/tensor"
)

func init() {
	reexec.Register("nccl-two-ranks", ncclTwoRanksMain)
}

// ---------------------------------------------------------------------------
// Without a GPU (and with one): registration, errors, argument checks.

func TestNCCLRegistered(t *testing.T) {
	b, err := Lookup("nccl")
	require.NoError(t, err)
	assert.Equal(t, "nccl", b.Name())
	assert.Contains(t, Names(), "nccl")
}

func TestNCCLUnavailableOrVersion(t *testing.T) {
	b, err := Lookup("nccl")
	require.NoError(t, err)
	ctx := context.Background()

	// Argument errors come before the library is looked for.
	_, err = b.Init(ctx, UniqueID{}, 2, 2, 0)
	assert.ErrorIs(t, err, ErrBadArgument)
	_, err = b.Init(ctx, UniqueID{}, 0, 1, -1)
	assert.ErrorIs(t, err, ErrBadArgument)

	if loadErr := ncLoaded(); loadErr != nil {
		t.Logf("no libnccl here: %v", loadErr)
		want := "libnccl.so.2"
		if p := os.Getenv(EnvLibNCCL); p != "" {
			want = EnvLibNCCL
		}
		_, err := b.NewUniqueID()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Contains(t, err.Error(), want)
		if ncCgo {
			assert.Contains(t, err.Error(), "LD_LIBRARY_PATH")
		}

		comm, err := b.Init(ctx, UniqueID{}, 0, 1, 0)
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Nil(t, comm, "a failed Init returns a nil Communicator, not a typed nil")
		assert.Contains(t, err.Error(), want)

		_, err = Version()
		assert.ErrorIs(t, err, ErrUnavailable)
		return
	}
	v, err := Version()
	require.NoError(t, err)
	t.Logf("NCCL %d.%d.%d loaded from %s", v/10000, v/100%100, v%100, ncLib.path)
	assert.GreaterOrEqual(t, v, 21400)
	id, err := b.NewUniqueID()
	require.NoError(t, err)
	assert.NotEqual(t, UniqueID{}, id)
	if _, err := cuda.DeviceCount(); err != nil {
		_, err := b.Init(ctx, id, 0, 1, 0)
		require.ErrorIs(t, err, ErrUnavailable)
		assert.ErrorIs(t, err, cuda.ErrNoDriver)
	}
}

func TestNCCLNotFoundMessage(t *testing.T) {
	err := ncNotFound([]string{"libnccl.so.2", "libnccl.so"}, []string{"libnccl.so.2: cannot open shared object file", "libnccl.so: cannot open shared object file"}, false)
	assert.ErrorIs(t, err, ErrUnavailable)
	for _, s := range []string{"libnccl.so.2 was not found", "cannot open shared object file", "LD_LIBRARY_PATH", "nvidia/nccl/lib", EnvLibNCCL} {
		assert.Contains(t, err.Error(), s)
	}
	err = ncNotFound([]string{"/opt/x/libnccl.so.2"}, []string{"/opt/x/libnccl.so.2: no such file"}, true)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), EnvLibNCCL+"=/opt/x/libnccl.so.2")

	if !ncCgo {
		return
	}
	msg := ncTryOpen("/nonexistent/goray/libnccl.so.2")
	assert.Contains(t, msg, "/nonexistent/goray/libnccl.so.2", "dlerror names the file")
}

func TestNCCLDataTypes(t *testing.T) {
	cases := []struct {
		dt       tensor.DType
		nc       int
		bytewise bool
	}{
		{tensor.Float32, 7, false},
		{tensor.Float16, 6, false},
		{tensor.BFloat16, 9, false},
		{tensor.Float64, 8, false},
		{tensor.Int8, 0, false},
		{tensor.Int32, 2, false},
		{tensor.Int64, 4, false},
		{tensor.Uint8, 1, false},
		{tensor.Uint32, 3, false},
		{tensor.Uint64, 5, false},
		{tensor.Bool, 1, true},
		{tensor.Int16, 1, true},
		{tensor.Uint16, 1, true},
	}
	for _, c := range cases {
		nc, bw, err := ncDataType(c.dt, false)
		require.NoError(t, err, c.dt)
		assert.Equal(t, c.nc, nc, "%s moves as %s", c.dt, ncclTypeNames[nc])
		assert.Equal(t, c.bytewise, bw, c.dt)
		nc, _, err = ncDataType(c.dt, true)
		if c.bytewise {
			assert.ErrorIs(t, err, ErrBadArgument, "reducing %s", c.dt)
		} else {
			require.NoError(t, err, c.dt)
			assert.Equal(t, c.nc, nc)
		}
	}
	_, _, err := ncDataType(tensor.Invalid, false)
	assert.ErrorIs(t, err, ErrBadArgument)
	_, _, err = ncDataType(tensor.DType(200), false)
	assert.ErrorIs(t, err, ErrBadArgument)
	// The reductions are NCCL's ncclRedOp_t values.
	assert.Equal(t, []int{0, 1, 2, 3, 4}, []int{int(Sum), int(Prod), int(Max), int(Min), int(Avg)})
}

// unboundComm is a communicator with no NCCL behind it: every test using it
// must fail before an NCCL call.
func unboundComm(rank, size, dev int) *NCCLComm {
	return &NCCLComm{st: &ncState{rank: rank, size: size, dev: dev}}
}

// fakeDev is a device tensor whose pointer is never dereferenced.
func fakeDev(t *testing.T, dt tensor.DType, dev int, shape ...int) *tensor.Tensor {
	t.Helper()
	x, err := tensor.FromDevicePtr(dt, tensor.CUDA(dev), 0x7f0000001000, nil, shape...)
	require.NoError(t, err)
	return x
}

func TestNCCLArgumentChecks(t *testing.T) {
	ctx := context.Background()
	c := unboundComm(0, 2, 0)
	var s cuda.Stream
	host := tensor.Zeros(tensor.Float32, 4)
	dev := fakeDev(t, tensor.Float32, 0, 4)
	dev8 := fakeDev(t, tensor.Float32, 0, 8)

	bad := map[string]error{
		"send host":               c.Send(ctx, host, 1, s),
		"recv host":               c.Recv(ctx, host, 1, s),
		"allreduce host in":       c.AllReduce(ctx, host, dev, Sum, s),
		"allreduce host out":      c.AllReduce(ctx, dev, host, Sum, s),
		"allgather host":          c.AllGather(ctx, host, dev8, s),
		"reducescatter host":      c.ReduceScatter(ctx, dev8, host, Sum, s),
		"broadcast host":          c.Broadcast(ctx, host, 0, s),
		"nil tensor":              c.Send(ctx, nil, 1, s),
		"other gpu":               c.Send(ctx, fakeDev(t, tensor.Float32, 1, 4), 1, s),
		"peer out of range":       c.Send(ctx, dev, 2, s),
		"negative peer":           c.Recv(ctx, dev, -1, s),
		"root out of range":       c.Broadcast(ctx, dev, 5, s),
		"allreduce size":          c.AllReduce(ctx, dev, dev8, Sum, s),
		"allreduce dtype":         c.AllReduce(ctx, dev, fakeDev(t, tensor.Int32, 0, 4), Sum, s),
		"allreduce bool":          c.AllReduce(ctx, fakeDev(t, tensor.Bool, 0, 4), fakeDev(t, tensor.Bool, 0, 4), Sum, s),
		"allreduce bad op":        c.AllReduce(ctx, dev, dev, ReduceOp(9), s),
		"allgather out size":      c.AllGather(ctx, dev, dev, s),
		"reducescatter in size":   c.ReduceScatter(ctx, dev, dev, Sum, s),
		"reducescatter int16":     c.ReduceScatter(ctx, fakeDev(t, tensor.Int16, 0, 8), fakeDev(t, tensor.Int16, 0, 4), Max, s),
		"send to self, no group":  c.Send(ctx, dev, 0, s),
		"recv from self no group": c.Recv(ctx, dev, 0, s),
	}
	for name, err := range bad {
		assert.ErrorIs(t, err, ErrBadArgument, name)
	}
	assert.Contains(t, bad["send host"].Error(), "use the cpu backend for host tensors")
	assert.Contains(t, bad["other gpu"].Error(), "cuda:1")

	// A Group records without calling NCCL; an error from f discards it.
	boom := errors.New("boom")
	err := c.Group(ctx, func() error {
		require.NoError(t, c.Send(ctx, dev, 0, s))
		require.NoError(t, c.Recv(ctx, dev, 0, s))
		require.NoError(t, c.Broadcast(ctx, fakeDev(t, tensor.Uint16, 0, 3), 1, s))
		require.NoError(t, c.AllGather(ctx, fakeDev(t, tensor.Bool, 0, 3), fakeDev(t, tensor.Bool, 0, 6), s))
		assert.Len(t, c.st.group.ops, 4)
		op := c.st.group.ops[2]
		assert.Equal(t, ncclUint8, op.dtype)
		assert.Equal(t, uint64(6), op.count, "3 uint16 move as 6 bytes")
		assert.Equal(t, cuda.Default(0), op.stream, "a zero stream is the device's default stream")
		return boom
	})
	assert.ErrorIs(t, err, boom)
	assert.Nil(t, c.st.group)
	// A panic inside f leaves no group behind.
	assert.Panics(t, func() { _ = c.Group(ctx, func() error { panic("f") }) })
	assert.Nil(t, c.st.group)

	// Abort, then every operation reports ErrAborted; Close then ErrClosed.
	require.NoError(t, c.Abort())
	require.NoError(t, c.Abort())
	assert.ErrorIs(t, c.AllReduce(ctx, dev, dev, Sum, s), ErrAborted)
	assert.ErrorIs(t, c.Group(ctx, func() error { return nil }), ErrAborted)
	assert.ErrorIs(t, c.NoWait().Broadcast(ctx, dev, 0, s), ErrAborted)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.AllReduce(ctx, dev, dev, Sum, s), ErrClosed)
	require.NoError(t, c.Abort(), "Abort after Close")
}

func TestNCCLResultErrors(t *testing.T) {
	if !ncCgo {
		t.Log("built without cgo: NCCL error strings are placeholders")
	}
	assert.ErrorIs(t, ncResultError("send", ncclRemoteError, "", false), ErrPeerDied)
	assert.ErrorIs(t, ncResultError("send", ncclSystemError, "socket closed", false), ErrPeerDied)
	assert.ErrorIs(t, ncResultError("send", ncclInternalError, "", false), ErrAborted)
	assert.ErrorIs(t, ncResultError("init", ncclInvalidUsage, "Duplicate GPU detected", true), ErrBadArgument)
	assert.ErrorIs(t, ncResultError("send", ncclInvalidUsage, "", false), ErrAborted)
	assert.Contains(t, ncResultError("init", ncclInvalidUsage, "Duplicate GPU detected", true).Error(), "Duplicate GPU detected")
}

// ---------------------------------------------------------------------------
// On a GPU.

// gpuComm makes a one-rank NCCL communicator on GPU 0, or skips the test
// saying why there is none.
func gpuComm(t testing.TB) *NCCLComm {
	t.Helper()
	gpuOrSkip(t)
	b, err := Lookup("nccl")
	require.NoError(t, err)
	id, err := b.NewUniqueID()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := InitNCCL(ctx, id, 0, 1, 0)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	return c
}

// gpuOrSkip skips the test unless libnccl and a GPU are both here.
func gpuOrSkip(t testing.TB) {
	t.Helper()
	if err := ncLoaded(); err != nil {
		t.Skipf("needs a GPU with NCCL: %v", err)
	}
	if _, err := cuda.DeviceCount(); err != nil {
		t.Skipf("needs a GPU with NCCL: %v", err)
	}
}

// devTensor copies b (the bytes of dt×shape) to a new tensor on GPU dev.
func devTensor(t testing.TB, dev int, dt tensor.DType, b []byte, shape ...int) *tensor.Tensor {
	t.Helper()
	p, err := cuda.Malloc(dev, max(len(b), 1))
	require.NoError(t, err)
	require.NoError(t, cuda.CopyToDevice(dev, p, b))
	x, err := tensor.FromDevicePtr(dt, tensor.CUDA(dev), uintptr(p), func() { _ = cuda.Free(dev, p) }, shape...)
	require.NoError(t, err)
	t.Cleanup(x.Free)
	return x
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func bytesF32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func ramp(n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i+1) * scale
	}
	return v
}

func toHost(t testing.TB, x *tensor.Tensor) []byte {
	t.Helper()
	b := make([]byte, x.NumBytes())
	require.NoError(t, cuda.CopyToHost(x.Device().Index, b, cuda.Ptr(x.DevicePtr())))
	return b
}

func TestNCCLSingleRankCollectives(t *testing.T) {
	c := gpuComm(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 1000
	in := ramp(n, 0.5)
	var s cuda.Stream

	for _, op := range []ReduceOp{Sum, Prod, Max, Min, Avg} {
		x := devTensor(t, 0, tensor.Float32, f32Bytes(in), n)
		y := devTensor(t, 0, tensor.Float32, make([]byte, 4*n), n)
		require.NoError(t, c.AllReduce(ctx, x, y, op, s), op)
		assert.Equal(t, in, bytesF32(toHost(t, y)), "allreduce %s over one rank is the identity", op)
	}
	// In place, on a stream of its own.
	st, err := cuda.NewStream(0)
	require.NoError(t, err)
	defer st.Destroy()
	x := devTensor(t, 0, tensor.Float32, f32Bytes(in), 10, 100)
	require.NoError(t, c.AllReduce(ctx, x, x, Sum, st))
	assert.Equal(t, in, bytesF32(toHost(t, x)))

	// AllGather and ReduceScatter over one rank copy.
	y := devTensor(t, 0, tensor.Float32, make([]byte, 4*n), n)
	require.NoError(t, c.AllGather(ctx, devTensor(t, 0, tensor.Float32, f32Bytes(in), n), y, s))
	assert.Equal(t, in, bytesF32(toHost(t, y)))
	y = devTensor(t, 0, tensor.Float32, make([]byte, 4*n), n)
	require.NoError(t, c.ReduceScatter(ctx, devTensor(t, 0, tensor.Float32, f32Bytes(in), n), y, Sum, s))
	assert.Equal(t, in, bytesF32(toHost(t, y)))

	// Broadcast of a type NCCL has no name for moves as bytes.
	raw := make([]byte, 2*n)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	z := devTensor(t, 0, tensor.Int16, raw, n)
	require.NoError(t, c.Broadcast(ctx, z, 0, s))
	assert.Equal(t, raw, toHost(t, z))
	zg := devTensor(t, 0, tensor.Int16, make([]byte, 2*n), n)
	require.NoError(t, c.AllGather(ctx, z, zg, s))
	assert.Equal(t, raw, toHost(t, zg))

	// BFloat16 and Int64 reduce natively.
	bf := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint16(bf[2*i:], tensor.BF16(float32(i%50)))
	}
	bx := devTensor(t, 0, tensor.BFloat16, bf, n)
	require.NoError(t, c.AllReduce(ctx, bx, bx, Max, s))
	assert.Equal(t, bf, toHost(t, bx))
	i64 := make([]byte, 8*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint64(i64[8*i:], uint64(i)<<40)
	}
	ix := devTensor(t, 0, tensor.Int64, i64, n)
	require.NoError(t, c.AllReduce(ctx, ix, ix, Sum, s))
	assert.Equal(t, i64, toHost(t, ix))

	// An empty tensor is a no-op.
	e := devTensor(t, 0, tensor.Float32, nil, 0)
	require.NoError(t, c.AllReduce(ctx, e, e, Sum, s))
}

func TestNCCLSendRecvSelfInGroup(t *testing.T) {
	c := gpuComm(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 4096
	in := ramp(n, 3)
	a := devTensor(t, 0, tensor.Float32, f32Bytes(in), n)
	b := devTensor(t, 0, tensor.Float32, make([]byte, 4*n), n)
	var s cuda.Stream
	require.NoError(t, c.Group(ctx, func() error {
		if err := c.Send(ctx, a, 0, s); err != nil {
			return err
		}
		return c.Recv(ctx, b, 0, s)
	}))
	assert.Equal(t, in, bytesF32(toHost(t, b)))

	// NoWait: enqueue on a stream of its own, then Wait.
	st, err := cuda.NewStream(0)
	require.NoError(t, err)
	defer st.Destroy()
	b2 := devTensor(t, 0, tensor.Float32, make([]byte, 4*n), n)
	nw := c.NoWait()
	require.NoError(t, nw.Group(ctx, func() error {
		if err := nw.Send(ctx, a, 0, st); err != nil {
			return err
		}
		return nw.Recv(ctx, b2, 0, st)
	}))
	require.NoError(t, c.Wait(ctx, st))
	assert.Equal(t, in, bytesF32(toHost(t, b2)))

	// Outside a Group a send to itself is refused rather than hanging.
	assert.ErrorIs(t, c.Send(ctx, a, 0, s), ErrBadArgument)
}

func TestNCCLAbortThenOp(t *testing.T) {
	c := gpuComm(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	x := devTensor(t, 0, tensor.Float32, f32Bytes(ramp(16, 1)), 16)
	require.NoError(t, c.AllReduce(ctx, x, x, Sum, cuda.Stream{}))
	require.NoError(t, c.Abort())
	require.NoError(t, c.Abort())
	err := c.AllReduce(ctx, x, x, Sum, cuda.Stream{})
	assert.ErrorIs(t, err, ErrAborted)
	assert.ErrorIs(t, c.Group(ctx, func() error { return nil }), ErrAborted)
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.AllReduce(ctx, x, x, Sum, cuda.Stream{}), ErrClosed)
}

func TestNCCLCloseThenOp(t *testing.T) {
	c := gpuComm(t)
	x := devTensor(t, 0, tensor.Float32, f32Bytes(ramp(16, 1)), 16)
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.AllReduce(context.Background(), x, x, Sum, cuda.Stream{}), ErrClosed)
	require.NoError(t, c.Abort())
}

func TestNCCLCancelledContext(t *testing.T) {
	c := gpuComm(t)
	x := devTensor(t, 0, tensor.Float32, f32Bytes(ramp(16, 1)), 16)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.AllReduce(ctx, x, x, Sum, cuda.Stream{})
	assert.ErrorIs(t, err, context.Canceled)
	// Nothing was enqueued, so the communicator is still usable.
	require.NoError(t, c.AllReduce(context.Background(), x, x, Sum, cuda.Stream{}))
}

// TestNCCLTwoRanksOneGPU runs two ranks in two processes of this binary
// on GPU 0. NCCL refuses two ranks on one GPU ("Duplicate GPU detected")
// unless NCCL_MULTI_RANK_GPU_ENABLE=1 is honoured (NCCL 2.30+,
// experimental): then the test skips with NCCL's message.
func TestNCCLTwoRanksOneGPU(t *testing.T) {
	gpuOrSkip(t)
	b, err := Lookup("nccl")
	require.NoError(t, err)
	id, err := b.NewUniqueID() // the bootstrap root lives in this process
	require.NoError(t, err)
	t.Setenv("NCCL_MULTI_RANK_GPU_ENABLE", "1")
	idHex := hex.EncodeToString(id[:])
	type line struct {
		rank int
		s    string
		err  error
	}
	lines := make(chan line, 64)
	for rank := range 2 {
		ch := testutil.StartChild(t, "nccl-two-ranks", idHex, strconv.Itoa(rank))
		go func(r *bufio.Reader) {
			for {
				s, err := r.ReadString('\n')
				lines <- line{rank, strings.TrimSuffix(s, "\n"), err}
				if err != nil {
					return
				}
			}
		}(ch.Stdout)
	}
	deadline := time.After(3 * time.Minute)
	done := 0
	for done < 2 {
		select {
		case l := <-lines:
			if l.err != nil {
				t.Fatalf("rank %d ended before it said done (last output %q, %v)", l.rank, l.s, l.err)
			}
			t.Logf("rank %d: %s", l.rank, l.s)
			switch {
			case strings.HasPrefix(l.s, "skip "):
				t.Skipf("NCCL refuses two ranks on one GPU (a known NCCL limitation; DESIGN.md §5): %s", strings.TrimPrefix(l.s, "skip "))
			case strings.HasPrefix(l.s, "fail "):
				t.Fatalf("rank %d: %s", l.rank, l.s)
			case l.s == "done":
				done++
			}
		case <-deadline:
			t.Fatal("the two ranks did not finish within 3 minutes")
		}
	}
}

// ncclTwoRanksMain is one rank of TestNCCLTwoRanksOneGPU: args id rank. It
// prints "ok STEP" per step, then "done"; "skip MSG" when NCCL refuses two
// ranks on one GPU; "fail STEP: ERR" otherwise.
func ncclTwoRanksMain(args []string) int {
	idb, err := hex.DecodeString(args[0])
	if err != nil || len(idb) != len(UniqueID{}) {
		fmt.Println("fail args:", err)
		return 1
	}
	var id UniqueID
	copy(id[:], idb)
	rank, _ := strconv.Atoi(args[1])
	peer := 1 - rank
	fail := func(step string, err error) int {
		fmt.Printf("fail %s: %v\n", step, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := InitNCCL(ctx, id, rank, 2, 0)
	if err != nil {
		if strings.Contains(err.Error(), "Duplicate GPU") || strings.Contains(err.Error(), "MULTI_RANK") {
			fmt.Println("skip", err)
			return 0
		}
		return fail("init", err)
	}
	defer c.Close()
	fmt.Println("ok init")
	var s cuda.Stream
	h := &hostT{}

	// AllReduce: rank r contributes (r+1)*ramp; the sum is 3*ramp.
	const n = 1 << 16
	x, err := h.dev(tensor.Float32, f32Bytes(ramp(n, float32(rank+1))), n)
	if err != nil {
		return fail("alloc", err)
	}
	if err := c.AllReduce(ctx, x, x, Sum, s); err != nil {
		return fail("allreduce", err)
	}
	if got, want := bytesF32(h.host(x)), ramp(n, 3); !equalF32(got, want) {
		return fail("allreduce", fmt.Errorf("got %v..., want %v...", got[:4], want[:4]))
	}
	fmt.Println("ok allreduce")

	// AllGather: block r is (r+1)*ramp.
	in, _ := h.dev(tensor.Float32, f32Bytes(ramp(n, float32(rank+1))), n)
	out, _ := h.dev(tensor.Float32, make([]byte, 8*n), 2*n)
	if err := c.AllGather(ctx, in, out, s); err != nil {
		return fail("allgather", err)
	}
	if got := bytesF32(h.host(out)); !equalF32(got[:n], ramp(n, 1)) || !equalF32(got[n:], ramp(n, 2)) {
		return fail("allgather", fmt.Errorf("wrong blocks"))
	}
	fmt.Println("ok allgather")

	// ReduceScatter of (r+1)*ramp(2n): block rank of 3*ramp(2n).
	rin, _ := h.dev(tensor.Float32, f32Bytes(ramp(2*n, float32(rank+1))), 2*n)
	rout, _ := h.dev(tensor.Float32, make([]byte, 4*n), n)
	if err := c.ReduceScatter(ctx, rin, rout, Sum, s); err != nil {
		return fail("reducescatter", err)
	}
	if got, want := bytesF32(h.host(rout)), ramp(2*n, 3)[rank*n:(rank+1)*n]; !equalF32(got, want) {
		return fail("reducescatter", fmt.Errorf("got %v..., want %v...", got[:4], want[:4]))
	}
	fmt.Println("ok reducescatter")

	// Broadcast from rank 1.
	bx, _ := h.dev(tensor.Float32, f32Bytes(ramp(n, float32(10*rank+1))), n)
	if err := c.Broadcast(ctx, bx, 1, s); err != nil {
		return fail("broadcast", err)
	}
	if !equalF32(bytesF32(h.host(bx)), ramp(n, 11)) {
		return fail("broadcast", fmt.Errorf("wrong data"))
	}
	fmt.Println("ok broadcast")

	// Send/Recv both ways in one group; then plain ones, 0 → 1.
	sx, _ := h.dev(tensor.Float32, f32Bytes(ramp(n, float32(rank+5))), n)
	rx, _ := h.dev(tensor.Float32, make([]byte, 4*n), n)
	if err := c.Group(ctx, func() error {
		if err := c.Send(ctx, sx, peer, s); err != nil {
			return err
		}
		return c.Recv(ctx, rx, peer, s)
	}); err != nil {
		return fail("group sendrecv", err)
	}
	if !equalF32(bytesF32(h.host(rx)), ramp(n, float32(peer+5))) {
		return fail("group sendrecv", fmt.Errorf("wrong data"))
	}
	if rank == 0 {
		err = c.Send(ctx, sx, 1, s)
	} else {
		err = c.Recv(ctx, rx, 0, s)
		if err == nil && !equalF32(bytesF32(h.host(rx)), ramp(n, 5)) {
			err = fmt.Errorf("wrong data")
		}
	}
	if err != nil {
		return fail("sendrecv", err)
	}
	fmt.Println("ok sendrecv")

	// A Recv that no one answers ends with ctx, aborting this rank; the
	// other rank's unmatched collective then fails too, instead of
	// hanging (by NCCL noticing the abort, or by its own deadline).
	if rank == 0 {
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.Recv(short, rx, 1, s)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrAborted) {
			return fail("recv timeout", fmt.Errorf("want a deadline error wrapping ErrAborted, got %v", err))
		}
		if err := c.AllReduce(ctx, x, x, Sum, s); !errors.Is(err, ErrAborted) {
			return fail("after abort", fmt.Errorf("want ErrAborted, got %v", err))
		}
	} else {
		short, cancel := context.WithTimeout(ctx, 20*time.Second)
		start := time.Now()
		err := c.AllReduce(short, x, x, Sum, s)
		cancel()
		if err == nil {
			return fail("peer aborted", fmt.Errorf("an AllReduce whose peer aborted succeeded"))
		}
		fmt.Printf("ok peer aborted: failed after %v: %v\n", time.Since(start).Round(time.Millisecond), err)
	}
	fmt.Println("ok failure")
	h.free()
	fmt.Println("done")
	return 0
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hostT allocates device tensors for a child process (no testing.T there).
type hostT struct{ ts []*tensor.Tensor }

func (h *hostT) dev(dt tensor.DType, b []byte, shape ...int) (*tensor.Tensor, error) {
	p, err := cuda.Malloc(0, max(len(b), 1))
	if err != nil {
		return nil, err
	}
	if err := cuda.CopyToDevice(0, p, b); err != nil {
		return nil, err
	}
	x, err := tensor.FromDevicePtr(dt, tensor.CUDA(0), uintptr(p), func() { _ = cuda.Free(0, p) }, shape...)
	if err != nil {
		return nil, err
	}
	h.ts = append(h.ts, x)
	return x, nil
}

func (h *hostT) host(x *tensor.Tensor) []byte {
	b := make([]byte, x.NumBytes())
	if err := cuda.CopyToHost(0, b, cuda.Ptr(x.DevicePtr())); err != nil {
		fmt.Println("fail copy to host:", err)
		os.Exit(1)
	}
	return b
}

func (h *hostT) free() {
	for _, x := range h.ts {
		x.Free()
	}
}
