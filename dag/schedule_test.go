package dag

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The scheduler is tested on plans built by hand (no actors needed) and
// run by a simulator in which a transfer or collective completes only when
// every participant is at it, the strictest reading of NCCL's semantics.

// item is one node of a test graph, in bind order.
type item struct {
	actor int   // a call on this actor...
	shm   []int // ...reading these earlier calls' results through rings
	nccl  []int // ...and these over NCCL
	coll  []int // ...and its own share of these collectives
	// or, when inputs is set, a collective over these calls' results
	inputs []int
}

type testGraph struct {
	p     *plan
	order []Node
	call  map[int]*MethodNode // item index → call
	coll  map[int]int         // item index → colls index
	deps  map[*opPlan][]*opPlan
}

func buildTestPlan(t *testing.T, actors int, items []item) *testGraph {
	t.Helper()
	tg := &testGraph{p: &plan{}, call: map[int]*MethodNode{}, coll: map[int]int{}, deps: map[*opPlan][]*opPlan{}}
	p := tg.p
	for i := range actors {
		p.actors = append(p.actors, &actorPlan{label: fmt.Sprintf("A%d", i)})
	}
	actorOf := map[*MethodNode]int{}
	opOf := map[*MethodNode]*opPlan{}
	xferOf := map[*MethodNode]*xferPlan{}
	newLocal := func(ai int) int { p.actors[ai].locals++; return p.actors[ai].locals - 1 }
	collOuts := map[int][]int{} // colls index → per participant out slot
	for idx, it := range items {
		if it.inputs != nil {
			c := &collPlan{kind: collAllReduce, node: &CollectiveNode{}}
			for _, in := range it.inputs {
				m := tg.call[in]
				c.actors = append(c.actors, actorOf[m])
				c.in = append(c.in, 0)
				c.out = append(c.out, newLocal(actorOf[m]))
			}
			tg.coll[idx] = len(p.colls)
			collOuts[len(p.colls)] = c.out
			p.colls = append(p.colls, c)
			tg.order = append(tg.order, c.node)
			continue
		}
		m := &MethodNode{method: fmt.Sprintf("m%d", idx)}
		op := &opPlan{node: m}
		tg.call[idx], actorOf[m], opOf[m] = m, it.actor, op
		p.actors[it.actor].ops = append(p.actors[it.actor].ops, op)
		for _, d := range it.shm {
			op.args = append(op.args, argPlan{kind: argRing})
			tg.deps[op] = append(tg.deps[op], opOf[tg.call[d]])
		}
		for _, d := range it.nccl {
			pm := tg.call[d]
			x := xferOf[pm]
			if x == nil {
				x = &xferPlan{producer: actorOf[pm], node: pm}
				xferOf[pm] = x
				p.xfers = append(p.xfers, x)
			}
			require.NotEqual(t, actorOf[pm], it.actor, "item %d: an NCCL edge joins two actors", idx)
			x.readers = append(x.readers, it.actor)
			slot := newLocal(it.actor)
			x.dst = append(x.dst, slot)
			op.args = append(op.args, argPlan{kind: argLocal, local: slot})
		}
		for _, c := range it.coll {
			ci := tg.coll[c]
			j := slices.Index(p.colls[ci].actors, it.actor)
			require.GreaterOrEqual(t, j, 0, "item %d reads collective %d it is not part of", idx, c)
			op.args = append(op.args, argPlan{kind: argLocal, local: collOuts[ci][j]})
		}
		tg.order = append(tg.order, m)
	}
	schedule(p, tg.order, actorOf, opOf)
	return tg
}

