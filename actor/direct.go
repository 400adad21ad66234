package actor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/goray/goray/core"
	"github.com/goray/goray/cuda"
	"github.com/goray/goray/internal/bridge"
	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/refwait"
	"github.com/goray/goray/internal/worker"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// The direct tensor transport (Ray's "direct transport" for GPU objects):
// a method named in Class.KeepTensors returns a *tensor.Tensor that stays
// in the actor's process, on its GPU; the ref holds only a marker (the
// producer's handle, the object, the tensor's metadata). An actor of the
// same Group that takes the ref as a *tensor.Tensor argument receives the
// tensor straight from the producer through the group's communicator; any
// other reader (the driver, a task, an actor outside the group) gets a
// host copy from the producer. When the ref's owner frees it, the producer
// frees the tensor.

const directTypeName = "goray.DirectTensor"

// directRef is a kept tensor's marker.
type directRef struct {
	_        struct{} `cbor:",toarray"`
	Producer *Handle
	Object   []byte
	Meta     []byte // tensor.AppendMeta
}

var (
	directHead []byte // the encoding's first bytes: codec header and the CBOR tag
	tensorType = reflect.TypeFor[*tensor.Tensor]()

	directCommID = core.Register("goray.direct.commid", directCommIDFn)
	directJoin   = core.Register("goray.direct.join", directJoinFn)
	directSend   = core.Register("goray.direct.send", directSendFn)
	directFetch  = core.Register("goray.direct.fetch", directFetchFn)
	directFree   = core.Register("goray.direct.free", directFreeFn)
	directLeave  = core.Register("goray.direct.leave", directLeaveFn)

	// This process's side of the transport.
	kept  = map[ids.ObjectID]*tensor.Tensor{} // the tensors this actor keeps
	pairs = map[pairKey]*pair{}               // communicators with the group's other actors
	dmu   sync.Mutex
)

// pairKey names the communicator that carries tensors from one actor to
// another. Each ordered pair has its own two-rank communicator (the
// producer is rank 0), so that two actors fetching from each other at once
// never wait on one communicator's order.
type pairKey struct {
	group    string
	from, to ids.ActorID
}

type pair struct {
	mu     sync.Mutex // one transfer at a time
	c      nccl.Communicator
	device int
}

func init() {
	codec.RegisterType(directTypeName, &directRef{})
	head, err := cbor.Marshal(cbor.Tag{Number: codec.TagFor(directTypeName), Content: nil})
	if err != nil {
		panic(err)
	}
	empty, _ := codec.Marshal(nil)
	directHead = append(append([]byte{}, empty[:8]...), head[:len(head)-1]...) // the header, the tag without its null content
	worker.Direct.Keep = keepTensor
	worker.Direct.Resolve = resolveTensor
	worker.Direct.Dropped = droppedTensor
}

// KeepTensors makes the named methods' *tensor.Tensor results stay in the
// actor's process (on its GPU): their refs move the tensor only when read,
// peer to peer between actors of one Group. A method named here must not
// change or reuse a tensor it returned: the tensor now belongs to the ref,
// and is freed (Free) when the ref is. It panics on a name that is not a
// remote method, like Register.
func (c *Class) KeepTensors(methods ...string) *Class {
	c.c.KeepTensors(methods...)
	return c
}

// keepTensor runs in the producer: it keeps a tensor result and returns
// its marker.
func keepTensor(ctx context.Context, actor ids.ActorID, class *worker.Class, obj ids.ObjectID, v reflect.Value) (reflect.Value, error) {
	t, ok := v.Interface().(*tensor.Tensor)
	if !ok || t == nil {
		return v, nil // not a tensor: the result travels as usual
	}
	dmu.Lock()
	kept[obj] = t
	dmu.Unlock()
	m := &directRef{Producer: &Handle{id: actor, class: class}, Object: obj[:], Meta: tensor.AppendMeta(nil, t.Meta())}
	return reflect.ValueOf(m), nil
}

func isMarker(data []byte) bool { return bytes.HasPrefix(data, directHead) }

