package channel

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goray/goray/internal/errs"
)

// TCPWriter is the writing end of a TCP channel: a listener that the
// readers dial (DialTCP), then one connection per reader.
type TCPWriter struct {
	ln      net.Listener
	addr    string
	readers int
	k       uint64
	token   [sha256.Size]byte

	// Used by the writing goroutine only.
	reserved bool
	resN     int
	finished bool
	ready    bool   // every reader connected, as last seen
	credit   uint64 // the slowest reader's released count, as last seen
	maxMsg   int64  // the smallest MaxMessageSize among the readers
	direct   []*wconn

	broken atomic.Bool // a connection failed or the channel closed: take the slow path

	mu         sync.Mutex
	conns      []*wconn // by reader index, nil until it connects
	connected  int
	seq        uint64   // messages committed
	slots      [][]byte // frames by seq mod K: header, then payload
	lens       []int    // their lengths
	handshakes map[net.Conn]struct{}
	closeErr   error // why the channel closed; nil while open
	userClosed bool
	changed    chan struct{} // closed at every change a waiting writer may need
	wg         sync.WaitGroup
}

var _ Writer = (*TCPWriter)(nil)

// wconn is the writer's connection to one reader. Its pump goroutine sends
// what Commit could not; its ack goroutine reads the reader's frames and is
// the one to say why the connection failed: a write fails first when a
// reader closes (its goodbye is still unread) as when it dies, and the
// frames that follow tell the two apart. The last of the two to end closes
// the connection.
type wconn struct {
	idx    int
	conn   *net.TCPConn
	raw    syscall.RawConn
	who    string // "reader 1 (10.0.0.2:41000)"
	maxMsg int64
	kick   chan struct{} // wakes the pump: buffered, sent after a change
	refs   atomic.Int32  // goroutines using conn

	// Guarded by TCPWriter.mu.
	released uint64 // messages the reader acknowledged releasing
	sent     uint64 // frames written whole
	off      int    // bytes of frame sent already written
	busy     bool   // someone writes to conn outside the lock
	err      error  // why this connection failed
	badPeer  bool   // err is a bad frame from the reader: tell it why
	wfail    error  // a write failed: the pump stops, the ack reader decides why
	left     bool   // the reader closed its end: nothing more is sent to it

	// Commit's results of a direct write, while busy.
	wn   int
	werr error
}

func (c *wconn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// writeFailedLocked stops writes to c and leaves the ack reader a grace
// period to read what the reader sent before the connection broke.
func (c *wconn) writeFailedLocked(err error) {
	if c.wfail == nil {
		c.wfail = err
		c.conn.SetReadDeadline(time.Now().Add(closeGrace))
	}
	c.wake()
}

// unref closes the connection when its last goroutine ends.
func (c *wconn) unref() {
	if c.refs.Add(-1) == 0 {
		c.conn.Close()
	}
}

// ListenTCP creates the writing end of a TCP channel listening on addr
// (host:port; "127.0.0.1:0" picks a free port, see Addr) for readers
// readers, which connect with DialTCP. Options: Slots (the credit window:
// how many messages each reader may hold unreleased, default DefaultSlots)
// and Token. Writes wait until every reader is connected.
func ListenTCP(addr string, readers int, opts ...Option) (*TCPWriter, error) {
	cfg := newConfig(opts)
	if err := cfg.validate(readers); err != nil {
		return nil, err
	}
	if len(cfg.token) > maxTokenLen {
		return nil, fmt.Errorf("channel: Token of %d bytes: %w: want at most %d", len(cfg.token), errs.ErrBadArgument, maxTokenLen)
	}
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("channel: tcp: listen on %s: %w", addr, err)
	}
	w := &TCPWriter{
		ln:         ln,
		addr:       ln.Addr().String(),
		readers:    readers,
		k:          uint64(cfg.slots),
		token:      sha256.Sum256(cfg.token),
		conns:      make([]*wconn, readers),
		slots:      make([][]byte, cfg.slots),
		lens:       make([]int, cfg.slots),
		handshakes: map[net.Conn]struct{}{},
	}
	w.wg.Add(1)
	go w.accept()
	return w, nil
}

// Addr is the host:port the writer listens on, for DialTCP.
func (w *TCPWriter) Addr() string { return w.addr }

