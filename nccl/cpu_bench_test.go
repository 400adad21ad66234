package nccl_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/internal/testutil"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

func init() {
	reexec.Register("cpu-rank-peer", cpuRankPeerMain)
}

var benchSizes = []struct {
	name  string
	bytes int
}{{"100KB", 100_000}, {"16MiB", 16 << 20}}

// BenchmarkCPUComm measures the CPU backend with goroutine ranks against
// a plain memcpy of the same size in the same run: a Send/Recv copies the
// data twice (into a slot and out), on two cores at once, so it can
// approach memcpy bandwidth; an AllReduce over 2 ranks moves and reduces
// half the tensor each way.
func BenchmarkCPUComm(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run("memcpy/"+sz.name, func(b *testing.B) {
			src, dst := make([]byte, sz.bytes), make([]byte, sz.bytes)
			b.SetBytes(int64(sz.bytes))
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
	for _, sz := range benchSizes {
		b.Run("sendrecv/2ranks/"+sz.name, func(b *testing.B) {
			comms := cpuRanks(b, nccl.CPU, 2)
			x, y := tensor.Zeros(tensor.Uint8, sz.bytes), tensor.Zeros(tensor.Uint8, sz.bytes)
			b.SetBytes(int64(sz.bytes))
			b.ReportAllocs()
			benchRanks(b, comms, func(ctx context.Context, r int, c nccl.Communicator) error {
				if r == 0 {
					return c.Send(ctx, x, 1, cuda.Stream{})
				}
				return c.Recv(ctx, y, 0, cuda.Stream{})
			})
		})
	}
	for _, sz := range benchSizes {
		b.Run("allreduce/2ranks/"+sz.name, func(b *testing.B) {
			comms := cpuRanks(b, nccl.CPU, 2)
			xs := []*tensor.Tensor{tensor.Zeros(tensor.Float32, sz.bytes/4), tensor.Zeros(tensor.Float32, sz.bytes/4)}
			b.SetBytes(int64(sz.bytes))
			b.ReportAllocs()
			benchRanks(b, comms, func(ctx context.Context, r int, c nccl.Communicator) error {
				return c.AllReduce(ctx, xs[r], xs[r], nccl.Sum, cuda.Stream{})
			})
		})
	}
	// The same between this process and a child process (rank 1, driven
	// by commands from this one); pingpong is the round trip of a small
	// tensor: the latency of a handoff between processes.
	for _, sz := range benchSizes {
		b.Run("sendrecv/2procs/"+sz.name, func(b *testing.B) {
			c := startPeer(b)
			x := tensor.Zeros(tensor.Uint8, sz.bytes)
			b.SetBytes(int64(sz.bytes))
			b.ReportAllocs()
			runPeer(b, c, peerRecv, sz.bytes, func(ctx context.Context) error { return c.Send(ctx, x, 1, cuda.Stream{}) })
		})
	}
	for _, sz := range benchSizes {
		b.Run("allreduce/2procs/"+sz.name, func(b *testing.B) {
			c := startPeer(b)
			x := tensor.Zeros(tensor.Float32, sz.bytes/4)
			b.SetBytes(int64(sz.bytes))
			b.ReportAllocs()
			runPeer(b, c, peerAllReduce, sz.bytes, func(ctx context.Context) error { return c.AllReduce(ctx, x, x, nccl.Sum, cuda.Stream{}) })
		})
	}
	b.Run("pingpong/2procs/64B", func(b *testing.B) {
		c := startPeer(b)
		x := tensor.Zeros(tensor.Uint8, 64)
		b.ReportAllocs()
		runPeer(b, c, peerEcho, 64, func(ctx context.Context) error {
			if err := c.Send(ctx, x, 1, cuda.Stream{}); err != nil {
				return err
			}
			return c.Recv(ctx, x, 1, cuda.Stream{})
		})
	})
}

// Commands to the peer process: what to do n times with tensors of a
// size.
const (
	peerExit = iota
	peerRecv
	peerAllReduce
	peerEcho
)

// startPeer starts a child process as rank 1 and joins as rank 0.
func startPeer(b *testing.B) nccl.Communicator {
	id, err := nccl.CPU.NewUniqueID()
	if err != nil {
		b.Fatal(err)
	}
	kid := testutil.StartChild(b, "cpu-rank-peer", rankArgs(id, 1, 2)...)
	c, err := nccl.CPU.Init(context.Background(), id, 0, 2, -1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd := tensor.Zeros(tensor.Int64, 3) // peerExit
		c.Send(context.Background(), cmd, 1, cuda.Stream{})
		c.Close()
		kid.Wait(10 * time.Second)
	})
	return c
}

// runPeer has the peer do cmd b.N times (plus one untimed round) while
// this process runs op as many times, and waits for its acknowledgement.
func runPeer(b *testing.B, c nccl.Communicator, cmd, bytes int, op func(context.Context) error) {
	ctx := context.Background()
	for i, n := range []int{1, b.N} {
		ct, _ := tensor.FromSlice([]int64{int64(cmd), int64(n), int64(bytes)})
		if err := c.Send(ctx, ct, 1, cuda.Stream{}); err != nil {
			b.Fatal(err)
		}
		if i == 1 {
			b.ResetTimer()
		}
		for range n {
			if err := op(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.Recv(ctx, tensor.Zeros(tensor.Uint8, 1), 1, cuda.Stream{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}

// benchRanks runs op b.N times on every rank, rank 0 in the benchmark's
// goroutine.
func benchRanks(b *testing.B, comms []nccl.Communicator, op func(ctx context.Context, r int, c nccl.Communicator) error) {
	ctx := context.Background()
	// One untimed round first: the rings' pages are faulted in, and the
	// ranks are in step.
	for _, err := range onEach(comms, func(r int, c nccl.Communicator) error { return op(ctx, r, c) }) {
		if err != nil {
			b.Fatal(err)
		}
	}
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	b.ResetTimer()
	for r := 1; r < len(comms); r++ {
		wg.Go(func() {
			for range b.N {
				if errs[r] = op(ctx, r, comms[r]); errs[r] != nil {
					return
				}
			}
		})
	}
	for range b.N {
		if errs[0] = op(ctx, 0, comms[0]); errs[0] != nil {
			comms[0].Abort()
			break
		}
	}
	wg.Wait()
	b.StopTimer()
	for r, err := range errs {
		if err != nil {
			b.Fatal(fmt.Errorf("rank %d: %w", r, err))
		}
	}
}

// cpuRankPeerMain is rank 1 of a benchmark between processes: it runs
// the commands rank 0 sends, acknowledging each with one byte.
func cpuRankPeerMain(args []string) int {
	ctx := context.Background()
	c, err := joinFromArgs(ctx, args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		return 1
	}
	defer c.Close()
	cmd := make([]int64, 3)
	ct, _ := tensor.FromSlice(cmd)
	ack := tensor.Zeros(tensor.Uint8, 1)
	s := cuda.Stream{}
	for {
		if err := c.Recv(ctx, ct, 0, s); err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			return 1
		}
		n, bytes := int(cmd[1]), int(cmd[2])
		var op func() error
		switch cmd[0] {
		case peerExit:
			return 0
		case peerRecv:
			x := tensor.Zeros(tensor.Uint8, bytes)
			op = func() error { return c.Recv(ctx, x, 0, s) }
		case peerAllReduce:
			x := tensor.Zeros(tensor.Float32, bytes/4)
			op = func() error { return c.AllReduce(ctx, x, x, nccl.Sum, s) }
		case peerEcho:
			x := tensor.Zeros(tensor.Uint8, bytes)
			op = func() error {
				if err := c.Recv(ctx, x, 0, s); err != nil {
					return err
				}
				return c.Send(ctx, x, 0, s)
			}
		}
		for range n {
			if err := op(); err != nil {
				fmt.Fprintln(os.Stderr, "peer:", err)
				return 1
			}
		}
		if err := c.Send(ctx, ack, 0, s); err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			return 1
		}
	}
}
