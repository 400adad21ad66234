package core

import (
	"context"

	"google.golang.org/grpc"

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
