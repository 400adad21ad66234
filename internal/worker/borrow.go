package worker

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/shm"
)

// Refs inside values. A ref can travel inside an argument, a result or a
// Put value (a []*core.ObjectRef, a struct field): the process that decodes
// it becomes a borrower, and the object must live until every borrower has
// let go. The protocol, after Ray's:
//
//   - An owner counts, per object, its own live refs, the submitted tasks
//     that take it, and registrations of borrowers (per address, counted:
//     an add and a remove may cross in flight).
//   - A process that decodes a ref it does not own registers with the owner
//     (AddBorrower) before it uses the ref, once while it holds any ref to
//     that object, and unregisters (RemoveBorrower) when it holds none. Until
//     then whoever sent the ref keeps it alive: a submitter holds the refs
//     inside a task's arguments until the task ends; an object holds the
//     refs inside its value while it lives (a Put value, or a task's result:
//     there the executing worker registers the result's owner as a borrower
//     before it replies, and the owner adopts that registration).
//
// The layer above (package core) knows which Go types are refs; it sets
// ValueRefs so that this package can find and bind them.

// NestedRef is a ref found inside a value: the object and its owner.
type NestedRef struct {
	ID    ids.ObjectID
	Owner string
}

// ValueRefs are the hooks the core package sets (from init) so that the
// executor can find the refs inside results and bind the refs decoded in
// arguments to this process.
var ValueRefs struct {
	// Collect returns the refs inside v (nil when its type holds none).
	Collect func(v reflect.Value) ([]NestedRef, error)
	// Bind attaches the refs decoded inside v to w, borrowing each.
	Bind func(w *CoreWorker, v reflect.Value) error
}

func nestedToRPC(n []NestedRef) []*rpc.NestedRef {
	if len(n) == 0 {
		return nil
	}
	out := make([]*rpc.NestedRef, len(n))
	for i, r := range n {
		out[i] = &rpc.NestedRef{ObjectId: r.ID[:], OwnerAddress: r.Owner}
	}
	return out
}

// Borrow counts one more live ref to id in this process (a ref decoded from
// a value). If the process neither owns id nor borrows it yet, it registers
// with the owner first; the sender of the value keeps the object alive until
// then.
func (w *CoreWorker) Borrow(id ids.ObjectID, owner string) error {
	w.mu.Lock()
	o := w.objects[id]
	if o == nil {
		if owner == w.cfg.Address {
			w.mu.Unlock()
			return fmt.Errorf("object %s: its owner (this process) freed it before the ref arrived", id)
		}
		o = newObject(id, false, owner)
		w.objects[id] = o
	}
	o.local++
	if o.owned || o.borrowRegs > 0 || o.registering {
		w.mu.Unlock()
		return nil
	}
	o.registering = true
	w.mu.Unlock()

	err := w.callBorrower(context.Background(), owner, id, w.cfg.Address, 1, true)

	w.mu.Lock()
	defer w.mu.Unlock()
	o.registering = false
	if err != nil {
		o.local--
		w.maybeFreeLocked(o)
		return fmt.Errorf("borrow object %s from its owner %s: %w", id, owner, err)
	}
	o.borrowRegs++
	w.maybeFreeLocked(o) // its refs may all have gone meanwhile
	return nil
}

// callBorrower sends AddBorrower (add) or RemoveBorrower for id to owner;
// when owner is this process, it applies the change directly.
func (w *CoreWorker) callBorrower(ctx context.Context, owner string, id ids.ObjectID, borrower string, n int, add bool) error {
	req := &rpc.BorrowerRequest{ObjectIds: [][]byte{id[:]}, BorrowerAddress: borrower, Count: uint32(n)}
	if borrower == w.cfg.Address {
		req.BorrowerPid, req.BorrowerStart = int32(w.self.PID), w.self.Start
	}
	if owner == w.cfg.Address {
		w.mu.Lock()
		w.borrowersLocked(req, add)
		w.mu.Unlock()
		return nil
	}
	c, err := w.peer(owner)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if add {
		_, err = c.AddBorrower(ctx, req)
	} else {
		_, err = c.RemoveBorrower(ctx, req)
	}
	return err
}

// borrowersLocked applies an AddBorrower or RemoveBorrower at the owner.
func (w *CoreWorker) borrowersLocked(req *rpc.BorrowerRequest, add bool) {
	n := int(max(req.Count, 1))
	if add && req.BorrowerPid > 0 && req.BorrowerAddress != w.cfg.Address {
		w.borrowerProcs[req.BorrowerAddress] = shm.Process{PID: int(req.BorrowerPid), Start: req.BorrowerStart}
	}
	for _, b := range req.ObjectIds {
		if len(b) != ids.ObjectIDSize {
			continue
		}
		o := w.objects[objectIDOf(b)]
		if o == nil || !o.owned {
			continue
		}
		if add {
			if o.borrowers == nil {
				o.borrowers = map[string]int{}
			}
			o.borrowers[req.BorrowerAddress] += n
			continue
		}
		if c := o.borrowers[req.BorrowerAddress]; c > 0 {
			if c <= n {
				delete(o.borrowers, req.BorrowerAddress)
			} else {
				o.borrowers[req.BorrowerAddress] = c - n
			}
			w.maybeFreeLocked(o)
		}
	}
}

