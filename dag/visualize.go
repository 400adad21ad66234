package dag

import (
	"fmt"
	"strings"
)

// visualize renders a plan in Graphviz DOT: one cluster per actor with its
// method calls in execution order, the driver's input and output, and each
// edge labelled with its channel (shm ring, in-process within an actor).
func visualize(p *plan) string {
	var b strings.Builder
	b.WriteString("digraph dag {\n  rankdir=LR;\n  node [shape=box];\n")
	b.WriteString("  input [label=\"Input\", shape=ellipse];\n  output [label=\"Output\", shape=ellipse];\n")
	name := func(ai, oi int) string { return fmt.Sprintf("a%d_op%d", ai, oi) }
	// Where each ring's value comes from.
	src := map[int]string{0: "input"}
	for ai, a := range p.actors {
		fmt.Fprintf(&b, "  subgraph cluster_a%d {\n    label=%q;\n", ai, "actor "+a.label)
		for oi, op := range a.ops {
			fmt.Fprintf(&b, "    %s [label=%q];\n", name(ai, oi), op.fn.Name)
			for _, o := range op.outs {
				if o.ring >= 0 {
					src[o.ring] = name(ai, oi)
				}
			}
		}
		b.WriteString("  }\n")
	}
	// Where each actor's local values come from: an earlier call of the
	// same actor, an NCCL transfer or a collective.
	type origin struct{ from, label string }
	locals := make([]map[int]origin, len(p.actors))
	for ai, a := range p.actors {
		locals[ai] = map[int]origin{}
		for oi, op := range a.ops {
			for _, o := range op.outs {
				if o.local >= 0 {
					locals[ai][o.local] = origin{name(ai, oi), "in-process"}
				}
			}
		}
	}
	for _, x := range p.xfers {
		from := name(x.producer, opIndex(p.actors[x.producer], x.node))
		for j, r := range x.readers {
			locals[r][x.dst[j]] = origin{from, "nccl"}
		}
	}
	for ci, c := range p.colls {
		cn := fmt.Sprintf("coll%d", ci)
		lbl := c.kind.String()
		if c.kind != collAllGather {
			lbl += " " + c.op.String()
		}
		fmt.Fprintf(&b, "  %s [label=%q, shape=hexagon];\n", cn, lbl)
		for j, a := range c.actors {
			fmt.Fprintf(&b, "  %s -> %s [label=\"nccl\"];\n", locals[a][c.in[j]].from, cn)
			locals[a][c.out[j]] = origin{cn, "in-process"}
		}
	}
	for ai, a := range p.actors {
		for oi, op := range a.ops {
			for _, ap := range op.args {
				switch ap.kind {
				case argRing:
					lbl := "shm"
					if p.rings[ap.ring].ipc {
						lbl = "cuda_ipc"
					}
					fmt.Fprintf(&b, "  %s -> %s [label=%q];\n", src[ap.ring], name(ai, oi), lbl)
				case argInput:
					lbl := "shm"
					if attr := p.attrs[ap.attr]; !attr.whole {
						lbl = "shm " + strings.TrimPrefix(attr.String(), "input.")
					}
					fmt.Fprintf(&b, "  input -> %s [label=%q];\n", name(ai, oi), lbl)
				case argLocal:
					o := locals[ai][ap.local]
					fmt.Fprintf(&b, "  %s -> %s [label=%q];\n", o.from, name(ai, oi), o.label)
				}
			}
		}
	}
	for k, o := range p.outputs {
		lbl := "shm"
		if p.multi {
			lbl = fmt.Sprintf("shm [%d]", k)
		}
		fmt.Fprintf(&b, "  %s -> output [label=%q];\n", src[o.ring], lbl)
	}
	b.WriteString("}\n")
	return b.String()
}

// opIndex is the position of a call among its actor's ops.
func opIndex(a *actorPlan, m *MethodNode) int {
	for i, op := range a.ops {
		if op.node == m {
			return i
		}
	}
	return -1
}
