package dag

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/internal/bridge"
	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/worker"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

// CompileOption configures Compile.
type CompileOption func(*config)

type config struct {
	maxInflight   int
	bufferSize    int
	submitTimeout time.Duration
	getTimeout    time.Duration
	maxBuffered   int
	profile       bool
	comm          nccl.Backend // nil: the "nccl" backend
	errs          []error
}

func defaultConfig() config {
	return config{maxInflight: 10, bufferSize: 1 << 20, submitTimeout: 10 * time.Second,
		getTimeout: 10 * time.Second, maxBuffered: 1000}
}

// MaxInflight bounds the executions not yet read with Get (default 10):
// one more waits up to the submit timeout, then fails with
// ErrCapacityExceeded. It is also each channel's number of slots.
func MaxInflight(n int) CompileOption {
	return func(c *config) {
		if n < 1 {
			c.errs = append(c.errs, fmt.Errorf("MaxInflight(%d): want ≥ 1", n))
		}
		c.maxInflight = n
	}
}

// BufferSize is each channel slot's size (default 1 MiB); a larger value
// still travels, through a segment of its own.
func BufferSize(bytes int) CompileOption {
	return func(c *config) {
		if bytes < 64 {
			c.errs = append(c.errs, fmt.Errorf("BufferSize(%d): want ≥ 64 bytes", bytes))
		}
		c.bufferSize = bytes
	}
}

// SubmitTimeout bounds how long Execute waits for room (default 10 s; 0:
// try once; negative: forever).
func SubmitTimeout(d time.Duration) CompileOption { return func(c *config) { c.submitTimeout = d } }

// GetTimeout bounds how long Future.Get waits for a result (default 10 s;
// 0: try once; negative: forever), unless its ctx ends first.
func GetTimeout(d time.Duration) CompileOption { return func(c *config) { c.getTimeout = d } }

// MaxBufferedResults bounds the results of earlier executions Get keeps
// while it reads a later one (default 1000).
func MaxBufferedResults(n int) CompileOption {
	return func(c *config) {
		if n < 1 {
			c.errs = append(c.errs, fmt.Errorf("MaxBufferedResults(%d): want ≥ 1", n))
		}
		c.maxBuffered = n
	}
}

// Communicator picks the backend of the communicators the graph creates
// for its NCCL edges and collectives (default: the "nccl" backend, over the
// GPUs the actors hold). nccl.CPU runs the same graph on host tensors over
// shared memory; a backend of your own must be registered (nccl.Register)
// in every process of the binary, as Ray's custom communicators are.
func Communicator(b nccl.Backend) CompileOption {
	return func(c *config) {
		if b == nil {
			c.errs = append(c.errs, errors.New("Communicator(nil): pass a backend, e.g. nccl.CPU"))
			return
		}
		if _, err := nccl.Lookup(b.Name()); err != nil {
			c.errs = append(c.errs, fmt.Errorf("Communicator(%s): %w", b.Name(), err))
		}
		c.comm = b
	}
}

// ---------------------------------------------------------------- plan

// A plan is a compiled graph before any channel exists: what each actor
// does per execution and which channels join them. It is pure data, built
// and checked without touching a process.
type plan struct {
	actors  []*actorPlan
	rings   []*ringPlan // rings[0] is the input
	attrs   []inputAttr // what Execute encodes, in this order
	outputs []outputPlan
	multi   bool
	xfers   []*xferPlan // NCCL edges
	colls   []*collPlan
	comms   []*commPlan
	gpus    [][]int // per actor, when the plan needed to know (Auto edges, communicators)
}

// xferPlan is a value sent over a communicator from its producer to
// readers on other actors: its metadata through ring, its data by
// Send/Recv.
type xferPlan struct {
	label    string
	producer int
	node     *MethodNode // the producer's call
	index    int         // which result
	src      int         // the producer's local slot holding the value
	ring     int         // the metadata ring
	readers  []int       // actors
	dst      []int       // per reader: its local slot for the received tensor
	comm     int
}

// collPlan is a collective: participant i is actor actors[i], rank i of
// comm, reading local in[i] and writing local out[i].
type collPlan struct {
	kind    collKind
	op      nccl.ReduceOp
	node    *CollectiveNode
	actors  []int
	in, out []int
	comm    int
}