// unborrowLocked tells the owner of a borrowed object this process dropped
// that it holds no ref any more.
func (w *CoreWorker) unborrowLocked(o *object) {
	if o.owned || o.borrowRegs == 0 {
		return
	}
	n, id, owner := o.borrowRegs, o.id, o.owner
	o.borrowRegs = 0
	if w.closed {
		return // the cluster is going away with this process
	}
	w.goBG(func() {
		err := w.callBorrower(context.Background(), owner, id, w.cfg.Address, n, false)
		if err != nil && status.Code(err) != codes.Unavailable { // an owner that has exited frees nothing more
			w.cfg.Logf("goray: release borrowed object %s at its owner %s: %v", id, owner, err)
		}
	})
}

// holdNestedLocked makes every nested ref live while a container does (a
// task's arguments, an object's value): one more local count each.
func (w *CoreWorker) holdNestedLocked(nested []NestedRef) []ids.ObjectID {
	if len(nested) == 0 {
		return nil
	}
	held := make([]ids.ObjectID, 0, len(nested))
	for _, r := range nested {
		if o := w.objects[r.ID]; o != nil {
			o.local++
			held = append(held, r.ID)
		}
	}
	return held
}

// releaseHeldLocked ends holdNestedLocked.
func (w *CoreWorker) releaseHeldLocked(held []ids.ObjectID) {
	for _, id := range held {
		if o := w.objects[id]; o != nil && o.local > 0 {
			o.local--
			w.maybeFreeLocked(o)
		}
	}
}

// adoptNestedLocked takes over, for the object o that just completed, the
// refs inside its value: the executing worker registered this process as a
// borrower of each (or, for objects this process owns, as one of its own
// borrowers), and o now holds them until it is dropped.
func (w *CoreWorker) adoptNestedLocked(o *object, nested []*rpc.NestedRef) {
	for _, r := range nested {
		if len(r.ObjectId) != ids.ObjectIDSize {
			continue
		}
		id := objectIDOf(r.ObjectId)
		in := w.objects[id]
		if r.OwnerAddress == w.cfg.Address {
			if in == nil {
				continue // freed before the result arrived; a Get of it says so
			}
			if c := in.borrowers[w.cfg.Address]; c > 1 {
				in.borrowers[w.cfg.Address] = c - 1
			} else {
				delete(in.borrowers, w.cfg.Address)
			}
		} else {
			if in == nil {
				in = newObject(id, false, r.OwnerAddress)
				w.objects[id] = in
			}
			in.borrowRegs++
		}
		in.local++
		o.contained = append(o.contained, id)
	}
}

// registerNested, in the worker that made a result, registers the result's
// owner as a borrower of every ref inside it, before the reply goes out:
// the worker's own refs may be gone the moment it has replied.
func (w *CoreWorker) registerNested(ctx context.Context, nested []NestedRef, resultOwner string) error {
	for i, r := range nested {
		if err := w.callBorrower(ctx, r.Owner, r.ID, resultOwner, 1, true); err != nil {
			w.unregisterNested(nested[:i], resultOwner)
			return fmt.Errorf("register the result's owner as a borrower of object %s at %s: %w", r.ID, r.Owner, err)
		}
	}
	return nil
}

// unregisterNested undoes registerNested for a result that will not be
// adopted (its task failed after all, or its owner no longer wants it).
func (w *CoreWorker) unregisterNested(nested []NestedRef, resultOwner string) {
	for _, r := range nested {
		w.goBG(func() {
			if err := w.callBorrower(context.Background(), r.Owner, r.ID, resultOwner, 1, false); err != nil && status.Code(err) != codes.Unavailable {
				w.cfg.Logf("goray: undo a borrower registration of object %s at %s: %v", r.ID, r.Owner, err)
			}
		})
	}
}

func nestedFromRPC(n []*rpc.NestedRef) []NestedRef {
	out := make([]NestedRef, 0, len(n))
	for _, r := range n {
		if len(r.ObjectId) == ids.ObjectIDSize {
			out = append(out, NestedRef{ID: objectIDOf(r.ObjectId), Owner: r.OwnerAddress})
		}
	}
	return out
}

// dropNestedLocked releases, at the owner, the registrations a worker made
// for the refs inside a result this process will not adopt (the task was
// cancelled, failed over, or the object freed).
func (w *CoreWorker) dropNestedLocked(nested []*rpc.NestedRef) {
	for _, r := range nestedFromRPC(nested) {
		if r.Owner == w.cfg.Address {
			w.borrowersLocked(&rpc.BorrowerRequest{ObjectIds: [][]byte{r.ID[:]}, BorrowerAddress: w.cfg.Address}, false)
			continue
		}
		w.goBG(func() {
			w.callBorrower(context.Background(), r.Owner, r.ID, w.cfg.Address, 1, false)
		})
	}
}

// dropDeadBorrowersLocked forgets the registrations of borrowers whose
// process has died (kill -9 gives them no chance to unregister), freeing
// what only they held.
func (w *CoreWorker) dropDeadBorrowersLocked() {
	var dead []string
	for addr, p := range w.borrowerProcs {
		if !p.Alive() {
			dead = append(dead, addr)
			delete(w.borrowerProcs, addr)
		}
	}
	if len(dead) == 0 {
		return
	}
	for _, o := range w.objects {
		for _, addr := range dead {
			if o.borrowers[addr] > 0 {
				delete(o.borrowers, addr)
				w.maybeFreeLocked(o)
			}
		}
	}
}
