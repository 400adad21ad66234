package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/rpc"
)

// PlacementGroupHandle is a placement group: bundles of resources reserved
// together, which tasks then run in with Strategy(PlacementGroup(pg, i)).
type PlacementGroupHandle struct {
	rt    *Runtime
	id    []byte
	ready chan struct{}
	err   error
	once  sync.Once
}

// Placement group strategies (Ray's). On a one-node cluster every strategy
// places all bundles on that node, except STRICT_SPREAD of several
// bundles, which cannot be placed.
const (
	PlacementPack         = "PACK"
	PlacementSpread       = "SPREAD"
	PlacementStrictPack   = "STRICT_PACK"
	PlacementStrictSpread = "STRICT_SPREAD"
)

// NewPlacementGroup reserves bundles (each a set of resources, e.g.
// {"CPU": 1}) with a strategy, in the background: Ready waits for them.
func NewPlacementGroup(rt *Runtime, bundles []map[string]float64, strategy string) (*PlacementGroupHandle, error) {
	if rt == nil {
		return nil, fmt.Errorf("core: NewPlacementGroup with a nil *Runtime: %w", ErrBadArgument)
	}
	pg := &PlacementGroupHandle{rt: rt, id: make([]byte, 16), ready: make(chan struct{})}
	rand.Read(pg.id)
	spec := &rpc.PlacementGroupSpec{PlacementGroupId: pg.id, Strategy: strategy, CreatorPid: int32(os.Getpid())}
	for _, b := range bundles {
		spec.Bundles = append(spec.Bundles, &rpc.Bundle{Resources: b})
	}
	go func() {
		defer close(pg.ready)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-rt.w.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
		if _, err := rt.w.Raylet().CreatePlacementGroup(ctx, spec); err != nil {
			pg.err = fmt.Errorf("core: placement group: %s", status.Convert(err).Message())
			if st := status.Convert(err); st.Code() == codes.FailedPrecondition || st.Code() == codes.InvalidArgument {
				pg.err = fmt.Errorf("core: placement group: %w: %s", ErrBadArgument, st.Message())
			}
		}
	}()
	return pg, nil
}

// ID is the group's ID (hex).
func (pg *PlacementGroupHandle) ID() string { return hex.EncodeToString(pg.id) }

// Ready waits until the bundles are reserved (or cannot be).
func (pg *PlacementGroupHandle) Ready(ctx context.Context) error {
	select {
	case <-pg.ready:
		return pg.err
	case <-ctx.Done():
		return fmt.Errorf("core: placement group %s: %w", pg.ID(), ctx.Err())
	}
}

// Remove gives the bundles back; tasks still running in them are killed.
func (pg *PlacementGroupHandle) Remove() error {
	var err error
	pg.once.Do(func() {
		_, err = pg.rt.w.Raylet().RemovePlacementGroup(context.Background(), &rpc.RemovePlacementGroupRequest{PlacementGroupId: pg.id})
	})
	return err
}
