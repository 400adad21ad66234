// Package dag is goray's compiled graphs: a static graph of actor method
// calls is compiled once (channels allocated, each actor's operations
// fixed, an execution loop started in every actor) and then executed again
// and again with microseconds of overhead.
//
//	in := dag.Input()
//	a := dag.Bind(prep, "Tokenize", in)
//	b := dag.Bind(model, "Forward", a)
//	g, err := dag.Compile(ctx, b)
//	defer g.Teardown()
//	f, err := g.Execute(ctx, "hello")
//	out, err := dag.Get[[]float32](ctx, f)
//
// Values move between actors through shared-memory rings (one per
// producer output, one slot per execution in flight), never through the
// control plane; an actor's loop runs beside its ordinary calls, which
// keep working (they share the actor's concurrency slots). Rules (DESIGN.md
// §6): one Input per graph and every call depends on it; constants and
// Nodes as Bind arguments (a Node inside a slice, map or struct is an
// error); every node ends in the output; an actor takes part in one live
// graph at a time; MaxInflight executions may be unread at once.
//
// A []byte, numeric-slice or tensor argument that reaches a method through
// a channel is read in place: it aliases the channel's shared memory for
// the duration of the call, and is reused afterwards. Copy what the actor
// keeps. (Results that reach the driver are copied.)
//
// Tensors (*tensor.Tensor results) can take other paths between actors:
// WithTensorTransport(NCCL) sends the metadata through the ring and the
// data through a communicator (package nccl: the "nccl" backend over the
// actors' GPUs by default, nccl.CPU or a registered backend of your own
// with the Communicator option); CUDAIPC copies a device tensor through a
// staging buffer shared by two actors on one GPU; Auto (the default) picks
// NCCL between actors on different GPUs, CUDA IPC on one GPU, and shared
// memory otherwise. AllReduce, AllGather and ReduceScatter are collective
// nodes over tensors of different actors. Every actor runs its sends,
// receives and collectives in one global order, so no graph deadlocks. A
// received tensor is reused by the next execution: copy what the actor
// keeps.
package dag

import (
	"fmt"
	"sync"

	"github.com/goray/goray/actor"
)

// Node is a value in a graph: the input, part of it, a method call's
// result, or several of those (MultiOutput).
type Node interface {
	base() *nodeBase
}

type nodeBase struct {
	g  *graph
	id int
}

func (n *nodeBase) base() *nodeBase { return n }

// graph collects every node made from one Input, so that Compile can find
// the ones that lead nowhere.
type graph struct {
	mu    sync.Mutex
	input *InputNode
	nodes []Node
}

func (g *graph) add(n Node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n.base().g, n.base().id = g, len(g.nodes)
	g.nodes = append(g.nodes, n)
}

// InputNode is the graph's input: the arguments of Execute.
type InputNode struct {
	nodeBase
	attrs map[string]*InputAttrNode
}

// Input starts a graph.
func Input() *InputNode {
	in := &InputNode{attrs: map[string]*InputAttrNode{}}
	g := &graph{input: in}
	g.add(in)
	return in
}

// InputAttrNode is one positional argument of Execute (At) or one field or
// map key of its single argument (Key).
type InputAttrNode struct {
	nodeBase
	in    *InputNode
	index int // At(index); -1 for Key
	key   string
}

// At is Execute's positional argument i.
func (in *InputNode) At(i int) Node {
	k := fmt.Sprintf("#%d", i)
	in.g.mu.Lock()
	a := in.attrs[k]
	in.g.mu.Unlock()
	if a == nil {
		a = &InputAttrNode{in: in, index: i}
		in.g.add(a)
		in.g.mu.Lock()
		in.attrs[k] = a
		in.g.mu.Unlock()
	}
	return a
}

// Key is field k (of a struct) or key k (of a map) of Execute's single
// argument.
func (in *InputNode) Key(k string) Node {
	in.g.mu.Lock()
	a := in.attrs["."+k]
	in.g.mu.Unlock()
	if a == nil {
		a = &InputAttrNode{in: in, index: -1, key: k}
		in.g.add(a)
		in.g.mu.Lock()
		in.attrs["."+k] = a
		in.g.mu.Unlock()
	}
	return a
}

// Transport says how an edge carries tensors.
type Transport int

const (
	// Auto: NCCL between actors on different GPUs, CUDA IPC between
	// actors on the same GPU, shared memory otherwise.
	Auto Transport = iota
	// SharedMemory: the value is encoded into the shared-memory ring.
	SharedMemory
	// NCCL: metadata through the ring, data through a communicator.
	NCCL
	// CUDAIPC: for actors on one GPU, the producer copies a device tensor
	// into a staging buffer of its GPU and the readers copy it out through
	// a CUDA IPC handle (metadata and handle through the ring); a host
	// tensor travels as SharedMemory does.
	CUDAIPC
)

func (t Transport) String() string {
	switch t {
	case Auto:
		return "auto"
	case SharedMemory:
		return "shm"
	case NCCL:
		return "nccl"
	case CUDAIPC:
		return "cuda_ipc"
	}
	return fmt.Sprintf("Transport(%d)", int(t))
}

// MethodNode is a call of an actor's method; its value is the method's
// first result (Output(i) for the others).
type MethodNode struct {
	nodeBase
	h         *actor.Handle
	method    string
	args      []any
	transport Transport
	outs      map[int]*OutputNode
}

// OutputNode is result i of a method with several results.
type OutputNode struct {
	nodeBase
	m     *MethodNode
	index int
}

// Bind calls method of the actor h with args: Nodes (the input, parts of
// it, other calls' results) or constants. Errors (an unknown method, a
// wrong argument count, a Node hidden in a constant) are reported by
// Compile.
func Bind(h *actor.Handle, method string, args ...any) *MethodNode {
	m := &MethodNode{h: h, method: method, args: args, outs: map[int]*OutputNode{}}
	var g *graph
	for _, a := range args {
		if n, ok := a.(Node); ok && n != nil && n.base().g != nil {
			g = n.base().g
			break
		}
	}
	if g == nil {
		g = &graph{} // depends on no input: Compile says so
	}
	g.add(m)
	return m
}

// WithTensorTransport sets how the node's result travels to its readers.
func (m *MethodNode) WithTensorTransport(t Transport) *MethodNode {
	m.transport = t
	return m
}

// Output is result i of the method (0 is the node itself).
func (m *MethodNode) Output(i int) Node {
	if i == 0 {
		return m
	}
	m.g.mu.Lock()
	o := m.outs[i]
	m.g.mu.Unlock()
	if o == nil {
		o = &OutputNode{m: m, index: i}
		m.g.add(o)
		m.g.mu.Lock()
		m.outs[i] = o
		m.g.mu.Unlock()
	}
	return o
}

// MultiOutputNode is several nodes as the graph's output: Get gives []any.
type MultiOutputNode struct {
	nodeBase
	nodes []Node
}

// MultiOutput makes the graph's output several nodes.
func MultiOutput(nodes ...Node) Node {
	m := &MultiOutputNode{nodes: nodes}
	var g *graph
	for _, n := range nodes {
		if n != nil && n.base().g != nil {
			g = n.base().g
			break
		}
	}
	if g == nil {
		g = &graph{}
	}
	g.add(m)
	return m
}
