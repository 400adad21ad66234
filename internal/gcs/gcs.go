// Package gcs is the cluster's global control service: the directory of
// nodes and jobs (and, as the runtime grows, actors and placement groups).
// One runs per cluster, on the head node; in an embedded cluster it is a
// set of goroutines in the driver.
package gcs

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
)

// Server is the GCS.
type Server struct {
	rpc.UnimplementedGcsServer

	mu      sync.Mutex
	nodes   map[string]*rpc.NodeInfo
	order   []string
	nextJob uint32
	actors  *actors // nil until EnableActors
}

// New returns an empty GCS.
func New() *Server { return &Server{nodes: map[string]*rpc.NodeInfo{}, nextJob: 1} }

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

// RegisterJob hands out the next job ID.
func (g *Server) RegisterJob(context.Context, *rpc.RegisterJobRequest) (*rpc.RegisterJobReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	j := ids.JobIDFromInt(g.nextJob)
	g.nextJob++
	return &rpc.RegisterJobReply{JobId: j[:]}, nil
}
