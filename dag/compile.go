package dag

import (
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
}

func (r *ringPlan) readerIndex(actor int) int { return slices.Index(r.readers, actor) }

type actorPlan struct {
	h     *actor.Handle
	id    ids.ActorID
	class *worker.Class
	label string
	ops   []*opPlan
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

// buildPlan checks the graph that ends in out and plans it.
func buildPlan(out Node) (*plan, error) {
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
		if _, _, ok := methodOf(o); !ok {
			return nil, compileError("the output %s is not a method call's result: bind a method to it", describe(o))
		}
		if o.base().g != g {
			return nil, compileError("%s belongs to another graph (another Input())", describe(o))
		}
	}

	// The method calls the outputs need, in bind order (a topological
	// order: a node's arguments exist before it).
	used := map[*MethodNode]bool{}
	attrsUsed := map[*InputAttrNode]bool{}
	wholeUsed := false
	var visit func(n Node) error
	visit = func(n Node) error {
		m, _, ok := methodOf(n)
		if !ok {
			switch n := n.(type) {
			case *InputNode:
				wholeUsed = true
			case *InputAttrNode:
				attrsUsed[n] = true
			}
			return nil
		}
		if used[m] {
			return nil
		}
		used[m] = true
		for _, a := range m.args {
			if an, ok := a.(Node); ok && an != nil {
				if an.base().g != g {
					return compileError("%s takes %s, which belongs to another graph (another Input())", describe(m), describe(an))
				}
				if err := visit(an); err != nil {
					return err
				}
			}
		}
		return nil
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
	for _, n := range nodes {
		switch n := n.(type) {
		case *MethodNode:
			if !used[n] {
				leaves = append(leaves, describe(n))
			} else {
				calls = append(calls, n)
			}
		case *OutputNode:
			if !used[n.m] {
				leaves = append(leaves, describe(n))
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
		if m.transport == NCCL {
			return nil, compileError("%s: the NCCL transport is not built yet: use dag.Auto or dag.SharedMemory", describe(m))
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

	// Every call depends on the input, directly or through others.
	dependsOnInput := map[*MethodNode]bool{}
	for _, m := range calls {
		for _, a := range m.args {
			switch an := a.(type) {
			case *InputNode, *InputAttrNode:
				dependsOnInput[m] = true
			case Node:
				if pm, _, ok := methodOf(an); ok && dependsOnInput[pm] {
					dependsOnInput[m] = true
				}
			}
		}
		if !dependsOnInput[m] {
			return nil, compileError("%s does not depend on the Input(): every call must take the input or another call's result", describe(m))
		}
	}

	// Arguments, values and rings.
	ringOf := map[valueKey]int{}
	localOf := map[valueKey]int{}
	locals := make([]int, len(p.actors))
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
	for _, m := range calls {
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
				if actorOf[pm] == ai {
					l, ok := localOf[k]
					if !ok {
						l = locals[ai]
						locals[ai]++
						localOf[k] = l
						pop.outs[idx].local = l
					}
					op.args = append(op.args, argPlan{kind: argLocal, local: l, typ: pt})
				} else {
					r := valueRing(k, actorOf[pm])
					pop.outs[idx].ring = r
					addReader(r, ai)
					op.args = append(op.args, argPlan{kind: argRing, ring: r, typ: pt})
				}
			default:
				if err := checkConstant(a, pt); err != nil {
					return nil, compileError("%s argument %d: %v", describe(m), i+1, err)
				}
				op.args = append(op.args, argPlan{kind: argConst, value: a, typ: pt})
			}
		}
	}
	for ai, ap := range p.actors {
		ap.ops[0].locals = locals[ai]
	}
	// The driver reads the outputs.
	for _, o := range outs {
		m, idx, _ := methodOf(o)
		op := opOf[m]
		if idx >= max(1, len(op.fn.Out)) {
			return nil, compileError("the output %s: %s has %d results", describe(o), op.fn.Name, len(op.fn.Out))
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
	return p, nil
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
