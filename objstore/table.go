package objstore

import (
	"errors"
	"fmt"

	"github.com/goray/goray/internal/ids"
)

// clientID names a client of the store; hostClient is the process that
// hosts it.
type clientID uint32

const hostClient clientID = 0

type objState uint8

const (
	stateCreated objState = iota // allocated, being written
	stateSealed                  // immutable, in the arena
	stateSpilled                 // immutable, in a spill file only
)

// entry is one object.
type entry struct {
	id        ids.ObjectID
	size      int64
	off       int64 // in the arena; meaningless when spilled
	state     objState
	evictable bool
	creator   clientID
	pins      int
	deleted   bool   // deleted while pinned or in I/O: freed when that ends
	spillPath string // when spilled
	spilling  bool   // being written to a spill file, the lock dropped; still in the arena
	restoring bool   // being read back from its spill file into off, the lock dropped

	lruList    *lru
	prev, next *entry
}

// lru is a doubly-linked list of sealed, unpinned entries in the arena,
// most recently used at the front.
type lru struct {
	root  entry
	bytes int64
	n     int
}

func (l *lru) init() { l.root.next, l.root.prev = &l.root, &l.root }

func (l *lru) pushFront(e *entry) {
	e.lruList, e.prev, e.next = l, &l.root, l.root.next
	l.root.next.prev = e
	l.root.next = e
	l.bytes += allocSize(e.size)
	l.n++
}

func (l *lru) oldest() *entry {
	if l.n == 0 {
		return nil
	}
	return l.root.prev
}

func unlink(e *entry) {
	if l := e.lruList; l != nil {
		e.prev.next, e.next.prev = e.next, e.prev
		e.prev, e.next, e.lruList = nil, nil, nil
		l.bytes -= allocSize(e.size)
		l.n--
	}
}

// clientState is what a client holds: pins, and creations not yet sealed.
type clientState struct {
	pins     map[*entry]int
	creating map[*entry]struct{}
}

// spiller moves object bytes between the arena and disk for the table.
type spiller interface {
	spill(e *entry) (path string, err error)
	restore(e *entry) error // into the arena at e.off
	remove(path string)
}

// ioRequest is I/O the table needs done, with the store's lock dropped,
// before the operation that returned it can go on: spill e to a file (to
// make room), or restore e from its file. The caller does it, reports with
// finishSpill or finishRestore, and retries the operation. Disk I/O never
// runs under the lock, so a large spill stalls no one but the caller.
type ioRequest struct {
	e       *entry
	restore bool
}

func (r *ioRequest) Error() string { return "objstore: I/O needed for " + r.e.id.String() }

// errBusy: the operation must wait for I/O in flight to finish (a restore
// of the same object, or spills that will free the room it needs).
var errBusy = errors.New("objstore: waiting for spill I/O in flight")

// waiter is a wait for an ID to be sealed.
type waiter struct {
	ch chan struct{}
	n  int
}

// table is the object table: the deterministic core of the store. It
// knows objects, their states and pins, the clients holding them, the
// eviction order and the allocator; it touches no memory but through the
// spiller. The caller holds the store's lock around every method.
type table struct {
	alloc     *allocator
	objects   map[ids.ObjectID]*entry
	clients   map[clientID]*clientState
	evictable lru // sealed unpinned objects the caller allows to be evicted
	spillable lru // sealed unpinned objects that must be kept: spilled under pressure
	waiters   map[ids.ObjectID]*waiter
	spiller   spiller // nil: no spilling

	pinnedBytes, pinnedObjects int64
	unsealedBytes              int64
	spilledBytes, spilledObjs  int64
	spills, restores           int64
	evictions, evictedBytes    int64

	spillsInFlight int
	spillingBytes  int64         // allocated bytes of entries being spilled
	ioDone         chan struct{} // closed (and dropped) when an I/O finishes
}

func newTable(capacity int64, sp spiller) *table {
	t := &table{
		alloc:   newAllocator(capacity),
		objects: map[ids.ObjectID]*entry{},
		clients: map[clientID]*clientState{},
		waiters: map[ids.ObjectID]*waiter{},
		spiller: sp,
	}
	t.evictable.init()
	t.spillable.init()
	t.addClient(hostClient)
	return t
}

func (t *table) addClient(c clientID) {
	t.clients[c] = &clientState{pins: map[*entry]int{}, creating: map[*entry]struct{}{}}
}

