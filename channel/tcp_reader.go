package channel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goray/goray/internal/errs"
)

// TCPReader is a reading end of a TCP channel. Messages are read into
// buffers of the reader's own (one per slot, reused), valid until Release.
// Message.Release may be called from any goroutine, also while a Read
// blocks, and Close from any goroutine.
type TCPReader struct {
	conn    *net.TCPConn
	addr    string // the writer's
	idx     int
	k       uint64
	readers int
	maxMsg  int64
	fr      *frameReader
	rd      connCtx // the read deadline

	// Used by the reading goroutine only.
	slots    [][]byte
	eof      bool
	err      error
	rctx     context.Context
	armed    bool
	ackEvery uint64

	closed atomic.Bool

	mu        sync.Mutex // guards what follows, and writes to conn
	next      uint64     // messages read (written by Read only)
	released  uint64     // messages released, in order
	pending   []bool     // released out of order, by slot
	acked     uint64
	ackBuf    [frameHeaderSize]byte
	linger    *time.Timer
	lingering bool
	done      bool // Close has run
}

var _ Reader = (*TCPReader)(nil)

// DialTCP connects reading end index to the TCP channel whose writer
// listens at addr (TCPWriter.Addr). Options: Token, which must match the
// writer's, and MaxMessageSize, the largest message this reader accepts
// (the writer refuses to write a larger one). The credit window (Slots) is
// the writer's.
func DialTCP(ctx context.Context, addr string, index int, opts ...Option) (*TCPReader, error) {
	cfg := newConfig(opts)
	switch {
	case index < 0 || index >= MaxReaders:
		return nil, fmt.Errorf("channel: tcp: DialTCP index %d: %w: want 0 to %d", index, errs.ErrBadArgument, MaxReaders-1)
	case cfg.maxMessage < 1:
		return nil, fmt.Errorf("channel: MaxMessageSize(%d): %w: want 1 or more", cfg.maxMessage, errs.ErrBadArgument)
	case len(cfg.token) > maxTokenLen:
		return nil, fmt.Errorf("channel: Token of %d bytes: %w: want at most %d", len(cfg.token), errs.ErrBadArgument, maxTokenLen)
	}
	start := time.Now()
	d := net.Dialer{KeepAliveConfig: keepAlive}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "dial", fmt.Sprintf("a connection to the writer at %s", addr), start)
		}
		return nil, fmt.Errorf("channel: tcp: reader %d: dial the writer at %s: %w (is its ListenTCP running, and reachable from this node?)", index, addr, err)
	}
	conn := nc.(*net.TCPConn)
	// One frame reader from the start: the first message may arrive with
	// the accept frame.
	r := &TCPReader{conn: conn, addr: addr, idx: index, maxMsg: cfg.maxMessage, fr: newFrameReader(conn, tcpReadBuffer)}
	hs := connCtx{set: conn.SetDeadline}
	hs.arm(ctx)
	err = r.handshake(cfg.token)
	hs.disarm()
	if err != nil {
		conn.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, deadlineError(ctx, "dial", fmt.Sprintf("the writer at %s to accept reader %d", addr, index), start)
		}
		return nil, err
	}
	hs.reset()
	r.rd = connCtx{set: conn.SetReadDeadline}
	r.fr.beforeRead = r.beforeRead
	r.slots = make([][]byte, r.k)
	r.pending = make([]bool, r.k)
	r.ackEvery = max(1, r.k/2)
	return r, nil
}

func (r *TCPReader) handshake(token []byte) error {
	hello := make([]byte, helloFixed, helloFixed+len(token))
	binary.LittleEndian.PutUint32(hello[0:], uint32(r.idx))
	binary.LittleEndian.PutUint32(hello[4:], 0) // any number of readers
	binary.LittleEndian.PutUint64(hello[8:], uint64(r.maxMsg))
	hello = append(hello, token...)
	if _, err := r.conn.Write(appendFrame(nil, frameHello, 0, hello)); err != nil {
		return fmt.Errorf("channel: tcp: reader %d: send hello to the writer at %s: %w", r.idx, r.addr, err)
	}
	h, p, err := r.fr.next(func(h frameHeader) error {
		if h.kind != frameAccept && h.kind != frameFault {
			return badFrame("%v frame in answer to hello", h.kind)
		}
		return nil
	}, nil)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrDeadlineExceeded):
		return err
	case isBadFrame(err):
		return fmt.Errorf("channel: tcp: reader %d: handshake with the writer at %s: %w", r.idx, r.addr, err)
	default:
		return fmt.Errorf("channel: tcp: reader %d: the writer at %s dropped the connection during the handshake (%v): %w", r.idx, r.addr, err, ErrPeerDied)
	}
	if h.kind == frameFault {
		return fmt.Errorf("channel: tcp: reader %d: %w", r.idx, faultError("the writer at "+r.addr, p))
	}
	k, readers := binary.LittleEndian.Uint32(p[0:]), binary.LittleEndian.Uint32(p[4:])
	if k < 1 || k > 1<<16 || readers < 1 || readers > MaxReaders || uint32(r.idx) >= readers {
		return fmt.Errorf("channel: tcp: reader %d: handshake with the writer at %s: %w", r.idx, r.addr,
			badFrame("accept with %d slots and %d readers", k, readers))
	}
	r.k, r.readers = uint64(k), int(readers)
	return nil
}