// Seq is the number of messages written so far.
func (w *TCPWriter) Seq() uint64 { return w.seq }

func (w *TCPWriter) accept() {
	defer w.wg.Done()
	for {
		conn, err := w.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, say: try again shortly, unless closing.
			t := time.NewTimer(50 * time.Millisecond)
			w.mu.Lock()
			closed := w.closeErr != nil
			w.mu.Unlock()
			if closed {
				t.Stop()
				return
			}
			<-t.C
			continue
		}
		w.mu.Lock()
		if w.closeErr != nil {
			w.mu.Unlock()
			conn.Close()
			continue
		}
		w.handshakes[conn] = struct{}{}
		w.wg.Add(1)
		w.mu.Unlock()
		go w.handshake(conn.(*net.TCPConn))
	}
}

// handshake reads a connection's hello and answers accept or fault.
func (w *TCPWriter) handshake(conn *net.TCPConn) {
	defer w.wg.Done()
	remote := conn.RemoteAddr().String()
	refuse := func(code byte, err error) {
		conn.SetWriteDeadline(time.Now().Add(closeGrace))
		conn.Write(faultFrame(code, err.Error()))
		conn.Close()
		w.mu.Lock()
		delete(w.handshakes, conn)
		w.mu.Unlock()
	}
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	// The same reader goes on to read acks: nothing it buffered is lost.
	fr := newFrameReader(conn, max(ackReadBuffer, frameHeaderSize+maxHello))
	_, p, err := fr.next(func(h frameHeader) error {
		if h.kind != frameHello {
			return badFrame("%v frame before hello", h.kind)
		}
		return nil
	}, nil)
	if err != nil {
		if isBadFrame(err) {
			refuse(faultBadFrame, fmt.Errorf("channel: tcp %s: connection from %s: %w", w.addr, remote, err))
		} else {
			refuse(faultRefused, fmt.Errorf("channel: tcp %s: connection from %s: no hello: %v", w.addr, remote, err))
		}
		return
	}
	idx := binary.LittleEndian.Uint32(p[0:])
	readers := binary.LittleEndian.Uint32(p[4:])
	maxMsg := binary.LittleEndian.Uint64(p[8:])
	tok := sha256.Sum256(p[helloFixed:])
	who := fmt.Sprintf("reader %d (%s)", idx, remote)
	switch {
	case subtle.ConstantTimeCompare(tok[:], w.token[:]) != 1:
		refuse(faultRefused, fmt.Errorf("channel: tcp %s: %s: bad token: both ends must be given the same Token", w.addr, who))
		return
	case idx >= uint32(w.readers):
		refuse(faultRefused, fmt.Errorf("channel: tcp %s: %s: index out of range: this writer has readers 0 to %d", w.addr, who, w.readers-1))
		return
	case readers != 0 && readers != uint32(w.readers):
		refuse(faultRefused, fmt.Errorf("channel: tcp %s: %s expects %d readers, this writer has %d: give both ends the same count", w.addr, who, readers, w.readers))
		return
	case maxMsg < 1 || maxMsg > maxStreamData:
		refuse(faultBadFrame, fmt.Errorf("channel: tcp %s: %s: %w", w.addr, who, badFrame("hello with MaxMessageSize %d", maxMsg)))
		return
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		refuse(faultRefused, fmt.Errorf("channel: tcp %s: %s: %v", w.addr, who, err))
		return
	}
	c := &wconn{idx: int(idx), conn: conn, raw: raw, who: who, maxMsg: int64(maxMsg), kick: make(chan struct{}, 1), busy: true}
	w.mu.Lock()
	switch {
	case w.closeErr != nil:
		w.mu.Unlock()
		refuse(faultClosed, w.closeErr)
		return
	case w.conns[idx] != nil:
		prev := w.conns[idx].who
		w.mu.Unlock()
		refuse(faultRefused, fmt.Errorf("channel: tcp %s: %s: reader %d is already connected, as %s: each reader index dials once", w.addr, who, idx, prev))
		return
	}
	// Hold the index (busy: no one writes to it) while accept goes out.
	w.conns[idx] = c
	delete(w.handshakes, conn)
	w.mu.Unlock()

	var acc [acceptLen]byte
	binary.LittleEndian.PutUint32(acc[0:], uint32(w.k))
	binary.LittleEndian.PutUint32(acc[4:], uint32(w.readers))
	_, err = conn.Write(appendFrame(nil, frameAccept, 0, acc[:]))
	conn.SetDeadline(time.Time{})

	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		// The reader went away mid-handshake: it may dial again.
		w.conns[idx] = nil
		conn.Close()
		return
	}
	c.busy = false
	w.connected++
	if w.closeErr != nil {
		conn.SetWriteDeadline(time.Now().Add(closeGrace))
	}
	w.notifyLocked()
	c.refs.Store(2)
	w.wg.Add(2)
	go w.pump(c)
	go w.readAcks(c, fr)
}