// resolveTensor turns a marker into its tensor where a value is decoded.
func resolveTensor(ctx context.Context, self ids.ActorID, data []byte, t reflect.Type) (reflect.Value, bool, error) {
	if !isMarker(data) || !(t == tensorType || t.Kind() == reflect.Interface && tensorType.Implements(t)) {
		return reflect.Value{}, false, nil
	}
	m, meta, obj, err := parseMarker(data)
	if err != nil {
		return reflect.Value{}, true, err
	}
	out, err := fetchTensor(ctx, self, m, obj, meta)
	if err != nil {
		return reflect.Value{}, true, fmt.Errorf("actor: the tensor %s kept by %s: %w", obj, m.Producer.Class(), err)
	}
	v := reflect.ValueOf(out)
	if t != tensorType {
		v = v.Convert(t)
	}
	return v, true, nil
}

// parseMarker decodes a kept tensor's marker (bytes from the object store
// or another process) and checks every field.
func parseMarker(data []byte) (*directRef, tensor.Meta, ids.ObjectID, error) {
	var m directRef
	if err := codec.Unmarshal(data, &m); err != nil {
		return nil, tensor.Meta{}, ids.ObjectID{}, fmt.Errorf("actor: a kept tensor's marker: %w", err)
	}
	if m.Producer == nil {
		return nil, tensor.Meta{}, ids.ObjectID{}, errors.New("actor: a kept tensor's marker names no producer")
	}
	meta, n, err := tensor.ParseMeta(m.Meta)
	if err == nil && n != len(m.Meta) {
		err = fmt.Errorf("%d bytes after the metadata", len(m.Meta)-n)
	}
	if err != nil {
		return nil, tensor.Meta{}, ids.ObjectID{}, fmt.Errorf("actor: a kept tensor's marker: %w", err)
	}
	obj, err := objectID(m.Object)
	if err != nil {
		return nil, tensor.Meta{}, ids.ObjectID{}, fmt.Errorf("actor: a kept tensor's marker: %w", err)
	}
	return &m, meta, obj, nil
}

func fetchTensor(ctx context.Context, self ids.ActorID, m *directRef, obj ids.ObjectID, meta tensor.Meta) (*tensor.Tensor, error) {
	if self == m.Producer.id { // read by the actor that keeps it
		dmu.Lock()
		t := kept[obj]
		dmu.Unlock()
		if t == nil {
			return nil, errors.New("it was freed")
		}
		return t, nil
	}
	if self != (ids.ActorID{}) {
		dmu.Lock()
		var p *pair
		for k, q := range pairs {
			if k.from == m.Producer.id && k.to == self {
				p = q
				break
			}
		}
		dmu.Unlock()
		if p != nil {
			return receive(ctx, p, m, self, meta)
		}
	}
	// No communicator joins the two: a host copy, through the producer.
	ref, err := systemCall(m.Producer, directFetch, m.Object)
	if err != nil {
		return nil, err
	}
	defer core.Free(ref)
	return core.Get[*tensor.Tensor](ctx, ref)
}

// receive asks the producer to send the tensor over the pair's
// communicator and receives it.
func receive(ctx context.Context, p *pair, m *directRef, self ids.ActorID, meta tensor.Meta) (*tensor.Tensor, error) {
	d := tensor.CPU
	if meta.Device.IsCUDA() {
		d = tensor.CUDA(max(p.device, 0))
	}
	out, err := tensor.Empty(meta.DType, d, meta.Shape...)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ref, err := systemCall(m.Producer, directSend, sendRequest{Object: m.Object, To: self[:], Meta: m.Meta})
	if err != nil {
		out.Free()
		return nil, err
	}
	defer core.Free(ref)
	if err := p.c.Recv(ctx, out, 0, cuda.Default(max(p.device, 0))); err != nil {
		out.Free()
		return nil, err
	}
	if _, err := core.Get[bool](ctx, ref); err != nil {
		out.Free()
		return nil, err
	}
	if receivedHook != nil {
		receivedHook()
	}
	return out, nil
}

// receivedHook, when set (by tests), counts peer-to-peer receptions.
var receivedHook func()

// sendRequest asks a producer to send a kept tensor to actor To.
type sendRequest struct {
	Object, To, Meta []byte
}

