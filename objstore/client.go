package objstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/shm"
)

// Client is a process attached to a node's store through its socket. It
// maps the arena twice, read-write for the objects it creates and
// read-only for the views Get returns; every other operation is one round
// trip to the store. When the process exits or is killed its socket
// closes, and the store releases its pins and discards its unsealed
// objects.
type Client struct {
	mu      sync.Mutex // one request at a time; guards the rings
	conn    *net.UnixConn
	seg     *shm.Segment
	rw, ro  []byte
	id      uint32
	rings   []*channel.Ring
	req     *channel.RingWriter // requests to the store
	rep     *channel.RingReader // its replies
	scratch []byte              // a request being encoded
	closed  bool
}

var _ Conn = (*Client)(nil)
var _ Conn = (*Store)(nil)

// Dial attaches to the store serving socket path. The arena arrives as a
// descriptor over the socket (SCM_RIGHTS); byName opens it by its name in
// /dev/shm instead, for a store created with a Label.
func Dial(ctx context.Context, path string) (*Client, error) {
	return dial(ctx, path, false)
}

// DialByName is Dial, but attaches the arena by its name in /dev/shm (the
// store must have a Label); the descriptor sent is closed unused.
func DialByName(ctx context.Context, path string) (*Client, error) {
	return dial(ctx, path, true)
}

func dial(ctx context.Context, path string, byName bool) (_ *Client, err error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("objstore: dial %s: %w", path, err)
	}
	c := &Client{conn: nc.(*net.UnixConn)}
	defer func() {
		if err != nil {
			c.Close() // c, not the result: that is nil on every failure
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetReadDeadline(dl)
	}
	msg, fds, err := shm.RecvFDs(c.conn, 1)
	if err != nil {
		return nil, fmt.Errorf("objstore: dial %s: %w", path, err)
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	c.conn.SetReadDeadline(time.Time{})
	if len(msg) < 4 || len(fds) != 1 {
		return nil, fmt.Errorf("objstore: dial %s: bad hello (%d bytes, %d descriptors)", path, len(msg), len(fds))
	}
	hello, err := decodeReply(msg[4:])
	if err == nil && (hello.op != opHello || hello.status != statusOK) {
		err = errors.New("not a hello")
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: dial %s: hello: %w", path, err)
	}
	c.id = hello.client
	switch {
	case byName && hello.name == "":
		return nil, fmt.Errorf("objstore: dial %s: %w: the arena has no name (the store has no Label)", path, ErrBadArgument)
	case byName:
		c.seg, err = shm.Open(hello.name)
	default:
		c.seg, err = shm.OpenFD(fds[0])
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: dial %s: %w", path, err)
	}
	if c.seg.Size() != hello.capacity {
		return nil, fmt.Errorf("objstore: dial %s: arena is %d bytes, store says %d", path, c.seg.Size(), hello.capacity)
	}
	if c.rw, err = c.seg.Map(0, hello.capacity, true); err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	if c.ro, err = c.seg.Map(0, hello.capacity, false); err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	for _, name := range []string{hello.reqRing, hello.repRing} {
		r, err := channel.OpenShm(name)
		if err != nil {
			return nil, fmt.Errorf("objstore: dial %s: %w", path, err)
		}
		c.rings = append(c.rings, r)
	}
	if c.req, err = c.rings[0].Writer(); err != nil {
		return nil, fmt.Errorf("objstore: dial %s: %w", path, err)
	}
	if c.rep, err = c.rings[1].Reader(0); err != nil {
		return nil, fmt.Errorf("objstore: dial %s: %w", path, err)
	}
	return c, nil
}

// call sends req and returns the store's reply.
func (c *Client) call(req request) (reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return reply{}, ErrClosed
	}
	ctx := context.Background() // a dead store is noticed by the ring (ErrPeerDied)
	c.scratch = req.appendTo(c.scratch[:0])
	if err := c.req.Write(ctx, c.scratch); err != nil {
		return reply{}, fmt.Errorf("objstore: send to store: %w", err)
	}
	m, err := c.rep.Read(ctx)
	if err != nil {
		return reply{}, fmt.Errorf("objstore: read from store: %w", err)
	}
	rep, err := decodeReply(m.Data) // copies what it keeps
	m.Release()
	if err != nil {
		return reply{}, err
	}
	if rep.op != req.op {
		return reply{}, fmt.Errorf("objstore: reply to op %d for op %d", rep.op, req.op)
	}
	return rep, rep.err()
}