// commPlan is a communicator: rank i is actor actors[i].
type commPlan struct {
	actors []int
}

func (c *commPlan) rank(actor int) int { return slices.Index(c.actors, actor) }

// stepKind is what one step of an actor's schedule does.
type stepKind int

const (
	stepCompute    stepKind = iota // run ops[index]
	stepSend                       // xfers[index]: write metadata, send the data
	stepRecv                       // xfers[index]: read metadata, receive the data
	stepCollective                 // colls[index]
)

type stepPlan struct {
	kind  stepKind
	index int
}

type inputAttr struct {
	index int // At(index); -1 for Key or the whole input
	key   string
	whole bool
}

func (a inputAttr) String() string {
	switch {
	case a.whole:
		return "input"
	case a.index >= 0:
		return fmt.Sprintf("input.At(%d)", a.index)
	}
	return fmt.Sprintf("input.Key(%q)", a.key)
}

const driver = -1 // a ring's writer or reader that is the driver

type ringPlan struct {
	label   string // "input", or "Class.method#result" of the producer
	writer  int    // actor index, or driver
	readers []int  // actor indexes, or driver; each once
	typ     reflect.Type
	ipc     bool // device tensors go through CUDA IPC (see useIPC)
}

func (r *ringPlan) readerIndex(actor int) int { return slices.Index(r.readers, actor) }

type actorPlan struct {
	h      *actor.Handle
	id     ids.ActorID
	class  *worker.Class
	label  string
	ops    []*opPlan
	steps  []stepPlan // the schedule: ops, sends, receives and collectives in order
	locals int        // local value slots per execution
}

type opPlan struct {
	node   *MethodNode
	fn     *worker.Function
	args   []argPlan
	outs   []outPlan // one per result of the method
	locals int       // how many local values the actor keeps per execution (set on the actor's first op)
}

type argKind int

const (
	argConst argKind = iota
	argRing          // read from a ring
	argLocal         // a result of an earlier op of the same actor
	argInput         // an input attribute, from the input ring
)

type argPlan struct {
	kind  argKind
	value any // argConst
	ring  int // argRing, argInput: the ring
	local int // argLocal: the value's slot
	attr  int // argInput: the attribute
	typ   reflect.Type
}

type outPlan struct {
	ring  int // the ring it is written to, or -1
	local int // its local slot, or -1
}

type outputPlan struct {
	ring int
	typ  reflect.Type
}

type valueKey struct {
	node  *MethodNode
	index int
}

// compileError is an invalid graph: Compile's error wraps ErrBadArgument.
func compileError(format string, args ...any) error {
	return fmt.Errorf("dag: compile: %w: "+format, append([]any{errs.ErrBadArgument}, args...)...)
}

// methodOf resolves a node to the method call and result index it stands
// for.
func methodOf(n Node) (*MethodNode, int, bool) {
	switch n := n.(type) {
	case *MethodNode:
		return n, 0, true
	case *OutputNode:
		return n.m, n.index, true
	}
	return nil, 0, false
}

func describe(n Node) string {
	switch n := n.(type) {
	case *InputNode:
		return "Input()"
	case *InputAttrNode:
		if n.index >= 0 {
			return fmt.Sprintf("Input().At(%d)", n.index)
		}
		return fmt.Sprintf("Input().Key(%q)", n.key)
	case *MethodNode:
		return fmt.Sprintf("Bind(%s, %q)", handleLabel(n.h), n.method)
	case *OutputNode:
		return fmt.Sprintf("Bind(%s, %q).Output(%d)", handleLabel(n.m.h), n.m.method, n.index)
	case *MultiOutputNode:
		return "MultiOutput"
	case *CollectiveNode:
		return fmt.Sprintf("%s(%d tensors)", n.kind, len(n.inputs))
	case *CollectiveOutputNode:
		return fmt.Sprintf("%s(%d tensors).Output(%d)", n.c.kind, len(n.c.inputs), n.index)
	}
	return fmt.Sprintf("%T", n)
}

func handleLabel(h *actor.Handle) string {
	if h == nil {
		return "<nil handle>"
	}
	id := h.ID()
	return h.Class() + "(" + id[:8] + ")"
}

// gpuInfo tells the planner which GPUs an actor holds (nil: none). Compile
// asks the actors; tests pass a table.
type gpuInfo func(h *actor.Handle) ([]int, error)

