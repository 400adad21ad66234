package nccl_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
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
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// Child roles: ranks in real processes of this test binary. Each takes the
// unique ID (hex), its rank and the size.
func init() {
	reexec.Register("cpu-rank-ops", cpuRankOpsMain)
	reexec.Register("cpu-rank-loop", cpuRankLoopMain)
	reexec.Register("cpu-rank-idle", cpuRankIdleMain)
}

func rankArgs(id nccl.UniqueID, rank, size int) []string {
	return []string{hex.EncodeToString(id[:]), strconv.Itoa(rank), strconv.Itoa(size)}
}

// joinFromArgs is a child's Init.
func joinFromArgs(ctx context.Context, args []string) (nccl.Communicator, error) {
	b, err := hex.DecodeString(args[0])
	if err != nil || len(b) != len(nccl.UniqueID{}) {
		return nil, fmt.Errorf("bad id %q", args[0])
	}
	id := nccl.UniqueID(b)
	rank, _ := strconv.Atoi(args[1])
	size, _ := strconv.Atoi(args[2])
	backend, err := nccl.Lookup("cpu")
	if err != nil {
		return nil, err
	}
	return backend.Init(ctx, id, rank, size, -1)
}

// The data of the cross-process run: each rank's inputs and the outputs
// every rank must end with, computed here in the parent too.
const (
	procAllReduceN  = 300_001 // float32: 1.2 MB, several chunks per block
	procAllGatherN  = 1001    // int32
	procReduceScatM = 70_001  // float64 per rank
	procRingN       = 600_000 // uint16 around the ring of Sends
	procBroadcastN  = 500_000 // bytes from the last rank
)

func procAllReduceIn(r int) []float32 {
	x := make([]float32, procAllReduceN)
	for i := range x {
		x[i] = float32((r + 1) * (i%97 - 48))
	}
	return x
}

func procAllGatherIn(r int) []int32 {
	x := make([]int32, procAllGatherN)
	for i := range x {
		x[i] = int32(r*1_000_000 + i)
	}
	return x
}

func procReduceScatterIn(r, size int) []float64 {
	x := make([]float64, size*procReduceScatM)
	for j := range x {
		x[j] = float64((j*7 + r*13) % 101)
	}
	return x
}

// procRing is what rank r holds after its turn in the ring of Sends: each
// rank adds its number to every element and passes the tensor on; rank 0
// starts it and receives it back at the end.
func procRing(r, size int) []uint16 {
	add := 0
	for k := 1; k <= r; k++ {
		add += k
	}
	if r == 0 {
		add = size * (size - 1) / 2
	}
	x := make([]uint16, procRingN)
	for i := range x {
		x[i] = uint16(i*3 + add)
	}
	return x
}

func procBroadcastData() []uint8 {
	x := make([]uint8, procBroadcastN)
	for i := range x {
		x[i] = uint8(i*31 + 7)
	}
	return x
}

func checksum[T tensor.Elem](x []T) string {
	t, err := tensor.FromSlice(x)
	if err != nil {
		panic(err)
	}
	h := fnv.New64a()
	h.Write(t.Bytes())
	return fmt.Sprintf("%016x", h.Sum64())
}

// procExpected is the line each rank must print for each operation.
func procExpected(r, size int) []string {
	sum := procAllReduceIn(0)
	for k := 1; k < size; k++ {
		for i, v := range procAllReduceIn(k) {
			sum[i] += v
		}
	}
	var gathered []int32
	for k := range size {
		gathered = append(gathered, procAllGatherIn(k)...)
	}
	scattered := make([]float64, procReduceScatM)
	for k := range size {
		in := procReduceScatterIn(k, size)[r*procReduceScatM:]
		for i := range scattered {
			scattered[i] = max(scattered[i], in[i])
		}
	}
	return []string{
		"allreduce " + checksum(sum),
		"allgather " + checksum(gathered),
		"reducescatter " + checksum(scattered),
		"ring " + checksum(procRing(r, size)),
		"broadcast " + checksum(procBroadcastData()),
	}
}

