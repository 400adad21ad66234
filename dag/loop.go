package dag

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/worker"
)

// The execution loop: what an actor runs for a compiled graph. package dag
// registers two system functions of the binary; Compile asks each actor to
// run "goray.dag.start" (as Ray's __ray_call__), which opens the actor's
// rings and starts the loop on a goroutine locked to an OS thread, beside
// the actor's ordinary calls; Teardown's "goray.dag.stop" waits for it to
// end. Per execution the loop runs the actor's operations in order: read
// each input once (a ring read by several of its calls is read once),
// call the method, write each result to its ring or keep it for a later
// call of the same actor.

// Messages on a graph's rings: a tag byte, then the value's codec
// encoding, a protobuf ErrorInfo, or (the input) the encoded attributes.
const (
	tagValue byte = 0
	tagError byte = 1
)

// loopSpec is an actor's part of a compiled graph, as sent to it.
type loopSpec struct {
	Graph   string
	Profile bool      // record READ/COMPUTE/WRITE events
	Reads   []ringRef // rings the actor reads
	Writes  []string  // rings the actor writes
	Ops     []opSpec
	Locals  int
}

type ringRef struct {
	Name   string
	Reader int
}

type opSpec struct {
	Method string
	Args   []argSpec
	Outs   []outSpec // one per result
}

type argSpec struct {
	Kind  int
	Const []byte // argConst: the encoding
	Read  int    // argRing, argInput: index into Reads
	Local int    // argLocal
	Attr  int    // argInput
}

type outSpec struct {
	Write int // index into Writes, or -1
	Local int // or -1
}

var (
	startLoop = core.Register("goray.dag.start", startLoopFn)
	stopLoop  = core.Register("goray.dag.stop", stopLoopFn)
	events    = core.Register("goray.dag.events", eventsFn)

	loopsMu sync.Mutex
	loops   = map[string]*loopHandle{} // graph ID → the loop this process runs for it
)

type loopHandle struct {
	cancel context.CancelFunc
	done   chan struct{}
	prof   *profile
}

type resolvedOp struct {
	fn     *worker.Function
	name   string
	consts []reflect.Value
	spec   opSpec
	in     []reflect.Value // the call's arguments: instance, context, then the method's
}

// startLoopFn runs in the actor's process: it opens the rings and starts
// the loop.
func startLoopFn(ctx context.Context, spec loopSpec) (bool, error) {
	ha, ok := worker.HostedActorFrom(ctx)
	if !ok {
		return false, errors.New("goray.dag.start runs only in an actor")
	}
	ops := make([]resolvedOp, len(spec.Ops))
	for i, o := range spec.Ops {
		fn, err := ha.Class().Method(o.Method)
		if err != nil {
			return false, err
		}
		r := resolvedOp{fn: fn, name: fn.Name, spec: o, consts: make([]reflect.Value, len(o.Args))}
		for j, a := range o.Args {
			if argKind(a.Kind) == argConst {
				v, err := codec.Decode(a.Const, fn.ParamType(j))
				if err != nil {
					return false, fmt.Errorf("%s argument %d: %w", fn.Name, j+1, err)
				}
				if !v.IsValid() {
					v = reflect.Zero(fn.ParamType(j))
				}
				r.consts[j] = v
			}
		}
		ops[i] = r
	}
	var rings []*channel.Ring
	readers := make([]*channel.RingReader, len(spec.Reads))
	writers := make([]*channel.RingWriter, len(spec.Writes))
	closeAll := func() { // the ends hold their rings mapped: close them first
		for _, rd := range readers {
			if rd != nil {
				rd.Close()
			}
		}
		for _, w := range writers {
			if w != nil {
				w.Close()
			}
		}
		for _, r := range rings {
			r.Close()
		}
	}
	for i, rr := range spec.Reads {
		r, err := channel.OpenShm(rr.Name)
		if err != nil {
			closeAll()
			return false, err
		}
		rings = append(rings, r)
		if readers[i], err = r.Reader(rr.Reader); err != nil {
			closeAll()
			return false, err
		}
	}
	for i, name := range spec.Writes {
		r, err := channel.OpenShm(name)
		if err != nil {
			closeAll()
			return false, err
		}
		rings = append(rings, r)
		if writers[i], err = r.Writer(); err != nil {
			closeAll()
			return false, err
		}
	}
	lctx, cancel := context.WithCancel(context.Background())
	lctx = context.WithValue(lctx, loopCtxKey{}, ctx) // the actor's task context: RuntimeFrom works in methods
	h := &loopHandle{cancel: cancel, done: make(chan struct{})}
	if spec.Profile {
		id := ha.ID()
		h.prof = &profile{actor: ha.Class().Name + "(" + id.String()[:8] + ")", w: ha.Worker(), actorID: id[:], graph: spec.Graph}
	}
	loopsMu.Lock()
	if _, dup := loops[spec.Graph]; dup {
		loopsMu.Unlock()
		cancel()
		closeAll()
		return false, fmt.Errorf("graph %s already runs in this actor", spec.Graph)
	}
	loops[spec.Graph] = h
	loopsMu.Unlock()
	mctx := methodContext(ctx, lctx)
	go func() {
		defer close(h.done)
		defer closeAll()
		l := &loop{ha: ha, ops: ops, readers: readers, writers: writers, locals: spec.Locals, graph: spec.Graph, prof: h.prof}
		l.run(lctx, mctx)
	}()
	return true, nil
}

