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
	"github.com/goray/goray/cuda"
	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/worker"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// The execution loop: what an actor runs for a compiled graph. package dag
// registers two system functions of the binary; Compile asks each actor to
// run "goray.dag.start" (as Ray's __ray_call__), which opens the actor's
// rings and starts the loop on a goroutine of its own (not locked to an OS
// thread: docs/ARCHITECTURE.md says why), beside the actor's ordinary
// calls; Teardown's "goray.dag.stop" waits for it to end. Per execution
// the loop runs the actor's operations in order: read each input once (a
// ring read by several of its calls is read once), call the method, write
// each result to its ring or keep it for a later call of the same actor.

// Messages on a graph's rings: an 8-byte header (a tag byte, then zeros),
// then the value's codec encoding, a protobuf ErrorInfo, or (the input)
// the encoded attributes. The header keeps the payload 8-byte aligned in
// the slot, so numeric slices and tensors decode without a copy.
const (
	tagValue  byte = 0
	tagError  byte = 1
	tagTensor byte = 2 // an NCCL edge's metadata (tensor.AppendMeta); the data follows through the communicator

	msgHdr = 8
)

// putHeader writes a message header into the first msgHdr bytes of buf.
func putHeader(buf []byte, tag byte) {
	buf[0] = tag
	clear(buf[1:msgHdr])
}

// loopSpec is an actor's part of a compiled graph, as sent to it.
type loopSpec struct {
	Graph   string
	Profile bool      // record READ/COMPUTE/WRITE events
	Reads   []ringRef // rings the actor reads
	Writes  []string  // rings the actor writes
	Ops     []opSpec
	Locals  int
	Steps   []stepSpec // the schedule; empty: the ops in order
	Comms   []commSpec
	Sends   []sendSpec
	Recvs   []recvSpec
	Colls   []collSpec
	Slots   int // each ring's slots (MaxInflight): a CUDA IPC edge's staging buffers
}

type stepSpec struct {
	Kind  int // stepKind
	Index int // into Ops, Sends, Recvs or Colls
}

// commSpec is this actor's rank of one communicator.
type commSpec struct {
	Backend string
	ID      []byte
	Rank    int
	Size    int
	Device  int // the GPU (as this process numbers them), or -1
}

// sendSpec sends a local value to other ranks: its metadata through
// Writes[Write], its data through Comms[Comm].
type sendSpec struct {
	Name  string
	Local int
	Write int
	Comm  int
	Peers []int
}

// recvSpec receives a tensor from rank Peer into a local slot.
type recvSpec struct {
	Name  string
	Read  int
	Local int
	Comm  int
	Peer  int
}

// collSpec runs a collective over Comms[Comm] from local In to local Out.
type collSpec struct {
	Name string
	Kind int // collKind
	Op   int // nccl.ReduceOp
	Comm int
	In   int
	Out  int
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
	Write int  // index into Writes, or -1
	Local int  // or -1
	IPC   bool // a device tensor goes through CUDA IPC
}

