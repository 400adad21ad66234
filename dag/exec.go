package dag

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/channel"
	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/bridge"
	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/refwait"
	"github.com/goray/goray/internal/worker"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// Errors of compiled graphs (the same values as core's).
var (
	ErrCapacityExceeded = errs.ErrCapacityExceeded
	ErrChannelClosed    = errs.ErrChannelClosed
	ErrTimeout          = errs.ErrTimeout
	ErrActorDied        = errs.ErrActorDied
)

// live holds, in this process, the actors of graphs not yet torn down: an
// actor takes part in one live graph at a time.
var (
	liveMu sync.Mutex
	live   = map[ids.ActorID]string{}
)

// CompiledDAG is a compiled graph, ready to Execute.
type CompiledDAG struct {
	id   string
	p    *plan
	cfg  config
	rt   *core.Runtime
	w    *worker.CoreWorker // the driver's: it reports execution latencies
	dot  string
	ring []*channel.Ring // the driver's handles (it created them)

	// Submission.
	submitMu sync.Mutex
	in       *channel.RingWriter
	seq      uint64 // executions submitted
	frames   []codec.Encoded
	buf      []byte

	// Results.
	readMu   sync.Mutex
	outs     []*channel.RingReader // one per distinct output ring
	outIndex []int                 // per graph output: index into outs
	read     []uint64              // per output ring: messages read
	next     uint64                // the execution being assembled
	partial  []any
	have     []bool
	perr     error
	results  map[uint64]result // settled, for Gets still to come
	want     uint64            // the execution the running Get waits for,
	wanting  bool              // if one runs
	mine     result            // its result, not buffered
	hasMine  bool
	gotten   uint64 // futures whose Get has returned (or given up)
	room     chan struct{}

	closeOnce  sync.Once
	closed     chan struct{}
	endsClosed chan struct{} // closed once the driver's ring ends are
	broken     error         // the graph's fatal error (an actor died)
	brokenMu   sync.Mutex
}

type result struct {
	v   any
	err error
}

// Compile checks the graph ending in out, allocates its channels and starts
// an execution loop in each of its actors.
func Compile(ctx context.Context, out Node, opts ...CompileOption) (*CompiledDAG, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, fmt.Errorf("dag: compile: %w: %w", errs.ErrBadArgument, err)
	}
	p, err := buildPlan(out, func(h *actor.Handle) ([]int, error) {
		ref := bridge.SystemCall(h, bridge.FuncOf(gpusOf), []any{true}).([]*core.ObjectRef)[0]
		defer core.Free(ref)
		return core.Get[[]int](ctx, ref)
	})
	if err != nil {
		return nil, err
	}
	if len(p.comms) > 0 && cfg.comm == nil {
		if cfg.comm, err = nccl.Lookup("nccl"); err != nil {
			return nil, fmt.Errorf("dag: compile: %w", err)
		}
	}
	_, _, rtAny, err := bridge.HandleInfo(p.actors[0].h)
	if err != nil {
		return nil, fmt.Errorf("dag: compile: %w", err)
	}
	var idb [6]byte
	rand.Read(idb[:])
	g := &CompiledDAG{id: hex.EncodeToString(idb[:]), p: p, cfg: cfg, rt: rtAny.(*core.Runtime), w: bridge.Worker(rtAny),
		results: map[uint64]result{}, closed: make(chan struct{}), room: make(chan struct{}, 1)}
	g.dot = visualize(p)

	liveMu.Lock()
	for _, a := range p.actors {
		if other, ok := live[a.id]; ok {
			liveMu.Unlock()
			return nil, fmt.Errorf("dag: compile: %w: actor %s is already part of graph %s: tear that graph down first", errs.ErrBadArgument, a.label, other)
		}
	}
	for _, a := range p.actors {
		live[a.id] = g.id
	}
	liveMu.Unlock()
	if err := g.setup(ctx); err != nil {
		g.Teardown()
		return nil, err
	}
	return g, nil
}

