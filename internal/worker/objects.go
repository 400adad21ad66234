package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/objstore"
)

type objState uint8

const (
	objPending objState = iota
	objInline           // value holds the encoding
	objInStore          // sealed in the node's object store
	objFailed           // err says why
)

// object is one entry of the value table: an object this process owns, or
// one it borrows (holds a ref to) from another owner.
type object struct {
	id    ids.ObjectID
	owned bool
	owner string // the owner's address, for a borrowed object

	state objState
	value []byte
	err   *rpc.ErrorInfo
	// ready is closed when state leaves objPending; it is made by the
	// first Get that waits (most objects are never waited for: one
	// allocation fewer per call).
	ready chan struct{}

	local     int            // live refs in this process
	submitted int            // queued or running tasks that take it as an argument
	borrowers map[string]int // registrations of other processes holding refs (owner side)
	lineage   *task          // the task that makes it, while it can be re-run
	pin       *objstore.Object

	borrowRegs  int            // registrations with the owner on this process's behalf (borrower side)
	registering bool           // a Borrow is registering with the owner
	contained   []ids.ObjectID // refs inside the value, held while it lives

	dependents []*task         // tasks waiting for it as an argument
	watchers   []chan struct{} // Wait calls
	fetching   bool            // a GetObject to the owner is running
	freed      bool            // no refs left while pending: drop when it completes
}

func newObject(id ids.ObjectID, owned bool, owner string) *object {
	return &object{id: id, owned: owned, owner: owner}
}

// waitChan is the channel a waiter for pending o waits on (with w.mu held).
func (o *object) waitChan() chan struct{} {
	if o.ready == nil {
		o.ready = make(chan struct{})
	}
	return o.ready
}

// markReady wakes o's waiters: its state has left objPending (w.mu held,
// or o not yet shared).
func (o *object) markReady() {
	if o.ready != nil {
		close(o.ready)
		o.ready = nil
	}
}

func (o *object) unpin() {
	if o.pin != nil {
		o.pin.Release()
		o.pin = nil
	}
}

// Value is a ready object's encoding: inline bytes, or a read-only view of
// the object store that stays valid while the ref is held.
type Value struct {
	Data   []byte
	Stored bool
}

// ---------------------------------------------------------------- refs

// AddRef counts one more live ref to id in this process, making a borrowed
// entry if the process has none (a ref that arrived from elsewhere).
func (w *CoreWorker) AddRef(id ids.ObjectID, owner string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.objects[id]
	if o == nil {
		o = newObject(id, owner == w.cfg.Address, owner)
		if o.owned {
			// A ref to an object this process owned and freed: it is gone.
			o.state, o.err = objFailed, lostInfo(id, "its owner freed it before this ref arrived")
		}
		w.objects[id] = o
	}
	o.local++
}

// ReleaseRef drops one live ref (Free, or the ref became unreachable).
func (w *CoreWorker) ReleaseRef(id ids.ObjectID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.objects[id]
	if o == nil || o.local == 0 {
		return
	}
	o.local--
	w.maybeFreeLocked(o)
}

// maybeFreeLocked frees an object nothing refers to any more.
func (w *CoreWorker) maybeFreeLocked(o *object) {
	if o.local > 0 || o.submitted > 0 || len(o.borrowers) > 0 {
		return
	}
	if o.registering {
		return // Borrow finishes, then frees it
	}
	if o.state == objPending && o.owned {
		o.freed = true // its task still runs: drop the value when it lands
		return
	}
	w.dropLocked(o)
}

func (w *CoreWorker) dropLocked(o *object) {
	if o.owned && o.state == objInline && Direct.Dropped != nil {
		Direct.Dropped(o.value)
	}
	delete(w.objects, o.id)
	o.unpin()
	if o.owned && o.state == objInStore {
		w.cfg.Store.Delete(o.id)
	}
	o.lineage = nil
	o.value = nil
	w.unborrowLocked(o)
	held := o.contained
	o.contained = nil
	w.releaseHeldLocked(held)
}

// Owned reports whether this process owns id, and its owner's address.
func (w *CoreWorker) OwnerOf(id ids.ObjectID) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o := w.objects[id]; o != nil {
		if o.owned {
			return w.cfg.Address
		}
		return o.owner
	}
	return ""
}

// NumObjects is the size of the value table (for tests of freeing).
func (w *CoreWorker) NumObjects() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.objects)
}

// HasObject reports whether id is in the value table.
func (w *CoreWorker) HasObject(id ids.ObjectID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.objects[id] != nil
}

// ---------------------------------------------------------------- completion

