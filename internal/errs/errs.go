// Package errs holds the sentinel errors that several public packages share,
// so that channel.ErrChannelClosed and core.ErrChannelClosed (and the other
// re-exports) are the same value and errors.Is works whichever a caller
// names.
package errs

import "errors"

var (
	// ErrChannelClosed: the channel was closed; reads and writes after close fail.
	ErrChannelClosed = errors.New("goray: channel closed")
	// ErrTimeout: a blocking call ran past its deadline.
	ErrTimeout = errors.New("goray: timed out")
	// ErrPeerDied: the process at the other end of a channel exited.
	ErrPeerDied = errors.New("goray: peer process died")
	// ErrBadArgument: a call's arguments are invalid.
	ErrBadArgument = errors.New("goray: bad argument")
)

// ErrObjectStoreFull: the node's object store cannot hold an object even
// after evicting and spilling what it may; the message names the sizes.
var ErrObjectStoreFull = errors.New("goray: object store full")

// The runtime's sentinels (re-exported by core, actor and dag).
var (
	// ErrActorDied: the actor's process died and will not be restarted.
	ErrActorDied = errors.New("goray: actor died")
	// ErrObjectLost: every copy of an object is gone and it cannot be rebuilt.
	ErrObjectLost = errors.New("goray: object lost")
	// ErrTaskCancelled: the task was cancelled with Cancel.
	ErrTaskCancelled = errors.New("goray: task cancelled")
	// ErrNotRegistered: a function, actor class or type is not registered in the binary.
	ErrNotRegistered = errors.New("goray: not registered")
	// ErrCapacityExceeded: a bounded queue (a compiled graph's in-flight executions) is full.
	ErrCapacityExceeded = errors.New("goray: capacity exceeded")
	// ErrWorkerDied: the worker process running a task died, and retries are used up.
	ErrWorkerDied = errors.New("goray: worker died")
	// ErrInfeasible: no node of the cluster can ever satisfy a resource demand.
	ErrInfeasible = errors.New("goray: resource demand is infeasible")
	// ErrShutdown: the runtime was shut down.
	ErrShutdown = errors.New("goray: runtime shut down")
)