// cpuRankOpsMain runs every kind of operation once and prints a checksum
// of each result.
func cpuRankOpsMain(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := joinFromArgs(ctx, args)
	if err != nil {
		fmt.Println("init:", err)
		return 1
	}
	defer c.Close()
	r, size := c.Rank(), c.Size()
	s := cuda.Stream{}
	fail := func(op string, err error) int {
		fmt.Printf("%s: %v\n", op, err)
		return 1
	}

	ar := procAllReduceIn(r)
	x, _ := tensor.FromSlice(ar)
	if err := c.AllReduce(ctx, x, x, nccl.Sum, s); err != nil {
		return fail("allreduce", err)
	}
	fmt.Println("allreduce", checksum(ar))

	in, _ := tensor.FromSlice(procAllGatherIn(r))
	gathered := make([]int32, size*procAllGatherN)
	out, _ := tensor.FromSlice(gathered)
	if err := c.AllGather(ctx, in, out, s); err != nil {
		return fail("allgather", err)
	}
	fmt.Println("allgather", checksum(gathered))

	in, _ = tensor.FromSlice(procReduceScatterIn(r, size))
	scattered := make([]float64, procReduceScatM)
	out, _ = tensor.FromSlice(scattered)
	if err := c.ReduceScatter(ctx, in, out, nccl.Max, s); err != nil {
		return fail("reducescatter", err)
	}
	fmt.Println("reducescatter", checksum(scattered))

	ring := procRing(0, 1) // rank 0's start: i*3
	x, _ = tensor.FromSlice(ring)
	if size > 1 {
		if r == 0 {
			if err := c.Send(ctx, x, 1, s); err != nil {
				return fail("ring send", err)
			}
		}
		if err := c.Recv(ctx, x, (r+size-1)%size, s); err != nil {
			return fail("ring recv", err)
		}
		if r > 0 {
			for i := range ring {
				ring[i] += uint16(r)
			}
			if err := c.Send(ctx, x, (r+1)%size, s); err != nil {
				return fail("ring send", err)
			}
		}
	}
	fmt.Println("ring", checksum(ring))

	bc := make([]uint8, procBroadcastN)
	if r == size-1 {
		bc = procBroadcastData()
	}
	x, _ = tensor.FromSlice(bc)
	if err := c.Broadcast(ctx, x, size-1, s); err != nil {
		return fail("broadcast", err)
	}
	fmt.Println("broadcast", checksum(bc))
	return 0
}

// cpuRankLoopMain runs 16 MiB AllReduces until one fails, printing "ready"
// after the first and then what the failure was.
func cpuRankLoopMain(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := joinFromArgs(ctx, args)
	if err != nil {
		fmt.Println("init:", err)
		return 1
	}
	defer c.Close()
	x := tensor.Zeros(tensor.Float32, 4<<20)
	for i := 0; ; i++ {
		err := c.AllReduce(ctx, x, x, nccl.Sum, cuda.Stream{})
		switch {
		case err == nil:
			if i == 0 {
				fmt.Println("ready")
			}
			continue
		case errors.Is(err, nccl.ErrPeerDied):
			fmt.Println("peer-died", err)
		case errors.Is(err, nccl.ErrAborted):
			fmt.Println("aborted", err)
		default:
			fmt.Println("other", err)
		}
		return 0
	}
}

// cpuRankIdleMain joins and waits: "abort" on stdin aborts the
// communicator; at the end of input it closes it, or with a fourth
// argument "hold" it waits to be killed (Child.Kill closes stdin first).
func cpuRankIdleMain(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := joinFromArgs(ctx, args)
	if err != nil {
		fmt.Println("init:", err)
		return 1
	}
	defer c.Close()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "abort" {
			c.Abort()
			fmt.Println("aborted")
		}
	}
	if len(args) > 3 && args[3] == "hold" {
		select {}
	}
	return 0
}