// Index is this reader's index among the channel's readers.
func (r *TCPReader) Index() int { return r.idx }

// Read implements Reader.
func (r *TCPReader) Read(ctx context.Context) (Message, error) {
	switch {
	case r.closed.Load():
		return Message{}, r.errClosed()
	case r.err != nil:
		return Message{}, r.err
	case r.eof:
		return Message{}, ErrChannelClosed
	}
	r.mu.Lock()
	held := r.next - r.released
	r.mu.Unlock()
	if held >= r.k {
		return Message{}, fmt.Errorf("channel: tcp: reader %d: read: %d messages held unreleased: %w: release one first (the writer's Slots is %d)",
			r.idx, held, errs.ErrBadArgument, r.k)
	}
	start := time.Now()
	r.rctx, r.armed = ctx, false
	h, p, err := r.fr.next(r.check, r.reuse)
	if r.armed {
		r.rd.disarm()
	}
	r.rctx = nil
	if err != nil {
		return Message{}, r.readFailed(ctx, err, start)
	}
	switch h.kind {
	case frameData, frameError:
		r.slots[h.seq%r.k] = p[:cap(p)]
		r.mu.Lock()
		r.next++
		r.mu.Unlock()
		return Message{Kind: Kind(h.kind), Data: p[:len(p):len(p)], Seq: h.seq, rel: r}, nil
	case frameClose:
		r.eof = true
		r.mu.Lock()
		r.next++
		r.mu.Unlock()
		r.release(h.seq)
		return Message{}, ErrChannelClosed
	case frameTeardown:
		r.fail(fmt.Errorf("channel: tcp: reader %d: the writer at %s closed the channel: %w", r.idx, r.addr, ErrChannelClosed))
	default: // fault
		r.fail(fmt.Errorf("channel: tcp: reader %d: %w", r.idx, faultError("the writer at "+r.addr, p)))
	}
	return Message{}, r.err
}

func (r *TCPReader) errClosed() error {
	return fmt.Errorf("channel: tcp: reader %d: read: reader closed: %w", r.idx, ErrChannelClosed)
}

func (r *TCPReader) check(h frameHeader) error {
	switch {
	case h.kind.message():
		if h.seq != r.next {
			return badFrame("message %d from the writer, want %d", h.seq, r.next)
		}
		if h.length > uint64(r.maxMsg) {
			return badFrame("%v message of %d bytes is larger than this reader's MaxMessageSize (%d): raise MaxMessageSize on DialTCP",
				h.kind, h.length, r.maxMsg)
		}
	case h.kind == frameTeardown, h.kind == frameFault:
	default:
		return badFrame("%v frame from a writer, which sends only data, error, close, teardown and fault", h.kind)
	}
	return nil
}

func (r *TCPReader) reuse(h frameHeader) []byte {
	if h.kind.message() {
		return r.slots[h.seq%r.k]
	}
	return nil
}

// beforeRead runs before each read from the connection, which may block:
// first it acknowledges pending releases if the writer may be waiting for
// them, then it makes the read honour the context. A writer waits for
// credit only K messages past the last ack it got; had it written them,
// they would be read before this read blocks, so acking once K/2 messages
// came since the last ack covers it. Short of that, releases wait for a
// batch (or ackLinger).
func (r *TCPReader) beforeRead() {
	r.mu.Lock()
	if r.next-r.acked >= r.ackEvery {
		r.ackLocked()
	}
	r.mu.Unlock()
	if !r.armed && r.rctx != nil {
		r.armed = true
		r.rd.arm(r.rctx)
	}
}