var tensorPtrType = reflect.TypeFor[*tensor.Tensor]()

// buildPlan checks the graph that ends in out and plans it.
func buildPlan(out Node, gpus gpuInfo) (*plan, error) {
	if out == nil {
		return nil, compileError("the output node is nil")
	}
	var outs []Node
	mo, multi := out.(*MultiOutputNode)
	if multi {
		if len(mo.nodes) == 0 {
			return nil, compileError("MultiOutput of no nodes")
		}
		outs = mo.nodes
	} else {
		outs = []Node{out}
	}
	g := out.base().g
	if g == nil || g.input == nil {
		return nil, compileError("%s does not depend on an Input(): every graph starts with one Input, and every call depends on it", describe(out))
	}
	for _, o := range outs {
		if o == nil {
			return nil, compileError("MultiOutput has a nil node")
		}
		if _, ok := o.(*CollectiveOutputNode); ok {
			return nil, compileError("the output %s is a collective's result, which stays on its actor: bind a method of that actor to it and output that", describe(o))
		}
		if _, _, ok := methodOf(o); !ok {
			return nil, compileError("the output %s is not a method call's result: bind a method to it", describe(o))
		}
		if o.base().g != g {
			return nil, compileError("%s belongs to another graph (another Input())", describe(o))
		}
	}

	// The method calls and collectives the outputs need, in bind order (a
	// topological order: a node's arguments exist before it).
	used := map[*MethodNode]bool{}
	usedColl := map[*CollectiveNode]bool{}
	attrsUsed := map[*InputAttrNode]bool{}
	wholeUsed := false
	var visit func(n Node) error
	visitArgs := func(from Node, args []Node) error {
		for _, an := range args {
			if an == nil {
				continue
			}
			if an.base().g != g {
				return compileError("%s takes %s, which belongs to another graph (another Input())", describe(from), describe(an))
			}
			if err := visit(an); err != nil {
				return err
			}
		}
		return nil
	}
	visit = func(n Node) error {
		switch n := n.(type) {
		case *InputNode:
			wholeUsed = true
			return nil
		case *InputAttrNode:
			attrsUsed[n] = true
			return nil
		case *CollectiveOutputNode:
			if usedColl[n.c] {
				return nil
			}
			usedColl[n.c] = true
			return visitArgs(n.c, n.c.inputs)
		}
		m, _, ok := methodOf(n)
		if !ok || used[m] {
			return nil
		}
		used[m] = true
		var args []Node
		for _, a := range m.args {
			if an, ok := a.(Node); ok {
				args = append(args, an)
			}
		}
		return visitArgs(m, args)
	}
	for _, o := range outs {
		if err := visit(o); err != nil {
			return nil, err
		}
	}
	g.mu.Lock()
	nodes := slices.Clone(g.nodes)
	g.mu.Unlock()
	var leaves []string
	var calls []*MethodNode
	var order []Node // used calls and collectives, in bind order
	for _, n := range nodes {
		switch n := n.(type) {
		case *MethodNode:
			if !used[n] {
				leaves = append(leaves, describe(n))
			} else {
				calls = append(calls, n)
				order = append(order, n)
			}
		case *OutputNode:
			if !used[n.m] {
				leaves = append(leaves, describe(n))
			}
		case *CollectiveNode:
			if !usedColl[n] {
				leaves = append(leaves, describe(n))
			} else {
				order = append(order, n)
			}
		}
	}
	if len(leaves) > 0 {
		return nil, compileError("%d leaf node(s) lead to no output: %s; make them part of the output (MultiOutput) or remove them", len(leaves), strings.Join(leaves, ", "))
	}

	p := &plan{multi: multi}
	// Input attributes.
	var attrNodes []*InputAttrNode
	for _, n := range nodes {
		if a, ok := n.(*InputAttrNode); ok {
			attrNodes = append(attrNodes, a)
		}
	}
	if wholeUsed && len(attrNodes) > 0 {
		return nil, compileError("the graph uses the whole Input() and also %s: use either the whole input or its attributes (At, Key), not both", describe(attrNodes[0]))
	}
	attrIndex := map[*InputAttrNode]int{}
	if wholeUsed {
		p.attrs = []inputAttr{{index: -1, whole: true}}
	} else {
		var unused []string
		maxAt, keys := -1, 0
		for _, a := range attrNodes {
			if !attrsUsed[a] {
				unused = append(unused, describe(a))
			}
			if a.index >= 0 {
				maxAt = max(maxAt, a.index)
			} else {
				keys++
			}
		}
		if len(unused) > 0 {
			return nil, compileError("declared input attributes are not used: %s", strings.Join(unused, ", "))
		}
		if maxAt >= 0 && keys > 0 {
			return nil, compileError("the graph mixes positional (At) and keyed (Key) input attributes: use one kind")
		}
		if maxAt >= 0 {
			for i := 0; i <= maxAt; i++ {
				if g.input.attrs[fmt.Sprintf("#%d", i)] == nil {
					return nil, compileError("Input().At(%d) is used but At(%d) is not: Execute's positional arguments must all be used", maxAt, i)
				}
			}
		}
		slices.SortFunc(attrNodes, func(a, b *InputAttrNode) int {
			if a.index != b.index {
				return a.index - b.index
			}
			return strings.Compare(a.key, b.key)
		})
		for _, a := range attrNodes {
			attrIndex[a] = len(p.attrs)
			p.attrs = append(p.attrs, inputAttr{index: a.index, key: a.key})
		}
	}
	p.rings = append(p.rings, &ringPlan{label: "input", writer: driver})

	// Actors, and each call's method.
	actorIdx := map[ids.ActorID]int{}
	opOf := map[*MethodNode]*opPlan{}
	actorOf := map[*MethodNode]int{}
	for _, m := range calls {
		if m.h == nil {
			return nil, compileError("%s: nil actor handle", describe(m))
		}
		if m.transport < Auto || m.transport > CUDAIPC {
			return nil, compileError("%s: unknown transport %v: use dag.Auto, dag.SharedMemory, dag.NCCL or dag.CUDAIPC", describe(m), m.transport)
		}
		id, class, _, err := bridge.HandleInfo(m.h)
		if err != nil {
			return nil, fmt.Errorf("dag: compile: %s: %w", describe(m), err)
		}
		fn, err := class.Method(m.method)
		if err != nil {
			return nil, compileError("%s: %v", describe(m), err)
		}
		if fn.Generator {
			return nil, compileError("%s: %s is a generator: a graph node gives one value per execution", describe(m), fn.Name)
		}
		if len(m.args) != len(fn.In) && !(fn.Variadic && len(m.args) >= len(fn.In)-1) {
			return nil, compileError("%s: %s takes %d arguments %s after the context, got %d", describe(m), fn.Name, len(fn.In), fn.Signature(), len(m.args))
		}
		ai, ok := actorIdx[id]
		if !ok {
			ai = len(p.actors)
			actorIdx[id] = ai
			p.actors = append(p.actors, &actorPlan{h: m.h, id: id, class: class, label: handleLabel(m.h)})
		}
		op := &opPlan{node: m, fn: fn}
		opOf[m] = op
		actorOf[m] = ai
		p.actors[ai].ops = append(p.actors[ai].ops, op)
	}
	if gpus != nil {
		p.gpus = make([][]int, len(p.actors))
	}
	gpusOf := func(ai int) ([]int, error) {
		if gpus == nil {
			return nil, nil
		}
		if p.gpus[ai] == nil {
			ids, err := gpus(p.actors[ai].h)
			if err != nil {
				return nil, fmt.Errorf("dag: compile: ask %s for its GPUs: %w", p.actors[ai].label, err)
			}
			p.gpus[ai] = append([]int{}, ids...)
		}
		return p.gpus[ai], nil
	}

	// Every call depends on the input, directly or through others.
	dependsOnInput := map[*MethodNode]bool{}
	collDepends := map[*CollectiveNode]bool{}
	for _, n := range order {
		switch n := n.(type) {
		case *CollectiveNode:
			for _, in := range n.inputs {
				if pm, _, ok := methodOf(in); ok && dependsOnInput[pm] {
					collDepends[n] = true
				}
				if co, ok := in.(*CollectiveOutputNode); ok && collDepends[co.c] {
					collDepends[n] = true
				}
			}
		case *MethodNode:
			for _, a := range n.args {
				switch an := a.(type) {
				case *InputNode, *InputAttrNode:
					dependsOnInput[n] = true
				case *CollectiveOutputNode:
					if collDepends[an.c] {
						dependsOnInput[n] = true
					}
				case Node:
					if pm, _, ok := methodOf(an); ok && dependsOnInput[pm] {
						dependsOnInput[n] = true
					}
				}
			}
			if !dependsOnInput[n] {
				return nil, compileError("%s does not depend on the Input(): every call must take the input or another call's result", describe(n))
			}
		}
	}

	// Arguments, values, rings, NCCL transfers and collectives.
	ringOf := map[valueKey]int{}
	localOf := map[valueKey]int{}
	xferOf := map[valueKey]*xferPlan{}
	collOf := map[*CollectiveNode]*collPlan{}
	newLocal := func(ai int) int {
		l := p.actors[ai].locals
		p.actors[ai].locals++
		return l
	}
	valueRing := func(k valueKey, producer int) int {
		if r, ok := ringOf[k]; ok {
			return r
		}
		out := opOf[k.node].fn.Out
		r := len(p.rings)
		p.rings = append(p.rings, &ringPlan{label: fmt.Sprintf("%s.%s#%d", p.actors[producer].label, k.node.method, k.index),
			writer: producer, typ: out[k.index]})
		ringOf[k] = r
		return r
	}
	addReader := func(r, reader int) {
		if !slices.Contains(p.rings[r].readers, reader) {
			p.rings[r].readers = append(p.rings[r].readers, reader)
		}
	}
	// producerLocal is the producer's local slot for a call's result.
	producerLocal := func(k valueKey) int {
		op := opOf[k.node]
		if op.outs[k.index].local < 0 {
			l, ok := localOf[k]
			if !ok {
				l = newLocal(actorOf[k.node])
				localOf[k] = l
			}
			op.outs[k.index].local = l
		}
		return op.outs[k.index].local
	}
	// useNCCL resolves the transport of a value read by another actor.
	useNCCL := func(k valueKey, producer, reader int) (bool, error) {
		switch k.node.transport {
		case NCCL:
			return true, nil
		case SharedMemory, CUDAIPC:
			return false, nil
		}
		if opOf[k.node].fn.Out[k.index] != tensorPtrType || gpus == nil {
			return false, nil
		}
		gp, err := gpusOf(producer)
		if err != nil {
			return false, err
		}
		gr, err := gpusOf(reader)
		if err != nil {
			return false, err
		}
		return len(gp) > 0 && len(gr) > 0 && !slices.Equal(gp, gr), nil
	}
	for _, n := range order {
		if c, ok := n.(*CollectiveNode); ok {
			cp, err := planCollective(p, c, actorOf, opOf, collOf, producerLocal, newLocal)
			if err != nil {
				return nil, err
			}
			collOf[c] = cp
			p.colls = append(p.colls, cp)
			continue
		}
		m := n.(*MethodNode)
		op, ai := opOf[m], actorOf[m]
		op.outs = make([]outPlan, max(1, len(op.fn.Out)))
		for i := range op.outs {
			op.outs[i] = outPlan{ring: -1, local: -1}
		}
		for i, a := range m.args {
			pt := op.fn.ParamType(i)
			switch an := a.(type) {
			case *InputNode:
				addReader(0, ai)
				op.args = append(op.args, argPlan{kind: argInput, ring: 0, attr: 0, typ: pt})
			case *InputAttrNode:
				addReader(0, ai)
				op.args = append(op.args, argPlan{kind: argInput, ring: 0, attr: attrIndex[an], typ: pt})
			case *MultiOutputNode:
				return nil, compileError("%s argument %d: a MultiOutput can only be the graph's output", describe(m), i+1)
			case *CollectiveNode:
				return nil, compileError("%s argument %d: %s has one result per participant: pass its Output(i)", describe(m), i+1, describe(an))
			case *CollectiveOutputNode:
				cp := collOf[an.c]
				if an.index < 0 || an.index >= len(cp.actors) {
					return nil, compileError("%s argument %d: %s has %d participants", describe(m), i+1, describe(an.c), len(cp.actors))
				}
				if owner := cp.actors[an.index]; owner != ai {
					return nil, compileError("%s argument %d: %s stays on actor %s: bind a method of that actor to it", describe(m), i+1, describe(an), p.actors[owner].label)
				}
				if !tensorPtrType.AssignableTo(pt) {
					return nil, compileError("%s argument %d: %s gives *tensor.Tensor, the parameter is %v", describe(m), i+1, describe(an), pt)
				}
				op.args = append(op.args, argPlan{kind: argLocal, local: cp.out[an.index], typ: pt})
			case Node:
				pm, idx, _ := methodOf(an)
				pop := opOf[pm]
				if idx >= len(pop.fn.Out) {
					return nil, compileError("%s argument %d: %s has %d results", describe(m), i+1, pop.fn.Name, len(pop.fn.Out))
				}
				if rt := pop.fn.Out[idx]; !rt.AssignableTo(pt) && !(pt.Kind() == reflect.Interface && rt.Implements(pt)) {
					return nil, compileError("%s argument %d: %s gives %v, the parameter is %v", describe(m), i+1, describe(an), rt, pt)
				}
				k := valueKey{pm, idx}
				pa := actorOf[pm]
				if pa == ai {
					op.args = append(op.args, argPlan{kind: argLocal, local: producerLocal(k), typ: pt})
					continue
				}
				nc, err := useNCCL(k, pa, ai)
				if err != nil {
					return nil, err
				}
				if nc {
					if pop.fn.Out[idx] != tensorPtrType {
						return nil, compileError("%s argument %d: an NCCL edge carries a *tensor.Tensor, but %s gives %v: return a *tensor.Tensor, or use dag.SharedMemory", describe(m), i+1, describe(an), pop.fn.Out[idx])
					}
					x := xferOf[k]
					if x == nil {
						r := len(p.rings)
						p.rings = append(p.rings, &ringPlan{label: fmt.Sprintf("%s.%s#%d nccl", p.actors[pa].label, pm.method, idx), writer: pa, typ: tensorPtrType})
						x = &xferPlan{label: p.rings[r].label, producer: pa, node: pm, index: idx, src: producerLocal(k), ring: r}
						xferOf[k] = x
						p.xfers = append(p.xfers, x)
					}
					j := slices.Index(x.readers, ai)
					if j < 0 {
						j = len(x.readers)
						x.readers = append(x.readers, ai)
						x.dst = append(x.dst, newLocal(ai))
						addReader(x.ring, ai)
					}
					op.args = append(op.args, argPlan{kind: argLocal, local: x.dst[j], typ: pt})
					continue
				}
				r := valueRing(k, pa)
				pop.outs[idx].ring = r
				addReader(r, ai)
				op.args = append(op.args, argPlan{kind: argRing, ring: r, typ: pt})
			default:
				if err := checkConstant(a, pt); err != nil {
					return nil, compileError("%s argument %d: %v", describe(m), i+1, err)
				}
				op.args = append(op.args, argPlan{kind: argConst, value: a, typ: pt})
			}
		}
	}
	// The driver reads the outputs.
	for _, o := range outs {
		m, idx, _ := methodOf(o)
		op := opOf[m]
		if idx >= max(1, len(op.fn.Out)) {
			return nil, compileError("the output %s: %s has %d results", describe(o), op.fn.Name, len(op.fn.Out))
		}
		if m.transport == NCCL {
			return nil, compileError("the output %s is on an NCCL edge, but the driver holds no rank: use dag.Auto or dag.SharedMemory for it, or bind a method that copies it to the host", describe(o))
		}
		r := valueRing(valueKey{m, idx}, actorOf[m])
		op.outs[idx].ring = r
		addReader(r, driver)
		var typ reflect.Type
		if idx < len(op.fn.Out) {
			typ = op.fn.Out[idx]
		}
		p.outputs = append(p.outputs, outputPlan{ring: r, typ: typ})
	}
	if len(p.rings[0].readers) == 0 {
		return nil, compileError("no call reads the Input()")
	}
	for k, r := range ringOf {
		ipc, err := useIPC(p, k, r, opOf[k.node].fn.Out[k.index], gpusOf)
		if err != nil {
			return nil, err
		}
		p.rings[r].ipc = ipc
	}
	for _, ap := range p.actors {
		ap.ops[0].locals = ap.locals
	}
	if err := planComms(p, gpusOf); err != nil {
		return nil, err
	}
	schedule(p, order, actorOf, opOf)
	return p, nil
}