// setup makes the rings and starts the actors' loops.
func (g *CompiledDAG) setup(ctx context.Context) error {
	opts := []channel.Option{channel.Slots(g.cfg.maxInflight), channel.SlotSize(g.cfg.bufferSize)}
	for i, rp := range g.p.rings {
		r, err := channel.NewShm(fmt.Sprintf("dag.%s.%d", g.id, i), len(rp.readers), opts...)
		if err != nil {
			return fmt.Errorf("dag: compile: channel %s: %w", rp.label, err)
		}
		g.ring = append(g.ring, r)
	}
	var err error
	if g.in, err = g.ring[0].Writer(); err != nil {
		return err
	}
	outRing := map[int]int{}
	for _, o := range g.p.outputs {
		i, ok := outRing[o.ring]
		if !ok {
			i = len(g.outs)
			outRing[o.ring] = i
			rd, err := g.ring[o.ring].Reader(g.p.rings[o.ring].readerIndex(driver))
			if err != nil {
				return err
			}
			g.outs = append(g.outs, rd)
		}
		g.outIndex = append(g.outIndex, i)
	}
	g.read = make([]uint64, len(g.outs))
	g.partial = make([]any, len(g.outs))
	g.have = make([]bool, len(g.outs))

	ids, err := g.commIDs(ctx)
	if err != nil {
		return err
	}
	refs := make([]*core.ObjectRef, len(g.p.actors))
	for ai, a := range g.p.actors {
		spec, err := g.loopSpec(ai, ids)
		if err != nil {
			return err
		}
		refs[ai] = bridge.SystemCall(a.h, bridge.FuncOf(startLoop), []any{spec}).([]*core.ObjectRef)[0]
	}
	// Every start at once: on the first failure, the others (which may
	// wait in a communicator's join for the actor that failed) are
	// cancelled, so that they let go at once.
	return refwait.AllOrCancel(ctx, refs, func(ai int, err error) error {
		return fmt.Errorf("dag: compile: start the loop in actor %s: %w", g.p.actors[ai].label, err)
	})
}

// commIDs asks each communicator's first rank for a unique ID.
func (g *CompiledDAG) commIDs(ctx context.Context) ([][]byte, error) {
	refs := make([]*core.ObjectRef, len(g.p.comms))
	for i, c := range g.p.comms {
		refs[i] = bridge.SystemCall(g.p.actors[c.actors[0]].h, bridge.FuncOf(commID), []any{g.cfg.comm.Name()}).([]*core.ObjectRef)[0]
	}
	ids := make([][]byte, len(refs))
	for i, r := range refs {
		id, err := core.Get[[]byte](ctx, r)
		core.Free(r)
		if err != nil {
			return nil, fmt.Errorf("dag: compile: make communicator %d's unique ID in actor %s: %w", i, g.p.actors[g.p.comms[i].actors[0]].label, err)
		}
		ids[i] = id
	}
	return ids, nil
}

func (g *CompiledDAG) loopSpec(ai int, commIDs [][]byte) (loopSpec, error) {
	a := g.p.actors[ai]
	spec := loopSpec{Graph: g.id, Locals: a.locals, Profile: g.cfg.profile, Slots: g.cfg.maxInflight}
	readIdx := map[int]int{}
	writeIdx := map[int]int{}
	read := func(r int) int {
		if i, ok := readIdx[r]; ok {
			return i
		}
		i := len(spec.Reads)
		readIdx[r] = i
		spec.Reads = append(spec.Reads, ringRef{Name: g.ring[r].Name(), Reader: g.p.rings[r].readerIndex(ai)})
		return i
	}
	write := func(r int) int {
		i, ok := writeIdx[r]
		if !ok {
			i = len(spec.Writes)
			writeIdx[r] = i
			spec.Writes = append(spec.Writes, g.ring[r].Name())
		}
		return i
	}
	for _, op := range a.ops {
		os := opSpec{Method: strings.TrimPrefix(op.fn.Name, a.class.Name+".")}
		for _, ap := range op.args {
			as := argSpec{Kind: int(ap.kind), Local: ap.local, Attr: ap.attr}
			switch ap.kind {
			case argConst:
				if ap.value != nil {
					e, err := codec.Encode(ap.value)
					if err != nil {
						return spec, fmt.Errorf("dag: compile: %s: %w", op.fn.Name, err)
					}
					as.Const = e.Bytes()
				} else {
					as.Const = mustEncodeNil()
				}
			case argRing, argInput:
				as.Read = read(ap.ring)
			}
			os.Args = append(os.Args, as)
		}
		for _, o := range op.outs {
			w := -1
			if o.ring >= 0 {
				w = write(o.ring)
			}
			os.Outs = append(os.Outs, outSpec{Write: w, Local: o.local, IPC: o.ring >= 0 && g.p.rings[o.ring].ipc})
		}
		spec.Ops = append(spec.Ops, os)
	}
	commIdx := map[int]int{}
	comm := func(c int) int {
		if i, ok := commIdx[c]; ok {
			return i
		}
		cp := g.p.comms[c]
		dev := -1
		if g.p.gpus != nil && len(g.p.gpus[ai]) > 0 {
			dev = 0 // CUDA_VISIBLE_DEVICES holds the actor's GPUs
		}
		commIdx[c] = len(spec.Comms)
		spec.Comms = append(spec.Comms, commSpec{Backend: g.cfg.comm.Name(), ID: commIDs[c], Rank: cp.rank(ai), Size: len(cp.actors), Device: dev})
		return commIdx[c]
	}
	for _, st := range a.steps {
		ss := stepSpec{Kind: int(st.kind), Index: st.index}
		switch st.kind {
		case stepSend:
			x := g.p.xfers[st.index]
			s := sendSpec{Name: x.label, Local: x.src, Write: write(x.ring), Comm: comm(x.comm)}
			for _, r := range x.readers {
				s.Peers = append(s.Peers, g.p.comms[x.comm].rank(r))
			}
			ss.Index = len(spec.Sends)
			spec.Sends = append(spec.Sends, s)
		case stepRecv:
			x := g.p.xfers[st.index]
			j := slices.Index(x.readers, ai)
			ss.Index = len(spec.Recvs)
			spec.Recvs = append(spec.Recvs, recvSpec{Name: x.label, Read: read(x.ring), Local: x.dst[j], Comm: comm(x.comm), Peer: g.p.comms[x.comm].rank(x.producer)})
		case stepCollective:
			c := g.p.colls[st.index]
			j := slices.Index(c.actors, ai)
			ss.Index = len(spec.Colls)
			spec.Colls = append(spec.Colls, collSpec{Name: describe(c.node), Kind: int(c.kind), Op: int(c.op), Comm: comm(c.comm), In: c.in[j], Out: c.out[j]})
		}
		spec.Steps = append(spec.Steps, ss)
	}
	return spec, nil
}

