package channel

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/shm"
)

// Ring is a ring channel: one writer, a fixed number of readers, K slots.
// A shared-memory ring (NewShm, OpenShm) lives in a segment under /dev/shm
// and its ends may be in different processes; an in-process ring (NewInProc)
// lives in ordinary memory. Both have the same protocol and semantics.
type Ring struct {
	r     *ring
	spin  time.Duration
	owner bool

	// Shared memory only.
	seg     *shm.Segment
	hdrMem  []byte
	mapMu   sync.Mutex
	slotsRW []byte
	slotsRO []byte
	refs    atomic.Int32

	// In-process only.
	mem [][]uint64

	closeOnce sync.Once
}

// NewShm creates a shared-memory ring with the given number of readers. The
// segment's name (Name) is what other processes pass to OpenShm; label
// makes it recognisable ("" picks a random one). The creating process owns
// the ring: its Close tears the channel down and unlinks the segment.
func NewShm(label string, readers int, opts ...Option) (*Ring, error) {
	cfg := newConfig(opts)
	if err := cfg.validate(readers); err != nil {
		return nil, err
	}
	if label == "" {
		var b [8]byte
		rand.Read(b[:])
		label = hex.EncodeToString(b[:])
	}
	name := shm.Name("ch." + label)
	if len(name) > maxNameLen-16 {
		return nil, fmt.Errorf("channel: label %q: %w: the segment name would exceed %d bytes", label, errs.ErrBadArgument, maxNameLen-16)
	}
	hdrSize := headerSize(readers)
	total := hdrSize + roundUp(cfg.slots*slotStride(cfg.slotSize), shm.PageSize)
	seg, err := shm.Create(name, int64(total))
	if err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	if err := seg.Allocate(); err != nil {
		seg.Destroy()
		return nil, fmt.Errorf("channel: %w", err)
	}
	hdr, err := seg.Map(0, int64(hdrSize), true)
	if err != nil {
		seg.Destroy()
		return nil, fmt.Errorf("channel: %w", err)
	}
	initHeader(unsafe.Pointer(&hdr[0]), name, readers, cfg.slots, cfg.slotSize, total)
	shape := ringShape{readers: readers, slots: cfg.slots, slotSize: cfg.slotSize, headerSize: int64(hdrSize), name: name}
	return newShmRing(seg, hdr, shape, cfg.spin, true), nil
}

// OpenShm opens a shared-memory ring created by NewShm, usually in another
// process. Only the Spin option applies; the ring's shape is its creator's.
func OpenShm(name string, opts ...Option) (*Ring, error) {
	seg, err := shm.Open(name)
	if err != nil {
		return nil, fmt.Errorf("channel: open %s: %w", name, err)
	}
	return openSeg(seg, name, opts)
}

// OpenShmFD opens a shared-memory ring from a descriptor of its segment
// passed by another process (Ring.FD; shm.SendFDs, exec.Cmd.ExtraFiles).
// The caller keeps fd.
func OpenShmFD(fd int, opts ...Option) (*Ring, error) {
	seg, err := shm.OpenFD(fd)
	if err != nil {
		return nil, fmt.Errorf("channel: open descriptor %d: %w", fd, err)
	}
	return openSeg(seg, "descriptor "+strconv.Itoa(fd), opts)
}

func openSeg(seg *shm.Segment, what string, opts []Option) (*Ring, error) {
	cfg := newConfig(opts)
	fail := func(err error) (*Ring, error) {
		seg.Close()
		return nil, fmt.Errorf("channel: open %s: %w", what, err)
	}
	if seg.Size() < int64(headerSize(1)) {
		return fail(fmt.Errorf("%d bytes is too small to be a ring", seg.Size()))
	}
	// Validate a private copy: the shape used from here on is the one
	// checked, whatever another process writes into the header later.
	page, err := seg.Map(0, int64(shm.PageSize), false)
	if err != nil {
		return fail(err)
	}
	first := append([]byte(nil), page...)
	shm.Unmap(page)
	shape, err := parseHeader(first, seg.Size())
	if err != nil {
		return fail(err)
	}
	hdr, err := seg.Map(0, shape.headerSize, true)
	if err != nil {
		return fail(err)
	}
	return newShmRing(seg, hdr, shape, cfg.spin, false), nil
}

// ringShape is what a ring's header says about it, once checked.
type ringShape struct {
	readers, slots, slotSize int
	headerSize               int64
	name                     string
}

