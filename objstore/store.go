package objstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/shm"
)

// Config configures a Store.
type Config struct {
	// Capacity is the arena's size in bytes, rounded up to a page. Zero:
	// 30% of the machine's RAM, as Ray's default.
	Capacity int64
	// Label, if set, makes the arena a named segment in /dev/shm
	// (goray.<pid>.<start>.objstore.<label>), visible by name; otherwise
	// it is a memfd reached only through its descriptor.
	Label string
	// SpillDir, if set, is where sealed objects are spilled under
	// pressure. The directory must exist; the store removes its own files.
	SpillDir string
	// Socket, if set, is the path of the Unix socket on which the store
	// serves other processes (Dial). The store creates and removes it.
	Socket string
}

func (c *Config) validate() error {
	if c.Capacity < 0 {
		return fmt.Errorf("objstore: capacity %d: %w: want 0 (30%% of RAM) or a positive size", c.Capacity, ErrBadArgument)
	}
	if c.Capacity == 0 {
		var si unix.Sysinfo_t
		if err := unix.Sysinfo(&si); err != nil {
			return fmt.Errorf("objstore: read RAM size for the default capacity: %w", err)
		}
		c.Capacity = int64(si.Totalram) * int64(si.Unit) * 3 / 10
	}
	page := int64(shm.PageSize)
	c.Capacity = (c.Capacity + page - 1) / page * page
	if c.SpillDir != "" {
		if st, err := os.Stat(c.SpillDir); err != nil || !st.IsDir() {
			return fmt.Errorf("objstore: spill directory %q: %w: it must be an existing directory", c.SpillDir, ErrBadArgument)
		}
	}
	return nil
}

// CreateOption configures one Create.
type CreateOption interface{ apply(*createOptions) }

type createOptions struct{ evictable bool }

type evictableOption struct{}

func (evictableOption) apply(o *createOptions) { o.evictable = true }

// Evictable lets the store drop the object, once sealed and unpinned, to
// make room (a secondary copy that can be fetched again). Objects without
// it are spilled to disk instead, when spilling is configured.
func Evictable() CreateOption { return evictableOption{} }

func applyCreate(opts []CreateOption) createOptions {
	var o createOptions
	for _, opt := range opts {
		opt.apply(&o)
	}
	return o
}

// Conn is what the host (Store) and an attached process (Client) both
// offer: the object lifecycle.
type Conn interface {
	// Create allocates an object of size bytes; write it through the
	// Buffer, then Seal.
	Create(id ids.ObjectID, size int64, opts ...CreateOption) (*Buffer, error)
	// Put is Create, copy data in, Seal.
	Put(id ids.ObjectID, data []byte, opts ...CreateOption) error
	// Get waits until id is sealed (or ctx ends) and returns a read-only
	// view of it, pinned until Release.
	Get(ctx context.Context, id ids.ObjectID) (*Object, error)
	// Delete removes an object; a pinned one is freed at its last Release.
	Delete(id ids.ObjectID) error
	// Contains reports whether id is sealed in the store (or spilled).
	Contains(id ids.ObjectID) (bool, error)
	// Stats reports the store's occupancy.
	Stats() (Stats, error)
}

// Store is a node's object store, in the process that hosts it (the
// raylet, or an embedded driver). Its own calls take a lock and touch the
// arena directly: no socket round trip.
type Store struct {
	cfg    Config
	seg    *shm.Segment
	rw, ro []byte

	mu      sync.Mutex // guards t, closed, conns, nextID
	t       *table
	closed  bool
	closing chan struct{}
	conns   map[*net.UnixConn]struct{}
	nextID  clientID

	ln  *net.UnixListener
	wg  sync.WaitGroup
	io  sync.WaitGroup // spills and restores running with mu dropped
	seq uint64         // this store's number in its process: names its segments and files
}

var arenaSeq atomic.Uint64

// New creates a store with its arena, and its socket if cfg.Socket is set.
func New(cfg Config) (_ *Store, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, closing: make(chan struct{}), conns: map[*net.UnixConn]struct{}{}, nextID: hostClient + 1}
	defer func() {
		if err != nil {
			s.unmap() // s, not the result: that is nil on every failure
		}
	}()
	s.seq = arenaSeq.Add(1)
	seq := strconv.FormatUint(s.seq, 10)
	if cfg.Label != "" {
		// A named arena lives in the /dev/shm tmpfs: one larger than the
		// space left there would fault (SIGBUS) on a later write instead
		// of failing here.
		if free, ferr := shm.Free(); ferr == nil && cfg.Capacity > free {
			return nil, fmt.Errorf("objstore: arena of %d bytes does not fit %s (%d bytes free): %w: give a smaller Capacity, "+
				"enlarge %s, or leave Label empty for an anonymous arena", cfg.Capacity, shm.Dir, free, ErrBadArgument, shm.Dir)
		}
		s.seg, err = shm.Create(shm.Name("objstore."+cfg.Label), cfg.Capacity)
	} else {
		s.seg, err = shm.CreateAnon("objstore."+seq, cfg.Capacity)
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: arena: %w", err)
	}
	if s.rw, err = s.seg.Map(0, cfg.Capacity, true); err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	if s.ro, err = s.seg.Map(0, cfg.Capacity, false); err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	var sp spiller
	if cfg.SpillDir != "" {
		sp = &fileSpiller{dir: cfg.SpillDir, prefix: strconv.Itoa(os.Getpid()) + "." + seq + ".", arena: s.rw}
	}
	s.t = newTable(cfg.Capacity, sp)
	if cfg.Socket != "" {
		if s.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"}); err != nil {
			return nil, fmt.Errorf("objstore: listen on %s: %w", cfg.Socket, err)
		}
		s.wg.Add(1)
		go s.serve()
	}
	return s, nil
}

