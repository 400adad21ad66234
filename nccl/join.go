package nccl

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Join is one rank of one communicator to join: the backend's name, the
// communicator's ID (UniqueID's 128 bytes), and Init's arguments.
type Join struct {
	Backend            string
	ID                 []byte
	Rank, Size, Device int
}

// JoinAll joins several communicators at once, each Init on its own
// goroutine: an Init returns only when all its ranks have joined, so a
// process that joins them one by one, in an order its peers do not share,
// could wait for ever. The first failure cancels the other joins (they
// wait for nothing now) and closes what was joined; the error names each
// failure.
func JoinAll(ctx context.Context, joins []Join) ([]Communicator, error) {
	if len(joins) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	comms := make([]Communicator, len(joins))
	errs := make([]error, len(joins))
	var wg sync.WaitGroup
	for i, j := range joins {
		wg.Go(func() {
			comms[i], errs[i] = join(ctx, j)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("join communicator %d (%s backend, rank %d of %d): %w", i, j.Backend, j.Rank, j.Size, errs[i])
				cancel()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range comms {
			if c != nil {
				c.Abort()
				c.Close()
			}
		}
		return nil, err
	}
	return comms, nil
}

func join(ctx context.Context, j Join) (Communicator, error) {
	b, err := Lookup(j.Backend)
	if err != nil {
		return nil, err
	}
	var id UniqueID
	if len(j.ID) != len(id) {
		return nil, fmt.Errorf("%w: a unique ID of %d bytes, want %d", ErrBadArgument, len(j.ID), len(id))
	}
	copy(id[:], j.ID)
	return b.Init(ctx, id, j.Rank, j.Size, j.Device)
}
