package gcs

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/shm"
)

// The actor manager: the GCS creates every actor (it leases a dedicated
// worker from the raylet and asks it to run the constructor), watches its
// process, restarts it within MaxRestarts, and answers where it lives.
// Callers talk to the actor's worker directly; they come here only to find
// it, after a restart, and to learn why it died.

// ActorConfig connects the actor manager to the node.
type ActorConfig struct {
	Raylet rpc.RayletClient
	// Worker dials a worker's core-worker service.
	Worker func(addr string) (rpc.CoreWorkerClient, error)
	Logf   func(format string, args ...any)
}

type actorEntry struct {
	info    *rpc.ActorInfo
	spec    *rpc.ActorSpec
	leaseID string
	changed chan struct{} // closed and replaced at every change of info
	killed  bool          // Kill(noRestart): stays dead
}

type actors struct {
	cfg    ActorConfig
	byID   map[string]*actorEntry
	byName map[string]string // namespace + "\x00" + name → actor ID
	lease  map[string]string // lease ID → actor ID
	order  []string          // creation order, for listing
	ctx    context.Context   // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// EnableActors starts the actor manager.
func (g *Server) EnableActors(cfg ActorConfig) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.mu.Lock()
	defer g.mu.Unlock()
	g.actors = &actors{cfg: cfg, byID: map[string]*actorEntry{}, byName: map[string]string{},
		lease: map[string]string{}, ctx: ctx, cancel: cancel}
}

// Close stops the actor manager: pending creations give up. The actors'
// processes belong to the raylet, which stops them.
func (g *Server) Close() {
	g.mu.Lock()
	a := g.actors
	g.mu.Unlock()
	if a == nil {
		return
	}
	a.cancel()
	a.wg.Wait()
}

func nameKey(ns, name string) string { return ns + "\x00" + name }

func (g *Server) actorMgr() (*actors, error) {
	if g.actors == nil {
		return nil, status.Error(codes.Unimplemented, "gcs: this cluster has no actor manager")
	}
	return g.actors, nil
}

// CreateActor registers an actor and starts making it.
func (g *Server) CreateActor(_ context.Context, spec *rpc.ActorSpec) (*rpc.CreateActorReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, err := g.actorMgr()
	if err != nil {
		return nil, err
	}
	if len(spec.ActorId) != ids.ActorIDSize {
		return nil, status.Errorf(codes.InvalidArgument, "gcs: create actor: want a %d-byte actor ID, got %d bytes", ids.ActorIDSize, len(spec.ActorId))
	}
	if _, dup := a.byID[string(spec.ActorId)]; dup {
		return nil, status.Errorf(codes.AlreadyExists, "gcs: actor %x already exists", spec.ActorId)
	}
	if spec.Name != "" {
		if other, taken := a.byName[nameKey(spec.Namespace, spec.Name)]; taken {
			return nil, status.Errorf(codes.AlreadyExists, "gcs: an actor named %q already exists in namespace %q (actor %x): pick another name, or get it with actor.Get",
				spec.Name, spec.Namespace, []byte(other))
		}
		a.byName[nameKey(spec.Namespace, spec.Name)] = string(spec.ActorId)
	}
	e := &actorEntry{spec: proto.Clone(spec).(*rpc.ActorSpec), changed: make(chan struct{}),
		info: &rpc.ActorInfo{ActorId: spec.ActorId, Class: spec.Class, Name: spec.Name, Namespace: spec.Namespace,
			State: rpc.ActorState_ACTOR_PENDING, Detached: spec.Detached, MaxTaskRetries: spec.MaxTaskRetries,
			Resources: spec.Resources, MaxConcurrency: spec.MaxConcurrency}}
	a.byID[string(spec.ActorId)] = e
	a.order = append(a.order, string(spec.ActorId))
	g.scheduleLocked(e)
	return &rpc.CreateActorReply{ActorId: spec.ActorId}, nil
}

