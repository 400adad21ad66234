package raylet

import (
	"context"
	"slices"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/rpc"
)

// Placement groups: bundles of resources reserved together, which tasks
// and actors then run in. This is a one-node cluster, so every strategy
// but STRICT_SPREAD (each bundle on its own node) of more than one bundle
// places all bundles here; that one is infeasible, and says so.

type placementGroup struct {
	spec     *rpc.PlacementGroupSpec
	reserved []Resources // per bundle
	free     []Resources // per bundle: what leases have not taken
	state    string      // PENDING, CREATED, REMOVED
}

var pgStrategies = []string{"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"}

// CreatePlacementGroup reserves the bundles, waiting until they fit.
func (r *Raylet) CreatePlacementGroup(ctx context.Context, spec *rpc.PlacementGroupSpec) (*rpc.PlacementGroupReply, error) {
	if !slices.Contains(pgStrategies, spec.Strategy) {
		return nil, status.Errorf(codes.InvalidArgument, "raylet: placement group strategy %q: want one of %v", spec.Strategy, pgStrategies)
	}
	if len(spec.Bundles) == 0 {
		return nil, status.Error(codes.InvalidArgument, "raylet: a placement group needs at least one bundle")
	}
	if spec.Strategy == "STRICT_SPREAD" && len(spec.Bundles) > 1 {
		return nil, status.Errorf(codes.FailedPrecondition, "raylet: %v: STRICT_SPREAD puts each of %d bundles on its own node, and this cluster has one node",
			ErrInfeasible, len(spec.Bundles))
	}
	pg := &placementGroup{spec: spec, state: "PENDING"}
	sum := Resources{}
	for i, b := range spec.Bundles {
		res, err := FromFloats(b.Resources)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "raylet: bundle %d: %v", i, err)
		}
		pg.reserved = append(pg.reserved, res)
		pg.free = append(pg.free, res.Clone())
		sum.Add(res)
	}
	r.mu.Lock()
	if !r.total.Fits(sum) {
		total := r.total.String()
		r.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "raylet: %v: the placement group needs %s but the cluster has %s in all", ErrInfeasible, sum, total)
	}
	if _, dup := r.pgs[string(spec.PlacementGroupId)]; dup {
		r.mu.Unlock()
		return nil, status.Error(codes.AlreadyExists, "raylet: placement group already exists")
	}
	r.pgs[string(spec.PlacementGroupId)] = pg
	r.pgOrder = append(r.pgOrder, string(spec.PlacementGroupId))
	r.mu.Unlock()
	for {
		r.mu.Lock()
		switch {
		case pg.state == "REMOVED":
			r.mu.Unlock()
			return nil, status.Error(codes.Aborted, "raylet: the placement group was removed before its bundles fit")
		case r.closed:
			r.mu.Unlock()
			return nil, status.Error(codes.Unavailable, "raylet: shut down")
		case r.avail.Fits(sum):
			r.avail.Sub(sum)
			pg.state = "CREATED"
			r.mu.Unlock()
			return &rpc.PlacementGroupReply{}, nil
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// RemovePlacementGroup gives the bundles back; the workers running in them
// are killed (their tasks fail or retry), as in Ray.
func (r *Raylet) RemovePlacementGroup(_ context.Context, req *rpc.RemovePlacementGroupRequest) (*rpc.PlacementGroupReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pg := r.pgs[string(req.PlacementGroupId)]
	if pg == nil || pg.state == "REMOVED" {
		return &rpc.PlacementGroupReply{}, nil
	}
	if pg.state == "CREATED" {
		for _, f := range pg.free {
			r.avail.Add(f)
		}
	}
	pg.state = "REMOVED"
	for _, l := range r.leases {
		if l.pg == pg {
			l.worker.killed = "its placement group was removed"
			r.killLocked(l.worker, syscall.SIGKILL)
		}
	}
	r.dispatchLocked()
	return &rpc.PlacementGroupReply{}, nil
}

// ListPlacementGroups lists the groups in creation order.
func (r *Raylet) ListPlacementGroups(context.Context, *rpc.ListPlacementGroupsRequest) (*rpc.ListPlacementGroupsReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := &rpc.ListPlacementGroupsReply{}
	for _, id := range r.pgOrder {
		pg := r.pgs[id]
		out.Groups = append(out.Groups, &rpc.PlacementGroupInfo{PlacementGroupId: []byte(id), Name: pg.spec.Name,
			Strategy: pg.spec.Strategy, State: pg.state, Bundles: pg.spec.Bundles})
	}
	return out, nil
}

// pgLeaseCheckLocked validates a lease request for a placement group.
func (r *Raylet) pgLeaseCheckLocked(req *rpc.LeaseRequest, demand Resources) error {
	pg := r.pgs[string(req.PlacementGroup)]
	switch {
	case pg == nil:
		return status.Error(codes.NotFound, "raylet: no such placement group")
	case pg.state == "REMOVED":
		return status.Errorf(codes.FailedPrecondition, "raylet: %v: the placement group was removed", ErrInfeasible)
	case int(req.BundleIndex) >= len(pg.reserved) || req.BundleIndex < -1:
		return status.Errorf(codes.InvalidArgument, "raylet: bundle %d of a placement group of %d bundles", req.BundleIndex, len(pg.reserved))
	}
	for i, b := range pg.reserved {
		if (req.BundleIndex < 0 || int(req.BundleIndex) == i) && b.Fits(demand) {
			return nil
		}
	}
	return status.Errorf(codes.FailedPrecondition, "raylet: %v: a task needs %s, more than its placement group bundle holds", ErrInfeasible, demand)
}

// pgBundleLocked picks the bundle a pending lease can take now (-1: none).
func (p *pending) pgBundleLocked(r *Raylet) (*placementGroup, int) {
	pg := r.pgs[string(p.req.PlacementGroup)]
	if pg == nil || pg.state != "CREATED" {
		return pg, -1
	}
	for i, f := range pg.free {
		if (p.req.BundleIndex < 0 || int(p.req.BundleIndex) == i) && f.Fits(p.demand) {
			return pg, i
		}
	}
	return pg, -1
}
