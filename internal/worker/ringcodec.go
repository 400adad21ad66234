package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/internal/rpc"
)

// The ring messages' own encoding. Every task a lease runs and every actor
// call crosses a ring twice (spec out, reply back), and protobuf's
// reflective marshalling was a fifth of both processes' time per call.
// This is a flat encoding of the same messages, written and read by hand:
// a 0x00 byte (a tag protobuf never writes: field number 0 is illegal), a
// kind byte, then the fields in a fixed order; bytes and strings are a
// uvarint length and the bytes, counts are uvarints, flags a byte. What it
// cannot carry (a reply holding an ErrorInfo: rare, and a deep message)
// goes as protobuf, which readers tell apart by the first byte.
//
// Decoding copies every byte field out of the ring slot into one
// allocation per message, and strings (the same few function, method and
// owner names on every call) through an interner.

const ringFast = 0x00

const (
	ringKindTask  = 1
	ringKindReply = 2
	ringKindItem  = 3
)

var errRingShort = errors.New("message ends inside a field")

// writeRing encodes m (a *rpc.RingRequest or *rpc.RingReply) straight into
// the ring's next slot.
func writeRing(ctx context.Context, w *channel.RingWriter, m proto.Message) error {
	switch m := m.(type) {
	case *rpc.RingRequest:
		if t := m.GetTask(); t != nil {
			return writeSpec(ctx, w, t)
		}
	case *rpc.RingReply:
		var s sizer
		switch k := m.Kind.(type) {
		case *rpc.RingReply_Reply:
			if k.Reply != nil && replyFits(k.Reply) {
				s.reply(k.Reply)
				return writeFlat(ctx, w, ringKindReply, s, func(b []byte) []byte { return appendReply(b, k.Reply) })
			}
		case *rpc.RingReply_Item:
			if k.Item != nil && (k.Item.Object == nil || k.Item.Object.Error == nil) {
				s.item(k.Item)
				return writeFlat(ctx, w, ringKindItem, s, func(b []byte) []byte { return appendItem(b, k.Item) })
			}
		}
	}
	return writeProto(ctx, w, m)
}

// writeSpec sends a task spec: writeRing of a RingRequest holding t.
func writeSpec(ctx context.Context, w *channel.RingWriter, t *rpc.TaskSpec) error {
	var s sizer
	s.spec(t)
	return writeFlat(ctx, w, ringKindTask, s, func(b []byte) []byte { return appendSpec(b, t) })
}

// writeFlat writes a flat message of kind whose fields (body) take size
// bytes.
func writeFlat(ctx context.Context, w *channel.RingWriter, kind byte, size sizer, body func([]byte) []byte) error {
	n := 2 + int(size)
	buf, err := w.Reserve(ctx, n)
	if err != nil {
		return err
	}
	out := body(append(buf[:0], ringFast, kind))
	if len(out) != n {
		w.Commit(channel.KindError) // the slot must go; the reader sees a broken stream
		return fmt.Errorf("encode a ring message: wrote %d bytes, sized %d", len(out), n)
	}
	return w.Commit(channel.KindData)
}

// replyFits says whether r goes in the flat encoding: no ErrorInfo in it.
func replyFits(r *rpc.TaskReply) bool {
	if r.Error != nil {
		return false
	}
	for _, o := range r.Returns {
		if o == nil || o.Error != nil {
			return false
		}
	}
	return true
}

type sizer int

func (s *sizer) bytes(n int)   { *s += sizer(uvarintLen(uint64(n)) + n) }
func (s *sizer) uint(v uint64) { *s += sizer(uvarintLen(v)) }

func (s *sizer) spec(t *rpc.TaskSpec) {
	s.bytes(len(t.TaskId))
	s.bytes(len(t.Function))
	s.uint(uint64(len(t.Args)))
	for _, a := range t.Args {
		s.bytes(len(a.GetValue()))
		s.bytes(len(a.GetObjectId()))
		*s++ // in_store
		s.nested(a.GetNested())
	}
	s.uint(uint64(t.NumReturns))
	*s++ // generator
	s.bytes(len(t.OwnerAddress))
	s.uint(uint64(t.Attempt))
	s.bytes(len(t.Name))
	s.bytes(len(t.ActorId))
	s.bytes(len(t.Method))
}

func (s *sizer) nested(ns []*rpc.NestedRef) {
	s.uint(uint64(len(ns)))
	for _, n := range ns {
		s.bytes(len(n.GetObjectId()))
		s.bytes(len(n.GetOwnerAddress()))
	}
}

func (s *sizer) object(o *rpc.ReturnObject) {
	s.bytes(len(o.ObjectId))
	s.bytes(len(o.Value))
	*s++ // in_store
	s.nested(o.Nested)
}

func (s *sizer) reply(r *rpc.TaskReply) {
	s.bytes(len(r.TaskId))
	s.uint(uint64(len(r.Returns)))
	for _, o := range r.Returns {
		s.object(o)
	}
	s.uint(uint64(r.GeneratorItems))
}

