package nccl

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/internal/testutil"
	"github.com/goray/goray/tensor"
)

func TestCPULayout(t *testing.T) {
	l := newLayout(4, defaultChunk, defaultSlots)
	assert.Equal(t, defaultChunk, l.chunk)
	assert.LessOrEqual(t, l.total, 25<<20, "a 4-rank segment stays small")
	assert.Zero(t, l.ringsOff%segPage)
	assert.Zero(t, l.pairStride%segPage)
	// Every ring of every ordered pair has its own place.
	seen := map[int]bool{}
	for src := range 4 {
		for dst := range 4 {
			if src == dst {
				continue
			}
			off := l.ringOff(src, dst)
			assert.False(t, seen[off])
			seen[off] = true
			assert.LessOrEqual(t, off+l.pairStride, l.total)
		}
	}
	// Many ranks take fewer slots, then a smaller chunk, to keep the
	// segment bounded.
	big := newLayout(maxRanks, maxChunk, maxSlots)
	assert.Equal(t, minSlots, big.slots)
	assert.LessOrEqual(t, maxRanks*(maxRanks-1)*big.slots*big.chunk, maxSegData)
	mid := newLayout(16, defaultChunk, 8)
	assert.Equal(t, minSlots, mid.slots)
	assert.Less(t, mid.chunk, defaultChunk)
	assert.LessOrEqual(t, 16*15*mid.slots*mid.chunk, maxSegData)
	few := newLayout(6, defaultChunk, 8)
	assert.Equal(t, 8, few.slots)
	assert.Equal(t, defaultChunk, few.chunk)
}

func TestCPUBlockParts(t *testing.T) {
	// The parts of all blocks tile [0, n) exactly, for any split.
	for _, n := range []int{0, 1, 7, 64, 1000, 4099} {
		for N := 1; N <= 5; N++ {
			for _, ce := range []int{1, 3, 64, 5000} {
				covered := make([]int, n)
				parts := max(1, ceilDiv(ceilDiv(n, N), ce))
				for b := range N {
					for p := range parts {
						lo, hi := blockPart(n, N, b, p, ce, 1)
						require.LessOrEqual(t, lo, hi)
						require.LessOrEqual(t, hi-lo, ce)
						for i := lo; i < hi; i++ {
							covered[i]++
						}
					}
				}
				for i, k := range covered {
					require.Equal(t, 1, k, "n=%d N=%d ce=%d element %d", n, N, ce, i)
				}
			}
		}
	}
}

func TestCPUUniqueIDRoundTrip(t *testing.T) {
	id, err := CPUBackend{ChunkSize: 64 << 10, Slots: 8}.NewUniqueID()
	require.NoError(t, err)
	c, err := parseCPUID(id)
	require.NoError(t, err)
	assert.Equal(t, 64<<10, c.chunk)
	assert.Equal(t, 8, c.slots)
	owner, ok := shm.Owner(c.name)
	require.True(t, ok)
	assert.Equal(t, shm.Self(), owner, "the segment is owned by the process that made the id")
	other, err := CPU.NewUniqueID()
	require.NoError(t, err)
	assert.NotEqual(t, id, other)
}

