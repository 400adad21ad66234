package core

import (
	"context"

	"google.golang.org/grpc"

	"github.com/goray/goray/internal/gcs"
	"github.com/goray/goray/internal/raylet"
	"github.com/goray/goray/internal/rpc"
)

// localRaylet is the embedded raylet as the driver's core worker calls it:
// a method call, not a loopback gRPC round trip.
type localRaylet struct{ r *raylet.Raylet }

func (l localRaylet) RegisterWorker(ctx context.Context, in *rpc.RegisterWorkerRequest, _ ...grpc.CallOption) (*rpc.RegisterWorkerReply, error) {
	return l.r.RegisterWorker(ctx, in)
}

func (l localRaylet) RequestLease(ctx context.Context, in *rpc.LeaseRequest, _ ...grpc.CallOption) (*rpc.LeaseReply, error) {
	return l.r.RequestLease(ctx, in)
}

func (l localRaylet) ReturnLease(ctx context.Context, in *rpc.ReturnLeaseRequest, _ ...grpc.CallOption) (*rpc.ReturnLeaseReply, error) {
	return l.r.ReturnLease(ctx, in)
}

func (l localRaylet) KillWorker(ctx context.Context, in *rpc.KillWorkerRequest, _ ...grpc.CallOption) (*rpc.KillWorkerReply, error) {
	return l.r.KillWorker(ctx, in)
}

func (l localRaylet) SetBlocked(ctx context.Context, in *rpc.SetBlockedRequest, _ ...grpc.CallOption) (*rpc.SetBlockedReply, error) {
	return l.r.SetBlocked(ctx, in)
}

func (l localRaylet) GetResources(ctx context.Context, in *rpc.GetResourcesRequest, _ ...grpc.CallOption) (*rpc.GetResourcesReply, error) {
	return l.r.GetResources(ctx, in)
}

// localGcs is the embedded GCS as the driver's core worker calls it.
type localGcs struct{ g *gcs.Server }

func (l localGcs) RegisterNode(ctx context.Context, in *rpc.NodeInfo, _ ...grpc.CallOption) (*rpc.RegisterNodeReply, error) {
	return l.g.RegisterNode(ctx, in)
}

func (l localGcs) GetNodes(ctx context.Context, in *rpc.GetNodesRequest, _ ...grpc.CallOption) (*rpc.GetNodesReply, error) {
	return l.g.GetNodes(ctx, in)
}

func (l localGcs) RegisterJob(ctx context.Context, in *rpc.RegisterJobRequest, _ ...grpc.CallOption) (*rpc.RegisterJobReply, error) {
	return l.g.RegisterJob(ctx, in)
}

func (l localGcs) CreateActor(ctx context.Context, in *rpc.ActorSpec, _ ...grpc.CallOption) (*rpc.CreateActorReply, error) {
	return l.g.CreateActor(ctx, in)
}

func (l localGcs) GetActor(ctx context.Context, in *rpc.GetActorRequest, _ ...grpc.CallOption) (*rpc.ActorInfo, error) {
	return l.g.GetActor(ctx, in)
}

func (l localGcs) KillActor(ctx context.Context, in *rpc.KillActorRequest, _ ...grpc.CallOption) (*rpc.KillActorReply, error) {
	return l.g.KillActor(ctx, in)
}

func (l localGcs) ListActors(ctx context.Context, in *rpc.ListActorsRequest, _ ...grpc.CallOption) (*rpc.ListActorsReply, error) {
	return l.g.ListActors(ctx, in)
}

func (l localGcs) ListJobs(ctx context.Context, in *rpc.ListJobsRequest, _ ...grpc.CallOption) (*rpc.ListJobsReply, error) {
	return l.g.ListJobs(ctx, in)
}

func (l localGcs) ReportTaskEvents(ctx context.Context, in *rpc.ReportTaskEventsRequest, _ ...grpc.CallOption) (*rpc.ReportTaskEventsReply, error) {
	return l.g.ReportTaskEvents(ctx, in)
}

func (l localGcs) ListTasks(ctx context.Context, in *rpc.ListTasksRequest, _ ...grpc.CallOption) (*rpc.ListTasksReply, error) {
	return l.g.ListTasks(ctx, in)
}

func (l localRaylet) ListObjects(ctx context.Context, in *rpc.ListObjectsRequest, _ ...grpc.CallOption) (*rpc.ListObjectsReply, error) {
	return l.r.ListObjects(ctx, in)
}

func (l localGcs) GetMetrics(ctx context.Context, in *rpc.GetMetricsRequest, _ ...grpc.CallOption) (*rpc.MetricsReply, error) {
	return l.g.GetMetrics(ctx, in)
}

func (l localRaylet) ListWorkers(ctx context.Context, in *rpc.ListWorkersRequest, _ ...grpc.CallOption) (*rpc.ListWorkersReply, error) {
	return l.r.ListWorkers(ctx, in)
}

func (l localRaylet) CreatePlacementGroup(ctx context.Context, in *rpc.PlacementGroupSpec, _ ...grpc.CallOption) (*rpc.PlacementGroupReply, error) {
	return l.r.CreatePlacementGroup(ctx, in)
}

func (l localRaylet) RemovePlacementGroup(ctx context.Context, in *rpc.RemovePlacementGroupRequest, _ ...grpc.CallOption) (*rpc.PlacementGroupReply, error) {
	return l.r.RemovePlacementGroup(ctx, in)
}

func (l localRaylet) ListPlacementGroups(ctx context.Context, in *rpc.ListPlacementGroupsRequest, _ ...grpc.CallOption) (*rpc.ListPlacementGroupsReply, error) {
	return l.r.ListPlacementGroups(ctx, in)
}
