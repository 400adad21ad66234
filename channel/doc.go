// Package channel moves messages from one writer to a fixed set of readers:
// it is the data path of goray's compiled graphs, where its latency is the
// overhead a user pays per execution.
//
// # Transports
//
// All transports implement Writer and Reader with the same semantics:
//
//   - NewShm / OpenShm / OpenShmFD: a ring in a shared-memory segment under
//     /dev/shm; the writer and the readers may be in different processes of
//     one node. Reads are zero-copy: Message.Data is a read-only view into
//     the ring (a write through it faults).
//   - NewInProc: the same ring in ordinary memory, for goroutines of one
//     process. Blocked calls park goroutines, not OS threads.
//   - ListenTCP / DialTCP: a stream between nodes with the same message
//     kinds, ordering, back-pressure and close semantics, every frame
//     length-checked and versioned.
//
// # The ring
//
// A ring has K slots (Slots) of S bytes (SlotSize), one writer and N readers
// fixed at creation. The writer fills slot seq mod K and publishes it by
// storing seq+1 in the slot's header; each reader waits for that store in the
// slot's own cache line, reads the message in place, and releases it by
// advancing its cursor. The writer never overwrites a slot that any reader
// still holds: when the slowest reader is K messages behind, writes wait
// (back-pressure). A message larger than S goes to that slot's overflow
// buffer, a segment beside the ring that grows to fit and is then reused, so
// large messages stay zero-copy and are never refused.
//
//	r, _ := channel.NewShm("frames", 2, channel.Slots(8), channel.SlotSize(64<<10))
//	defer r.Close()           // the creator's Close tears down and unlinks
//	w, _ := r.Writer()
//	w.Write(ctx, []byte("hello"))
//
//	// In another process:
//	r, _ := channel.OpenShm(name)
//	rd, _ := r.Reader(1)
//	m, _ := rd.Read(ctx)      // m.Data aliases shared memory
//	use(m.Data)
//	m.Release()               // the writer may reuse the slot
//
// Reserve and Commit let a writer encode straight into the slot, so neither
// side copies.
//
// # Waiting
//
// A blocked call waits in three phases. It spins with the CPU's pause
// instruction, so a peer on another core hands over in well under a
// microsecond; it then yields the CPU in a loop (sched_yield), so that when
// more processes want the cores than there are cores, the one holding the
// message runs; and it finally sleeps on a futex in the ring's header. The
// other side pays for the FUTEX_WAKE system call only when someone sleeps,
// so a busy pipeline makes no system calls at all. While spinning, the
// waiter yields once about every microsecond and times it: a yield that ran
// another thread means this core is wanted, and the next waits start in the
// yield phase. Both busy phases have adaptive budgets (Spin, DefaultSpin):
// a phase that runs out halves its budget, one that succeeds restores it,
// and a full-length probe now and then finds a peer that sped up. Every
// sleep is bounded, and a sleeper checks whether the process it waits for
// still runs: a writer waiting on a reader killed with kill -9, or a reader
// waiting on a dead writer, gets ErrPeerDied instead of a hang.
//
// # Messages, errors and close
//
// A message is data (KindData) or an in-band error (KindError, from
// WriteError), so a graph can pass a failed step's error down an edge. The
// writer ends a stream with CloseWrite: readers receive everything before it
// and then ErrChannelClosed. Close on the writer, or the creator's
// Ring.Close, tears the channel down at once: every blocked call wakes, and
// every later read and write returns ErrChannelClosed. A reader's Close only
// takes that reader out. Every blocking call takes a context; a deadline
// that passes gives a *TimeoutError matching ErrTimeout and
// context.DeadlineExceeded.
//
// # Concurrency
//
// Each end of a ring is used by one goroutine at a time, Close included:
// to stop a call blocked in another goroutine, cancel its context, or close
// the Ring (the creator's Close wakes every end, in every process), rather
// than closing the end under it. Release a ring message from the goroutine
// that read it. Different ends of one ring may be used concurrently from
// any goroutines or processes. (TCPReader is more lenient: its Close and
// Message.Release may be called from any goroutine.)
//
// Package channel is not a message broker: it has no persistence, no topics
// and no dynamic membership; its readers are fixed when it is made.
package channel