// notifyLocked wakes a writer waiting for credit.
func (w *TCPWriter) notifyLocked() {
	if w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
}

// failLocked records why connection c failed, which fails later writes.
func (w *TCPWriter) failLocked(c *wconn, err error) {
	if c.err != nil || w.closeErr != nil {
		return
	}
	c.err = err
	w.broken.Store(true)
	c.conn.SetWriteDeadline(aLongTimeAgo) // unblock the pump
	w.notifyLocked()
	c.wake()
}

// closeLocked closes the channel for everyone: pumps say teardown and hang
// up, the listener and handshakes stop.
func (w *TCPWriter) closeLocked(err error) {
	if w.closeErr != nil {
		return
	}
	w.closeErr = err
	w.broken.Store(true)
	w.notifyLocked()
	w.ln.Close()
	for conn := range w.handshakes {
		conn.Close()
	}
	dl := time.Now().Add(closeGrace)
	for _, c := range w.conns {
		if c != nil {
			c.conn.SetWriteDeadline(dl)
			c.wake()
		}
	}
}

func (w *TCPWriter) failedLocked() error {
	if w.closeErr != nil {
		return w.closeErr
	}
	left := 0
	for _, c := range w.conns {
		if c != nil && c.err != nil {
			return c.err
		}
		if c != nil && c.left {
			left++
		}
	}
	if left == w.readers {
		return fmt.Errorf("channel: tcp %s: write: every reader has left: %w", w.addr, ErrChannelClosed)
	}
	return nil
}

// connErr says what err on c's connection means.
func (w *TCPWriter) connErr(c *wconn, err error) error {
	if isBadFrame(err) {
		return fmt.Errorf("channel: tcp %s: %s sent a bad frame; connection dropped: %w", w.addr, c.who, err)
	}
	return fmt.Errorf("channel: tcp %s: %s died or dropped the connection (%v): %w", w.addr, c.who, err, ErrPeerDied)
}

// pump sends c's frames that Commit could not, and says goodbye.
func (w *TCPWriter) pump(c *wconn) {
	defer w.wg.Done()
	w.mu.Lock()
	for {
		if c.busy || (c.err == nil && c.wfail == nil && !c.left && w.closeErr == nil && c.sent == w.seq) {
			w.mu.Unlock()
			<-c.kick
			w.mu.Lock()
			continue
		}
		// Unsent frames are dropped at close, but one already begun is
		// finished: the reader can make sense of nothing else.
		if c.err != nil || c.wfail != nil || c.left || (w.closeErr != nil && c.off == 0) {
			break
		}
		slot := c.sent % w.k
		frame, off := w.slots[slot][:w.lens[slot]], c.off
		c.busy = true
		w.mu.Unlock()
		n, err := c.conn.Write(frame[off:])
		w.mu.Lock()
		c.busy = false
		if err != nil {
			c.off = off + n
			c.writeFailedLocked(err)
			continue
		}
		c.sent++
		c.off = 0
		w.notifyLocked()
	}
	var bye []byte
	switch {
	case c.off != 0 || c.wfail != nil || c.left:
		// Cut mid-frame, broken, or hung up: nothing more can be said.
	case c.err == nil:
		bye = appendFrame(nil, frameTeardown, 0, nil)
	case c.badPeer:
		bye = faultFrame(faultBadFrame, c.err.Error())
	}
	w.mu.Unlock()
	if bye != nil {
		c.conn.SetWriteDeadline(time.Now().Add(closeGrace))
		c.conn.Write(bye)
	}
	// The ack reader ends at the reader's answer, or after the grace.
	c.conn.SetReadDeadline(time.Now().Add(closeGrace))
	c.unref()
}

