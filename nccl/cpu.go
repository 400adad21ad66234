package nccl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goray/goray/internal/shm"
)

// CPUBackend is the communicator backend over shared memory, registered as
// "cpu": ranks are processes (or goroutines) of one host, tensors are host
// tensors, and the semantics are NCCL's. It is what every multi-rank test
// runs on, and the fallback where there is no GPU.
//
// The zero CPUBackend uses the defaults. ChunkSize and Slots shape the
// communicator and travel in the UniqueID, so only the backend that calls
// NewUniqueID decides them; Spin is each rank's own.
type CPUBackend struct {
	// ChunkSize is the bytes of one slot of a ring between two ranks: large
	// tensors move in chunks of this size, one copy into a slot and one out.
	// A multiple of 4 KiB from 4 KiB to 64 MiB; 0 means 1 MiB, the size
	// from which Go's memmove (amd64) writes with non-temporal stores: a
	// slot's data then goes to memory instead of staying dirty in the
	// writer's cache, where a reader on another core complex (as a VM's
	// vCPUs may be placed) fetches it an order of magnitude slower.
	ChunkSize int
	// Slots is the number of chunks in flight between two ranks, 2 to 64;
	// 0 means 2. A communicator of many ranks may get fewer slots, then a
	// smaller chunk, so that its segment (size × (size-1) rings) stays
	// under 256 MiB.
	Slots int
	// Spin is how long a waiting rank busy-waits (a pause instruction, then
	// yielding the CPU for 4 × Spin more) before it sleeps on a futex: a
	// handoff while spinning costs well under a microsecond, a futex wake
	// tens. 0 means 50µs; a negative value sleeps at once.
	Spin time.Duration
}

// CPU is the "cpu" backend with the default settings, as registered.
var CPU Backend = CPUBackend{}

func init() { Register(CPU) }

const defaultSpin = 50 * time.Microsecond

// Name is "cpu".
func (CPUBackend) Name() string { return "cpu" }

func (b CPUBackend) validate() error {
	if b.ChunkSize != 0 && (b.ChunkSize < minChunk || b.ChunkSize > maxChunk || b.ChunkSize%minChunk != 0) {
		return fmt.Errorf("%w: cpu: ChunkSize %d: want 0 (1 MiB) or a multiple of %d from %d to %d", ErrBadArgument, b.ChunkSize, minChunk, minChunk, maxChunk)
	}
	if b.Slots != 0 && (b.Slots < minSlots || b.Slots > maxSlots) {
		return fmt.Errorf("%w: cpu: Slots %d: want 0 (%d) or %d to %d", ErrBadArgument, b.Slots, defaultSlots, minSlots, maxSlots)
	}
	return nil
}

// NewUniqueID makes a fresh ID: a random segment name owned by this
// process (so a segment left behind if it dies is removed as stale), and
// the chunk size and slot count. Pass it to every rank's Init.
func (b CPUBackend) NewUniqueID() (UniqueID, error) {
	if err := b.validate(); err != nil {
		return UniqueID{}, err
	}
	chunk, slots := b.ChunkSize, b.Slots
	if chunk == 0 {
		chunk = defaultChunk
	}
	if slots == 0 {
		slots = defaultSlots
	}
	return newCPUID(chunk, slots)
}

// Init joins communicator id as rank of size. The first rank to arrive
// creates the shared-memory segment, the others open it (retrying until it
// exists); each records its process in it, and Init returns once all size
// ranks have joined. If ctx ends first, or another rank gives up or dies
// meanwhile, Init fails, and the ranks still waiting fail too. device is
// ignored: the CPU backend uses no GPU.
func (b CPUBackend) Init(ctx context.Context, id UniqueID, rank, size, device int) (Communicator, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	cid, err := parseCPUID(id)
	if err != nil {
		return nil, err
	}
	if size < 1 || size > maxRanks {
		return nil, fmt.Errorf("%w: cpu: Init: size %d: the CPU backend takes 1 to %d ranks", ErrBadArgument, size, maxRanks)
	}
	if rank < 0 || rank >= size {
		return nil, fmt.Errorf("%w: cpu: Init: rank %d is outside [0, %d): ranks are numbered from 0 to size-1", ErrBadArgument, rank, size)
	}
	spin := b.Spin
	if spin == 0 {
		spin = defaultSpin
	}
	lay := newLayout(size, cid.chunk, cid.slots)
	mem, err := attachSegment(ctx, cid.name, lay, rank)
	if err != nil {
		return nil, fmt.Errorf("nccl: cpu: Init rank %d of %d: %w", rank, size, err)
	}
	c := newCPUComm(cid.name, lay, mem, rank, spin)
	if err := c.join(ctx); err != nil {
		c.leave()
		return nil, fmt.Errorf("nccl: cpu: Init rank %d of %d: %w", rank, size, err)
	}
	return c, nil
}

// attachSegment opens the communicator's segment, creating it if no rank
// has yet, and maps it. A new segment is built under a private name and
// then hard-linked to the shared one: link fails if the name exists (the
// O_EXCL of publishing), and whoever opens the name finds a complete
// header. A rank that arrives before the segment exists creates it; one
// that finds it opens it.
func attachSegment(ctx context.Context, name string, lay layout, rank int) ([]byte, error) {
	for {
		mem, err := openSegment(name, lay, rank)
		if err == nil || !errors.Is(err, shm.ErrNotFound) {
			return mem, err
		}
		mem, err = createSegment(name, lay)
		if err == nil || !errors.Is(err, unix.EEXIST) {
			return mem, err
		}
		// Another rank published it first: open theirs.
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("opening segment %s: %w", name, err)
		}
	}
}