// completeLocked records a task's return (or a Put) as ready.
func (w *CoreWorker) completeLocked(ret *rpc.ReturnObject) {
	id := objectIDOf(ret.ObjectId)
	o := w.objects[id]
	if o == nil || o.state != objPending {
		if ret.InStore && (o == nil || o.state != objInStore) {
			w.cfg.Store.Delete(id) // nobody wants it (freed, or a duplicate)
		}
		w.dropNestedLocked(ret.Nested) // its worker registered this process for them
		return
	}
	switch {
	case ret.Error != nil:
		o.state, o.err = objFailed, ret.Error
	case ret.InStore:
		o.state = objInStore
	default:
		o.state, o.value = objInline, ret.Value
	}
	w.adoptNestedLocked(o, ret.Nested)
	w.readyLocked(o)
}

func (w *CoreWorker) failObjectLocked(id ids.ObjectID, info *rpc.ErrorInfo) {
	w.completeLocked(&rpc.ReturnObject{ObjectId: id[:], Error: info})
}

func (w *CoreWorker) readyLocked(o *object) {
	o.markReady()
	for _, c := range o.watchers {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	o.watchers = nil
	deps := o.dependents
	o.dependents = nil
	for _, t := range deps {
		w.depReadyLocked(t)
	}
	if o.freed {
		w.dropLocked(o)
	}
}

func lostInfo(id ids.ObjectID, why string) *rpc.ErrorInfo {
	return &rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_OBJECT_LOST,
		Message: fmt.Sprintf("object %s is lost: %s", id, why)}
}

// ---------------------------------------------------------------- put

// Put stores an encoded value as a new object owned by this process, with
// one live ref (the caller's). nested are the refs inside the value: the
// object holds them while it lives.
func (w *CoreWorker) Put(e codec.Encoded, nested []NestedRef) (ids.ObjectID, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ids.ObjectID{}, fmt.Errorf("put: %w", errs.ErrShutdown)
	}
	w.putIdx++
	if w.putIdx == 1<<31 {
		w.putTask, w.putIdx = ids.NewTaskID(ids.NilActorIDOf(w.cfg.JobID)), 1
	}
	id := ids.NewObjectID(w.putTask, w.putIdx)
	w.mu.Unlock()
	o := newObject(id, true, "")
	o.local = 1
	if e.Size() <= InlineLimit {
		o.state, o.value = objInline, e.Bytes()
	} else {
		if err := w.storeEncoded(id, e); err != nil {
			return ids.ObjectID{}, fmt.Errorf("put: %w", err)
		}
		o.state = objInStore
	}
	w.mu.Lock()
	o.contained = w.holdNestedLocked(nested)
	w.objects[id] = o
	w.mu.Unlock()
	return id, nil
}

// storeEncoded writes an encoding into the node's store under id: one copy.
func (w *CoreWorker) storeEncoded(id ids.ObjectID, e codec.Encoded) error {
	buf, err := w.cfg.Store.Create(id, int64(e.Size()))
	if err != nil {
		return err
	}
	e.WriteTo(buf.Data())
	return buf.Seal()
}

// ---------------------------------------------------------------- get

// Get waits for an object and returns its value. A failed object gives its
// error (a *TaskError).
func (w *CoreWorker) Get(ctx context.Context, id ids.ObjectID) (Value, error) {
	blocked := false
	defer func() {
		if blocked {
			w.setBlocked(false)
		}
	}()
	refetched := false
	for {
		w.mu.Lock()
		o := w.objects[id]
		if o == nil {
			w.mu.Unlock()
			return Value{}, fmt.Errorf("object %s: %w: this process holds no ref to it (freed?)", id, errs.ErrObjectLost)
		}
		switch o.state {
		case objPending:
			if !o.owned && !o.fetching {
				w.fetchLocked(o)
			}
			ready := o.waitChan()
			w.mu.Unlock()
			select {
			case <-ready:
				continue
			default:
			}
			if !blocked {
				blocked = w.setBlocked(true)
			}
			select {
			case <-ready:
				continue
			case <-ctx.Done():
				return Value{}, ctxErr(ctx, "get", id)
			case <-w.stop:
				return Value{}, fmt.Errorf("get %s: %w", id, errs.ErrShutdown)
			}
		case objInline:
			v := o.value
			w.mu.Unlock()
			return Value{Data: v}, nil
		case objFailed:
			info := o.err
			w.mu.Unlock()
			return Value{}, errorFromInfo(info)
		case objInStore:
			if o.pin != nil {
				v := o.pin.Data()
				w.mu.Unlock()
				return Value{Data: v, Stored: true}, nil
			}
			w.mu.Unlock()
			ok, err := w.cfg.Store.Contains(id)
			if err != nil {
				return Value{}, fmt.Errorf("get %s: %w", id, err)
			}
			if !ok {
				if err := w.lost(o, refetched); err != nil {
					return Value{}, err
				}
				refetched = true
				continue
			}
			pin, err := w.cfg.Store.Get(ctx, id)
			if err != nil {
				return Value{}, fmt.Errorf("get %s: %w", id, err)
			}
			w.mu.Lock()
			keep := o.pin == nil && w.objects[id] == o
			if keep {
				o.pin = pin
			}
			w.mu.Unlock()
			v := pin.Data()
			if !keep {
				// Pinned meanwhile, or freed while we read: copy, unpin.
				v = append([]byte(nil), v...)
				pin.Release()
			}
			return Value{Data: v, Stored: true}, nil
		}
	}
}

