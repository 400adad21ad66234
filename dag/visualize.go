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
	for ai, a := range p.actors {
		// A value kept within the actor: which op made each local.
		local := map[int]string{}
		for oi, op := range a.ops {
			for _, ap := range op.args {
				switch ap.kind {
				case argRing:
					fmt.Fprintf(&b, "  %s -> %s [label=\"shm\"];\n", src[ap.ring], name(ai, oi))
				case argInput:
					lbl := "shm"
					if attr := p.attrs[ap.attr]; !attr.whole {
						lbl = "shm " + strings.TrimPrefix(attr.String(), "input.")
					}
					fmt.Fprintf(&b, "  input -> %s [label=%q];\n", name(ai, oi), lbl)
				case argLocal:
					fmt.Fprintf(&b, "  %s -> %s [label=\"in-process\"];\n", local[ap.local], name(ai, oi))
				}
			}
			for _, o := range op.outs {
				if o.local >= 0 {
					local[o.local] = name(ai, oi)
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