func (s *sizer) item(it *rpc.GeneratorItem) {
	s.bytes(len(it.TaskId))
	s.uint(uint64(it.Index))
	*s++ // has object
	if it.Object != nil {
		s.object(it.Object)
	}
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendBytes[S []byte | string](b []byte, v S) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendSpec(b []byte, t *rpc.TaskSpec) []byte {
	b = appendBytes(b, t.TaskId)
	b = appendBytes(b, t.Function)
	b = binary.AppendUvarint(b, uint64(len(t.Args)))
	for _, a := range t.Args {
		b = appendBytes(b, a.GetValue())
		b = appendBytes(b, a.GetObjectId())
		b = appendBool(b, a.GetInStore())
		b = appendNested(b, a.GetNested())
	}
	b = binary.AppendUvarint(b, uint64(t.NumReturns))
	b = appendBool(b, t.Generator)
	b = appendBytes(b, t.OwnerAddress)
	b = binary.AppendUvarint(b, uint64(t.Attempt))
	b = appendBytes(b, t.Name)
	b = appendBytes(b, t.ActorId)
	return appendBytes(b, t.Method)
}

func appendNested(b []byte, ns []*rpc.NestedRef) []byte {
	b = binary.AppendUvarint(b, uint64(len(ns)))
	for _, n := range ns {
		b = appendBytes(b, n.GetObjectId())
		b = appendBytes(b, n.GetOwnerAddress())
	}
	return b
}

func appendObject(b []byte, o *rpc.ReturnObject) []byte {
	b = appendBytes(b, o.ObjectId)
	b = appendBytes(b, o.Value)
	b = appendBool(b, o.InStore)
	return appendNested(b, o.Nested)
}

func appendReply(b []byte, r *rpc.TaskReply) []byte {
	b = appendBytes(b, r.TaskId)
	b = binary.AppendUvarint(b, uint64(len(r.Returns)))
	for _, o := range r.Returns {
		b = appendObject(b, o)
	}
	return binary.AppendUvarint(b, uint64(r.GeneratorItems))
}

func appendItem(b []byte, it *rpc.GeneratorItem) []byte {
	b = appendBytes(b, it.TaskId)
	b = binary.AppendUvarint(b, uint64(it.Index))
	b = appendBool(b, it.Object != nil)
	if it.Object != nil {
		b = appendObject(b, it.Object)
	}
	return b
}

// interner hands out one string per distinct name, so decoding the same
// function, method and owner address on every call allocates nothing. It
// belongs to one reading goroutine.
type interner struct{ m map[string]string }

const internMax = 1024 // distinct strings kept; past it the table starts over

func (in *interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if in == nil || len(b) > 256 {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	if in.m == nil || len(in.m) >= internMax {
		in.m = make(map[string]string)
	}
	s := string(b)
	in.m[s] = s
	return s
}

// ringDec reads one flat message. Byte fields are copied into arena, one
// allocation sized to the message.
type ringDec struct {
	b     []byte
	arena []byte
	in    *interner
	err   error
}

func (d *ringDec) fail(what string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %w", what, err)
	}
}

func (d *ringDec) uint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what, errRingShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length of elements that take at least one byte each.
func (d *ringDec) count(what string) int {
	v := d.uint(what)
	if v > uint64(len(d.b)) {
		d.fail(what, fmt.Errorf("count %d past the message's end", v))
		return 0
	}
	return int(v)
}

func (d *ringDec) raw(what string) []byte {
	n := d.uint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what, errRingShort)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *ringDec) bytes(what string) []byte {
	v := d.raw(what)
	if len(v) == 0 {
		return nil
	}
	out := d.arena[:len(v):len(v)]
	d.arena = d.arena[len(v):]
	copy(out, v)
	return out
}

func (d *ringDec) str(what string) string {
	v := d.raw(what)
	if d.err == nil && !utf8.Valid(v) {
		d.fail(what, errors.New("not valid UTF-8"))
		return ""
	}
	return d.in.get(v)
}

