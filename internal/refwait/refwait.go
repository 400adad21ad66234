// Package refwait waits for a set of system calls that must all succeed
// (starting the loops of a compiled graph, joining the communicators of an
// actor group): all at once, cancelling the rest on the first failure.
package refwait

import (
	"context"

	"github.com/goray/goray/core"
)

// AllOrCancel waits for every ref (each a bool result) at once. On the
// first failure it cancels the others, which may be waiting for the one
// that failed (a communicator's join), so that they let go at once, and it
// returns that failure, through wrap(i, err) for refs[i]. It waits for all
// of them either way.
func AllOrCancel(ctx context.Context, refs []*core.ObjectRef, wrap func(i int, err error) error) error {
	errc := make(chan error, len(refs))
	for i, r := range refs {
		go func() {
			_, err := core.Get[bool](ctx, r)
			if err != nil {
				err = wrap(i, err)
			}
			errc <- err
		}()
	}
	var first error
	for range refs {
		if err := <-errc; err != nil && first == nil {
			first = err
			for _, r := range refs {
				core.Cancel(r, false)
			}
		}
	}
	return first
}