// ArenaName is the arena's name in /dev/shm, "" for a memfd arena.
func (s *Store) ArenaName() string { return s.seg.Name() }

// Socket is the path clients Dial, "" if the store serves none.
func (s *Store) Socket() string { return s.cfg.Socket }

// Create allocates an object of size bytes for this process to write.
func (s *Store) Create(id ids.ObjectID, size int64, opts ...CreateOption) (*Buffer, error) {
	o := applyCreate(opts)
	s.mu.Lock()
	e, err := s.create(hostClient, id, size, o.evictable)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &Buffer{id: id, off: e.off, data: s.rw[e.off : e.off+size : e.off+size], b: s}, nil
}

// Put creates, fills and seals an object.
func (s *Store) Put(id ids.ObjectID, data []byte, opts ...CreateOption) error {
	b, err := s.Create(id, int64(len(data)), opts...)
	if err != nil {
		return err
	}
	copy(b.data, data)
	return b.Seal()
}

// create allocates an object for client c, spilling (with mu dropped) as
// needed. Called with mu held.
func (s *Store) create(c clientID, id ids.ObjectID, size int64, evictable bool) (*entry, error) {
	var e *entry
	err := s.run(context.Background(), func() (err error) {
		e, err = s.t.create(c, id, size, evictable)
		return err
	})
	return e, err
}

// run runs a table operation until it succeeds or fails for good: the I/O
// it asks for (a spill to make room, a restore) is done with mu dropped,
// and when it must wait for I/O in flight, it waits. Called with mu held;
// returns with it held.
func (s *Store) run(ctx context.Context, op func() error) error {
	for {
		if s.closed {
			return ErrClosed
		}
		err := op()
		if err == nil {
			return nil // the usual case: skip errors.As, which reflects on its target
		}
		var io *ioRequest
		switch {
		case errors.As(err, &io):
			if err := s.doIO(io); err != nil {
				return err
			}
		case errors.Is(err, errBusy):
			ch := s.t.ioWait()
			s.mu.Unlock()
			select {
			case <-ch:
			case <-s.closing:
			case <-ctx.Done():
			}
			s.mu.Lock()
			if err := ctx.Err(); err != nil {
				// Not available yet: a client's Get asks again.
				return fmt.Errorf("objstore: %w (waiting for spill I/O: %w)", ErrObjectNotFound, err)
			}
		default:
			return err
		}
	}
}

// doIO performs io with mu dropped and reports it to the table. Called
// with mu held; returns with it held.
func (s *Store) doIO(io *ioRequest) error {
	s.io.Add(1)
	defer s.io.Done()
	s.mu.Unlock()
	var path string
	var err error
	if io.restore {
		err = s.t.spiller.restore(io.e)
	} else {
		path, err = s.t.spiller.spill(io.e)
	}
	s.mu.Lock()
	if io.restore {
		return s.t.finishRestore(io.e, err)
	}
	return s.t.finishSpill(io.e, path, err)
}

// locked runs a table operation under mu, unless the store is closed.
func (s *Store) locked(op func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return op()
}

func (s *Store) seal(id ids.ObjectID) error {
	return s.locked(func() error { return s.t.seal(hostClient, id) })
}

func (s *Store) abort(id ids.ObjectID) error {
	return s.locked(func() error { return s.t.abort(hostClient, id) })
}

// Get waits until id is sealed and returns a read-only view of it.
func (s *Store) Get(ctx context.Context, id ids.ObjectID) (*Object, error) {
	e, err := s.get(ctx, hostClient, id)
	if err != nil {
		return nil, err
	}
	return &Object{id: id, off: e.off, data: s.ro[e.off : e.off+e.size : e.off+e.size], b: s, e: e}, nil
}