type loopCtxKey struct{}

// methodContext is the context methods get: the actor's (for RuntimeFrom
// and the runtime context), cancelled when the loop stops.
func methodContext(actorCtx, loopCtx context.Context) context.Context {
	return mergedCtx{Context: loopCtx, values: actorCtx}
}

type mergedCtx struct {
	context.Context
	values context.Context
}

func (m mergedCtx) Value(k any) any {
	if v := m.Context.Value(k); v != nil {
		return v
	}
	return m.values.Value(k)
}

// eventsFn returns the profiling events the graph's loop in this actor
// recorded (and forgets them).
func eventsFn(ctx context.Context, graph string) ([]Event, error) {
	loopsMu.Lock()
	h := loops[graph]
	loopsMu.Unlock()
	if h == nil || h.prof == nil {
		return nil, nil
	}
	return h.prof.take(), nil
}

// stopLoopFn waits for the graph's loop in this actor to end (its rings
// were closed by the driver), stopping it if it has not.
func stopLoopFn(ctx context.Context, graph string) (bool, error) {
	loopsMu.Lock()
	h := loops[graph]
	delete(loops, graph)
	loopsMu.Unlock()
	if h == nil {
		return false, nil
	}
	select {
	case <-h.done:
	case <-time.After(200 * time.Millisecond):
		h.cancel() // a loop blocked in a method, or on a ring not yet closed
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			return false, fmt.Errorf("graph %s: the actor's loop did not stop (a method ignores its context)", graph)
		}
	}
	return true, nil
}

type loop struct {
	ha      *worker.HostedActor
	ops     []resolvedOp
	readers []*channel.RingReader
	writers []*channel.RingWriter
	locals  int
	graph   string
	prof    *profile // nil unless the graph was compiled with Profiling
}

type value struct {
	v   reflect.Value
	err *rpc.ErrorInfo
}

func (l *loop) run(ctx, mctx context.Context) {
	msgs := make([]channel.Message, len(l.readers))
	got := make([]bool, len(l.readers))
	attrs := make([][][]byte, len(l.readers))
	frameBufs := make([][][]byte, len(l.readers))
	locals := make([]value, l.locals)
	var enc []byte
	mctxV := reflect.ValueOf(mctx)
	for i := range l.ops {
		op := &l.ops[i]
		op.in = make([]reflect.Value, 2+len(op.spec.Args))
		op.in[0], op.in[1] = l.ha.Instance(), mctxV
	}
	var t0 time.Time
	for exec := uint64(0); ; exec++ {
		clear(got)
		clear(attrs)
		clear(locals)
		for i := range l.ops {
			op := &l.ops[i]
			args := op.in[2:]
			var failed *rpc.ErrorInfo
			if l.prof != nil {
				t0 = time.Now()
			}
			for j, a := range op.spec.Args {
				if failed != nil {
					// The call is skipped, but each of its rings must still
					// be read once for this execution, or they would fall a
					// message behind the others.
					if k := argKind(a.Kind); (k == argRing || k == argInput) && !got[a.Read] {
						m, err := l.readers[a.Read].Read(ctx)
						if err != nil {
							l.fail(ctx, err)
							return
						}
						msgs[a.Read], got[a.Read] = m, true
					}
					continue
				}
				switch argKind(a.Kind) {
				case argConst:
					args[j] = op.consts[j]
				case argLocal:
					lv := locals[a.Local]
					if lv.err != nil {
						failed = lv.err
					} else {
						args[j] = lv.v
					}
				case argRing, argInput:
					if !got[a.Read] {
						m, err := l.readers[a.Read].Read(ctx)
						if err != nil {
							l.fail(ctx, err)
							return
						}
						msgs[a.Read], got[a.Read] = m, true
					}
					data := msgs[a.Read].Data
					if len(data) == 0 {
						failed = sysError(rpc.ErrorKind_ERROR_SYSTEM, "an empty message on a graph channel")
						break
					}
					if data[0] == tagError {
						failed = decodeErrorInfo(data[1:])
						break
					}
					data = data[1:]
					if argKind(a.Kind) == argInput {
						if attrs[a.Read] == nil {
							fr, err := splitFrames(frameBufs[a.Read][:0], data)
							if err != nil {
								failed = sysError(rpc.ErrorKind_ERROR_SYSTEM, err.Error())
								break
							}
							attrs[a.Read], frameBufs[a.Read] = fr, fr
						}
						if a.Attr >= len(attrs[a.Read]) {
							failed = sysError(rpc.ErrorKind_ERROR_SYSTEM, "the input has fewer attributes than the graph uses")
							break
						}
						data = attrs[a.Read][a.Attr]
					}
					pt := op.fn.ParamType(j)
					v, err := codec.Decode(data, pt)
					if err != nil {
						failed = sysError(rpc.ErrorKind_ERROR_BAD_ARGUMENT, fmt.Sprintf("%s argument %d: want %v: %v", op.name, j+1, pt, err))
						break
					}
					if !v.IsValid() {
						v = reflect.Zero(pt)
					}
					args[j] = v
				}
			}
			var results []reflect.Value
			if l.prof != nil {
				t0 = l.prof.add(exec, op.name, "READ", t0)
			}
			if failed == nil {
				res, err, stack, panicked := l.ha.InvokeIn(mctx, op.fn, op.in)
				if err != nil {
					if ctx.Err() != nil {
						l.release(msgs, got)
						return
					}
					failed = worker.ErrorInfoOf(op.name, op.name, err, stack, panicked)
				}
				results = res
			}
			if l.prof != nil {
				t0 = l.prof.add(exec, op.name, "COMPUTE", t0)
			}
			for k, out := range op.spec.Outs {
				var rv reflect.Value
				if failed == nil {
					if k < len(results) {
						rv = results[k]
					} else {
						rv = reflect.ValueOf((*struct{})(nil))
					}
				}
				if out.Local >= 0 {
					locals[out.Local] = value{v: rv, err: failed}
				}
				if out.Write < 0 {
					continue
				}
				var err error
				if failed != nil {
					err = writeError(ctx, l.writers[out.Write], failed)
				} else {
					enc, err = writeValue(ctx, l.writers[out.Write], rv, enc)
					if errors.Is(err, errs.ErrBadArgument) {
						err = writeError(ctx, l.writers[out.Write], sysError(rpc.ErrorKind_ERROR_BAD_ARGUMENT, fmt.Sprintf("%s result %d: %v", op.name, k+1, err)))
					}
				}
				if err != nil {
					l.release(msgs, got)
					l.fail(ctx, err)
					return
				}
			}
			if l.prof != nil {
				l.prof.add(exec, op.name, "WRITE", t0)
			}
		}
		l.release(msgs, got)
	}
}