// changedLocked publishes a change of e.info to waiters.
func (e *actorEntry) changedLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// deadLocked ends an actor for good.
func (g *Server) deadLocked(e *actorEntry, cause string) {
	a := g.actors
	if e.info.State == rpc.ActorState_ACTOR_DEAD {
		return
	}
	e.info.State, e.info.DeathCause, e.info.Address, e.info.Pid = rpc.ActorState_ACTOR_DEAD, cause, "", 0
	if e.info.Name != "" && a.byName[nameKey(e.info.Namespace, e.info.Name)] == string(e.info.ActorId) {
		delete(a.byName, nameKey(e.info.Namespace, e.info.Name))
	}
	if e.leaseID != "" {
		delete(a.lease, e.leaseID)
		id := e.leaseID
		e.leaseID = ""
		g.goActors(func(ctx context.Context) {
			a.cfg.Raylet.ReturnLease(ctx, &rpc.ReturnLeaseRequest{LeaseId: []byte(id), WorkerFailed: true})
		})
	}
	e.changedLocked()
}

func (g *Server) goActors(f func(ctx context.Context)) {
	a := g.actors
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f(a.ctx)
	}()
}

// scheduleLocked leases a dedicated worker for e and runs its constructor
// there, in the background.
func (g *Server) scheduleLocked(e *actorEntry) {
	a := g.actors
	incarnation := e.info.Incarnation
	spec := e.spec
	leaseID := make([]byte, 16)
	rand.Read(leaseID)
	// Known before it is granted: the worker may die before this goroutine
	// records it, and LeaseLost must still find the actor.
	a.lease[string(leaseID)] = string(e.info.ActorId)
	g.goActors(func(ctx context.Context) {
		req := &rpc.LeaseRequest{LeaseId: leaseID, Resources: spec.Resources, Dedicated: true, JobId: spec.JobId,
			PlacementGroup: spec.PlacementGroup, BundleIndex: spec.BundleIndex}
		if !spec.Detached {
			// The actor shares its owner's fate: the raylet ends the
			// lease (and kills the worker) when the owner process dies.
			req.SubmitterPid, req.SubmitterAddress = spec.OwnerPid, spec.OwnerAddress
		}
		rep, err := a.cfg.Raylet.RequestLease(ctx, req)
		if err != nil {
			g.mu.Lock()
			defer g.mu.Unlock()
			delete(a.lease, string(leaseID))
			if e.info.Incarnation == incarnation {
				g.deadLocked(e, fmt.Sprintf("no worker could be leased for it: %v", status.Convert(err).Message()))
			}
			return
		}
		g.mu.Lock()
		if e.info.Incarnation != incarnation || e.info.State == rpc.ActorState_ACTOR_DEAD {
			delete(a.lease, string(leaseID))
			g.mu.Unlock()
			a.cfg.Raylet.ReturnLease(ctx, &rpc.ReturnLeaseRequest{LeaseId: leaseID, WorkerFailed: true})
			return
		}
		e.leaseID = string(leaseID)
		g.mu.Unlock()

		var herr error
		var info *rpc.ErrorInfo
		c, err := a.cfg.Worker(rep.WorkerAddress)
		if err == nil {
			hctx, cancel := context.WithCancel(ctx)
			var r *rpc.HostActorReply
			r, herr = c.HostActor(hctx, &rpc.HostActorRequest{Spec: spec, GpuIds: rep.GpuIds, Incarnation: incarnation})
			cancel()
			if herr == nil {
				info = r.Error
			}
		} else {
			herr = err
		}

		g.mu.Lock()
		defer g.mu.Unlock()
		if e.info.Incarnation != incarnation || e.leaseID != string(leaseID) {
			return // died (LeaseLost) or killed meanwhile: that path decided
		}
		switch {
		case info != nil:
			g.deadLocked(e, fmt.Sprintf("its constructor failed: %s", info.Message))
		case herr != nil:
			// The worker died under the constructor: LeaseLost will
			// restart it or say why it is dead.
			a.cfg.Logf("gcs: actor %x: host: %v", e.info.ActorId, herr)
		default:
			e.info.State, e.info.Address, e.info.Pid, e.info.NodeId = rpc.ActorState_ACTOR_ALIVE, rep.WorkerAddress, rep.WorkerPid, rep.NodeId
			e.changedLocked()
		}
	})
}