// simulate runs execs executions of every actor's steps and reports a
// deadlock (no actor can move) or a step that uses a value not yet there.
func simulate(tg *testGraph, execs int) error {
	p := tg.p
	type pos struct{ exec, step int }
	at := make([]pos, len(p.actors))
	done := map[*opPlan]int{}                          // op → executions computed
	ready := make([]map[int]bool, len(p.actors))       // this execution's local slots filled
	localOf := make([]map[*opPlan]bool, len(p.actors)) // unused; documents intent
	_ = localOf
	for i := range ready {
		ready[i] = map[int]bool{}
	}
	finished := func(ai int) bool { return at[ai].exec >= execs || len(p.actors[ai].steps) == 0 }
	advance := func(ai int) {
		at[ai].step++
		if at[ai].step == len(p.actors[ai].steps) {
			at[ai] = pos{at[ai].exec + 1, 0}
			clear(ready[ai])
		}
	}
	// atStep: whether actor ai is at step kind/index in execution exec.
	atStep := func(ai int, kind stepKind, index, exec int) bool {
		if finished(ai) || at[ai].exec != exec {
			return false
		}
		s := p.actors[ai].steps[at[ai].step]
		return s.kind == kind && s.index == index
	}
	for {
		moved, all := false, true
		for ai, a := range p.actors {
			if finished(ai) {
				continue
			}
			all = false
			s, e := a.steps[at[ai].step], at[ai].exec
			switch s.kind {
			case stepCompute:
				op := a.ops[s.index]
				ok := true
				for _, d := range tg.deps[op] {
					if done[d] <= e {
						ok = false
					}
				}
				if !ok {
					continue
				}
				for _, ap := range op.args {
					if ap.kind == argLocal && !ready[ai][ap.local] {
						return fmt.Errorf("actor %d runs %s before its local value %d arrived", ai, op.node.method, ap.local)
					}
				}
				done[op]++
				advance(ai)
				moved = true
			case stepSend, stepRecv:
				x := p.xfers[s.index]
				ok := atStep(x.producer, stepSend, s.index, e)
				for _, r := range x.readers {
					ok = ok && atStep(r, stepRecv, s.index, e)
				}
				if !ok {
					continue
				}
				advance(x.producer)
				for j, r := range x.readers {
					ready[r][x.dst[j]] = true
					advance(r)
				}
				moved = true
			case stepCollective:
				c := p.colls[s.index]
				ok := true
				for _, m := range c.actors {
					ok = ok && atStep(m, stepCollective, s.index, e)
				}
				if !ok {
					continue
				}
				for j, m := range c.actors {
					ready[m][c.out[j]] = true
					advance(m)
				}
				moved = true
			}
		}
		if all {
			return nil
		}
		if !moved {
			var b strings.Builder
			for ai, a := range p.actors {
				if !finished(ai) {
					fmt.Fprintf(&b, " actor %d at step %d (%v) of execution %d;", ai, at[ai].step, a.steps[at[ai].step], at[ai].exec)
				}
			}
			return fmt.Errorf("deadlock:%s", b.String())
		}
	}
}

// stepNames renders an actor's schedule as "F0 S R B1 ...".
func stepNames(p *plan, ai int) string {
	var out []string
	for _, s := range p.actors[ai].steps {
		switch s.kind {
		case stepCompute:
			out = append(out, p.actors[ai].ops[s.index].node.method)
		case stepSend:
			out = append(out, "send:"+p.xfers[s.index].node.method)
		case stepRecv:
			out = append(out, "recv:"+p.xfers[s.index].node.method)
		case stepCollective:
			out = append(out, fmt.Sprintf("coll%d", s.index))
		}
	}
	return strings.Join(out, " ")
}

// Pipeline parallelism, two stages and three micro-batches: stage 0 runs
// the forward passes F, stage 1 the forward and backward FB of each
// micro-batch, and stage 0 the backward passes B: FFF...BBB on stage 0.
func TestSchedulePipelineParallel(t *testing.T) {
	items := []item{
		0: {actor: 0}, 1: {actor: 0}, 2: {actor: 0}, // F0 F1 F2
		3: {actor: 1, nccl: []int{0}}, 4: {actor: 1, nccl: []int{1}}, 5: {actor: 1, nccl: []int{2}}, // FB0..2
		6: {actor: 0, nccl: []int{3}}, 7: {actor: 0, nccl: []int{4}}, 8: {actor: 0, nccl: []int{5}}, // B0..2
	}
	tg := buildTestPlan(t, 2, items)
	assert.Equal(t, "m0 send:m0 m1 send:m1 m2 send:m2 recv:m3 recv:m4 recv:m5 m6 m7 m8", stepNames(tg.p, 0))
	assert.Equal(t, "recv:m0 recv:m1 recv:m2 m3 send:m3 m4 send:m4 m5 send:m5", stepNames(tg.p, 1))
	require.NoError(t, simulate(tg, 4))
}