var (
	startLoop = core.Register("goray.dag.start", startLoopFn)
	stopLoop  = core.Register("goray.dag.stop", stopLoopFn)
	events    = core.Register("goray.dag.events", eventsFn)
	gpusOf    = core.Register("goray.dag.gpus", gpusFn)
	commID    = core.Register("goray.dag.commid", commIDFn)

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
	out    []reflect.Value // its results, when the method is called directly
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
	comms, err := initComms(ctx, spec.Comms)
	if err != nil {
		return false, err
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
		for _, c := range comms {
			c.Close()
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
		l := &loop{ha: ha, ops: ops, readers: readers, writers: writers, graph: spec.Graph, prof: h.prof, spec: &spec, comms: comms}
		if l.run(lctx, mctx) {
			// Closing a ring end closes the ring: keep the error just
			// written readable until the graph is torn down.
			<-lctx.Done()
		}
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
	graph   string
	prof    *profile // nil unless the graph was compiled with Profiling
	spec    *loopSpec
	comms   []nccl.Communicator

	// Per execution.
	msgs      []channel.Message
	got       []bool
	attrs     [][][]byte
	frameBufs [][][]byte
	locals    []value
	recvBufs  []*tensor.Tensor // per receive step: the tensor it receives into, reused
	collBufs  []*tensor.Tensor // per collective step: its result, reused
	ipcBufs   []*tensor.Tensor // per reader: the tensor a CUDA IPC edge copies into, reused
	enc       []byte
	flags     []*tensor.Tensor // per communicator: the collectives' agreement flag on its GPU (nccl)
	hostFlags []*tensor.Tensor // per communicator: the same flag on the host
	staging   []*ipcStaging    // per writer: CUDA IPC staging buffers
	opened    map[cuda.IpcMemHandle]cuda.Ptr
}

type value struct {
	v   reflect.Value
	err *rpc.ErrorInfo
}

// run runs executions until the graph stops; it reports whether it ended
// on a failure it told its readers about.
func (l *loop) run(ctx, mctx context.Context) (failed bool) {
	l.msgs = make([]channel.Message, len(l.readers))
	l.got = make([]bool, len(l.readers))
	l.attrs = make([][][]byte, len(l.readers))
	l.frameBufs = make([][][]byte, len(l.readers))
	l.locals = make([]value, l.spec.Locals)
	l.flags = make([]*tensor.Tensor, len(l.comms))
	l.hostFlags = make([]*tensor.Tensor, len(l.comms))
	l.staging = make([]*ipcStaging, len(l.writers))
	l.recvBufs = make([]*tensor.Tensor, len(l.spec.Recvs))
	l.collBufs = make([]*tensor.Tensor, len(l.spec.Colls))
	l.ipcBufs = make([]*tensor.Tensor, len(l.readers))
	l.opened = map[cuda.IpcMemHandle]cuda.Ptr{}
	mctxV := reflect.ValueOf(&mctx).Elem() // typed context.Context: the call need not check the interface again
	for i := range l.ops {
		op := &l.ops[i]
		op.in = make([]reflect.Value, 2+len(op.spec.Args))
		op.in[0], op.in[1] = l.ha.Instance(), mctxV
		op.out = make([]reflect.Value, 0, 1)
	}
	steps := l.spec.Steps
	if len(steps) == 0 {
		for i := range l.ops {
			steps = append(steps, stepSpec{Kind: int(stepCompute), Index: i})
		}
	}
	defer l.closeComms()
	defer l.closeIPC()
	for exec := uint64(0); ; exec++ {
		clear(l.got)
		clear(l.attrs)
		clear(l.locals)
		for _, st := range steps {
			var err error
			switch stepKind(st.Kind) {
			case stepCompute:
				err = l.compute(ctx, mctx, exec, &l.ops[st.Index])
			case stepSend:
				err = l.send(ctx, exec, &l.spec.Sends[st.Index])
			case stepRecv:
				err = l.recv(ctx, exec, st.Index)
			case stepCollective:
				err = l.collective(ctx, exec, st.Index)
			}
			if err != nil {
				l.release()
				if errors.Is(err, errStopped) {
					return false
				}
				return l.fail(ctx, err)
			}
		}
		l.release()
	}
}

// errStopped ends the loop without a word: the graph is being torn down.
var errStopped = errors.New("the loop stopped")

// read returns this execution's message of reader i, reading it once.
func (l *loop) read(ctx context.Context, i int) ([]byte, error) {
	if !l.got[i] {
		m, err := l.readers[i].Read(ctx)
		if err != nil {
			return nil, err
		}
		l.msgs[i], l.got[i] = m, true
	}
	return l.msgs[i].Data, nil
}

// compute runs one method call: its arguments are read and decoded, the
// method runs, its results go to their rings and local slots.
func (l *loop) compute(ctx, mctx context.Context, exec uint64, op *resolvedOp) error {
	args := op.in[2:]
	var failed *rpc.ErrorInfo
	var t0 time.Time
	if l.prof != nil {
		t0 = time.Now()
	}
	for j, a := range op.spec.Args {
		if failed != nil {
			// The call is skipped, but each of its rings must still be read
			// once for this execution, or they would fall a message behind
			// the others.
			if k := argKind(a.Kind); k == argRing || k == argInput {
				if _, err := l.read(ctx, a.Read); err != nil {
					return err
				}
			}
			continue
		}
		switch argKind(a.Kind) {
		case argConst:
			args[j] = op.consts[j]
		case argLocal:
			lv := l.locals[a.Local]
			if lv.err != nil {
				failed = lv.err
			} else {
				args[j] = lv.v
			}
		case argRing, argInput:
			data, err := l.read(ctx, a.Read)
			if err != nil {
				return err
			}
			if len(data) < msgHdr {
				failed = sysError(rpc.ErrorKind_ERROR_SYSTEM, fmt.Sprintf("a message of %d bytes on a graph channel", len(data)))
				break
			}
			if data[0] == tagError {
				failed = decodeErrorInfo(data[msgHdr:])
				break
			}
			if data[0] == tagIPC {
				t, err := l.readIPC(a.Read, data[msgHdr:])
				if err != nil {
					failed = sysError(rpc.ErrorKind_ERROR_SYSTEM, fmt.Sprintf("%s argument %d: %v", op.name, j+1, err))
					break
				}
				args[j] = reflect.ValueOf(t)
				continue
			}
			data = data[msgHdr:]
			if argKind(a.Kind) == argInput {
				if l.attrs[a.Read] == nil {
					fr, err := splitFrames(l.frameBufs[a.Read][:0], data)
					if err != nil {
						failed = sysError(rpc.ErrorKind_ERROR_SYSTEM, err.Error())
						break
					}
					l.attrs[a.Read], l.frameBufs[a.Read] = fr, fr
				}
				if a.Attr >= len(l.attrs[a.Read]) {
					failed = sysError(rpc.ErrorKind_ERROR_SYSTEM, "the input has fewer attributes than the graph uses")
					break
				}
				data = l.attrs[a.Read][a.Attr]
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
		res, err, stack, panicked := l.ha.InvokeIn(mctx, op.fn, op.in, op.out[:0])
		if err != nil {
			if ctx.Err() != nil {
				return errStopped
			}
			failed = worker.ErrorInfoOf(op.name, op.name, err, stack, panicked)
		}
		results = res
	}
	if l.prof != nil {
		t0 = l.prof.add(exec, op.name, "COMPUTE", t0)
		l.prof.writing.Lock()
		defer l.prof.writing.Unlock()
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
			l.locals[out.Local] = value{v: rv, err: failed}
		}
		if out.Write < 0 {
			continue
		}
		var err error
		if failed != nil {
			err = writeError(ctx, l.writers[out.Write], failed)
		} else if out.IPC {
			err = l.writeIPC(ctx, out.Write, l.writers[out.Write], rv)
		} else {
			l.enc, err = writeValue(ctx, l.writers[out.Write], rv, l.enc)
			if errors.Is(err, errs.ErrBadArgument) {
				err = writeError(ctx, l.writers[out.Write], sysError(rpc.ErrorKind_ERROR_BAD_ARGUMENT, fmt.Sprintf("%s result %d: %v", op.name, k+1, err)))
			}
		}
		if err != nil {
			return err
		}
	}
	if l.prof != nil {
		l.prof.add(exec, op.name, "WRITE", t0)
	}
	return nil
}

func (l *loop) release() {
	for i, ok := range l.got {
		if ok {
			l.msgs[i].Release()
			l.got[i] = false
		}
	}
}

// fail ends the loop after a channel or communicator error. A peer that
// died (or a communicator that failed) is reported downstream as the
// graph's end (the driver tears the graph down); a closed channel is a
// teardown and needs no word. It reports whether it wrote the error.
func (l *loop) fail(ctx context.Context, err error) bool {
	if errors.Is(err, channel.ErrChannelClosed) || ctx.Err() != nil {
		return false
	}
	what := "an actor of the graph died"
	if !errors.Is(err, channel.ErrPeerDied) && !errors.Is(err, nccl.ErrPeerDied) {
		what = "the graph's loop failed" // e.g. a communicator's error: the graph cannot go on
	}
	info := sysError(rpc.ErrorKind_ERROR_ACTOR_DIED, fmt.Sprintf("%v: %s (seen by %s: %v)", errs.ErrActorDied, what, l.ha.Class().Name, err))
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	for _, w := range l.writers {
		writeError(wctx, w, info)
	}
	return true
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
	buf, err := w.Reserve(ctx, msgHdr+len(b))
	if err != nil {
		return err
	}
	putHeader(buf, tagError)
	copy(buf[msgHdr:], b)
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
	buf, err := w.Reserve(ctx, msgHdr+e.Size())
	if err != nil {
		return scratch, err
	}
	putHeader(buf, tagValue)
	e.WriteTo(buf[msgHdr:])
	return scratch, w.Commit(channel.KindData)
}

// The input message, after its header: the number of attributes, then
// each attribute's encoding with its length, all as 8-byte little-endian
// words and each encoding padded to 8 bytes, so every attribute starts
// 8-byte aligned.
func appendFrames(dst []byte, frames []codec.Encoded) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(frames)))
	for _, f := range frames {
		n := f.Size()
		dst = binary.LittleEndian.AppendUint64(dst, uint64(n))
		dst = f.AppendTo(dst)
		for range (8 - n%8) % 8 {
			dst = append(dst, 0)
		}
	}
	return dst
}

func splitFrames(out [][]byte, b []byte) ([][]byte, error) {
	if len(b) < 8 {
		return nil, errors.New("a malformed graph input (attribute count)")
	}
	n := binary.LittleEndian.Uint64(b)
	b = b[8:]
	if n > uint64(len(b))/8 {
		return nil, errors.New("a malformed graph input (attribute count)")
	}
	for range n {
		if len(b) < 8 {
			return nil, errors.New("a malformed graph input (attribute length)")
		}
		l := binary.LittleEndian.Uint64(b)
		b = b[8:]
		padded := l + (8-l%8)%8
		if l > uint64(len(b)) || padded > uint64(len(b)) {
			return nil, errors.New("a malformed graph input (attribute length)")
		}
		out = append(out, b[:l:l])
		b = b[padded:]
	}
	return out, nil
}