func openSegment(name string, lay layout, rank int) ([]byte, error) {
	seg, err := shm.Open(name)
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	if seg.Size() < segPage {
		return nil, fmt.Errorf("segment %s is %d bytes: not a CPU communicator", name, seg.Size())
	}
	head, err := seg.Map(0, segPage, true)
	if err != nil {
		return nil, err
	}
	err = lay.checkHeader(head, seg.Size())
	if errors.Is(err, ErrBadArgument) {
		// The ranks disagree about the communicator: the ones waiting in
		// Init would wait in vain.
		atomic.CompareAndSwapUint64(u64(head, offAbort), 0, packAbort(abortMismatch, rank, shm.Self().PID))
		shm.FutexWake(u32(head, offJoined), maxWake)
	}
	shm.Unmap(head)
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w", name, err)
	}
	return seg.Map(0, int64(lay.total), true)
}

func createSegment(name string, lay layout) ([]byte, error) {
	var nonce [8]byte
	rand.Read(nonce[:])
	tmp, err := shm.Create(shm.Name("nccl-init-"+hex.EncodeToString(nonce[:])), int64(lay.total))
	if err != nil {
		return nil, err
	}
	defer tmp.Destroy() // removes the private name; the shared one stays
	// Reserve the memory now: running out of /dev/shm is an error here,
	// not a SIGBUS in the middle of a collective.
	if err := tmp.Allocate(); err != nil {
		return nil, err
	}
	mem, err := tmp.Map(0, int64(lay.total), true)
	if err != nil {
		return nil, err
	}
	lay.writeHeader(mem)
	if err := unix.Link(filepath.Join(shm.Dir, tmp.Name()), filepath.Join(shm.Dir, name)); err != nil {
		shm.Unmap(mem)
		if errors.Is(err, unix.EEXIST) {
			return nil, err
		}
		return nil, fmt.Errorf("publish segment %s: %w", name, err)
	}
	return mem, nil
}

// join claims this rank in the segment and waits for the others.
func (c *cpuComm) join(ctx context.Context) error {
	if w := atomic.LoadUint64(c.abortw); w != 0 {
		return fmt.Errorf("the communicator was aborted before this rank joined: %w", abortError(w))
	}
	self := shm.Self()
	st := c.states[c.rank]
	if !atomic.CompareAndSwapUint32(st, rankEmpty, rankClaimed) {
		p := c.peerProcess(c.rank)
		c.abortShared(abortMismatch, c.rank, self.PID)
		return fmt.Errorf("%w: rank %d of this communicator has already joined (pid %d): give every rank its own number", ErrBadArgument, c.rank, p.PID)
	}
	c.claimed = true
	off := c.lay.rankOff(c.rank)
	atomic.StoreUint64(u64(c.mem, off+rkPID), uint64(self.PID))
	atomic.StoreUint64(u64(c.mem, off+rkStart), self.Start)
	atomic.StoreUint32(st, rankJoined)
	joined := u32(c.mem, offJoined)
	atomic.AddUint32(joined, 1)
	shm.FutexWake(joined, maxWake)

	lastLive := time.Now()
	for {
		n := atomic.LoadUint32(joined)
		if int(n) >= c.size {
			break
		}
		if w := atomic.LoadUint64(c.abortw); w != 0 {
			return abortError(w)
		}
		if err := ctx.Err(); err != nil {
			c.abortShared(abortInit, c.rank, self.PID)
			return fmt.Errorf("%d of %d ranks joined (missing: %s): %w", n, c.size, c.missingRanks(), err)
		}
		if time.Since(lastLive) >= liveEvery {
			lastLive = time.Now()
			for r := range c.size {
				if r == c.rank || atomic.LoadUint32(c.states[r]) != rankJoined {
					continue
				}
				if p := c.peerProcess(r); p != self && !p.Alive() {
					c.abortShared(abortPeerDied, r, p.PID)
					return fmt.Errorf("%w: rank %d (pid %d) died while the ranks joined", ErrPeerDied, r, p.PID)
				}
			}
		}
		timeout := initPoll
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(min(timeout, time.Until(dl)), time.Microsecond)
		}
		shm.FutexWait(joined, n, timeout)
	}
	for r := range c.size {
		c.procs[r] = c.peerProcess(r)
	}
	return nil
}

const (
	initPoll  = 5 * time.Millisecond
	liveEvery = 10 * time.Millisecond
	maxWake   = 1 << 30
)

func (c *cpuComm) missingRanks() string {
	var s []byte
	for r := range c.size {
		if atomic.LoadUint32(c.states[r]) != rankJoined {
			if len(s) > 0 {
				s = append(s, ", "...)
			}
			s = fmt.Appendf(s, "%d", r)
		}
	}
	return string(s)
}

// peerProcess reads the identity rank r recorded when it joined.
func (c *cpuComm) peerProcess(r int) shm.Process {
	off := c.lay.rankOff(r)
	return shm.Process{
		PID:   int(atomic.LoadUint64(u64(c.mem, off+rkPID))),
		Start: atomic.LoadUint64(u64(c.mem, off+rkStart)),
	}
}
