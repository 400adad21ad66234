package channel

import (
	"fmt"
	"unsafe"
)

// NewInProc creates an in-process ring: the same ring as NewShm, in
// ordinary memory, for a writer and readers that are goroutines of one
// process. Blocked calls park their goroutine rather than an OS thread.
// Close tears the channel down.
func NewInProc(readers int, opts ...Option) (*Ring, error) {
	cfg := newConfig(opts)
	if err := cfg.validate(readers); err != nil {
		return nil, err
	}
	hdrMem, hdr := alignedAlloc(headerSize(readers))
	slotsMem, slots := alignedAlloc(cfg.slots * slotStride(cfg.slotSize))
	initHeader(hdr, "inproc", readers, cfg.slots, cfg.slotSize, 0)
	rg := &Ring{spin: cfg.spin, owner: true, mem: [][]uint64{hdrMem, slotsMem}}
	r := &ring{name: "inproc", hdr: hdr, readers: readers, k: uint64(cfg.slots), slotSize: cfg.slotSize,
		stride: slotStride(cfg.slotSize), parker: &goParker{}}
	ov := &heapOverflow{bufs: make([]ovHeap, cfg.slots)}
	r.writerSlots = func() (unsafe.Pointer, error) { return slots, nil }
	r.readerSlots = func() (unsafe.Pointer, error) { return slots, nil }
	r.newWOv = func() writerOverflow { return ov }
	r.newROv = func() readerOverflow { return heapReaderView{ov} }
	r.unref = func() {}
	rg.r = r
	return rg, nil
}

// alignedAlloc returns n zeroed bytes aligned to a 128-byte line, as the
// backing slice (which keeps them alive) and a pointer to the first byte.
func alignedAlloc(n int) ([]uint64, unsafe.Pointer) {
	mem := make([]uint64, (n+2*lineSize)/8)
	p := unsafe.Pointer(&mem[0])
	off := (lineSize - int(uintptr(p)%lineSize)) % lineSize
	return mem, unsafe.Add(p, off)
}

// heapOverflow holds an in-process ring's overflow buffers. The writer
// replaces a slot's buffer only after every reader released the slot, and
// the slot's seq store orders that with the readers' loads.
type heapOverflow struct {
	bufs []ovHeap
	gen  uint32
}

type ovHeap struct {
	mem []byte
	gen uint32
}

func (o *heapOverflow) buf(slot, n int) ([]byte, uint32, error) {
	b := &o.bufs[slot]
	if len(b.mem) < n {
		o.gen++
		*b = ovHeap{mem: make([]byte, roundUp(max(n, 2*len(b.mem)), 4096)), gen: o.gen}
	}
	return b.mem[:n:n], b.gen, nil
}

func (o *heapOverflow) close() {}

// heapReaderView is the read side of the same table.
type heapReaderView struct{ o *heapOverflow }

func (v heapReaderView) buf(slot int, gen uint32, n int) ([]byte, error) {
	b := v.o.bufs[slot]
	if b.gen != gen || n > len(b.mem) {
		return nil, fmt.Errorf("corrupt slot: overflow generation %d of %d bytes, want generation %d of %d", b.gen, len(b.mem), gen, n)
	}
	return b.mem[:n:n], nil
}

func (v heapReaderView) close() {}
