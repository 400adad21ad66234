package gcs

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/rpc"
)

// maxTaskEvents bounds the table of recent task events (the state API's
// `goray list tasks` and `goray timeline` read it): the oldest go first.
const maxTaskEvents = 10000

// ReportTaskEvents adds events to the bounded table.
func (g *Server) ReportTaskEvents(_ context.Context, req *rpc.ReportTaskEventsRequest) (*rpc.ReportTaskEventsReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.addMetricsLocked(req)
	for _, e := range req.Events {
		if len(g.events) < maxTaskEvents {
			g.events = append(g.events, e)
			continue
		}
		g.events[g.eventHead] = e
		g.eventHead = (g.eventHead + 1) % maxTaskEvents
		g.eventsDropped++
	}
	return &rpc.ReportTaskEventsReply{}, nil
}

// ListTasks returns the recent events, oldest first (the newest limit, if
// limit > 0).
func (g *Server) ListTasks(_ context.Context, req *rpc.ListTasksRequest) (*rpc.ListTasksReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := &rpc.ListTasksReply{Dropped: g.eventsDropped}
	n := len(g.events)
	start := 0
	if req.Limit > 0 && int(req.Limit) < n {
		start = n - int(req.Limit)
	}
	for i := start; i < n; i++ {
		out.Events = append(out.Events, proto.Clone(g.events[(g.eventHead+i)%n]).(*rpc.TaskEvent))
	}
	return out, nil
}

// metrics are the cluster's cumulative counters and histograms, from the
// reports of every worker and driver.
type metrics struct {
	counts    map[string]uint64
	latencies map[string]*rpc.LatencyHistogram
}

func (g *Server) addMetricsLocked(req *rpc.ReportTaskEventsRequest) {
	if g.metrics.counts == nil {
		g.metrics.counts = map[string]uint64{}
		g.metrics.latencies = map[string]*rpc.LatencyHistogram{}
	}
	for k, n := range req.Counts {
		g.metrics.counts[k] += n
	}
	for _, h := range req.Latencies {
		cur := g.metrics.latencies[h.Name]
		if cur == nil {
			cur = &rpc.LatencyHistogram{Name: h.Name, Buckets: make([]uint64, len(h.Buckets))}
			g.metrics.latencies[h.Name] = cur
		}
		for i := range min(len(cur.Buckets), len(h.Buckets)) {
			cur.Buckets[i] += h.Buckets[i]
		}
		cur.SumSeconds += h.SumSeconds
		cur.Count += h.Count
	}
}

// GetMetrics returns the cumulative counters and histograms, and the
// actors by state.
func (g *Server) GetMetrics(context.Context, *rpc.GetMetricsRequest) (*rpc.MetricsReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := &rpc.MetricsReply{Counts: map[string]uint64{}, Actors: map[string]uint64{}}
	for k, n := range g.metrics.counts {
		out.Counts[k] = n
	}
	for _, h := range g.metrics.latencies {
		out.Latencies = append(out.Latencies, proto.Clone(h).(*rpc.LatencyHistogram))
	}
	if g.actors != nil {
		for _, e := range g.actors.byID {
			out.Actors[e.info.State.String()]++
		}
	}
	return out, nil
}