func (r *TCPReader) readFailed(ctx context.Context, err error, start time.Time) error {
	if r.closed.Load() {
		return r.errClosed()
	}
	what := "a message from the writer at " + r.addr
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The context ended. The frame in progress is kept: the next
		// Read goes on with it.
		return deadlineError(ctx, "read", what, start)
	}
	if isBadFrame(err) {
		r.mu.Lock()
		r.conn.SetWriteDeadline(time.Now().Add(closeGrace))
		r.conn.Write(faultFrame(faultBadFrame, err.Error()))
		r.mu.Unlock()
		r.fail(fmt.Errorf("channel: tcp: reader %d: read from the writer at %s: %w; connection dropped", r.idx, r.addr, err))
	} else {
		r.fail(fmt.Errorf("channel: tcp: reader %d: read: the writer at %s died or dropped the connection (%v): %w", r.idx, r.addr, err, ErrPeerDied))
	}
	return r.err
}

// fail makes err the answer to every later Read and hangs up.
func (r *TCPReader) fail(err error) {
	r.err = err
	r.conn.Close()
}

func (r *TCPReader) release(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || seq < r.released || seq >= r.next {
		return
	}
	if seq != r.released {
		r.pending[seq%r.k] = true
		return
	}
	r.released++
	for r.released < r.next && r.pending[r.released%r.k] {
		r.pending[r.released%r.k] = false
		r.released++
	}
	switch {
	case r.released-r.acked >= r.ackEvery:
		r.ackLocked()
	case !r.lingering:
		r.lingering = true
		if r.linger == nil {
			r.linger = time.AfterFunc(ackLinger, r.lingerDone)
		} else {
			r.linger.Reset(ackLinger)
		}
	}
}

func (r *TCPReader) lingerDone() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lingering = false
	if !r.done {
		r.ackLocked()
	}
}

// ackLocked tells the writer how many messages are released, if it does
// not know yet. A failed write shows as the next Read's error.
func (r *TCPReader) ackLocked() {
	if r.released == r.acked {
		return
	}
	encodeHeader(r.ackBuf[:], frameHeader{kind: frameAck, seq: r.released})
	r.conn.Write(r.ackBuf[:])
	r.acked = r.released
}

// Recv reads the next message, copies its data into dst (grown as needed)
// and releases it. An in-band error message is returned as its error.
func (r *TCPReader) Recv(ctx context.Context, dst []byte) ([]byte, error) {
	return recv(ctx, r, dst)
}

// Close implements Reader: this reader leaves. The writer gets a teardown
// frame and stops waiting for and sending to this reader; the other readers
// go on. A blocked Read returns ErrChannelClosed.
func (r *TCPReader) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.conn.SetWriteDeadline(time.Now().Add(closeGrace))
	r.mu.Lock()
	r.done = true
	if r.linger != nil {
		r.linger.Stop()
	}
	r.conn.Write(appendFrame(nil, frameTeardown, 0, nil))
	r.mu.Unlock()
	r.conn.Close()
	return nil
}

// deadlineError is ctxError for a connection whose deadline, set from ctx,
// passed: perhaps a moment before ctx itself noticed.
func deadlineError(ctx context.Context, op, what string, start time.Time) error {
	if ctx.Err() == nil {
		return &TimeoutError{Op: op, After: time.Since(start), What: what}
	}
	return ctxError(ctx, op, what, start)
}

// connCtx makes a connection's blocking calls honour a context: its
// deadline becomes the connection's, its cancellation a deadline in the
// past. arm before the call, disarm after.
type connCtx struct {
	set   func(time.Time) error
	stop  func() bool
	mu    sync.Mutex
	gen   uint64    // arms so far: a late cancellation of an old one is ignored
	cur   time.Time // the deadline set
	dirty bool      // a cancellation set one in the past
}

func (c *connCtx) arm(ctx context.Context) {
	dl, _ := ctx.Deadline()
	c.mu.Lock()
	if c.dirty || !dl.Equal(c.cur) {
		c.set(dl)
		c.cur, c.dirty = dl, false
	}
	c.gen++
	gen := c.gen
	c.mu.Unlock()
	if ctx.Done() != nil {
		c.stop = context.AfterFunc(ctx, func() {
			c.mu.Lock()
			if c.gen == gen {
				c.set(aLongTimeAgo)
				c.dirty = true
			}
			c.mu.Unlock()
		})
	}
}

func (c *connCtx) disarm() {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
	c.mu.Lock()
	c.gen++
	c.mu.Unlock()
}

// reset clears the deadline.
func (c *connCtx) reset() {
	c.mu.Lock()
	if c.dirty || !c.cur.IsZero() {
		c.set(time.Time{})
		c.cur, c.dirty = time.Time{}, false
	}
	c.mu.Unlock()
}
