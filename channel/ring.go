package channel

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/shm"
)

// Ring layout. The header is a sequence of 128-byte lines (two cache lines,
// so the adjacent-line prefetcher never couples two hot words); the slots
// follow it at a page boundary, so readers can map them read-only.
//
//	line 0   magic, version, readers, slots, slotSize, stride, sizes, name length
//	line 1-2 name (for overflow segment names)
//	line 3   closed, readerSleepers, writerSleepers (read on hot paths, written on slow ones)
//	line 4   dataWord   (futex: readers sleep here)
//	line 5   spaceWord  (futex: the writer sleeps here)
//	line 6   writer pid, start time
//	line 7+  one line per reader: cursor (messages released), pid, start time
//
// A slot is a 64-byte header (seq, length, kind, overflow generation) and
// its payload. The writer fills a slot, then stores seq+1 in the slot's seq
// word: that store publishes the message. Readers wait for it in the slot's
// own line, so a small message and its publication arrive together.
const (
	ringMagic   = 0x4e49525941524f47 // "GORAYRIN"
	ringVersion = 1
	lineSize    = 128
	slotHdrSize = 64
	maxNameLen  = 256

	offMagic       = 0
	offVersion     = 8
	offReaders     = 12
	offSlots       = 16
	offSlotSize    = 20
	offStride      = 24
	offHeaderSize  = 32
	offTotalSize   = 40
	offNameLen     = 48
	offName        = 1 * lineSize
	offClosed      = 3 * lineSize
	offRSleepers   = offClosed + 4
	offWSleepers   = offClosed + 8
	offDataWord    = 4 * lineSize
	offSpaceWord   = 5 * lineSize
	offWriterPID   = 6 * lineSize
	offWriterStart = offWriterPID + 8
	offReaderLines = 7 * lineSize

	rdCursor = 0
	rdPID    = 8
	rdStart  = 16

	// leftCursor is the cursor of a reader that left: past any sequence,
	// so the writer never waits for it.
	leftCursor = ^uint64(0)

	slSeq  = 0
	slLen  = 8
	slKind = 16
	slGen  = 20
)

func headerSize(readers int) int {
	return roundUp(offReaderLines+readers*lineSize, shm.PageSize)
}

func slotStride(slotSize int) int { return slotHdrSize + roundUp(slotSize, 64) }

func roundUp(n, a int) int { return (n + a - 1) / a * a }

// ring is the state shared by the shared-memory and in-process rings: the
// header, the slots, and how to wait and to overflow.
type ring struct {
	name     string
	hdr      unsafe.Pointer
	readers  int
	k        uint64
	slotSize int
	stride   int
	parker   parker
	liveness bool // check peers' processes (shared memory only)

	// Backend hooks.
	writerSlots func() (unsafe.Pointer, error)
	readerSlots func() (unsafe.Pointer, error)
	newWOv      func() writerOverflow
	newROv      func() readerOverflow
	unref       func() // drop one reference to the mapping

	mu      sync.Mutex
	closing bool
}

type writerOverflow interface {
	buf(slot, n int) ([]byte, uint32, error)
	close()
}

type readerOverflow interface {
	buf(slot int, gen uint32, n int) ([]byte, error)
	close()
}

func (r *ring) u32(off int) *uint32 { return (*uint32)(unsafe.Add(r.hdr, off)) }
func (r *ring) u64(off int) *uint64 { return (*uint64)(unsafe.Add(r.hdr, off)) }

func (r *ring) readerLine(i int) int { return offReaderLines + i*lineSize }

func (r *ring) isClosed() bool { return atomic.LoadUint32(r.u32(offClosed)) != 0 }