// create allocates an object of size bytes for client c.
func (t *table) create(c clientID, id ids.ObjectID, size int64, evictable bool) (*entry, error) {
	if size < 0 {
		return nil, fmt.Errorf("objstore: create %s: size %d: %w", id, size, ErrBadArgument)
	}
	if _, ok := t.objects[id]; ok {
		return nil, fmt.Errorf("%w: %s", ErrObjectExists, id)
	}
	off, err := t.makeRoom(id, size)
	if err != nil {
		return nil, err
	}
	e := &entry{id: id, size: size, off: off, state: stateCreated, evictable: evictable, creator: c}
	t.objects[id] = e
	t.clients[c].creating[e] = struct{}{}
	t.unsealedBytes += allocSize(size)
	return e, nil
}

// makeRoom allocates size bytes, evicting as needed. When only a spill can
// make room it returns an *ioRequest for the oldest spillable object
// (marked spilling, out of the LRU); errBusy when spills in flight are all
// that can still free enough.
func (t *table) makeRoom(id ids.ObjectID, size int64) (int64, error) {
	need := allocSize(size)
	if off, ok := t.alloc.alloc(size); ok {
		return off, nil
	}
	movable := t.evictable.bytes + t.spillingBytes
	if t.spiller != nil {
		movable += t.spillable.bytes
	}
	if need > t.alloc.capacity-t.alloc.used+movable {
		return 0, t.fullError(id, need)
	}
	for {
		if off, ok := t.alloc.alloc(size); ok {
			return off, nil
		}
		if v := t.evictable.oldest(); v != nil {
			t.drop(v)
			t.evictions++
			t.evictedBytes += v.size
			continue
		}
		if v := t.spillable.oldest(); v != nil && t.spiller != nil {
			unlink(v)
			v.spilling = true
			t.spillsInFlight++
			t.spillingBytes += allocSize(v.size)
			return 0, &ioRequest{e: v}
		}
		if t.spillsInFlight > 0 {
			return 0, errBusy
		}
		return 0, t.fullError(id, need)
	}
}

func (t *table) fullError(id ids.ObjectID, need int64) error {
	spilling := "disabled"
	if t.spiller != nil {
		spilling = "enabled"
	}
	return fmt.Errorf("%w: object %s needs %d bytes; capacity %d, allocated %d (pinned %d, being written %d), "+
		"largest free extent %d, evictable %d, spillable %d (spilling %s); release or delete objects, or enlarge the store",
		ErrObjectStoreFull, id, need, t.alloc.capacity, t.alloc.used, t.pinnedBytes, t.unsealedBytes,
		t.alloc.largestFree(), t.evictable.bytes, t.spillable.bytes, spilling)
}

// finishSpill records the end of a spill of e to path (err: it failed).
// An object pinned or deleted while it was being written stays in the
// arena (or is freed), and the file goes.
func (t *table) finishSpill(e *entry, path string, err error) error {
	e.spilling = false
	t.spillsInFlight--
	t.spillingBytes -= allocSize(e.size)
	t.signalIO()
	if err != nil || e.deleted || e.pins > 0 {
		if err == nil {
			t.spiller.remove(path)
		}
		t.settle(e)
		return err
	}
	t.alloc.release(e.off, e.size)
	e.state, e.spillPath = stateSpilled, path
	t.spilledBytes += e.size
	t.spilledObjs++
	t.spills++
	return nil
}

// settle puts a sealed object back where it belongs once its I/O ended
// without moving it: freed if deleted and unpinned, in its LRU list if
// unpinned, nowhere while pinned (its last release does that).
func (t *table) settle(e *entry) {
	switch {
	case e.pins > 0:
	case e.deleted:
		t.alloc.release(e.off, e.size)
	default:
		t.lruOf(e).pushFront(e)
	}
}

// signalIO wakes the operations waiting for I/O in flight (errBusy).
func (t *table) signalIO() {
	if t.ioDone != nil {
		close(t.ioDone)
		t.ioDone = nil
	}
}

// ioWait returns a channel closed when the next I/O in flight finishes.
func (t *table) ioWait() <-chan struct{} {
	if t.ioDone == nil {
		t.ioDone = make(chan struct{})
	}
	return t.ioDone
}