// get pins id for client c, waiting for it to be sealed, and restoring it
// (with mu dropped) if it was spilled.
func (s *Store) get(ctx context.Context, c clientID, id ids.ObjectID) (*entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var e *entry
		err := s.run(ctx, func() (err error) {
			e, err = s.t.pin(c, id)
			return err
		})
		if err != errNotSealed {
			return e, err
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("objstore: get %s: %w (%w)", id, ErrObjectNotFound, err)
		}
		ch, done := s.t.wait(id)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		case <-s.closing:
		}
		s.mu.Lock()
		done()
	}
}

func (s *Store) release(o *Object) error {
	return s.locked(func() error { return s.t.release(hostClient, o.e) })
}

// Delete removes an object.
func (s *Store) Delete(id ids.ObjectID) error {
	return s.locked(func() error { return s.t.delete(hostClient, id) })
}

// Contains reports whether id is sealed in the store.
func (s *Store) Contains(id ids.ObjectID) (ok bool, err error) {
	err = s.locked(func() error { ok = s.t.contains(id); return nil })
	return ok, err
}

// Stats reports the store's occupancy.
func (s *Store) Stats() (st Stats, err error) {
	err = s.locked(func() error { st = s.t.stats(); return nil })
	return st, err
}

// Close stops serving, disconnects clients, removes spill files, unmaps
// and removes the arena. Views from Get are invalid afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close() // also removes the socket file
	}
	s.wg.Wait()
	s.io.Wait() // spills and restores read and write the arena
	if s.t != nil && s.t.spiller != nil {
		for _, e := range s.t.objects {
			if e.state == stateSpilled {
				s.t.spiller.remove(e.spillPath)
			}
		}
	}
	return s.unmap()
}

func (s *Store) unmap() error {
	err := shm.Unmap(s.rw)
	if uerr := shm.Unmap(s.ro); err == nil {
		err = uerr
	}
	s.rw, s.ro = nil, nil
	if s.seg != nil {
		if derr := s.seg.Destroy(); err == nil {
			err = derr
		}
	}
	return err
}

// backend is the side a Buffer or Object goes back to: a Store or a Client.
type backend interface {
	seal(id ids.ObjectID) error
	abort(id ids.ObjectID) error
	release(o *Object) error
}

// Buffer is an object being written. Its bytes are in the arena: write
// them through Data, then Seal. Data must not be used after Seal or Abort.
type Buffer struct {
	id   ids.ObjectID
	off  int64
	data []byte
	b    backend
	done bool
}

// ID is the object's ID.
func (b *Buffer) ID() ids.ObjectID { return b.id }

// Data is the object's memory, writable until Seal.
func (b *Buffer) Data() []byte { return b.data }

// Seal makes the object immutable and visible to Get.
func (b *Buffer) Seal() error {
	if b.done {
		return fmt.Errorf("objstore: seal %s: %w", b.id, ErrNotCreator)
	}
	b.done = true
	b.data = nil
	return b.b.seal(b.id)
}

// Abort discards the unsealed object.
func (b *Buffer) Abort() error {
	if b.done {
		return fmt.Errorf("objstore: abort %s: %w", b.id, ErrNotCreator)
	}
	b.done = true
	b.data = nil
	return b.b.abort(b.id)
}

// Object is a sealed object pinned by Get. Its Data maps the arena
// read-only: a write through it faults, in every process.
type Object struct {
	id       ids.ObjectID
	off      int64
	data     []byte
	b        backend
	e        *entry // host only
	released atomic.Bool
}

// ID is the object's ID.
func (o *Object) ID() ids.ObjectID { return o.id }

// Data is the object's bytes, read-only, valid until Release.
func (o *Object) Data() []byte { return o.data }

// Release unpins the object. Later calls do nothing.
func (o *Object) Release() error {
	if o.released.Swap(true) {
		return nil
	}
	return o.b.release(o)
}

// Offset is the object's position in the arena, the same in every process.
func (b *Buffer) Offset() int64 { return b.off }

// Offset is the object's position in the arena, the same in every process.
func (o *Object) Offset() int64 { return o.off }

// ObjectInfo describes one object in the store (for `goray memory`).
type ObjectInfo struct {
	ID        ids.ObjectID
	Size      int64
	State     string // "sealed", "being written", "spilled"
	Pins      int    // readers holding it (Get without Release)
	Evictable bool
}

// Objects lists the store's largest objects, at most limit (0: all),
// largest first.
func (s *Store) Objects(limit int) (out []ObjectInfo, err error) {
	err = s.locked(func() error {
		for _, e := range s.t.objects {
			st := "sealed"
			switch {
			case e.spillPath != "" && !e.restoring:
				st = "spilled"
			case e.state != stateSealed:
				st = "being written"
			}
			out = append(out, ObjectInfo{ID: e.id, Size: e.size, State: st, Pins: e.pins, Evictable: e.evictable})
		}
		return nil
	})
	slices.SortFunc(out, func(a, b ObjectInfo) int {
		if a.Size != b.Size {
			return cmp.Compare(b.Size, a.Size)
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, err
}
