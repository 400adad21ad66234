package dag

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/bridge"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/worker"
)

// Event is one operation of one execution in one actor, recorded when the
// graph is compiled with Profiling: READ (its inputs arrive and decode),
// COMPUTE (the method), WRITE (its results go out). `goray timeline`
// shows them; Events returns them.
type Event struct {
	Actor  string    // class and short ID
	Method string    // Class.Method
	Op     string    // READ, COMPUTE or WRITE
	Exec   uint64    // the execution, from 0
	Start  time.Time // wall clock of the actor's process (the same machine)
	End    time.Time
}

// maxEvents bounds what one actor keeps between Events calls.
const maxEvents = 1 << 16

const writeWait = 100 * time.Millisecond

type profile struct {
	// writing is held from before a call's first result goes out until
	// its WRITE event is recorded: a driver that has the result and asks
	// for the events (take) waits for that event instead of missing it.
	// take waits at most writeWait: a loop blocked writing to a full ring
	// (the driver has not read) holds it.
	writing sync.Mutex
	mu      sync.Mutex
	w       *worker.CoreWorker // also reports each event to the GCS (goray timeline)
	actorID []byte
	graph   string
	actor   string
	events  []Event
	dropped int
}

// add records an operation that started at start and ends now, and
// returns now (the next operation's start).
func (p *profile) add(exec uint64, method, op string, start time.Time) time.Time {
	now := time.Now()
	if p.w != nil {
		p.w.RecordEvent(&rpc.TaskEvent{Kind: "dag", Name: method + " " + op, Function: method, Op: op, Exec: exec,
			ActorId: p.actorID, State: "FINISHED", StartUnixNs: start.UnixNano(), EndUnixNs: now.UnixNano(), TaskId: []byte(p.graph)})
	}
	p.mu.Lock()
	if len(p.events) < maxEvents {
		p.events = append(p.events, Event{Actor: p.actor, Method: method, Op: op, Exec: exec, Start: start, End: now})
	} else {
		p.dropped++
	}
	p.mu.Unlock()
	return now
}

func (p *profile) take() []Event {
	for deadline := time.Now().Add(writeWait); ; time.Sleep(50 * time.Microsecond) {
		if p.writing.TryLock() {
			p.writing.Unlock()
			break
		}
		if time.Now().After(deadline) {
			break
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ev := p.events
	p.events = nil
	return ev
}

// Profiling makes every actor's loop record an Event per operation. Off
// by default, and then free: the loop tests one pointer per operation.
func Profiling() CompileOption { return func(c *config) { c.profile = true } }

// Events collects (and clears) the events every actor of the graph
// recorded, ordered by start time. Without Profiling it returns none.
func (g *CompiledDAG) Events(ctx context.Context) ([]Event, error) {
	if !g.cfg.profile {
		return nil, nil
	}
	if err := g.check(); err != nil {
		return nil, err
	}
	var all []Event
	for _, a := range g.p.actors {
		ref := bridge.SystemCall(a.h, bridge.FuncOf(events), []any{g.id}).([]*core.ObjectRef)[0]
		ev, err := core.Get[[]Event](ctx, ref)
		core.Free(ref)
		if err != nil {
			return nil, fmt.Errorf("dag: events of actor %s: %w", a.label, err)
		}
		all = append(all, ev...)
	}
	slices.SortStableFunc(all, func(a, b Event) int { return a.Start.Compare(b.Start) })
	return all, nil
}