// initHeader writes a new ring's header.
func initHeader(hdr unsafe.Pointer, name string, readers, slots, slotSize int, total int) {
	r := ring{hdr: hdr}
	*r.u64(offMagic) = ringMagic
	*r.u32(offVersion) = ringVersion
	*r.u32(offReaders) = uint32(readers)
	*r.u32(offSlots) = uint32(slots)
	*r.u32(offSlotSize) = uint32(slotSize)
	*r.u64(offStride) = uint64(slotStride(slotSize))
	*r.u64(offHeaderSize) = uint64(headerSize(readers))
	*r.u64(offTotalSize) = uint64(total)
	*r.u32(offNameLen) = uint32(len(name))
	copy(unsafe.Slice((*byte)(unsafe.Add(hdr, offName)), maxNameLen), name)
}

// close marks the ring closed for every process and wakes every sleeper.
func (r *ring) close() {
	if atomic.CompareAndSwapUint32(r.u32(offClosed), 0, 1) {
		atomic.AddUint32(r.u32(offDataWord), 1)
		atomic.AddUint32(r.u32(offSpaceWord), 1)
	}
	r.parker.unpark(dataWord, r.u32(offDataWord))
	r.parker.unpark(spaceWord, r.u32(offSpaceWord))
}

func (r *ring) attach(pidOff, startOff int, role string) error {
	self := shm.Self()
	if !atomic.CompareAndSwapUint64(r.u64(pidOff), 0, uint64(self.PID)) {
		return fmt.Errorf("channel %s: %s already attached by pid %d: %w: each end is opened once",
			r.name, role, atomic.LoadUint64(r.u64(pidOff)), errs.ErrBadArgument)
	}
	atomic.StoreUint64(r.u64(startOff), self.Start)
	return nil
}

func (r *ring) proc(pidOff, startOff int) shm.Process {
	return shm.Process{PID: int(atomic.LoadUint64(r.u64(pidOff))), Start: atomic.LoadUint64(r.u64(startOff))}
}

// Writer opens the ring's one writing end.
func (r *ring) writer(spin spinner) (*RingWriter, error) {
	if r.isClosed() {
		return nil, fmt.Errorf("channel %s: open writer: %w", r.name, ErrChannelClosed)
	}
	base, err := r.writerSlots()
	if err != nil {
		return nil, err
	}
	if err := r.attach(offWriterPID, offWriterStart, "writer"); err != nil {
		r.unref()
		return nil, err
	}
	return &RingWriter{r: r, base: base, ov: r.newWOv(), sp: spin}, nil
}

// reader opens reading end i.
func (r *ring) reader(i int, spin spinner) (*RingReader, error) {
	if i < 0 || i >= r.readers {
		return nil, fmt.Errorf("channel %s: reader %d: %w: the ring has readers 0 to %d", r.name, i, errs.ErrBadArgument, r.readers-1)
	}
	if r.isClosed() {
		return nil, fmt.Errorf("channel %s: open reader %d: %w", r.name, i, ErrChannelClosed)
	}
	base, err := r.readerSlots()
	if err != nil {
		return nil, err
	}
	line := r.readerLine(i)
	if err := r.attach(line+rdPID, line+rdStart, fmt.Sprintf("reader %d", i)); err != nil {
		r.unref()
		return nil, err
	}
	cursor := r.u64(line + rdCursor)
	rel := atomic.LoadUint64(cursor)
	return &RingReader{r: r, idx: i, base: base, cursor: cursor, next: rel, released: rel,
		pending: make([]bool, r.k), ov: r.newROv(), sp: spin}, nil
}

// RingWriter is the writing end of a shared-memory or in-process ring.
type RingWriter struct {
	r        *ring
	base     unsafe.Pointer
	seq      uint64 // next message
	minRead  uint64 // slowest reader's cursor, as last seen
	ov       writerOverflow
	sp       spinner
	reserved bool
	resN     int
	resGen   uint32
	finished bool // CloseWrite sent
	closed   bool
}

var _ Writer = (*RingWriter)(nil)

func (w *RingWriter) slot(seq uint64) unsafe.Pointer {
	return unsafe.Add(w.base, int(seq%w.r.k)*w.r.stride)
}

