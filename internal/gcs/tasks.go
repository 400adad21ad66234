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