// TestCPUProcessKilledDuringInit: rank 1 (a child process) joins and dies
// while rank 0 waits for rank 2: rank 0's Init fails with ErrPeerDied.
func TestCPUProcessKilledDuringInit(t *testing.T) {
	id, err := CPU.NewUniqueID()
	require.NoError(t, err)
	cid, err := parseCPUID(id)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kid := testutil.StartChild(t, "cpu-rank-idle", hex.EncodeToString(id[:]), "1", "3", "hold")
	done := make(chan error, 1)
	go func() {
		c, err := CPU.Init(ctx, id, 0, 3, -1)
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	testutil.CheckFor(t, time.Minute, time.Millisecond, func() error { return segmentRankJoined(cid.name, 3, 1) })
	kid.Kill()
	err = <-done
	require.ErrorIs(t, err, ErrPeerDied)
	assert.ErrorContains(t, err, "rank 1 (pid "+strconv.Itoa(kid.Cmd.Process.Pid)+") died while the ranks joined")
}

// segmentRankJoined reports whether rank has joined the communicator whose
// segment is name.
func segmentRankJoined(name string, size, rank int) error {
	seg, err := shm.Open(name)
	if err != nil {
		return err
	}
	defer seg.Close()
	lay := newLayout(size, defaultChunk, defaultSlots)
	if seg.Size() != int64(lay.total) {
		return errors.New("segment not yet complete")
	}
	mem, err := seg.Map(0, int64(lay.ringsOff), false)
	if err != nil {
		return err
	}
	defer shm.Unmap(mem)
	if st := atomic.LoadUint32(u32(mem, lay.rankOff(rank)+rkState)); st != rankJoined {
		return fmt.Errorf("rank %d is in state %d", rank, st)
	}
	return nil
}

// cpuTestRanks makes size goroutine ranks and closes them at the end.
func cpuTestRanks(t *testing.T, size int) []*cpuComm {
	id, err := CPU.NewUniqueID()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	comms := make([]*cpuComm, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for r := range size {
		wg.Go(func() {
			var c Communicator
			if c, errs[r] = CPU.Init(ctx, id, r, size, -1); c != nil {
				comms[r] = c.(*cpuComm)
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range comms {
			if c != nil {
				c.Close()
			}
		}
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	return comms
}

// recvAsleep starts a Recv on c from peer and returns once it sleeps on
// its doorbell (past spinning), with the channel its error arrives on.
func recvAsleep(t *testing.T, c *cpuComm, peer int) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Recv(context.Background(), tensor.Zeros(tensor.Float32, 4), peer, cuda.Stream{}) }()
	testutil.CheckFor(t, time.Minute, time.Millisecond, func() error {
		if n := atomic.LoadUint32(c.bells[c.rank].sleepers); n != 1 {
			return fmt.Errorf("%d sleepers", n)
		}
		return nil
	})
	return done
}

// TestCPUWakeSleeper: a Recv asleep on its futex wakes at once for an
// Abort here or at the peer, for Close, and for the data.
func TestCPUWakeSleeper(t *testing.T) {
	t.Run("data", func(t *testing.T) {
		comms := cpuTestRanks(t, 2)
		done := recvAsleep(t, comms[1], 0)
		require.NoError(t, comms[0].Send(context.Background(), tensor.Zeros(tensor.Float32, 4), 1, cuda.Stream{}))
		require.NoError(t, <-done)
	})
	t.Run("abort here", func(t *testing.T) {
		comms := cpuTestRanks(t, 2)
		done := recvAsleep(t, comms[1], 0)
		require.NoError(t, comms[1].Abort())
		err := <-done
		require.ErrorIs(t, err, ErrAborted)
		assert.ErrorContains(t, err, "Abort was called on rank 1")
	})
	t.Run("abort at peer", func(t *testing.T) {
		comms := cpuTestRanks(t, 3)
		done := recvAsleep(t, comms[1], 0)
		require.NoError(t, comms[2].Abort())
		err := <-done
		require.ErrorIs(t, err, ErrAborted)
		assert.ErrorContains(t, err, "by rank 2")
	})
	t.Run("close", func(t *testing.T) {
		comms := cpuTestRanks(t, 2)
		done := recvAsleep(t, comms[1], 0)
		require.NoError(t, comms[1].Close())
		err := <-done
		require.ErrorIs(t, err, ErrClosed)
		assert.ErrorContains(t, err, "Close was called on rank 1 during the operation")
		// Its peer learns of it.
		err = comms[0].Recv(context.Background(), tensor.Zeros(tensor.Float32, 4), 1, cuda.Stream{})
		assert.ErrorIs(t, err, ErrAborted)
	})
}