// Reserve implements Writer.
func (w *RingWriter) Reserve(ctx context.Context, n int) ([]byte, error) {
	switch {
	case w.closed:
		return nil, fmt.Errorf("channel %s: write: writer closed: %w", w.r.name, ErrChannelClosed)
	case w.reserved:
		return nil, fmt.Errorf("channel %s: Reserve called twice: %w: Commit the first reservation", w.r.name, errs.ErrBadArgument)
	case n < 0:
		return nil, fmt.Errorf("channel %s: Reserve(%d): %w", w.r.name, n, errs.ErrBadArgument)
	case w.finished:
		return nil, fmt.Errorf("channel %s: write after CloseWrite: %w", w.r.name, ErrChannelClosed)
	case w.r.isClosed():
		return nil, ErrChannelClosed
	}
	if w.seq-w.minRead >= w.r.k || w.minRead == leftCursor {
		w.minRead = w.slowest()
		if w.seq-w.minRead >= w.r.k {
			if err := w.waitSpace(ctx); err != nil {
				return nil, err
			}
		}
		if w.minRead == leftCursor {
			return nil, fmt.Errorf("channel %s: write: every reader has left: %w", w.r.name, ErrChannelClosed)
		}
	}
	slot := int(w.seq % w.r.k)
	if n <= w.r.slotSize {
		w.reserved, w.resN, w.resGen = true, n, 0
		return unsafe.Slice((*byte)(unsafe.Add(w.base, slot*w.r.stride+slotHdrSize)), n), nil
	}
	buf, gen, err := w.ov.buf(slot, n)
	if err != nil {
		return nil, fmt.Errorf("channel %s: message of %d bytes: %w", w.r.name, n, err)
	}
	w.reserved, w.resN, w.resGen = true, n, gen
	return buf, nil
}

// slowest returns the slowest reader's cursor, or leftCursor when every
// reader has left.
func (w *RingWriter) slowest() uint64 {
	m := leftCursor
	for i := 0; i < w.r.readers; i++ {
		if c := atomic.LoadUint64(w.r.u64(w.r.readerLine(i) + rdCursor)); c < m {
			m = c
		}
	}
	return m
}

func (w *RingWriter) waitSpace(ctx context.Context) error {
	ready := func() bool {
		w.minRead = w.slowest()
		return w.minRead == leftCursor || w.seq-w.minRead < w.r.k
	}
	var peer func() error
	if w.r.liveness {
		peer = w.lagging
	}
	return w.r.waitFor(ctx, &w.sp, spaceWord, w.r.u32(offSpaceWord), w.r.u32(offWSleepers), ready, peer,
		"write", "a free slot (the slowest reader is a full ring behind)")
}

// lagging reports a dead reader among those the writer waits for.
func (w *RingWriter) lagging() error {
	for i := 0; i < w.r.readers; i++ {
		line := w.r.readerLine(i)
		if c := atomic.LoadUint64(w.r.u64(line + rdCursor)); c == leftCursor || w.seq-c < w.r.k {
			continue
		}
		p := w.r.proc(line+rdPID, line+rdStart)
		if p.PID != 0 && p.Start != 0 && !p.Alive() {
			return fmt.Errorf("channel %s: write: reader %d (pid %d) died with messages unread: %w",
				w.r.name, i, p.PID, ErrPeerDied)
		}
	}
	return nil
}

// Commit implements Writer.
func (w *RingWriter) Commit(kind Kind) error {
	if !w.reserved {
		return fmt.Errorf("channel %s: Commit without Reserve: %w", w.r.name, errs.ErrBadArgument)
	}
	if kind != KindData && kind != KindError {
		return fmt.Errorf("channel %s: Commit(%v): %w: want KindData or KindError (CloseWrite ends the stream)", w.r.name, kind, errs.ErrBadArgument)
	}
	w.publish(kind)
	return nil
}