func mustEncodeNil() []byte {
	e, _ := codec.Encode(nil)
	return e.Bytes()
}

// ID names the graph (in its channels' names and errors).
func (g *CompiledDAG) ID() string { return g.id }

// Visualize returns the graph in Graphviz DOT: actors, methods, and each
// edge's channel.
func (g *CompiledDAG) Visualize() string { return g.dot }

// Future is one execution's result.
type Future struct {
	g     *CompiledDAG
	seq   uint64
	start time.Time // Execute's
	mu    sync.Mutex
	done  bool
}

// Execute runs the graph once on args and returns its result's future. It
// waits only while MaxInflight executions are unread (up to the submit
// timeout, then ErrCapacityExceeded) or the input channel is full. It is
// safe to call from several goroutines; each future gets its own
// execution's result.
func (g *CompiledDAG) Execute(ctx context.Context, args ...any) (*Future, error) {
	start := time.Now()
	if err := g.check(); err != nil {
		return nil, err
	}
	frames, err := g.encodeInput(args)
	if err != nil {
		return nil, err
	}
	g.submitMu.Lock()
	defer g.submitMu.Unlock()
	// Back-pressure: at most MaxInflight executions unread.
	var deadline <-chan time.Time
	for {
		g.readMu.Lock()
		unread := g.seq - g.gotten
		g.readMu.Unlock()
		if unread < uint64(g.cfg.maxInflight) {
			break
		}
		if g.cfg.submitTimeout == 0 {
			return nil, fmt.Errorf("dag: execute: %w: %d executions are unread (MaxInflight %d): Get some first", errs.ErrCapacityExceeded, unread, g.cfg.maxInflight)
		}
		if deadline == nil && g.cfg.submitTimeout > 0 {
			t := time.NewTimer(g.cfg.submitTimeout)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-g.room:
		case <-deadline:
			return nil, fmt.Errorf("dag: execute: %w: %d executions unread for the submit timeout (%v; MaxInflight %d): Get some first", errs.ErrCapacityExceeded, unread, g.cfg.submitTimeout, g.cfg.maxInflight)
		case <-ctx.Done():
			return nil, fmt.Errorf("dag: execute: %w", ctx.Err())
		case <-g.closed:
			return nil, g.closedErr("execute")
		}
	}
	g.buf = append(g.buf[:0], make([]byte, msgHdr)...)
	putHeader(g.buf, tagValue)
	g.buf = appendFrames(g.buf, frames)
	wctx, cancel := g.timeout(ctx, g.cfg.submitTimeout)
	defer cancel()
	if err := g.in.Write(wctx, g.buf); err != nil {
		if errors.Is(err, channel.ErrPeerDied) {
			g.breakGraph(fmt.Errorf("dag: execute: %w: an actor of the graph died (%v)", errs.ErrActorDied, err))
		}
		if e := g.check(); e != nil {
			return nil, e
		}
		return nil, fmt.Errorf("dag: execute: %w", err)
	}
	f := &Future{g: g, seq: g.seq, start: start}
	g.seq++
	return f, nil
}