func (c *Client) checkExtent(off, size int64) error {
	if off < 0 || size < 0 || off+size > int64(len(c.ro)) {
		return fmt.Errorf("objstore: store returned extent [%d, +%d) outside the arena of %d bytes", off, size, len(c.ro))
	}
	return nil
}

// Create allocates an object for this process to write.
func (c *Client) Create(id ids.ObjectID, size int64, opts ...CreateOption) (*Buffer, error) {
	if size < 0 || size > int64(len(c.rw)) {
		return nil, fmt.Errorf("objstore: create %s: size %d: %w: want 0 to the arena's %d bytes", id, size, ErrBadArgument, len(c.rw))
	}
	req := request{op: opCreate, id: id, size: size}
	if applyCreate(opts).evictable {
		req.flags = flagEvictable
	}
	rep, err := c.call(req)
	if err != nil {
		return nil, err
	}
	if err := c.checkExtent(rep.off, size); err != nil {
		return nil, err
	}
	return &Buffer{id: id, off: rep.off, data: c.rw[rep.off : rep.off+size : rep.off+size], b: c}, nil
}

// Put creates, fills and seals an object: one round trip with the bytes
// inline for a small object (up to about 4 KiB), Create, copy, Seal for a
// larger one.
func (c *Client) Put(id ids.ObjectID, data []byte, opts ...CreateOption) error {
	if len(data) > 0 && len(data) <= maxInline {
		req := request{op: opPut, id: id, data: data}
		if applyCreate(opts).evictable {
			req.flags = flagEvictable
		}
		_, err := c.call(req)
		return err
	}
	b, err := c.Create(id, int64(len(data)), opts...)
	if err != nil {
		return err
	}
	copy(b.data, data)
	return b.Seal()
}

func (c *Client) seal(id ids.ObjectID) error {
	_, err := c.call(request{op: opSeal, id: id})
	return err
}

func (c *Client) abort(id ids.ObjectID) error {
	_, err := c.call(request{op: opAbort, id: id})
	return err
}

// Get waits until id is sealed and returns a read-only view of it. The
// wait is asked of the store in slices of at most 100 ms, so ctx is
// honoured within that.
func (c *Client) Get(ctx context.Context, id ids.ObjectID) (*Object, error) {
	for {
		wait := maxWait
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("objstore: get %s: %w (%w)", id, ErrObjectNotFound, err)
		}
		rep, err := c.call(request{op: opGet, id: id, waitMs: uint32(max(wait, 0) / time.Millisecond)})
		if errors.Is(err, ErrObjectNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := c.checkExtent(rep.off, rep.size); err != nil {
			return nil, err
		}
		return &Object{id: id, off: rep.off, data: c.ro[rep.off : rep.off+rep.size : rep.off+rep.size], b: c}, nil
	}
}

func (c *Client) release(o *Object) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.scratch = request{op: opRelease, id: o.id}.appendTo(c.scratch[:0])
	if err := c.req.Write(context.Background(), c.scratch); err != nil {
		return fmt.Errorf("objstore: send to store: %w", err)
	}
	return nil
}

// Delete removes an object.
func (c *Client) Delete(id ids.ObjectID) error {
	_, err := c.call(request{op: opDelete, id: id})
	return err
}

// Contains reports whether id is sealed in the store.
func (c *Client) Contains(id ids.ObjectID) (bool, error) {
	rep, err := c.call(request{op: opContains, id: id})
	return rep.contains, err
}

// Stats reports the store's occupancy.
func (c *Client) Stats() (Stats, error) {
	rep, err := c.call(request{op: opStats})
	return rep.stats, err
}

// Close detaches: the store releases what this client still holds, and
// views from Get become invalid.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.req != nil {
		c.req.Close() // the store's loop for this client ends
	}
	if c.rep != nil {
		c.rep.Close()
	}
	for _, r := range c.rings {
		r.Close()
	}
	err := c.conn.Close()
	shm.Unmap(c.rw)
	shm.Unmap(c.ro)
	c.rw, c.ro = nil, nil
	if c.seg != nil {
		c.seg.Close()
	}
	return err
}