// publish sends the reserved slot as a message of the given kind: the
// slot's seq store makes it visible, then sleeping readers, if any, are
// woken.
func (w *RingWriter) publish(kind Kind) {
	p := w.slot(w.seq)
	*(*uint64)(unsafe.Add(p, slLen)) = uint64(w.resN)
	*(*uint32)(unsafe.Add(p, slKind)) = uint32(kind)
	*(*uint32)(unsafe.Add(p, slGen)) = w.resGen
	atomic.StoreUint64((*uint64)(unsafe.Add(p, slSeq)), w.seq+1)
	w.seq++
	w.reserved = false
	if atomic.LoadUint32(w.r.u32(offRSleepers)) != 0 {
		atomic.AddUint32(w.r.u32(offDataWord), 1)
		w.r.parker.unpark(dataWord, w.r.u32(offDataWord))
	}
}

// Write implements Writer.
func (w *RingWriter) Write(ctx context.Context, p []byte) error { return send(ctx, w, KindData, p) }

// WriteError implements Writer.
func (w *RingWriter) WriteError(ctx context.Context, e error) error {
	return sendError(ctx, w, e, w.r.name)
}

// CloseWrite implements Writer.
func (w *RingWriter) CloseWrite(ctx context.Context) error {
	if _, err := w.Reserve(ctx, 0); err != nil {
		return err
	}
	w.publish(KindClose)
	w.finished = true
	return nil
}

// Close implements Writer.
func (w *RingWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.r.close()
	w.ov.close()
	w.r.unref()
	return nil
}

// Seq is the number of messages written so far.
func (w *RingWriter) Seq() uint64 { return w.seq }

// RingReader is a reading end of a shared-memory or in-process ring.
type RingReader struct {
	r        *ring
	idx      int
	base     unsafe.Pointer
	cursor   *uint64
	next     uint64 // next message to read
	released uint64 // messages released, in order
	pending  []bool // released out of order, by slot
	ov       readerOverflow
	sp       spinner
	eof      bool
	closed   bool
}

var _ Reader = (*RingReader)(nil)

// Read implements Reader.
func (rd *RingReader) Read(ctx context.Context) (Message, error) {
	switch {
	case rd.closed:
		return Message{}, fmt.Errorf("channel %s: read: reader closed: %w", rd.r.name, ErrChannelClosed)
	case rd.eof, rd.r.isClosed():
		return Message{}, ErrChannelClosed
	case rd.next-rd.released >= rd.r.k:
		return Message{}, fmt.Errorf("channel %s: read: %d messages held unreleased: %w: release one first (a ring of %d slots holds no more)",
			rd.r.name, rd.next-rd.released, errs.ErrBadArgument, rd.r.k)
	}
	p := unsafe.Add(rd.base, int(rd.next%rd.r.k)*rd.r.stride)
	seqp := (*uint64)(unsafe.Add(p, slSeq))
	if atomic.LoadUint64(seqp) != rd.next+1 {
		if err := rd.waitData(ctx, seqp); err != nil {
			return Message{}, err
		}
	}
	n := int(*(*uint64)(unsafe.Add(p, slLen)))
	kind := Kind(*(*uint32)(unsafe.Add(p, slKind)))
	gen := *(*uint32)(unsafe.Add(p, slGen))
	seq := rd.next
	switch {
	case kind == KindClose:
		rd.eof = true
		rd.next++
		rd.release(seq)
		return Message{}, ErrChannelClosed
	case !kind.valid(), n < 0, gen == 0 && n > rd.r.slotSize:
		return Message{}, fmt.Errorf("channel %s: read: corrupt slot header (kind %d, length %d)", rd.r.name, kind, n)
	}
	var data []byte
	if gen == 0 {
		data = unsafe.Slice((*byte)(unsafe.Add(p, slotHdrSize)), n)
	} else {
		var err error
		if data, err = rd.ov.buf(int(seq%rd.r.k), gen, n); err != nil {
			if rd.r.isClosed() {
				return Message{}, ErrChannelClosed
			}
			return Message{}, fmt.Errorf("channel %s: read message %d (%d bytes): %w", rd.r.name, seq, n, err)
		}
	}
	rd.next++
	return Message{Kind: kind, Data: data, Seq: seq, rel: rd}, nil
}

