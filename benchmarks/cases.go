package benchmarks

import (
	"fmt"
	"time"
)

// Message sizes.
var (
	roundTripSizes  = []int{64, 4 << 10, 1 << 20}
	throughputSizes = []int{64, 1 << 20}
)

// sizeName names a size as the case names do: 64B, 4KiB, 1MiB.
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func roundTripName(transport string, size int) string {
	return "ChannelRoundTrip/" + transport + "/" + sizeName(size)
}

func throughputName(transport string, size int) string {
	return "ChannelThroughput/" + transport + "/" + sizeName(size)
}

func init() {
	for _, t := range []struct {
		name string
		open opener
	}{
		{"shm", openShm},
		{"inproc", openInProc},
		{"tcp", openTCP},
		{"grpc", openGRPC},
		{"unixsock", openUnix},
		{"gochan", openGoChan},
	} {
		for _, size := range roundTripSizes {
			Register(NewCase(roundTripName(t.name, size), roundTripBody(t.open, size)))
		}
	}
	for _, t := range []struct {
		name  string
		open  streamOpener
		sizes []int
	}{
		{"shm", openShmStream, throughputSizes},
		{"inproc", openInProcStream, throughputSizes},
		{"tcp", openTCPStream, throughputSizes},
		{"gochan", openGoChanStream, []int{64}},
	} {
		for _, size := range t.sizes {
			Register(NewCase(throughputName(t.name, size), throughputBody(t.open, size)))
		}
	}
	// A chain of echo stages, one process each: the channel-level floor of
	// a compiled graph's chain of actors (with this process, stages+1
	// processes share this machine's cores).
	for _, n := range []int{2, 4} {
		Register(NewCase(fmt.Sprintf("ChannelChain/shm/%dstages/64B", n), roundTripBody(shmChain(n), 64)))
	}
	Register(NewCase("Memcpy/1MiB", memcpyBody(1<<20)))
	Register(NewCase("Memcpy/64MiB", memcpyBody(64<<20)))

	// The rows of `goray microbenchmark`: DESIGN.md §7's budget, each
	// against the baseline a user would otherwise pick.
	const kib, mib = 1 << 10, 1 << 20
	rt, tp := roundTripName, throughputName
	for _, r := range []Row{
		{Case: rt("shm", 64), Baseline: rt("grpc", 64), Kind: Latency,
			Target: Target{MinRatio: 20, MaxP50: 5 * time.Microsecond, MaxP99: 50 * time.Microsecond}},
		{Case: rt("shm", 4*kib), Baseline: rt("grpc", 4*kib), Kind: Latency},
		{Case: rt("shm", mib), Baseline: rt("grpc", mib), Kind: Latency},
		{Case: rt("shm", 64), Baseline: rt("unixsock", 64), Kind: Latency},
		{Case: rt("inproc", 64), Baseline: rt("gochan", 64), Kind: Latency,
			Target: Target{MinRatio: 1 / 1.5}},
		{Case: rt("tcp", 64), Baseline: rt("grpc", 64), Kind: Latency},
		// The floor under DESIGN.md's compiled chain of 4 actors (p50 ≤
		// 15 µs): five processes on this machine's cores, against one
		// gRPC round trip between two.
		{Case: "ChannelChain/shm/4stages/64B", Baseline: rt("grpc", 64), Kind: Latency,
			Target: Target{MaxP50: 15 * time.Microsecond}},
		{Case: tp("shm", 64), Baseline: tp("gochan", 64), Kind: MsgRate,
			Target: Target{MinMsgsPerSec: 5e6}},
		{Case: tp("shm", mib), Baseline: "Memcpy/1MiB", Kind: Bandwidth,
			Target: Target{MinRatio: 0.5}},
		{Case: tp("inproc", 64), Baseline: tp("gochan", 64), Kind: MsgRate},
		{Case: tp("inproc", mib), Baseline: "Memcpy/1MiB", Kind: Bandwidth},
		{Case: tp("tcp", mib), Baseline: "Memcpy/1MiB", Kind: Bandwidth},
	} {
		RegisterRow(r)
	}
}