// LeaseLost is the raylet's news that a leased worker died: an actor's
// process, maybe. The actor restarts if it may, or is dead.
func (g *Server) LeaseLost(leaseID string, pid int, how string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.actors
	if a == nil {
		return
	}
	id, ok := a.lease[leaseID]
	if !ok {
		return
	}
	delete(a.lease, leaseID)
	e := a.byID[id]
	if e == nil || e.info.State == rpc.ActorState_ACTOR_DEAD {
		return
	}
	e.leaseID = ""
	cause := fmt.Sprintf("its process (pid %d) died: %s", pid, how)
	switch {
	case e.killed:
		g.deadLocked(e, "it was killed with actor.Kill")
		return
	case !e.spec.Detached && e.spec.OwnerPid != 0 && !ownerAlive(e.spec.OwnerPid):
		g.deadLocked(e, cause+"; its owner (the process that created it) has exited, so it is not restarted")
		return
	case e.spec.MaxRestarts >= 0 && e.info.NumRestarts >= e.spec.MaxRestarts:
		g.deadLocked(e, fmt.Sprintf("%s; no restarts left (MaxRestarts %d)", cause, e.spec.MaxRestarts))
		return
	}
	e.info.NumRestarts++
	e.info.Incarnation++
	e.info.State, e.info.DeathCause, e.info.Address, e.info.Pid = rpc.ActorState_ACTOR_RESTARTING, cause, "", 0
	a.cfg.Logf("gcs: actor %x (%s): %s; restarting (%d of %d)", e.info.ActorId, e.info.Class, cause, e.info.NumRestarts, e.spec.MaxRestarts)
	e.changedLocked()
	g.scheduleLocked(e)
}

func ownerAlive(pid int32) bool {
	p, err := shm.ProcessOf(int(pid))
	return err == nil && p.Alive()
}

// GetActor describes an actor; with wait, once it is settled (ALIVE or
// DEAD) at min_incarnation or later.
func (g *Server) GetActor(ctx context.Context, req *rpc.GetActorRequest) (*rpc.ActorInfo, error) {
	for {
		g.mu.Lock()
		a, err := g.actorMgr()
		if err != nil {
			g.mu.Unlock()
			return nil, err
		}
		id := string(req.ActorId)
		if req.Name != "" {
			var ok bool
			if id, ok = a.byName[nameKey(req.Namespace, req.Name)]; !ok {
				g.mu.Unlock()
				return nil, status.Errorf(codes.NotFound, "gcs: no actor named %q in namespace %q", req.Name, req.Namespace)
			}
		}
		e := a.byID[id]
		if e == nil {
			g.mu.Unlock()
			return nil, status.Errorf(codes.NotFound, "gcs: no actor %x", req.ActorId)
		}
		settled := e.info.State == rpc.ActorState_ACTOR_DEAD ||
			e.info.State == rpc.ActorState_ACTOR_ALIVE && e.info.Incarnation >= req.MinIncarnation
		if !req.Wait || settled {
			info := proto.Clone(e.info).(*rpc.ActorInfo)
			g.mu.Unlock()
			return info, nil
		}
		changed := e.changed
		g.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-a.ctx.Done():
			return nil, status.Error(codes.Unavailable, "gcs: shutting down")
		}
	}
}

// KillActor kills an actor's process. With no_restart it is dead for good;
// otherwise it restarts as after a crash, within MaxRestarts.
func (g *Server) KillActor(_ context.Context, req *rpc.KillActorRequest) (*rpc.KillActorReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, err := g.actorMgr()
	if err != nil {
		return nil, err
	}
	e := a.byID[string(req.ActorId)]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "gcs: no actor %x", req.ActorId)
	}
	if e.info.State == rpc.ActorState_ACTOR_DEAD {
		return &rpc.KillActorReply{}, nil
	}
	if req.NoRestart {
		e.killed = true
		g.deadLocked(e, "it was killed with actor.Kill")
		return &rpc.KillActorReply{}, nil
	}
	if e.leaseID != "" {
		id := e.leaseID
		g.goActors(func(ctx context.Context) {
			a.cfg.Raylet.KillWorker(ctx, &rpc.KillWorkerRequest{LeaseId: []byte(id), Reason: "actor.Kill (restart allowed)"})
		})
	}
	return &rpc.KillActorReply{}, nil
}

// ListActors lists the actors in creation order.
func (g *Server) ListActors(context.Context, *rpc.ListActorsRequest) (*rpc.ListActorsReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, err := g.actorMgr()
	if err != nil {
		return nil, err
	}
	out := &rpc.ListActorsReply{}
	for _, id := range a.order {
		out.Actors = append(out.Actors, proto.Clone(a.byID[id].info).(*rpc.ActorInfo))
	}
	return out, nil
}