// Ready reports whether Read would return at once: the next message is
// written, or the channel is closed. It never blocks.
func (rd *RingReader) Ready() bool {
	if rd.closed || rd.eof || rd.r.isClosed() {
		return true
	}
	p := unsafe.Add(rd.base, int(rd.next%rd.r.k)*rd.r.stride)
	return atomic.LoadUint64((*uint64)(unsafe.Add(p, slSeq))) == rd.next+1
}

func (rd *RingReader) waitData(ctx context.Context, seqp *uint64) error {
	want := rd.next + 1
	ready := func() bool { return atomic.LoadUint64(seqp) == want }
	var peer func() error
	if rd.r.liveness {
		peer = rd.writerGone
	}
	return rd.r.waitFor(ctx, &rd.sp, dataWord, rd.r.u32(offDataWord), rd.r.u32(offRSleepers), ready, peer,
		"read", "a message from the writer")
}

func (rd *RingReader) writerGone() error {
	p := rd.r.proc(offWriterPID, offWriterStart)
	if p.PID != 0 && p.Start != 0 && !p.Alive() {
		return fmt.Errorf("channel %s: read: writer (pid %d) died: %w", rd.r.name, p.PID, ErrPeerDied)
	}
	return nil
}

func (rd *RingReader) release(seq uint64) {
	if rd.closed || seq < rd.released || seq >= rd.next {
		return
	}
	if seq != rd.released {
		rd.pending[seq%rd.r.k] = true
		return
	}
	rd.released++
	for rd.released < rd.next && rd.pending[rd.released%rd.r.k] {
		rd.pending[rd.released%rd.r.k] = false
		rd.released++
	}
	atomic.StoreUint64(rd.cursor, rd.released)
	if atomic.LoadUint32(rd.r.u32(offWSleepers)) != 0 {
		atomic.AddUint32(rd.r.u32(offSpaceWord), 1)
		rd.r.parker.unpark(spaceWord, rd.r.u32(offSpaceWord))
	}
}

// Recv reads the next message, copies its data into dst (grown as needed)
// and releases it. An in-band error message is returned as its error.
func (rd *RingReader) Recv(ctx context.Context, dst []byte) ([]byte, error) {
	return recv(ctx, rd, dst)
}

// send is Write for any writer: Reserve, copy, Commit.
func send(ctx context.Context, w Writer, kind Kind, p []byte) error {
	buf, err := w.Reserve(ctx, len(p))
	if err != nil {
		return err
	}
	copy(buf, p)
	return w.Commit(kind)
}

// sendError is WriteError for any writer: the error's text, in-band.
func sendError(ctx context.Context, w Writer, e error, name string) error {
	if e == nil {
		return fmt.Errorf("channel %s: WriteError(nil): %w", name, errs.ErrBadArgument)
	}
	return send(ctx, w, KindError, []byte(e.Error()))
}

func recv(ctx context.Context, r Reader, dst []byte) ([]byte, error) {
	m, err := r.Read(ctx)
	if err != nil {
		return dst, err
	}
	defer m.Release()
	if e := m.Err(); e != nil {
		return dst, e
	}
	return append(dst[:0], m.Data...), nil
}

// Close implements Reader.
func (rd *RingReader) Close() error {
	if rd.closed {
		return nil
	}
	atomic.StoreUint64(rd.cursor, leftCursor)
	atomic.AddUint32(rd.r.u32(offSpaceWord), 1)
	rd.r.parker.unpark(spaceWord, rd.r.u32(offSpaceWord))
	rd.closed = true
	rd.ov.close()
	rd.r.unref()
	return nil
}

// Index is this reader's index among the ring's readers.
func (rd *RingReader) Index() int { return rd.idx }