// parseHeader checks the first page of a ring segment of size bytes: the
// decoder of what another process wrote (FuzzRingHeader).
func parseHeader(b []byte, size int64) (ringShape, error) {
	if len(b) < offName+maxNameLen {
		return ringShape{}, fmt.Errorf("header of %d bytes is too short", len(b))
	}
	u32 := func(off int) uint32 { return binary.NativeEndian.Uint32(b[off:]) }
	u64 := func(off int) uint64 { return binary.NativeEndian.Uint64(b[off:]) }
	magic, version := u64(offMagic), u32(offVersion)
	readers, slots, slotSize := u32(offReaders), u32(offSlots), u32(offSlotSize)
	hsize, total, nameLen := u64(offHeaderSize), u64(offTotalSize), u32(offNameLen)
	switch {
	case magic != ringMagic:
		return ringShape{}, fmt.Errorf("not a goray ring (magic %#x)", magic)
	case version != ringVersion:
		return ringShape{}, fmt.Errorf("ring format version %d, this build reads version %d: use the same goray build on both ends", version, ringVersion)
	case readers < 1 || readers > MaxReaders || slots < 1 || slots > maxSlots || slotSize > maxSlotSize || nameLen > maxNameLen:
		return ringShape{}, fmt.Errorf("corrupt header (readers %d, slots %d, slot size %d, name length %d)", readers, slots, slotSize, nameLen)
	}
	// Bounded above, so none of these products overflows.
	sh := ringShape{readers: int(readers), slots: int(slots), slotSize: int(slotSize), headerSize: int64(headerSize(int(readers))),
		name: string(b[offName : offName+int(nameLen)])}
	if hsize != uint64(sh.headerSize) || total != uint64(size) || int64(total) < sh.headerSize+int64(sh.slots)*int64(slotStride(sh.slotSize)) {
		return ringShape{}, fmt.Errorf("corrupt header: sizes %d/%d do not match a segment of %d bytes", hsize, total, size)
	}
	return sh, nil
}

func newShmRing(seg *shm.Segment, hdr []byte, shape ringShape, spin time.Duration, owner bool) *Ring {
	rg := &Ring{seg: seg, hdrMem: hdr, spin: spin, owner: owner}
	r := &ring{hdr: unsafe.Pointer(&hdr[0]), parker: futexParker{}, liveness: true,
		name: shape.name, readers: shape.readers, k: uint64(shape.slots), slotSize: shape.slotSize,
		stride: slotStride(shape.slotSize)}
	hsize := shape.headerSize
	slotsLen := seg.Size() - hsize
	r.writerSlots = func() (unsafe.Pointer, error) {
		rg.mapMu.Lock()
		defer rg.mapMu.Unlock()
		if rg.slotsRW == nil {
			m, err := seg.Map(hsize, slotsLen, true)
			if err != nil {
				return nil, fmt.Errorf("channel %s: %w", r.name, err)
			}
			rg.slotsRW = m
		}
		rg.refs.Add(1)
		return unsafe.Pointer(&rg.slotsRW[0]), nil
	}
	r.readerSlots = func() (unsafe.Pointer, error) {
		rg.mapMu.Lock()
		defer rg.mapMu.Unlock()
		if rg.slotsRO == nil {
			m, err := seg.Map(hsize, slotsLen, false)
			if err != nil {
				return nil, fmt.Errorf("channel %s: %w", r.name, err)
			}
			rg.slotsRO = m
		}
		rg.refs.Add(1)
		return unsafe.Pointer(&rg.slotsRO[0]), nil
	}
	r.newWOv = func() writerOverflow { return &shmWriterOverflow{base: r.name, bufs: make([]ovBuf, r.k)} }
	r.newROv = func() readerOverflow { return &shmReaderOverflow{base: r.name, bufs: make([]ovBuf, r.k)} }
	r.unref = rg.unref
	rg.r = r
	rg.refs.Store(1)
	return rg
}

// unref drops a reference to the mappings; the last one unmaps them.
func (rg *Ring) unref() {
	if rg.seg == nil || rg.refs.Add(-1) != 0 {
		return
	}
	rg.mapMu.Lock()
	defer rg.mapMu.Unlock()
	shm.Unmap(rg.slotsRW)
	shm.Unmap(rg.slotsRO)
	shm.Unmap(rg.hdrMem)
	rg.slotsRW, rg.slotsRO, rg.hdrMem = nil, nil, nil
	rg.seg.Close()
}

// Name is the ring's segment name, for OpenShm ("" for an in-process ring).
func (rg *Ring) Name() string {
	if rg.seg == nil {
		return ""
	}
	return rg.r.name
}

// FD is a descriptor of the ring's segment, for OpenShmFD in another
// process; -1 for an in-process ring. Valid until Close.
func (rg *Ring) FD() int {
	if rg.seg == nil {
		return -1
	}
	return rg.seg.FD()
}

