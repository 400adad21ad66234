package worker

import (
	"context"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
)

// service is the CoreWorker gRPC service of a core worker.
type service struct {
	rpc.UnimplementedCoreWorkerServer
	w *CoreWorker
}

func (s *service) Attach(ctx context.Context, req *rpc.AttachRequest) (*rpc.AttachReply, error) {
	if s.w.exec == nil {
		return nil, status.Error(codes.FailedPrecondition, "goray: a driver does not run tasks")
	}
	if len(req.LeaseId) == 0 && len(req.ActorId) == 0 || req.RequestRing == "" || req.ReplyRing == "" {
		return nil, status.Error(codes.InvalidArgument, "goray: attach needs a lease or actor ID and both rings")
	}
	if err := s.w.exec.attach(ctx, req); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &rpc.AttachReply{}, nil
}

// GetObject answers a borrower: it waits until the object is ready.
func (s *service) GetObject(ctx context.Context, req *rpc.GetObjectRequest) (*rpc.GetObjectReply, error) {
	if len(req.ObjectId) != ids.ObjectIDSize {
		return nil, status.Errorf(codes.InvalidArgument, "goray: object ID of %d bytes, want %d", len(req.ObjectId), ids.ObjectIDSize)
	}
	id := objectIDOf(req.ObjectId)
	w := s.w
	w.mu.Lock()
	o := w.objects[id]
	if o == nil || !o.owned {
		w.mu.Unlock()
		return &rpc.GetObjectReply{Object: &rpc.ReturnObject{ObjectId: id[:], Error: lostInfo(id, "its owner no longer has it (freed)")}}, nil
	}
	w.mu.Unlock()
	v, err := w.Get(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		w.mu.Lock()
		info := o.err
		w.mu.Unlock()
		if info == nil {
			info = lostInfo(id, err.Error())
		}
		return &rpc.GetObjectReply{Object: &rpc.ReturnObject{ObjectId: id[:], Error: info}}, nil
	}
	if v.Stored {
		return &rpc.GetObjectReply{Object: &rpc.ReturnObject{ObjectId: id[:], InStore: true}}, nil
	}
	return &rpc.GetObjectReply{Object: &rpc.ReturnObject{ObjectId: id[:], Value: v.Data}}, nil
}

func (s *service) OwnedObjects(_ context.Context, req *rpc.OwnedObjectsRequest) (*rpc.OwnedObjectsReply, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	out := &rpc.OwnedObjectsReply{}
	for _, b := range req.ObjectIds {
		if len(b) != ids.ObjectIDSize {
			continue
		}
		o := s.w.objects[objectIDOf(b)]
		if o == nil || !o.owned {
			continue
		}
		n := 0
		for _, c := range o.borrowers {
			n += c
		}
		out.Objects = append(out.Objects, &rpc.OwnedObject{ObjectId: b, LocalRefs: int32(o.local), Submitted: int32(o.submitted), Borrowers: int32(n)})
	}
	return out, nil
}

func (s *service) HostActor(ctx context.Context, req *rpc.HostActorRequest) (*rpc.HostActorReply, error) {
	if s.w.exec == nil {
		return nil, status.Error(codes.FailedPrecondition, "goray: HostActor on a driver: actors live in worker processes")
	}
	return &rpc.HostActorReply{Error: s.w.exec.host(ctx, req)}, nil
}

func (s *service) AddBorrower(_ context.Context, req *rpc.BorrowerRequest) (*rpc.BorrowerReply, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.borrowersLocked(req, true)
	return &rpc.BorrowerReply{}, nil
}

func (s *service) RemoveBorrower(_ context.Context, req *rpc.BorrowerRequest) (*rpc.BorrowerReply, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.borrowersLocked(req, false)
	return &rpc.BorrowerReply{}, nil
}

func (s *service) CancelTask(_ context.Context, req *rpc.CancelTaskRequest) (*rpc.CancelTaskReply, error) {
	if s.w.exec == nil || len(req.TaskId) != ids.TaskIDSize {
		return &rpc.CancelTaskReply{}, nil
	}
	return &rpc.CancelTaskReply{Found: s.w.exec.cancel(taskIDOf(req.TaskId))}, nil
}

// Exit makes a worker process exit soon after the reply.
func (s *service) Exit(_ context.Context, req *rpc.ExitRequest) (*rpc.ExitReply, error) {
	if s.w.exec == nil {
		return &rpc.ExitReply{}, nil
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		os.Exit(0)
	}()
	return &rpc.ExitReply{Exiting: true}, nil
}