// directSendFn runs in the producer: it sends a kept tensor. A tensor
// already freed is sent as zeros of its shape (the receiver is waiting for
// that many bytes) and reported as an error.
func directSendFn(ctx context.Context, r sendRequest) (bool, error) {
	self, err := selfActor(ctx)
	if err != nil {
		return false, err
	}
	obj, err := objectID(r.Object)
	if err != nil {
		return false, err
	}
	var to ids.ActorID
	copy(to[:], r.To)
	dmu.Lock()
	t := kept[obj]
	var p *pair
	for k, q := range pairs {
		if k.from == self && k.to == to {
			p = q
			break
		}
	}
	dmu.Unlock()
	if p == nil {
		return false, fmt.Errorf("no communicator from this actor to %s: the group was destroyed", to)
	}
	var missing error
	if t == nil {
		meta, _, err := tensor.ParseMeta(r.Meta)
		if err != nil {
			return false, err
		}
		d := tensor.CPU
		if meta.Device.IsCUDA() {
			d = tensor.CUDA(max(p.device, 0))
		}
		if t, err = tensor.Empty(meta.DType, d, meta.Shape...); err != nil {
			return false, err
		}
		defer t.Free()
		missing = fmt.Errorf("the tensor %s was freed (its ref was freed before it was read)", obj)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.c.Send(ctx, t, 1, cuda.Default(max(p.device, 0))); err != nil {
		return false, err
	}
	return missing == nil, missing
}

// directFetchFn runs in the producer: a host copy of a kept tensor.
func directFetchFn(ctx context.Context, object []byte) (*tensor.Tensor, error) {
	obj, err := objectID(object)
	if err != nil {
		return nil, err
	}
	dmu.Lock()
	t := kept[obj]
	dmu.Unlock()
	if t == nil {
		return nil, fmt.Errorf("the tensor %s was freed", obj)
	}
	return t.ToHost()
}

// droppedTensor runs in a ref's owner as it frees an object: a marker's
// producer is told to free the tensor.
func droppedTensor(data []byte) {
	if !isMarker(data) {
		return
	}
	data = bytes.Clone(data)
	go func() {
		var m directRef
		if err := codec.Unmarshal(data, &m); err != nil {
			return
		}
		if ref, err := systemCall(m.Producer, directFree, m.Object); err == nil {
			core.Free(ref) // the producer may be gone: nothing to wait for
		}
	}()
}

func directFreeFn(ctx context.Context, object []byte) (bool, error) {
	obj, err := objectID(object)
	if err != nil {
		return false, err
	}
	dmu.Lock()
	t := kept[obj]
	delete(kept, obj)
	dmu.Unlock()
	t.Free()
	return t != nil, nil
}

func objectID(b []byte) (ids.ObjectID, error) {
	var id ids.ObjectID
	if len(b) != len(id) {
		return id, fmt.Errorf("an object ID of %d bytes, want %d", len(b), len(id))
	}
	copy(id[:], b)
	return id, nil
}

func selfActor(ctx context.Context) (ids.ActorID, error) {
	ha, ok := worker.HostedActorFrom(ctx)
	if !ok {
		return ids.ActorID{}, errors.New("this runs only in an actor")
	}
	return ha.ID(), nil
}

// systemCall runs a system function in h's actor.
func systemCall(h *Handle, fn any, args ...any) (*core.ObjectRef, error) {
	if _, err := h.runtime(); err != nil {
		return nil, err
	}
	return bridge.SystemCall(h, bridge.FuncOf(fn), args).([]*core.ObjectRef)[0], nil
}

// ---------------------------------------------------------------- groups

// Group is a set of actors that move kept tensors (KeepTensors) among
// themselves peer to peer, through communicators of one backend (Ray's
// collective group for the direct transport): one two-rank communicator
// per ordered pair of actors, made when the group is.
type Group struct {
	name   string
	actors []*Handle
}

// pairSpec is one actor's rank of one pair communicator.
type pairSpec struct {
	Group    string
	From, To []byte
	Backend  string
	ID       []byte
	Rank     int
}

// NewGroup joins the actors into a group over backend (nccl.CPU for host
// tensors; the "nccl" backend for GPU tensors, each actor on its GPU).
func NewGroup(ctx context.Context, backend nccl.Backend, hs ...*Handle) (*Group, error) {
	if backend == nil {
		return nil, errors.New("actor: NewGroup: nil backend: pass nccl.CPU, or nccl.Lookup(\"nccl\")")
	}
	if _, err := nccl.Lookup(backend.Name()); err != nil {
		return nil, fmt.Errorf("actor: NewGroup: %w", err)
	}
	if len(hs) < 2 {
		return nil, fmt.Errorf("actor: NewGroup: %d actors: a group needs at least two", len(hs))
	}
	seen := map[ids.ActorID]bool{}
	for _, h := range hs {
		if h == nil || seen[h.id] {
			return nil, errors.New("actor: NewGroup: a nil or repeated handle: pass each actor once")
		}
		seen[h.id] = true
	}
	var nb [8]byte
	rand.Read(nb[:])
	g := &Group{name: hex.EncodeToString(nb[:]), actors: hs}
	// A unique ID per ordered pair, made by its producer.
	specs := make([][]pairSpec, len(hs))
	for i, from := range hs {
		for j, to := range hs {
			if i == j {
				continue
			}
			ref, err := systemCall(from, directCommID, backend.Name())
			if err != nil {
				return nil, err
			}
			id, err := core.Get[[]byte](ctx, ref)
			core.Free(ref)
			if err != nil {
				return nil, fmt.Errorf("actor: NewGroup: make a communicator ID in %s: %w", from.Class(), err)
			}
			ps := pairSpec{Group: g.name, From: from.id[:], To: to.id[:], Backend: backend.Name(), ID: id}
			specs[i] = append(specs[i], ps)
			ps.Rank = 1
			specs[j] = append(specs[j], ps)
		}
	}
	// Each actor joins all its pairs at once (every Init waits for its
	// peer, so joining one by one could wait in a cycle).
	refs := make([]*core.ObjectRef, len(hs))
	for i, h := range hs {
		ref, err := systemCall(h, directJoin, specs[i])
		if err != nil {
			return nil, err
		}
		refs[i] = ref
	}
	// All at once: on the first failure the other joins (which may wait
	// for the actor that failed) are cancelled.
	first := refwait.AllOrCancel(ctx, refs, func(i int, err error) error { return fmt.Errorf("%s: %w", hs[i].Class(), err) })
	for _, r := range refs {
		core.Free(r)
	}
	if err := first; err != nil {
		g.Destroy(context.Background())
		return nil, fmt.Errorf("actor: NewGroup: %w", err)
	}
	return g, nil
}

// Destroy closes the group's communicators; the actors and the tensors
// they keep stay.
func (g *Group) Destroy(ctx context.Context) error {
	var errs []error
	for _, h := range g.actors {
		ref, err := systemCall(h, directLeave, g.name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := core.Get[bool](ctx, ref); err != nil && !errors.Is(err, core.ErrActorDied) {
			errs = append(errs, err)
		}
		core.Free(ref)
	}
	return errors.Join(errs...)
}

func directCommIDFn(ctx context.Context, backend string) ([]byte, error) {
	b, err := nccl.Lookup(backend)
	if err != nil {
		return nil, err
	}
	id, err := b.NewUniqueID()
	return id[:], err
}

func directJoinFn(ctx context.Context, specs []pairSpec) (bool, error) {
	rc, _ := core.RuntimeContextFrom(ctx)
	device := -1
	if len(rc.GPUIDs) > 0 {
		device = 0 // CUDA_VISIBLE_DEVICES holds the actor's GPUs
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	joins := make([]nccl.Join, len(specs))
	for i, s := range specs {
		joins[i] = nccl.Join{Backend: s.Backend, ID: s.ID, Rank: s.Rank, Size: 2, Device: device}
	}
	comms, err := nccl.JoinAll(ctx, joins)
	if err != nil {
		return false, err
	}
	dmu.Lock()
	for i, s := range specs {
		var k pairKey
		k.group = s.Group
		copy(k.from[:], s.From)
		copy(k.to[:], s.To)
		pairs[k] = &pair{c: comms[i], device: device}
	}
	dmu.Unlock()
	return true, nil
}

func directLeaveFn(ctx context.Context, group string) (bool, error) {
	dmu.Lock()
	var mine []*pair
	for k, p := range pairs {
		if k.group == group {
			mine = append(mine, p)
			delete(pairs, k)
		}
	}
	dmu.Unlock()
	for _, p := range mine {
		p.c.Abort() // a transfer still waiting fails rather than hangs
		p.mu.Lock()
		p.c.Close()
		p.mu.Unlock()
	}
	return true, nil
}