// Readers is the number of reading ends.
func (rg *Ring) Readers() int { return rg.r.readers }

// Slots is the ring's length, K.
func (rg *Ring) Slots() int { return int(rg.r.k) }

// SlotSize is the bytes a slot holds in place.
func (rg *Ring) SlotSize() int { return rg.r.slotSize }

// Writer opens the ring's writing end. A ring has one writer, opened once.
func (rg *Ring) Writer() (*RingWriter, error) { return rg.r.writer(newSpinner(rg.spin)) }

// Reader opens reading end i (0 ≤ i < Readers), each opened once.
func (rg *Ring) Reader(i int) (*RingReader, error) { return rg.r.reader(i, newSpinner(rg.spin)) }

// Closed reports whether the channel has been closed.
func (rg *Ring) Closed() bool { return rg.r.isClosed() }

// Close releases this handle. The creator's Close also tears the channel
// down for everyone (blocked reads and writes return ErrChannelClosed) and
// removes its segments from /dev/shm; another process's Close only lets go
// of its handle, leaving the ends it opened working until they are closed.
func (rg *Ring) Close() error {
	var err error
	rg.closeOnce.Do(func() {
		if rg.owner {
			rg.r.close()
			if rg.seg != nil {
				err = rg.seg.Destroy()
				if e := removeOverflow(rg.r.name); e != nil && err == nil {
					err = e
				}
			}
		}
		rg.unref()
	})
	return err
}

func removeOverflow(ringName string) error {
	names, err := shm.List(shm.Process{})
	if err != nil {
		return err
	}
	prefix := ringName + ".x"
	for _, n := range names {
		if len(n) > len(prefix) && n[:len(prefix)] == prefix {
			if err := shm.Unlink(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// ovBuf is a slot's overflow buffer: a segment named <ring>.x<gen> that
// holds messages too large for the slot. The writer grows it (a new
// generation) only when a message does not fit, so steady traffic reuses it.
type ovBuf struct {
	mem []byte
	gen uint32
}

func ovName(base string, gen uint32) string { return base + ".x" + strconv.FormatUint(uint64(gen), 10) }

type shmWriterOverflow struct {
	base string
	bufs []ovBuf
	gen  uint32
}

func (o *shmWriterOverflow) buf(slot, n int) ([]byte, uint32, error) {
	b := &o.bufs[slot]
	if len(b.mem) >= n {
		return b.mem[:n:n], b.gen, nil
	}
	size := roundUp(max(n, 2*len(b.mem)), shm.PageSize)
	o.gen++
	// The generation is unique per writer; the slot index keeps names
	// unique should a ring ever be written by a restarted writer.
	name := ovName(o.base, o.gen)
	seg, err := shm.Create(name, int64(size))
	if err != nil {
		return nil, 0, err
	}
	if err := seg.Allocate(); err != nil {
		seg.Destroy()
		return nil, 0, err
	}
	mem, err := seg.Map(0, int64(size), true)
	seg.Close()
	if err != nil {
		shm.Unlink(name)
		return nil, 0, err
	}
	if b.mem != nil {
		// Every reader released this slot before the writer got it back,
		// so no one needs the old generation any more.
		shm.Unmap(b.mem)
		shm.Unlink(ovName(o.base, b.gen))
	}
	*b = ovBuf{mem: mem, gen: o.gen}
	return mem[:n:n], b.gen, nil
}

func (o *shmWriterOverflow) close() {
	for i := range o.bufs {
		shm.Unmap(o.bufs[i].mem)
		o.bufs[i] = ovBuf{}
	}
}

type shmReaderOverflow struct {
	base string
	bufs []ovBuf
}

func (o *shmReaderOverflow) buf(slot int, gen uint32, n int) ([]byte, error) {
	b := &o.bufs[slot]
	if b.gen != gen || b.mem == nil {
		seg, err := shm.Open(ovName(o.base, gen))
		if err != nil {
			return nil, err
		}
		mem, err := seg.Map(0, seg.Size(), false)
		seg.Close()
		if err != nil {
			return nil, err
		}
		shm.Unmap(b.mem)
		*b = ovBuf{mem: mem, gen: gen}
	}
	if n > len(b.mem) {
		return nil, fmt.Errorf("corrupt slot: %d bytes in an overflow buffer of %d", n, len(b.mem))
	}
	return b.mem[:n:n], nil
}

func (o *shmReaderOverflow) close() {
	for i := range o.bufs {
		shm.Unmap(o.bufs[i].mem)
		o.bufs[i] = ovBuf{}
	}
}
