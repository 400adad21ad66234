package worker

import (
	"context"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/goray/goray/internal/rpc"
)

// Task events: every worker process records the tasks and actor calls it
// finishes (and, for graphs compiled with profiling, each graph
// operation), and sends them to the GCS in batches, for the state API
// (`goray list tasks`, `goray summary`) and `goray timeline`.

const (
	eventFlush     = 250 * time.Millisecond
	maxEventBuffer = 10000 // between flushes; beyond, events are dropped
)

type eventBuffer struct {
	mu      sync.Mutex
	events  []*rpc.TaskEvent
	dropped int
}

// RecordEvent queues ev for the GCS, filling in where it ran.
func (w *CoreWorker) RecordEvent(ev *rpc.TaskEvent) {
	if w.cfg.Gcs == nil {
		return
	}
	ev.WorkerId, ev.Pid, ev.NodeId = w.cfg.WorkerID, int32(w.self.PID), w.cfg.NodeID
	if len(ev.JobId) == 0 {
		ev.JobId = w.cfg.JobID[:]
	}
	b := &w.events
	b.mu.Lock()
	if len(b.events) < maxEventBuffer {
		b.events = append(b.events, ev)
	} else {
		b.dropped++
	}
	b.mu.Unlock()
}

// taskEvent records a task this process ran.
func (w *CoreWorker) taskEvent(spec *rpc.TaskSpec, name string, start time.Time, reply *rpc.TaskReply) {
	if strings.HasPrefix(spec.Function, "goray.") {
		return // system functions (a graph's loop): not the user's tasks
	}
	ev := &rpc.TaskEvent{TaskId: spec.TaskId, Name: name, Function: spec.Function, ActorId: spec.ActorId,
		State: "FINISHED", StartUnixNs: start.UnixNano(), EndUnixNs: time.Now().UnixNano(), Attempt: spec.Attempt, Kind: "task"}
	if spec.Method != "" {
		ev.Function, ev.Kind = spec.Function+"."+spec.Method, "actor_call"
	}
	if reply != nil && reply.Error != nil {
		ev.State, ev.Error = "FAILED", firstLine(reply.Error.Message)
	}
	w.RecordEvent(ev)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// flushEvents sends the queued events every eventFlush, and once more
// when the core worker stops.
func (w *CoreWorker) flushEvents() {
	t := time.NewTicker(eventFlush)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			w.sendEvents()
			return
		case <-t.C:
			w.sendEvents()
		}
	}
}

func (w *CoreWorker) sendEvents() {
	b := &w.events
	b.mu.Lock()
	evs := b.events
	b.events = nil
	dropped := b.dropped
	b.dropped = 0
	b.mu.Unlock()
	if dropped > 0 {
		w.cfg.Logf("goray: %d task events dropped (more than %d within %v)", dropped, maxEventBuffer, eventFlush)
	}
	if len(evs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := w.cfg.Gcs.ReportTaskEvents(ctx, &rpc.ReportTaskEventsRequest{Events: evs}); err != nil && os.Getenv("GORAY_DEBUG") != "" {
		w.cfg.Logf("goray: report task events: %v", err)
	}
}