// One actor sends to two readers, one of which first needs a value from
// the other: receiving lazily (just before the consumer runs) deadlocks;
// the global order does not.
func TestScheduleCrossingTransfers(t *testing.T) {
	items := []item{
		0: {actor: 0},                    // X, for actor 1
		1: {actor: 0},                    // Y, for actor 2
		2: {actor: 2, nccl: []int{1}},    // Z = f(Y), for actor 1
		3: {actor: 1, nccl: []int{2, 0}}, // needs Z, then X
		4: {actor: 0, shm: []int{3}},     // the output
	}
	tg := buildTestPlan(t, 3, items)
	require.NoError(t, simulate(tg, 3))

	// The lazy schedule: each receive right before its consumer, in
	// argument order.
	p := tg.p
	p.actors[1].steps = []stepPlan{{stepRecv, 1}, {stepRecv, 0}, {stepCompute, 0}}
	err := simulate(tg, 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "deadlock")
}

func TestScheduleCollectives(t *testing.T) {
	items := []item{
		0: {actor: 0}, 1: {actor: 1}, 2: {actor: 2},
		3: {inputs: []int{0, 1, 2}},
		4: {actor: 0, coll: []int{3}}, 5: {actor: 1, coll: []int{3}}, 6: {actor: 2, coll: []int{3}},
		7:  {inputs: []int{4, 6}}, // a second collective on two of them
		8:  {actor: 0, coll: []int{7}, nccl: []int{5}},
		9:  {actor: 2, coll: []int{7}},
		10: {actor: 1, shm: []int{8, 9}},
	}
	tg := buildTestPlan(t, 3, items)
	assert.Equal(t, "m0 coll0 m4 recv:m5 coll1 m8", stepNames(tg.p, 0))
	assert.Equal(t, "m1 coll0 m5 send:m5 m10", stepNames(tg.p, 1))
	require.NoError(t, simulate(tg, 3))
}

// Random graphs: every schedule runs to the end, and every transfer and
// collective comes in the same order on all of its participants.
func TestScheduleRandomGraphsNeverDeadlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		actors := 2 + rng.IntN(4)
		var items []item
		var calls []int
		collsOf := map[int][]int{} // actor → collective items it can read
		n := 3 + rng.IntN(14)
		for len(items) < n {
			idx := len(items)
			if len(calls) >= 2 && rng.IntN(5) == 0 {
				// A collective over distinct actors' latest calls.
				var in []int
				seen := map[int]bool{}
				for _, c := range slices.Backward(calls) {
					if a := items[c].actor; !seen[a] && rng.IntN(2) == 0 {
						seen[a] = true
						in = append(in, c)
					}
				}
				if len(in) >= 2 {
					items = append(items, item{inputs: in})
					for _, c := range in {
						collsOf[items[c].actor] = append(collsOf[items[c].actor], idx)
					}
					continue
				}
			}
			it := item{actor: rng.IntN(actors)}
			for _, c := range calls {
				if rng.IntN(4) != 0 {
					continue
				}
				if items[c].actor != it.actor && rng.IntN(2) == 0 {
					it.nccl = append(it.nccl, c)
				} else {
					it.shm = append(it.shm, c)
				}
			}
			if cs := collsOf[it.actor]; len(cs) > 0 && rng.IntN(2) == 0 {
				it.coll = []int{cs[rng.IntN(len(cs))]}
			}
			items = append(items, it)
			calls = append(calls, idx)
		}
		tg := buildTestPlan(t, actors, items)
		require.NoError(t, simulate(tg, 3), "trial %d: %+v", trial, items)
		// Collectives: in bind order on every participant.
		for ai, a := range tg.p.actors {
			var seen []int
			for _, s := range a.steps {
				if s.kind == stepCollective {
					seen = append(seen, s.index)
				}
			}
			assert.True(t, slices.IsSorted(seen), "trial %d: actor %d runs collectives in order %v", trial, ai, seen)
		}
	}
}