// lost handles an object whose store copy is gone: the owner rebuilds it
// from lineage, a borrower asks the owner again (once).
func (w *CoreWorker) lost(o *object, refetched bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o.state != objInStore || w.objects[o.id] != o {
		return nil // someone else noticed first
	}
	if !o.owned {
		if refetched {
			o.state, o.err = objFailed, lostInfo(o.id, "its owner has no copy either")
			return nil
		}
		o.state = objPending
		return nil
	}
	if err := w.reconstructLocked(o); err != nil {
		o.state, o.err = objFailed, lostInfo(o.id, err.Error())
	}
	return nil
}

func ctxErr(ctx context.Context, op string, id ids.ObjectID) error {
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s %s: %w (%w)", op, id, errs.ErrTimeout, ctx.Err())
	}
	return fmt.Errorf("%s %s: %w", op, id, ctx.Err())
}

// fetchLocked asks a borrowed object's owner for its value, in the
// background; the entry becomes ready when the answer arrives.
func (w *CoreWorker) fetchLocked(o *object) {
	o.fetching = true
	id, owner := o.id, o.owner
	w.goBG(func() {
		ret := w.fetchFromOwner(id, owner)
		w.mu.Lock()
		defer w.mu.Unlock()
		if cur := w.objects[id]; cur == o {
			o.fetching = false
			w.completeLocked(ret)
		}
	})
}

func (w *CoreWorker) fetchFromOwner(id ids.ObjectID, owner string) *rpc.ReturnObject {
	fail := func(why string) *rpc.ReturnObject {
		return &rpc.ReturnObject{ObjectId: id[:], Error: lostInfo(id, why)}
	}
	if owner == "" {
		return fail("its owner is unknown")
	}
	c, err := w.peer(owner)
	if err != nil {
		return fail(err.Error())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	r, err := c.GetObject(ctx, &rpc.GetObjectRequest{ObjectId: id[:]})
	if err == nil && r.Object != nil {
		r.Object.ObjectId = id[:]
		return r.Object
	}
	if ctx.Err() != nil {
		return &rpc.ReturnObject{ObjectId: id[:], Error: systemError(rpc.ErrorKind_ERROR_SYSTEM, "", "", errs.ErrShutdown.Error())}
	}
	return fail(fmt.Sprintf("its owner %s did not answer (%v): the owner process has probably exited", owner, err))
}

// Wait waits until n of ids are ready (or failed), the timeout passes
// (negative: no timeout) or ctx ends. It reports which are ready.
func (w *CoreWorker) Wait(ctx context.Context, idList []ids.ObjectID, n int, timeout time.Duration) ([]bool, error) {
	ready := make([]bool, len(idList))
	notify := make(chan struct{}, len(idList))
	var deadline <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	// One scan registers a watcher on every pending object; after that
	// each object that becomes ready sends exactly once (the channel has
	// room for all), so counting sends replaces rescanning: O(n) in all.
	count := 0
	w.mu.Lock()
	for i, id := range idList {
		o := w.objects[id]
		if o == nil {
			w.mu.Unlock()
			return nil, fmt.Errorf("wait: object %s: %w: this process holds no ref to it", id, errs.ErrObjectLost)
		}
		if o.state != objPending {
			ready[i] = true
			count++
			continue
		}
		if !o.owned && !o.fetching {
			w.fetchLocked(o)
		}
		o.watchers = append(o.watchers, notify)
	}
	w.mu.Unlock()
	var err error
wait:
	for count < n {
		select {
		case <-notify:
			count++
		case <-deadline:
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-w.stop:
			err = errs.ErrShutdown
			break wait
		}
	}
	w.mu.Lock()
	for i, id := range idList {
		if o := w.objects[id]; o != nil && o.state != objPending {
			ready[i] = true
		}
	}
	w.mu.Unlock()
	return ready, err
}

// Failed makes n objects that are already failed with msg, each with one
// live ref: the result of a submission that was invalid from the start.
func (w *CoreWorker) Failed(fn string, n int, kind rpc.ErrorKind, msg string) []ids.ObjectID {
	t := ids.NewTaskID(ids.NilActorIDOf(w.cfg.JobID))
	out := make([]ids.ObjectID, n)
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range out {
		id := ids.NewObjectID(t, uint32(i+1))
		o := newObject(id, true, "")
		o.local = 1
		o.state, o.err = objFailed, &rpc.ErrorInfo{Kind: kind, Function: fn, Task: fn, Message: msg}
		w.objects[id] = o
		out[i] = id
	}
	return out
}