// useIPC says whether ring r, which carries result k, moves device tensors
// through CUDA IPC: asked for (CUDAIPC), or Auto between actors that hold
// the same GPU. The driver holds no GPU: a graph output never does.
func useIPC(p *plan, k valueKey, r int, typ reflect.Type, gpusOf func(int) ([]int, error)) (bool, error) {
	rp := p.rings[r]
	toDriver := slices.Contains(rp.readers, driver)
	switch k.node.transport {
	case CUDAIPC:
		if typ != tensorPtrType {
			return false, compileError("%s: a CUDA IPC edge carries a *tensor.Tensor, but it gives %v: return a *tensor.Tensor, or use dag.SharedMemory", describe(k.node), typ)
		}
		if toDriver {
			return false, compileError("the output %s is on a CUDA IPC edge, but the driver holds no GPU: use dag.Auto or dag.SharedMemory for it", describe(k.node))
		}
		return true, nil
	case Auto:
	default:
		return false, nil
	}
	if typ != tensorPtrType || toDriver || p.gpus == nil {
		return false, nil
	}
	gp, err := gpusOf(rp.writer)
	if err != nil || len(gp) == 0 {
		return false, err
	}
	for _, a := range rp.readers {
		ga, err := gpusOf(a)
		if err != nil {
			return false, err
		}
		if !slices.Equal(ga, gp) {
			return false, nil
		}
	}
	return true, nil
}

