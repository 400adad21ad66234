package dag

import (
	"fmt"

	"github.com/goray/goray/nccl"
)

// collKind is a collective's operation. The numbers travel in loop specs.
type collKind int

const (
	collAllReduce collKind = iota
	collAllGather
	collReduceScatter
)

func (k collKind) String() string {
	switch k {
	case collAllReduce:
		return "AllReduce"
	case collAllGather:
		return "AllGather"
	case collReduceScatter:
		return "ReduceScatter"
	}
	return fmt.Sprintf("collective(%d)", int(k))
}

// CollectiveNode is a collective operation over tensors that live on
// different actors: input i is a *tensor.Tensor result of a call on actor
// i, and Output(i) is that actor's share of the result, usable by later
// calls of the same actor. The data moves through the graph's communicator
// (Communicator), never through the driver; every participant runs the
// collective at the same point of its schedule, so no schedule deadlocks.
type CollectiveNode struct {
	nodeBase
	kind   collKind
	op     nccl.ReduceOp
	inputs []Node
	outs   []*CollectiveOutputNode
}

// CollectiveOutputNode is one participant's result of a collective.
type CollectiveOutputNode struct {
	nodeBase
	c     *CollectiveNode
	index int
}

func newCollective(kind collKind, nodes []Node) *CollectiveNode {
	c := &CollectiveNode{kind: kind, op: nccl.Sum, inputs: nodes}
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
	g.add(c)
	for i := range nodes {
		o := &CollectiveOutputNode{c: c, index: i}
		g.add(o)
		c.outs = append(c.outs, o)
	}
	return c
}

// AllReduce reduces the tensors (a sum unless WithOp says otherwise); every
// participant gets the whole result, with its input's dtype and shape.
func AllReduce(nodes ...Node) *CollectiveNode { return newCollective(collAllReduce, nodes) }

// AllGather concatenates the tensors along their first dimension in
// participant order; every participant gets the whole result.
func AllGather(nodes ...Node) *CollectiveNode { return newCollective(collAllGather, nodes) }

// ReduceScatter reduces the tensors and gives participant i block i of the
// result along the first dimension, which must divide by the number of
// participants.
func ReduceScatter(nodes ...Node) *CollectiveNode {
	return newCollective(collReduceScatter, nodes)
}

// WithOp sets the reduction of an AllReduce or ReduceScatter.
func (c *CollectiveNode) WithOp(op nccl.ReduceOp) *CollectiveNode {
	c.op = op
	return c
}

// Output is participant i's result.
func (c *CollectiveNode) Output(i int) Node {
	if i < 0 || i >= len(c.outs) {
		return &CollectiveOutputNode{c: c, index: i} // Compile names the bad index
	}
	return c.outs[i]
}

// Outputs is every participant's result, in input order.
func (c *CollectiveNode) Outputs() []Node {
	out := make([]Node, len(c.outs))
	for i, o := range c.outs {
		out[i] = o
	}
	return out
}