// timeout bounds ctx by d (0: already expired; negative: unbounded)
// without a timer: the rings check deadlines themselves, and a timer per
// Execute and Get would cost more than the rest of the call.
func (g *CompiledDAG) timeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d < 0 {
		return ctx, func() {}
	}
	return deadlineCtx{Context: ctx, d: time.Now().Add(d)}, func() {}
}

// deadlineCtx is ctx with an earlier deadline and no timer: Done is the
// parent's (cancellation), Deadline and Err include the deadline.
type deadlineCtx struct {
	context.Context
	d time.Time
}

func (c deadlineCtx) Deadline() (time.Time, bool) {
	if pd, ok := c.Context.Deadline(); ok && pd.Before(c.d) {
		return pd, true
	}
	return c.d, true
}

func (c deadlineCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.d) {
		return context.DeadlineExceeded
	}
	return nil
}

// encodeInput encodes the attributes the graph reads from Execute's args.
func (g *CompiledDAG) encodeInput(args []any) ([]codec.Encoded, error) {
	attrs := g.p.attrs
	if attrs[0].whole || attrs[0].index < 0 {
		if len(args) != 1 {
			return nil, fmt.Errorf("dag: execute: %w: the graph takes 1 argument (%s), got %d", errs.ErrBadArgument, describeInput(attrs), len(args))
		}
	} else if len(args) != len(attrs) {
		return nil, fmt.Errorf("dag: execute: %w: the graph takes %d arguments (%s), got %d", errs.ErrBadArgument, len(attrs), describeInput(attrs), len(args))
	}
	frames := make([]codec.Encoded, len(attrs))
	for i, a := range attrs {
		var v any
		switch {
		case a.whole:
			v = args[0]
		case a.index >= 0:
			v = args[a.index]
		default:
			x, err := keyOf(args[0], a.key)
			if err != nil {
				return nil, fmt.Errorf("dag: execute: %w: %w", errs.ErrBadArgument, err)
			}
			v = x
		}
		e, err := codec.Encode(v)
		if err != nil {
			return nil, fmt.Errorf("dag: execute: %s: %w: %w", a, errs.ErrBadArgument, err)
		}
		frames[i] = e
	}
	return frames, nil
}

func describeInput(attrs []inputAttr) string {
	s := make([]string, len(attrs))
	for i, a := range attrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// keyOf is field k of a struct (or key k of a map with string keys).
func keyOf(x any, k string) (any, error) {
	v := reflect.ValueOf(x)
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct:
		f := v.FieldByName(k)
		if !f.IsValid() {
			return nil, fmt.Errorf("Input().Key(%q): %v has no field %s", k, v.Type(), k)
		}
		if sf, _ := v.Type().FieldByName(k); !sf.IsExported() {
			return nil, fmt.Errorf("Input().Key(%q): field %s of %v is not exported", k, k, v.Type())
		}
		return f.Interface(), nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("Input().Key(%q): a map keyed by %v, want string keys", k, v.Type().Key())
		}
		e := v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key()))
		if !e.IsValid() {
			return nil, fmt.Errorf("Input().Key(%q): the map has no key %q", k, k)
		}
		return e.Interface(), nil
	}
	return nil, fmt.Errorf("Input().Key(%q): the argument is a %T, want a struct or a map", k, x)
}

// Get waits for the execution's result: the output's value (MultiOutput:
// []any, in order), or its error (an application error is a
// *core.TaskError). Get may be called once; results of earlier executions
// not yet read are kept meanwhile.
func (f *Future) Get(ctx context.Context) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return nil, fmt.Errorf("dag: get: %w: Get was already called on this future", errs.ErrBadArgument)
	}
	v, err := f.g.get(ctx, f.seq)
	if err == nil || !errors.Is(err, errs.ErrTimeout) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		f.done = true
		// The cluster's metrics: executions and their latency, Execute to Get.
		f.g.w.RecordLatency("dag_execution", time.Since(f.start))
		f.g.readMu.Lock()
		f.g.gotten++
		f.g.readMu.Unlock()
		select {
		case f.g.room <- struct{}{}:
		default:
		}
	}
	return v, err
}

