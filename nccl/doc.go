// Package nccl is goray's collective communication: groups of ranks
// (actors, or any processes of a node) that move tensors among themselves
// with send/receive and collectives, the data path of a compiled graph's
// GPU edges. It is not a general message layer: metadata, control and
// anything that is not a tensor travel through package channel.
//
// # Communicators
//
// A Communicator is one rank of a group of Size ranks. One participant
// makes a UniqueID with its backend's NewUniqueID and hands it to every
// rank (it is 128 bytes, safe to ship over RPC); each rank calls Init with
// the ID, its rank and the size, in its own process, and Init returns once
// all have joined:
//
//	b, _ := nccl.Lookup("cpu")            // or "nccl"
//	id, _ := b.NewUniqueID()              // once, sent to every rank
//	c, _ := b.Init(ctx, id, rank, size, gpu)
//	defer c.Close()
//	err := c.AllReduce(ctx, grads, grads, nccl.Sum, stream)
//
// The operations are NCCL's: Send and Recv (paired in the order each pair
// of ranks issues them), AllReduce, AllGather, ReduceScatter and Broadcast,
// with the reductions Sum, Prod, Max, Min and Avg. Collectives must be
// called by every rank in the same order with tensors of the same dtype and
// shape. Every call blocks until this rank's part is done, its ctx ends, or
// the communicator fails; a peer that dies or aborts makes the calls fail
// with ErrPeerDied or ErrAborted instead of hanging. A failed communicator
// stays aborted: make a new one.
//
// # Backends
//
// A backend is registered by name (Register, Lookup), so every process of
// the binary can find the one a compiled graph names:
//
//   - "nccl": NVIDIA NCCL over the GPUs the ranks hold,
//     loaded at run time; tensors live on this rank's GPU and operations
//     are enqueued on a CUDA stream. Without libnccl or a GPU, Init fails
//     with ErrUnavailable.
//   - "cpu" (CPUBackend, CPU): the same interface and semantics over shared
//     memory between processes (or goroutines) of one host, for host
//     tensors. Its ranks meet in one segment under /dev/shm named by the
//     UniqueID; each ordered pair of ranks has a ring of slots, and the
//     collectives are NCCL's ring algorithms (Broadcast a pipelined chain),
//     so large tensors move in chunks at close to memory bandwidth and a
//     small one crosses between processes in under a microsecond.
//
// Pick "nccl" when the ranks hold GPUs and the tensors are on them, and
// "cpu" otherwise: for host tensors, on machines without GPUs, and for
// more ranks than GPUs (NCCL refuses two ranks on one GPU). Every
// multi-rank test in CI runs on "cpu": the schedules, the deadlock freedom
// and the failure paths (a rank killed with SIGKILL, Abort, cancellation)
// are the same, so they are checked without a GPU; a GPU machine adds the
// single-rank NCCL checks.
//
// # Failures
//
// Abort, from any goroutine, fails this rank's pending and later operations
// with ErrAborted, and the peers' too. A context that ends during an
// operation fails it with ctx.Err() and aborts the communicator, since no
// rank can tell how far the others got. The CPU backend notices a dead peer
// within tens of milliseconds (it checks the processes its ranks recorded
// when they joined), and the last rank to Close removes the segment; one a
// crash leaves behind is removed as stale (shm.CleanupStale), as it is
// named for the process that made the UniqueID.
package nccl