// drop frees a sealed or spilled, unpinned object and forgets it.
func (t *table) drop(e *entry) {
	unlink(e)
	switch e.state {
	case stateSpilled:
		t.spiller.remove(e.spillPath)
		t.spilledBytes -= e.size
		t.spilledObjs--
	default:
		t.alloc.release(e.off, e.size)
	}
	if t.objects[e.id] == e {
		delete(t.objects, e.id)
	}
}

func (t *table) lruOf(e *entry) *lru {
	if e.evictable {
		return &t.evictable
	}
	return &t.spillable
}

// seal makes the object immutable and wakes its waiters.
func (t *table) seal(c clientID, id ids.ObjectID) error {
	e, ok := t.objects[id]
	if !ok {
		return fmt.Errorf("objstore: seal: %w: %s", ErrObjectNotFound, id)
	}
	if e.state != stateCreated || e.creator != c {
		return fmt.Errorf("objstore: seal %s: %w", id, ErrNotCreator)
	}
	delete(t.clients[c].creating, e)
	t.unsealedBytes -= allocSize(e.size)
	e.state = stateSealed
	t.lruOf(e).pushFront(e)
	if w, ok := t.waiters[id]; ok {
		close(w.ch)
		delete(t.waiters, id)
	}
	return nil
}

// pin returns the sealed object id for client c. errNotSealed: it exists
// but is being written, or does not exist; the caller may wait. A spilled
// object gets room in the arena and an *ioRequest to restore it (or the
// *ioRequest or errBusy of making that room); errBusy while another caller
// restores it.
func (t *table) pin(c clientID, id ids.ObjectID) (*entry, error) {
	e, ok := t.objects[id]
	if !ok || e.state == stateCreated {
		return nil, errNotSealed
	}
	if e.restoring {
		return nil, errBusy
	}
	if e.state == stateSpilled {
		off, err := t.makeRoom(e.id, e.size)
		if err != nil {
			if errors.Is(err, ErrObjectStoreFull) {
				err = fmt.Errorf("objstore: restore %s from spill file: %w", e.id, err)
			}
			return nil, err
		}
		e.off, e.restoring = off, true
		return nil, &ioRequest{e: e, restore: true}
	}
	if e.pins == 0 {
		unlink(e)
		t.pinnedBytes += allocSize(e.size)
		t.pinnedObjects++
	}
	e.pins++
	t.clients[c].pins[e]++
	return e, nil
}

var errNotSealed = fmt.Errorf("%w (not sealed yet)", ErrObjectNotFound)

// finishRestore records the end of reading e back into the arena (err: it
// failed, and e stays spilled).
func (t *table) finishRestore(e *entry, err error) error {
	e.restoring = false
	t.signalIO()
	if e.deleted || err != nil {
		t.alloc.release(e.off, e.size)
		if e.deleted { // remove did the rest
			return nil
		}
		return fmt.Errorf("objstore: restore %s: %w", e.id, err)
	}
	t.spiller.remove(e.spillPath)
	e.spillPath, e.state = "", stateSealed
	t.spilledBytes -= e.size
	t.spilledObjs--
	t.restores++
	t.lruOf(e).pushFront(e)
	return nil
}

// release drops one pin of client c on e.
func (t *table) release(c clientID, e *entry) error {
	cs := t.clients[c]
	n, ok := cs.pins[e]
	if !ok {
		return fmt.Errorf("objstore: release %s: %w: not pinned by this client", e.id, ErrBadArgument)
	}
	if n == 1 {
		delete(cs.pins, e)
	} else {
		cs.pins[e] = n - 1
	}
	e.pins--
	if e.pins == 0 {
		t.pinnedBytes -= allocSize(e.size)
		t.pinnedObjects--
		if !e.spilling { // else finishSpill settles it
			t.settle(e)
		}
	}
	return nil
}

// releaseID is release by ID, for clients that hold IDs only.
func (t *table) releaseID(c clientID, id ids.ObjectID) error {
	if e, ok := t.objects[id]; ok {
		if _, pinned := t.clients[c].pins[e]; pinned {
			return t.release(c, e)
		}
	}
	for e := range t.clients[c].pins { // a deleted object: no longer indexed
		if e.id == id {
			return t.release(c, e)
		}
	}
	return fmt.Errorf("objstore: release %s: %w: not pinned by this client", id, ErrBadArgument)
}