func (d *ringDec) bool(what string) bool {
	if d.err != nil {
		return false
	}
	if len(d.b) == 0 {
		d.fail(what, errRingShort)
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	if v > 1 {
		d.fail(what, fmt.Errorf("flag byte %#x, want 0 or 1", v))
	}
	return v == 1
}

func (d *ringDec) uint32(what string) uint32 {
	v := d.uint(what)
	if v > 1<<32-1 {
		d.fail(what, fmt.Errorf("%d overflows 32 bits", v))
	}
	return uint32(v)
}

func (d *ringDec) nested() []*rpc.NestedRef {
	n := d.count("nested refs")
	if n == 0 {
		return nil
	}
	out := make([]*rpc.NestedRef, n)
	for i := range out {
		out[i] = &rpc.NestedRef{ObjectId: d.bytes("nested ref id"), OwnerAddress: d.str("nested ref owner")}
	}
	return out
}

func (d *ringDec) spec() *rpc.TaskSpec {
	t := &rpc.TaskSpec{TaskId: d.bytes("task id"), Function: d.str("function")}
	if n := d.count("args"); n > 0 {
		t.Args = make([]*rpc.Arg, n)
		args := make([]rpc.Arg, n)
		for i := range t.Args {
			a := &args[i]
			a.Value = d.bytes("arg value")
			a.ObjectId = d.bytes("arg object id")
			a.InStore = d.bool("arg in_store")
			a.Nested = d.nested()
			t.Args[i] = a
		}
	}
	t.NumReturns = d.uint32("num_returns")
	t.Generator = d.bool("generator")
	t.OwnerAddress = d.str("owner address")
	t.Attempt = d.uint32("attempt")
	t.Name = d.str("name")
	t.ActorId = d.bytes("actor id")
	t.Method = d.str("method")
	return t
}

func (d *ringDec) object(o *rpc.ReturnObject) {
	o.ObjectId = d.bytes("object id")
	o.Value = d.bytes("object value")
	o.InStore = d.bool("object in_store")
	o.Nested = d.nested()
}

// reply1 is a reply of one return (nearly every reply) in one allocation.
type reply1 struct {
	kind rpc.RingReply_Reply
	r    rpc.TaskReply
	ptr  [1]*rpc.ReturnObject
	o    rpc.ReturnObject
}

func (d *ringDec) reply() *rpc.RingReply_Reply {
	tid := d.bytes("task id")
	var k *rpc.RingReply_Reply
	switch n := d.count("returns"); n {
	case 0:
		k = &rpc.RingReply_Reply{Reply: &rpc.TaskReply{}}
	case 1:
		one := &reply1{}
		one.kind.Reply, one.ptr[0] = &one.r, &one.o
		one.r.Returns = one.ptr[:]
		d.object(&one.o)
		k = &one.kind
	default:
		k = &rpc.RingReply_Reply{Reply: &rpc.TaskReply{Returns: make([]*rpc.ReturnObject, n)}}
		objs := make([]rpc.ReturnObject, n)
		for i := range objs {
			d.object(&objs[i])
			k.Reply.Returns[i] = &objs[i]
		}
	}
	k.Reply.TaskId = tid
	k.Reply.GeneratorItems = d.uint32("generator items")
	return k
}

func (d *ringDec) item() *rpc.GeneratorItem {
	it := &rpc.GeneratorItem{TaskId: d.bytes("task id"), Index: d.uint32("item index")}
	if d.bool("item has object") {
		it.Object = &rpc.ReturnObject{}
		d.object(it.Object)
	}
	return it
}

// decodeFlat checks data's header against want and readies a decoder.
func decodeFlat(data []byte, in *interner) (kind byte, d ringDec, err error) {
	if len(data) < 2 {
		return 0, d, fmt.Errorf("flat ring message of %d bytes: %w", len(data), errRingShort)
	}
	// Every byte field is a copy of a run of the message: the message's
	// length bounds their total.
	return data[1], ringDec{b: data[2:], arena: make([]byte, len(data)-2), in: in}, nil
}

func (d *ringDec) finish(kind string) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes after the end", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("flat ring %s: %w", kind, d.err)
	}
	return nil
}

// unmarshalRequest decodes a request ring message (flat or protobuf) into
// req.
func unmarshalRequest(data []byte, req *rpc.RingRequest, in *interner) error {
	if len(data) == 0 || data[0] != ringFast {
		return proto.Unmarshal(data, req)
	}
	kind, d, err := decodeFlat(data, in)
	if err != nil {
		return err
	}
	if kind != ringKindTask {
		return fmt.Errorf("flat ring request of kind %d: want %d (a task)", kind, ringKindTask)
	}
	t := d.spec()
	if err := d.finish("task spec"); err != nil {
		return err
	}
	req.Reset()
	req.Kind = &rpc.RingRequest_Task{Task: t}
	return nil
}

// unmarshalReply decodes a reply ring message (flat or protobuf) into rep.
func unmarshalReply(data []byte, rep *rpc.RingReply, in *interner) error {
	if len(data) == 0 || data[0] != ringFast {
		return proto.Unmarshal(data, rep)
	}
	kind, d, err := decodeFlat(data, in)
	if err != nil {
		return err
	}
	switch kind {
	case ringKindReply:
		k := d.reply()
		if err := d.finish("task reply"); err != nil {
			return err
		}
		rep.Reset()
		rep.Kind = k
	case ringKindItem:
		it := d.item()
		if err := d.finish("generator item"); err != nil {
			return err
		}
		rep.Reset()
		rep.Kind = &rpc.RingReply_Item{Item: it}
	default:
		return fmt.Errorf("flat ring reply of kind %d: want %d (a reply) or %d (a generator item)", kind, ringKindReply, ringKindItem)
	}
	return nil
}
