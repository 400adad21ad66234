package worker

import (
	"context"
	"os"
	"slices"
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
	eventFlush = 250 * time.Millisecond
	// eventRing bounds what a process keeps between flushes: the newest
	// win (the GCS keeps only the recent ones anyway), so recording stays
	// cheap however fast tasks run.
	eventRing = 1024
)

// taskEventsOn: GORAY_TASK_EVENTS=0 (in the driver's environment, which
// its workers inherit) turns task events off.
var taskEventsOn = os.Getenv("GORAY_TASK_EVENTS") != "0"

// eventRec is one event as recorded: plain values in a reused ring slot,
// turned into protobuf only when sent.
type eventRec struct {
	taskID, actorID []byte
	name, function  string
	kind, op, state string
	err             string
	start, end      int64
	attempt         uint32
	exec            uint64
}

// eventBuffer is a ring of the newest events, with exact counts and
// latency histograms since the last flush.
type eventBuffer struct {
	mu      sync.Mutex
	ring    [eventRing]eventRec
	n       int // events in the ring
	next    int // where the next one goes
	dropped uint64
	counts  map[countKey]uint64
	lat     map[string]*latHist
}

type countKey struct{ kind, state string }

// LatencyBuckets are the upper bounds (seconds) of the latency histograms
// workers and drivers report: 1 µs to 10 s, about 2.5× apart; one more
// bucket takes the rest.
var LatencyBuckets = []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
	1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type latHist struct {
	buckets []uint64
	sum     float64
	count   uint64
}

// RecordLatency adds one duration to the named histogram (a compiled
// graph's executions, from package dag).
func (w *CoreWorker) RecordLatency(name string, d time.Duration) {
	if w.cfg.Gcs == nil {
		return
	}
	s := d.Seconds()
	i, _ := slices.BinarySearch(LatencyBuckets, s)
	b := &w.events
	b.mu.Lock()
	if b.lat == nil {
		b.lat = map[string]*latHist{}
	}
	h := b.lat[name]
	if h == nil {
		h = &latHist{buckets: make([]uint64, len(LatencyBuckets)+1)}
		b.lat[name] = h
	}
	h.buckets[i]++
	h.sum += s
	h.count++
	b.mu.Unlock()
}

func (b *eventBuffer) add(r eventRec) {
	b.mu.Lock()
	if b.counts == nil {
		b.counts = map[countKey]uint64{}
	}
	b.counts[countKey{r.kind, r.state}]++
	b.ring[b.next] = r
	b.next = (b.next + 1) % eventRing
	if b.n < eventRing {
		b.n++
	} else {
		b.dropped++
	}
	b.mu.Unlock()
}

// RecordEvent queues ev for the GCS (a graph operation, from package dag).
// When more than eventRing arrive between flushes, the oldest are dropped.
func (w *CoreWorker) RecordEvent(ev *rpc.TaskEvent) {
	if w.cfg.Gcs == nil {
		return
	}
	w.events.add(eventRec{taskID: ev.TaskId, actorID: ev.ActorId, name: ev.Name, function: ev.Function, kind: ev.Kind,
		op: ev.Op, state: ev.State, err: ev.Error, start: ev.StartUnixNs, end: ev.EndUnixNs, attempt: ev.Attempt, exec: ev.Exec})
}

// taskEvent records a task this process ran.
func (w *CoreWorker) taskEvent(spec *rpc.TaskSpec, fn *Function, name string, start time.Time, reply *rpc.TaskReply) {
	if w.cfg.Gcs == nil || !taskEventsOn || strings.HasPrefix(spec.Function, "goray.") {
		return // system functions (a graph's loop) are not the user's tasks
	}
	r := eventRec{taskID: spec.TaskId, actorID: spec.ActorId, name: name, function: spec.Function, kind: "task",
		state: "FINISHED", start: start.UnixNano(), end: time.Now().UnixNano(), attempt: spec.Attempt}
	if spec.Method != "" {
		r.kind = "actor_call"
		if fn != nil {
			r.function = fn.Name // Class.Method, without building the string per call
		} else {
			r.function = spec.Function + "." + spec.Method
		}
	}
	if reply != nil && reply.Error != nil {
		r.state, r.err = "FAILED", firstLine(reply.Error.Message)
	}
	w.events.add(r)
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
	evs := make([]*rpc.TaskEvent, 0, b.n)
	for i := range b.n {
		r := &b.ring[(b.next-b.n+i+eventRing)%eventRing]
		evs = append(evs, &rpc.TaskEvent{TaskId: r.taskID, ActorId: r.actorID, Name: r.name, Function: r.function,
			Kind: r.kind, Op: r.op, State: r.state, Error: r.err, StartUnixNs: r.start, EndUnixNs: r.end,
			Attempt: r.attempt, Exec: r.exec, JobId: w.cfg.JobID[:], WorkerId: w.cfg.WorkerID,
			Pid: int32(w.self.PID), NodeId: w.cfg.NodeID})
		*r = eventRec{}
	}
	b.n = 0
	var counts map[string]uint64
	if len(b.counts) > 0 {
		counts = make(map[string]uint64, len(b.counts))
		for k, n := range b.counts {
			counts[k.kind+"/"+k.state] = n
		}
	}
	b.counts = nil
	var lats []*rpc.LatencyHistogram
	for name, h := range b.lat {
		lats = append(lats, &rpc.LatencyHistogram{Name: name, Buckets: h.buckets, SumSeconds: h.sum, Count: h.count})
	}
	b.lat = nil
	b.mu.Unlock()
	if len(evs) == 0 && len(counts) == 0 && len(lats) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := w.cfg.Gcs.ReportTaskEvents(ctx, &rpc.ReportTaskEventsRequest{Events: evs, Counts: counts, Latencies: lats}); err != nil && os.Getenv("GORAY_DEBUG") != "" {
		w.cfg.Logf("goray: report task events: %v", err)
	}
}
