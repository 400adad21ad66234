// Package gcs is the cluster's global control service: the directory of
// nodes and jobs (and, as the runtime grows, actors and placement groups).
// One runs per cluster, on the head node; in an embedded cluster it is a
// set of goroutines in the driver.
package gcs

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/shm"
)

// Server is the GCS.
type Server struct {
	rpc.UnimplementedGcsServer

	mu      sync.Mutex
	nodes   map[string]*rpc.NodeInfo
	order   []string
	nextJob uint32
	jobs    []*rpc.JobInfo
	jobEnv  map[string][]string // job ID → its workers' environment
	actors  *actors             // nil until EnableActors

	events        []*rpc.TaskEvent // recent task events: a ring once full
	eventHead     int              // the oldest, once full
	eventsDropped uint64
	metrics       metrics
}

// New returns an empty GCS.
func New() *Server {
	return &Server{nodes: map[string]*rpc.NodeInfo{}, nextJob: 1, jobEnv: map[string][]string{}}
}

// Register adds the GCS service to s.
func (g *Server) Register(s *grpc.Server) { rpc.RegisterGcsServer(s, g) }

// RegisterNode adds (or refreshes) a node.
func (g *Server) RegisterNode(_ context.Context, n *rpc.NodeInfo) (*rpc.RegisterNodeReply, error) {
	if len(n.NodeId) == 0 || n.RayletAddress == "" {
		return nil, status.Error(codes.InvalidArgument, "gcs: a node registers with its ID and raylet address")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.nodes[string(n.NodeId)]; !ok {
		g.order = append(g.order, string(n.NodeId))
	}
	c := proto.Clone(n).(*rpc.NodeInfo)
	c.Alive = true
	g.nodes[string(n.NodeId)] = c
	return &rpc.RegisterNodeReply{}, nil
}

// GetNodes lists the nodes in registration order.
func (g *Server) GetNodes(context.Context, *rpc.GetNodesRequest) (*rpc.GetNodesReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := &rpc.GetNodesReply{}
	for _, id := range g.order {
		out.Nodes = append(out.Nodes, proto.Clone(g.nodes[id]).(*rpc.NodeInfo))
	}
	return out, nil
}

// RegisterJob hands out the next job ID and records how to start the
// job's workers.
func (g *Server) RegisterJob(_ context.Context, req *rpc.RegisterJobRequest) (*rpc.RegisterJobReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	j := ids.JobIDFromInt(g.nextJob)
	g.nextJob++
	g.jobs = append(g.jobs, &rpc.JobInfo{JobId: j[:], DriverAddress: req.DriverAddress, DriverPid: req.DriverPid,
		Namespace: req.Namespace, WorkerArgv: req.WorkerArgv, StartTimeUnixMs: time.Now().UnixMilli()})
	g.jobEnv[string(j[:])] = req.WorkerEnv
	return &rpc.RegisterJobReply{JobId: j[:]}, nil
}

// JobCommand is how to start a worker of job: argv and environment, as its
// driver registered them.
func (g *Server) JobCommand(job []byte) (argv, env []string, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, j := range g.jobs {
		if string(j.JobId) == string(job) {
			return j.WorkerArgv, g.jobEnv[string(job)], len(j.WorkerArgv) > 0
		}
	}
	return nil, nil, false
}

// ListJobs lists the jobs, with whether each driver still runs.
func (g *Server) ListJobs(context.Context, *rpc.ListJobsRequest) (*rpc.ListJobsReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := &rpc.ListJobsReply{}
	for _, j := range g.jobs {
		c := proto.Clone(j).(*rpc.JobInfo)
		p, err := shm.ProcessOf(int(j.DriverPid))
		c.Alive = err == nil && p.Alive()
		out.Jobs = append(out.Jobs, c)
	}
	return out, nil
}