// Get is Future.Get as a T.
func Get[T any](ctx context.Context, f *Future) (T, error) {
	var zero T
	v, err := f.Get(ctx)
	if err != nil {
		return zero, err
	}
	if v == nil {
		return zero, nil
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("dag: get: %w: the result is a %T, not a %v", errs.ErrBadArgument, v, reflect.TypeFor[T]())
	}
	return t, nil
}

func (g *CompiledDAG) get(ctx context.Context, seq uint64) (any, error) {
	if g.cfg.getTimeout >= 0 {
		var cancel context.CancelFunc
		ctx, cancel = g.timeout(ctx, g.cfg.getTimeout)
		defer cancel()
	}
	g.readMu.Lock()
	defer g.readMu.Unlock()
	g.want, g.wanting = seq, true
	defer func() { g.wanting = false }()
	for {
		if g.hasMine {
			r := g.mine
			g.mine, g.hasMine = result{}, false
			return r.v, r.err
		}
		if r, ok := g.results[seq]; ok {
			delete(g.results, seq)
			return r.v, r.err
		}
		if err := g.check(); err != nil {
			return nil, err
		}
		if err := g.assemble(ctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errs.ErrTimeout) {
				return nil, fmt.Errorf("dag: get: %w: no result within the get timeout", errs.ErrTimeout)
			}
			return nil, err
		}
	}
}

// assemble reads the outputs of execution g.next and stores its result.
// An error from one output settles the execution at once (the others'
// messages for it are skipped when they come): a failing branch does not
// wait for a slow sibling.
func (g *CompiledDAG) assemble(ctx context.Context) error {
	for {
		pending := 0
		progressed := false
		for i, rd := range g.outs {
			if g.read[i] > g.next {
				continue // already read for this execution
			}
			pending++
			if len(g.outs) > 1 && !rd.Ready() {
				continue
			}
			if err := g.readOne(ctx, i); err != nil {
				return err
			}
			progressed = true
		}
		if g.perr != nil || pending == 0 || g.allHave() {
			g.settle()
			return nil
		}
		if progressed {
			continue
		}
		// Nothing ready: wait on the first pending output for a moment.
		for i := range g.outs {
			if g.read[i] <= g.next {
				wctx, cancel := g.timeout(ctx, 200*time.Microsecond)
				err := g.waitReady(wctx, i)
				cancel()
				if err != nil && ctx.Err() != nil {
					return ctx.Err()
				}
				break
			}
		}
	}
}

func (g *CompiledDAG) allHave() bool {
	for i := range g.outs {
		if !g.have[i] {
			return false
		}
	}
	return true
}

// waitReady waits until output i has a message (single-output graphs read
// directly instead).
func (g *CompiledDAG) waitReady(ctx context.Context, i int) error {
	for !g.outs[i].Ready() {
		if err := ctx.Err(); err != nil {
			return err
		}
		runtime.Gosched()
	}
	return nil
}

// readOne reads output ring i's next message: for execution g.next, or a
// stale one of an execution already settled by an error elsewhere.
func (g *CompiledDAG) readOne(ctx context.Context, i int) error {
	m, err := g.outs[i].Read(ctx)
	if err != nil {
		switch {
		case errors.Is(err, channel.ErrPeerDied):
			err = fmt.Errorf("dag: get: %w: an actor of the graph died (%v)", errs.ErrActorDied, err)
			g.breakGraph(err)
			return err
		case errors.Is(err, channel.ErrChannelClosed):
			return g.closedErr("get")
		}
		return err
	}
	seq := g.read[i]
	g.read[i]++
	if seq < g.next { // an execution already settled by another output's error
		m.Release()
		return nil
	}
	v, verr := decodeOutput(m.Data, g.p.outputs[g.firstOutput(i)].typ)
	m.Release()
	if verr != nil {
		var te *core.TaskError
		if errors.As(verr, &te) && errors.Is(verr, errs.ErrActorDied) {
			g.breakGraph(verr)
		}
		if g.perr == nil {
			g.perr = verr
		}
		return nil
	}
	g.partial[i], g.have[i] = v, true
	return nil
}

func (g *CompiledDAG) firstOutput(ring int) int {
	for k, i := range g.outIndex {
		if i == ring {
			return k
		}
	}
	return 0
}