// TestCPUProcesses: 2 to 4 ranks, each its own process, run every
// operation; each prints checksums the parent checks.
func TestCPUProcesses(t *testing.T) {
	for size := 2; size <= 4; size++ {
		t.Run(fmt.Sprintf("%dranks", size), func(t *testing.T) {
			id, err := nccl.CPU.NewUniqueID()
			require.NoError(t, err)
			kids := make([]*testutil.Child, size)
			for r := range size {
				kids[r] = testutil.StartChild(t, "cpu-rank-ops", rankArgs(id, r, size)...)
			}
			for r, c := range kids {
				for _, want := range procExpected(r, size) {
					require.Equal(t, want, c.ReadLine(time.Minute), "rank %d", r)
				}
				require.NoError(t, c.Wait(time.Minute), "rank %d", r)
			}
		})
	}
}

// TestCPUProcessKilledMidCollective: three processes loop over a 16 MiB
// AllReduce; rank 1 gets SIGKILL. The others fail with ErrPeerDied (not a
// hang), and their Close removes the segment (the leak check would say).
func TestCPUProcessKilledMidCollective(t *testing.T) {
	const size = 3
	id, err := nccl.CPU.NewUniqueID()
	require.NoError(t, err)
	kids := make([]*testutil.Child, size)
	for r := range size {
		kids[r] = testutil.StartChild(t, "cpu-rank-loop", rankArgs(id, r, size)...)
	}
	for r, c := range kids {
		require.Equal(t, "ready", c.ReadLine(time.Minute), "rank %d", r)
	}
	kids[1].Kill()
	for _, r := range []int{0, 2} {
		line := kids[r].ReadLine(10 * time.Second)
		assert.True(t, strings.HasPrefix(line, "peer-died "), "rank %d: %s", r, line)
		assert.Contains(t, line, fmt.Sprintf("rank 1 (pid %d) died", kids[1].Cmd.Process.Pid), "rank %d", r)
		require.NoError(t, kids[r].Wait(10*time.Second))
	}
}

// TestCPUProcessKilledWhileWaited: this process (rank 0) waits in Recv for
// a child that gets SIGKILL.
func TestCPUProcessKilledWhileWaited(t *testing.T) {
	id, err := nccl.CPU.NewUniqueID()
	require.NoError(t, err)
	kid := testutil.StartChild(t, "cpu-rank-idle", append(rankArgs(id, 1, 2), "hold")...)
	ctx := testCtx(t)
	c, err := nccl.CPU.Init(ctx, id, 0, 2, -1)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "ready", kid.ReadLine(time.Minute))
	done := make(chan error, 1)
	go func() { done <- c.Recv(ctx, tensor.Zeros(tensor.Float32, 10), 1, cuda.Stream{}) }()
	kid.Kill()
	err = <-done
	require.ErrorIs(t, err, nccl.ErrPeerDied)
	assert.ErrorIs(t, err, nccl.ErrAborted)
	assert.ErrorContains(t, err, fmt.Sprintf("rank 1 (pid %d) died", kid.Cmd.Process.Pid))
	// Later operations fail at once.
	x := tensor.Zeros(tensor.Float32, 1)
	assert.ErrorIs(t, c.AllReduce(ctx, x, x, nccl.Sum, cuda.Stream{}), nccl.ErrPeerDied)
}

// TestCPUProcessAbort: a child rank calls Abort; this rank's pending Recv
// fails with ErrAborted naming it.
func TestCPUProcessAbort(t *testing.T) {
	id, err := nccl.CPU.NewUniqueID()
	require.NoError(t, err)
	kid := testutil.StartChild(t, "cpu-rank-idle", rankArgs(id, 1, 2)...)
	ctx := testCtx(t)
	c, err := nccl.CPU.Init(ctx, id, 0, 2, -1)
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "ready", kid.ReadLine(time.Minute))
	done := make(chan error, 1)
	go func() { done <- c.Recv(ctx, tensor.Zeros(tensor.Float32, 10), 1, cuda.Stream{}) }()
	kid.WriteLine("abort")
	require.Equal(t, "aborted", kid.ReadLine(time.Minute))
	err = <-done
	require.ErrorIs(t, err, nccl.ErrAborted)
	assert.ErrorContains(t, err, fmt.Sprintf("by rank 1 (pid %d): Abort was called", kid.Cmd.Process.Pid))
	require.NoError(t, kid.Wait(time.Minute))
}