func (l *loop) release(msgs []channel.Message, got []bool) {
	for i, ok := range got {
		if ok {
			msgs[i].Release()
		}
	}
}

// fail ends the loop after a channel error. A peer that died is reported
// downstream (the driver tears the graph down); a closed channel is a
// teardown and needs no word.
func (l *loop) fail(ctx context.Context, err error) {
	if errors.Is(err, channel.ErrChannelClosed) || ctx.Err() != nil {
		return
	}
	info := sysError(rpc.ErrorKind_ERROR_ACTOR_DIED, fmt.Sprintf("%v: an actor of the graph died (seen by %s: %v)", errs.ErrActorDied, l.ha.Class().Name, err))
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	for _, w := range l.writers {
		writeError(wctx, w, info)
	}
}

func sysError(kind rpc.ErrorKind, msg string) *rpc.ErrorInfo {
	return &rpc.ErrorInfo{Kind: kind, Message: msg}
}

func decodeErrorInfo(b []byte) *rpc.ErrorInfo {
	info := &rpc.ErrorInfo{}
	if err := proto.Unmarshal(b, info); err != nil {
		return sysError(rpc.ErrorKind_ERROR_SYSTEM, fmt.Sprintf("an undecodable error on a graph channel: %v", err))
	}
	return info
}

func writeError(ctx context.Context, w *channel.RingWriter, info *rpc.ErrorInfo) error {
	b, err := proto.Marshal(info)
	if err != nil {
		return err
	}
	buf, err := w.Reserve(ctx, 1+len(b))
	if err != nil {
		return err
	}
	buf[0] = tagError
	copy(buf[1:], b)
	return w.Commit(channel.KindData)
}

// writeValue encodes v straight into the ring's next slot.
func writeValue(ctx context.Context, w *channel.RingWriter, v reflect.Value, scratch []byte) ([]byte, error) {
	var x any
	if v.IsValid() {
		x = v.Interface()
	}
	e, err := codec.Encode(x)
	if err != nil {
		return scratch, fmt.Errorf("%w: %w", errs.ErrBadArgument, err)
	}
	buf, err := w.Reserve(ctx, 1+e.Size())
	if err != nil {
		return scratch, err
	}
	buf[0] = tagValue
	e.WriteTo(buf[1:])
	return scratch, w.Commit(channel.KindData)
}

// The input message: the attributes' encodings, each with its length.
func appendFrames(dst []byte, frames []codec.Encoded) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(frames)))
	for _, f := range frames {
		dst = binary.AppendUvarint(dst, uint64(f.Size()))
		dst = f.AppendTo(dst)
	}
	return dst
}

func splitFrames(out [][]byte, b []byte) ([][]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errors.New("a malformed graph input (attribute count)")
	}
	b = b[k:]
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, errors.New("a malformed graph input (attribute length)")
		}
		out = append(out, b[k:k+int(l)])
		b = b[k+int(l):]
	}
	return out, nil
}