// settle stores the result of execution g.next and moves on.
func (g *CompiledDAG) settle() {
	var r result
	switch {
	case g.perr != nil:
		r.err = g.perr
	case g.p.multi:
		vals := make([]any, len(g.outIndex))
		for k, i := range g.outIndex {
			vals[k] = g.partial[i]
		}
		r.v = vals
	default:
		r.v = g.partial[0]
	}
	switch {
	case g.wanting && g.next == g.want:
		g.mine, g.hasMine = r, true // straight to the Get waiting for it
	case len(g.results) >= g.cfg.maxBuffered:
		g.results[g.next] = result{err: fmt.Errorf("dag: get: %w: more than %d earlier results were buffered unread (MaxBufferedResults)", errs.ErrCapacityExceeded, g.cfg.maxBuffered)}
	default:
		g.results[g.next] = r
	}
	g.next++
	g.perr = nil
	clear(g.partial)
	clear(g.have)
}

func decodeOutput(data []byte, typ reflect.Type) (any, error) {
	if len(data) < msgHdr {
		return nil, fmt.Errorf("dag: a message of %d bytes on an output channel", len(data))
	}
	if data[0] == tagError {
		info := decodeErrorInfo(data[msgHdr:])
		return nil, worker.ErrorFromInfo(info)
	}
	if typ == nil {
		typ = reflect.TypeFor[any]()
	}
	v, err := codec.Decode(data[msgHdr:], typ)
	if err != nil {
		return nil, fmt.Errorf("dag: decode a result as %v: %w", typ, err)
	}
	if !v.IsValid() {
		return nil, nil
	}
	if codec.IsRaw(data[msgHdr:]) {
		// A raw slice or tensor aliases the ring's slot, which is reused:
		// copy it.
		switch x := v.Interface().(type) {
		case *tensor.Tensor:
			return x.Clone()
		case tensor.Tensor:
			c, err := x.Clone()
			if err != nil {
				return nil, err
			}
			return *c, nil
		}
		if v.Kind() == reflect.Slice {
			c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			reflect.Copy(c, v)
			v = c
		}
	}
	return v.Interface(), nil
}

func (g *CompiledDAG) check() error {
	g.brokenMu.Lock()
	b := g.broken
	g.brokenMu.Unlock()
	if b != nil {
		return b
	}
	select {
	case <-g.closed:
		return g.closedErr("use")
	default:
	}
	return nil
}

func (g *CompiledDAG) closedErr(op string) error {
	g.brokenMu.Lock()
	b := g.broken
	g.brokenMu.Unlock()
	if b != nil {
		return b
	}
	return fmt.Errorf("dag: %s: %w: the graph was torn down", op, errs.ErrChannelClosed)
}

// breakGraph tears the graph down after an actor died: every later call
// returns err.
func (g *CompiledDAG) breakGraph(err error) {
	g.brokenMu.Lock()
	if g.broken == nil {
		g.broken = err
	}
	g.brokenMu.Unlock()
	g.Teardown() // the surviving actors are free for another graph at once
}

// Teardown stops the graph: its channels are closed and unlinked, the
// actors' loops end, and the actors stay alive for other calls and graphs.
// It is idempotent.
func (g *CompiledDAG) Teardown() error {
	var err error
	g.closeOnce.Do(func() {
		close(g.closed)
		for _, r := range g.ring {
			if e := r.Close(); e != nil && err == nil {
				err = e
			}
		}
		// The driver's own ends keep their rings mapped until closed. A
		// Get or Execute may hold them (and may be what called Teardown):
		// the rings are closed, so it returns at once and lets go.
		g.endsClosed = make(chan struct{})
		go func() {
			defer close(g.endsClosed)
			g.submitMu.Lock()
			if g.in != nil {
				g.in.Close()
			}
			g.submitMu.Unlock()
			g.readMu.Lock()
			for _, rd := range g.outs {
				rd.Close()
			}
			g.readMu.Unlock()
		}()
		var wg sync.WaitGroup
		for _, a := range g.p.actors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ref := bridge.SystemCall(a.h, bridge.FuncOf(stopLoop), []any{g.id}).([]*core.ObjectRef)[0]
				core.Get[bool](ctx, ref) // a dead actor's loop is gone anyway
				core.Free(ref)
			}()
		}
		wg.Wait()
		liveMu.Lock()
		for _, a := range g.p.actors {
			if live[a.id] == g.id {
				delete(live, a.id)
			}
		}
		liveMu.Unlock()
	})
	return err
}