// readAcks reads c's frames from the reader: acks, teardown, fault.
func (w *TCPWriter) readAcks(c *wconn, fr *frameReader) {
	defer w.wg.Done()
	defer c.unref()
	check := func(h frameHeader) error {
		switch h.kind {
		case frameAck, frameTeardown, frameFault:
			return nil
		}
		return badFrame("%v frame from a reader, which sends only ack, teardown and fault", h.kind)
	}
	for {
		h, p, err := fr.next(check, nil)
		w.mu.Lock()
		switch {
		case err != nil:
			if c.err == nil && w.closeErr == nil {
				if c.wfail != nil && errors.Is(err, os.ErrDeadlineExceeded) {
					err = c.wfail // the reader said nothing more
				}
				c.badPeer = isBadFrame(err)
				w.failLocked(c, w.connErr(c, err))
			}
			w.mu.Unlock()
			return
		case h.kind == frameAck:
			if h.seq < c.released || h.seq > w.seq {
				c.badPeer = true
				w.failLocked(c, w.connErr(c, badFrame("ack of %d messages after %d, with %d written", h.seq, c.released, w.seq)))
				w.mu.Unlock()
				return
			}
			c.released = h.seq
			w.notifyLocked()
		case h.kind == frameTeardown:
			// The reader left (its Close): stop waiting for it and
			// sending to it; the other readers go on.
			c.left = true
			w.notifyLocked()
			c.wake()
			w.mu.Unlock()
			return
		default: // fault
			w.failLocked(c, fmt.Errorf("channel: tcp %s: %w", w.addr, faultError(c.who, p)))
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// Reserve implements Writer. The buffer is the writer's own, with room for
// the frame header in front, so Commit sends header and message in one
// system call.
func (w *TCPWriter) Reserve(ctx context.Context, n int) ([]byte, error) {
	switch {
	case w.reserved:
		return nil, fmt.Errorf("channel: tcp %s: Reserve called twice: %w: Commit the first reservation", w.addr, errs.ErrBadArgument)
	case n < 0:
		return nil, fmt.Errorf("channel: tcp %s: Reserve(%d): %w", w.addr, n, errs.ErrBadArgument)
	case w.finished:
		return nil, fmt.Errorf("channel: tcp %s: write after CloseWrite: %w", w.addr, ErrChannelClosed)
	}
	if w.broken.Load() || !w.ready || w.seq-w.credit >= w.k {
		if err := w.waitCredit(ctx); err != nil {
			return nil, err
		}
	}
	if int64(n) > w.maxMsg {
		return nil, w.tooLarge(n)
	}
	slot := w.seq % w.k
	if cap(w.slots[slot]) < frameHeaderSize+n {
		b := make([]byte, roundUp(frameHeaderSize+n, 4096))
		w.mu.Lock()
		w.slots[slot] = b
		w.mu.Unlock()
	}
	w.reserved, w.resN = true, n
	end := frameHeaderSize + n
	return w.slots[slot][frameHeaderSize:end:end], nil
}

func (w *TCPWriter) tooLarge(n int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.conns {
		if int64(n) > c.maxMsg {
			return fmt.Errorf("channel: tcp %s: message of %d bytes: %w: %s accepts at most %d (raise MaxMessageSize on its DialTCP)",
				w.addr, n, errs.ErrBadArgument, c.who, c.maxMsg)
		}
	}
	return nil
}

// waitCredit waits until every reader is connected and has fewer than K
// messages unreleased, the channel fails, or ctx ends.
func (w *TCPWriter) waitCredit(ctx context.Context) error {
	start := time.Now()
	w.mu.Lock()
	for {
		if err := w.failedLocked(); err != nil {
			w.mu.Unlock()
			return err
		}
		if w.connected == w.readers {
			w.ready = true
			low, maxMsg := w.seq, int64(maxStreamData)
			for _, c := range w.conns {
				if c.left {
					continue
				}
				// A frame counts as released once it is also sent
				// whole, so its buffer is free.
				low = min(low, c.released, c.sent)
				maxMsg = min(maxMsg, c.maxMsg)
			}
			w.credit, w.maxMsg = low, maxMsg
			if w.seq-low < w.k {
				w.mu.Unlock()
				return nil
			}
		}
		if w.changed == nil {
			w.changed = make(chan struct{})
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctxError(ctx, "write", w.waitingFor(), start)
		}
		w.mu.Lock()
	}
}

// waitingFor says what a blocked write waits for.
func (w *TCPWriter) waitingFor() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.connected < w.readers {
		var missing []int
		for i, c := range w.conns {
			if c == nil {
				missing = append(missing, i)
			}
		}
		return fmt.Sprintf("readers %v to connect to %s (%d of %d connected)", missing, w.addr, w.connected, w.readers)
	}
	for _, c := range w.conns {
		if !c.left && w.seq-min(c.released, c.sent) >= w.k {
			return fmt.Sprintf("%s to release a message (it holds %d unreleased, Slots is %d)", c.who, w.seq-c.released, w.k)
		}
	}
	return "credit from the readers"
}

// Commit implements Writer.
func (w *TCPWriter) Commit(kind Kind) error {
	if !w.reserved {
		return fmt.Errorf("channel: tcp %s: Commit without Reserve: %w", w.addr, errs.ErrBadArgument)
	}
	if kind != KindData && kind != KindError {
		return fmt.Errorf("channel: tcp %s: Commit(%v): %w: want KindData or KindError (CloseWrite ends the stream)", w.addr, kind, errs.ErrBadArgument)
	}
	return w.commit(kind)
}

func (w *TCPWriter) commit(kind Kind) error {
	w.reserved = false
	n := w.resN
	if kind == KindClose {
		n = 0
	}
	s := w.seq
	slot := s % w.k
	frame := w.slots[slot][:frameHeaderSize+n]
	encodeHeader(frame, frameHeader{kind: frameKind(kind), seq: s, length: uint64(n)})

	w.mu.Lock()
	if err := w.failedLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	w.lens[slot] = len(frame)
	w.seq = s + 1
	w.direct = w.direct[:0]
	for _, c := range w.conns {
		if !c.busy && c.err == nil && !c.left && c.sent == s {
			c.busy = true
			w.direct = append(w.direct, c)
		}
	}
	w.mu.Unlock()
	if kind == KindClose {
		w.finished = true
	}
	// Straight into each idle socket, without blocking; the pumps send
	// the rest, and to connections still busy with earlier frames.
	for _, c := range w.direct {
		c.wn, c.werr = tryWrite(c.raw, frame)
	}
	w.mu.Lock()
	for _, c := range w.direct {
		c.busy = false
		switch {
		case c.werr != nil:
			c.off = c.wn
			c.writeFailedLocked(c.werr)
		case c.wn == len(frame):
			c.sent++
		default:
			c.off = c.wn
		}
		c.werr = nil
	}
	for _, c := range w.conns {
		if c.sent < w.seq || c.err != nil || w.closeErr != nil {
			c.wake()
		}
	}
	w.mu.Unlock()
	return nil
}

// tryWrite writes what of b the socket takes without blocking.
func tryWrite(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, e := syscall.Write(int(fd), b[n:])
			if e == syscall.EINTR {
				continue
			}
			if e != nil {
				if e != syscall.EAGAIN {
					werr = os.NewSyscallError("write", e)
				}
				break
			}
			n += m
		}
		return true
	})
	if err != nil {
		return n, err
	}
	return n, werr
}

// Write implements Writer.
func (w *TCPWriter) Write(ctx context.Context, p []byte) error { return send(ctx, w, KindData, p) }

// WriteError implements Writer.
func (w *TCPWriter) WriteError(ctx context.Context, e error) error {
	return sendError(ctx, w, e, "tcp "+w.addr)
}

// CloseWrite implements Writer.
func (w *TCPWriter) CloseWrite(ctx context.Context) error {
	if _, err := w.Reserve(ctx, 0); err != nil {
		return err
	}
	return w.commit(KindClose)
}

// Close implements Writer: every reader gets a teardown frame (after the
// frame it may be in the middle of), then its connection is closed, and
// blocked writes return ErrChannelClosed. Close returns when every
// goroutine of the writer has ended.
func (w *TCPWriter) Close() error {
	w.mu.Lock()
	if w.userClosed {
		w.mu.Unlock()
		return nil
	}
	w.userClosed = true
	w.closeLocked(fmt.Errorf("channel: tcp %s: writer closed: %w", w.addr, ErrChannelClosed))
	w.mu.Unlock()
	w.wg.Wait()
	return nil
}
