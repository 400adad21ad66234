package cuda_test

import (
	"errors"
	"fmt"

	"github.com/goray/goray/cuda"
)

// Copy bytes to a GPU and back, or learn why there is no GPU.
func Example() {
	n, err := cuda.DeviceCount()
	if errors.Is(err, cuda.ErrNoDriver) {
		fmt.Println("no GPU:", err)
		return
	}
	fmt.Println(n, "GPU(s)")
	p, err := cuda.Malloc(0, 5)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cuda.Free(0, p)
	if err := cuda.CopyToDevice(0, p, []byte("hello")); err != nil {
		fmt.Println(err)
		return
	}
	back := make([]byte, 5)
	if err := cuda.CopyToHost(0, back, p); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(back))
}

// Order work on a stream and wait for it without blocking a thread.
func ExampleStream_Query() {
	s, err := cuda.NewStream(0)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Destroy()
	// ... queue work on s (cuda.MemcpyAsync, NCCL through s.Handle()) ...
	if done, err := s.Query(); err == nil && !done {
		fmt.Println("still running")
	}
}

// List the node's GPUs and how they connect.
func ExampleDiscover() {
	gpus, err := cuda.Discover()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, g := range gpus {
		fmt.Println(g.Index, g.Name, g.UUID, g.PCIBusID)
		for _, l := range g.Links {
			fmt.Printf("  to %d: p2p=%v nvlink=%v\n", l.Peer, l.P2P, l.NVLink)
		}
	}
}