// planCollective checks a collective and gives each participant its input
// and output slots.
func planCollective(p *plan, c *CollectiveNode, actorOf map[*MethodNode]int, opOf map[*MethodNode]*opPlan,
	collOf map[*CollectiveNode]*collPlan, producerLocal func(valueKey) int, newLocal func(int) int) (*collPlan, error) {
	if len(c.inputs) == 0 {
		return nil, compileError("%s of no tensors", describe(c))
	}
	if c.op < nccl.Sum || c.op > nccl.Avg {
		return nil, compileError("%s: unknown reduction %v", describe(c), c.op)
	}
	cp := &collPlan{kind: c.kind, op: c.op, node: c}
	for i, in := range c.inputs {
		var ai, slot int
		switch n := in.(type) {
		case nil:
			return nil, compileError("%s input %d is nil", describe(c), i)
		case *CollectiveOutputNode:
			prev := collOf[n.c]
			if prev == nil || n.index < 0 || n.index >= len(prev.actors) {
				return nil, compileError("%s input %d: %s is not a result of an earlier collective", describe(c), i, describe(n))
			}
			ai, slot = prev.actors[n.index], prev.out[n.index]
		default:
			m, idx, ok := methodOf(in)
			if !ok {
				return nil, compileError("%s input %d is %s: a collective's inputs are method results on different actors", describe(c), i, describe(in))
			}
			op := opOf[m]
			if idx >= len(op.fn.Out) || op.fn.Out[idx] != tensorPtrType {
				return nil, compileError("%s input %d: %s does not give a *tensor.Tensor (%s)", describe(c), i, describe(in), op.fn.Signature())
			}
			ai, slot = actorOf[m], producerLocal(valueKey{m, idx})
		}
		if j := slices.Index(cp.actors, ai); j >= 0 {
			return nil, compileError("%s: inputs %d and %d are both on actor %s: each input of a collective comes from a different actor", describe(c), j, i, p.actors[ai].label)
		}
		cp.actors = append(cp.actors, ai)
		cp.in = append(cp.in, slot)
		cp.out = append(cp.out, newLocal(ai))
	}
	return cp, nil
}