// delete removes id for client c: an unsealed object is aborted (only its
// creator may: another client's memory must not be freed under its
// writes), a pinned one is freed at its last release, a spilled one loses
// its file.
func (t *table) delete(c clientID, id ids.ObjectID) error {
	e, ok := t.objects[id]
	if !ok {
		return fmt.Errorf("objstore: delete: %w: %s", ErrObjectNotFound, id)
	}
	if e.state == stateCreated && e.creator != c {
		return fmt.Errorf("objstore: delete %s: %w: another client is writing it; it may Abort it", id, ErrNotCreator)
	}
	t.remove(e)
	return nil
}

// abort discards an object client c is writing.
func (t *table) abort(c clientID, id ids.ObjectID) error {
	e, ok := t.objects[id]
	if !ok || e.state != stateCreated || e.creator != c {
		return fmt.Errorf("objstore: abort %s: %w", id, ErrNotCreator)
	}
	t.remove(e)
	return nil
}

func (t *table) remove(e *entry) {
	switch {
	case e.state == stateCreated:
		delete(t.clients[e.creator].creating, e)
		t.unsealedBytes -= allocSize(e.size)
		t.alloc.release(e.off, e.size)
		delete(t.objects, e.id)
	case e.pins > 0, e.spilling, e.restoring:
		// Freed at the last release, or when the I/O ends. A file being
		// restored goes now (unlinking an open file is safe).
		if e.restoring {
			t.spiller.remove(e.spillPath)
			t.spilledBytes -= e.size
			t.spilledObjs--
		}
		e.deleted = true
		delete(t.objects, e.id)
	default:
		t.drop(e)
	}
}

// contains reports whether id is sealed (in the arena or spilled).
func (t *table) contains(id ids.ObjectID) bool {
	e, ok := t.objects[id]
	return ok && e.state != stateCreated
}

// dropClient releases everything client c holds: its pins, and its
// creations not yet sealed (deleted).
func (t *table) dropClient(c clientID) {
	cs, ok := t.clients[c]
	if !ok {
		return
	}
	for e, n := range cs.pins {
		for range n {
			t.release(c, e)
		}
	}
	for e := range cs.creating {
		t.remove(e)
	}
	delete(t.clients, c)
}

// wait returns a channel closed when id is sealed, and a function to call
// when the caller stops waiting.
func (t *table) wait(id ids.ObjectID) (<-chan struct{}, func()) {
	w, ok := t.waiters[id]
	if !ok {
		w = &waiter{ch: make(chan struct{})}
		t.waiters[id] = w
	}
	w.n++
	return w.ch, func() {
		if w.n--; w.n == 0 && t.waiters[id] == w {
			delete(t.waiters, id)
		}
	}
}

// Stats is what the store holds, as `goray memory` shows it. Byte counts
// of objects in the arena are their allocated sizes (rounded up to
// Alignment); spilled bytes are object sizes.
type Stats struct {
	Capacity       int64 // arena bytes
	Used           int64 // allocated bytes
	LargestFree    int64 // the largest free extent: Capacity-Used minus fragmentation
	Objects        int   // objects in the arena, sealed or being written
	Pinned         int64 // bytes of objects pinned by a Get
	PinnedObjects  int64
	Unsealed       int64 // bytes of objects being written
	Spilled        int64 // bytes of objects now in spill files
	SpilledObjects int64
	SpillsTotal    int64 // objects spilled, ever
	RestoresTotal  int64 // objects restored from spill files, ever
	Evictions      int64 // objects evicted, ever
	EvictedBytes   int64
	Clients        int // attached clients, the host included
}

func (t *table) stats() Stats {
	return Stats{
		Capacity:       t.alloc.capacity,
		Used:           t.alloc.used,
		LargestFree:    t.alloc.largestFree(),
		Objects:        len(t.objects) - int(t.spilledObjs),
		Pinned:         t.pinnedBytes,
		PinnedObjects:  t.pinnedObjects,
		Unsealed:       t.unsealedBytes,
		Spilled:        t.spilledBytes,
		SpilledObjects: t.spilledObjs,
		SpillsTotal:    t.spills,
		RestoresTotal:  t.restores,
		Evictions:      t.evictions,
		EvictedBytes:   t.evictedBytes,
		Clients:        len(t.clients),
	}
}