// planComms creates one communicator for the graph's NCCL edges (its ranks
// in actor order) and one per distinct ordered set of collective
// participants (their ranks in input order), sharing when the two agree.
func planComms(p *plan, gpusOf func(int) ([]int, error)) error {
	key := func(actors []int) string { return fmt.Sprint(actors) }
	byKey := map[string]int{}
	comm := func(actors []int) int {
		k := key(actors)
		if i, ok := byKey[k]; ok {
			return i
		}
		byKey[k] = len(p.comms)
		p.comms = append(p.comms, &commPlan{actors: actors})
		return len(p.comms) - 1
	}
	if len(p.xfers) > 0 {
		var members []int
		for _, x := range p.xfers {
			for _, a := range append([]int{x.producer}, x.readers...) {
				if !slices.Contains(members, a) {
					members = append(members, a)
				}
			}
		}
		slices.Sort(members)
		ci := comm(members)
		for _, x := range p.xfers {
			x.comm = ci
		}
	}
	for _, c := range p.colls {
		c.comm = comm(c.actors)
	}
	for _, c := range p.comms {
		for _, a := range c.actors {
			if _, err := gpusOf(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// schedule fixes each actor's steps. All steps of all actors are put in
// one global order, the bind order of the calls and collectives, with each
// NCCL transfer right after the call that makes its value; each actor runs
// its own steps in that order. Then no schedule can deadlock: take the
// first step in the global order that has not finished. Every step before
// it has, so if it is a call its inputs are there and its actor is at it;
// if it is a transfer or a collective, every participant has finished all
// its earlier steps and so is at this one, and a step that has all its
// participants completes. Executions repeat the order, and a later
// execution's steps come after an earlier one's.
func schedule(p *plan, order []Node, actorOf map[*MethodNode]int, opOf map[*MethodNode]*opPlan) {
	for _, a := range p.actors {
		a.steps = a.steps[:0]
	}
	xfersOf := map[*MethodNode][]int{}
	for i, x := range p.xfers {
		xfersOf[x.node] = append(xfersOf[x.node], i)
	}
	for m, xs := range xfersOf {
		slices.SortStableFunc(xs, func(a, b int) int { return p.xfers[a].index - p.xfers[b].index })
		xfersOf[m] = xs
	}
	collIdx := map[*CollectiveNode]int{}
	for i, c := range p.colls {
		collIdx[c.node] = i
	}
	for _, n := range order {
		switch n := n.(type) {
		case *MethodNode:
			ai := actorOf[n]
			a := p.actors[ai]
			a.steps = append(a.steps, stepPlan{kind: stepCompute, index: slices.Index(a.ops, opOf[n])})
			for _, xi := range xfersOf[n] {
				x := p.xfers[xi]
				p.actors[x.producer].steps = append(p.actors[x.producer].steps, stepPlan{kind: stepSend, index: xi})
				for _, r := range x.readers {
					p.actors[r].steps = append(p.actors[r].steps, stepPlan{kind: stepRecv, index: xi})
				}
			}
		case *CollectiveNode:
			ci := collIdx[n]
			for _, a := range p.colls[ci].actors {
				p.actors[a].steps = append(p.actors[a].steps, stepPlan{kind: stepCollective, index: ci})
			}
		}
	}
}

// checkConstant rejects a Node hidden inside a constant, and a constant
// the parameter cannot take (it is encoded and decoded as it will be).
func checkConstant(v any, pt reflect.Type) error {
	if hidden := findNode(reflect.ValueOf(v), 0); hidden != "" {
		return fmt.Errorf("a Node inside a constant (%s): pass Nodes as Bind's own arguments, not inside a slice, map or struct", hidden)
	}
	if v == nil {
		switch pt.Kind() {
		case reflect.Interface, reflect.Pointer, reflect.Slice, reflect.Map:
			return nil
		}
		return fmt.Errorf("nil for a parameter of type %v", pt)
	}
	enc, err := codec.Encode(v)
	if err != nil {
		return err
	}
	if _, err := codec.Decode(enc.Bytes(), pt); err != nil {
		return fmt.Errorf("the constant %v (%T) does not fit the parameter's type %v: %w", v, v, pt, err)
	}
	return nil
}

var nodeType = reflect.TypeFor[Node]()

func findNode(v reflect.Value, depth int) string {
	if !v.IsValid() || depth > 32 {
		return ""
	}
	if v.Type().Implements(nodeType) && (v.Kind() != reflect.Pointer || !v.IsNil()) {
		if n, ok := v.Interface().(Node); ok {
			return describe(n)
		}
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if !v.IsNil() {
			return findNode(v.Elem(), depth+1)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if s := findNode(v.Index(i), depth+1); s != "" {
				return s
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if s := findNode(it.Value(), depth+1); s != "" {
				return s
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				if s := findNode(v.Field(i), depth+1); s != "" {
					return s
				}
			}
		}
	}
	return ""
}
