package core

import (
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/worker"
)

// TaskError is a failed task as its caller sees it (through Get): the
// remote error's message, Go type and stack, and the task's name.
// errors.Is matches the sentinels the remote error matched, when they are
// registered (RegisterError) — this package's own always are.
type TaskError = worker.TaskError

// Errors. Each is a sentinel for errors.Is; most come wrapped in a
// *TaskError or with a message naming the object or task.
var (
	ErrActorDied        = errs.ErrActorDied
	ErrObjectLost       = errs.ErrObjectLost
	ErrTaskCancelled    = errs.ErrTaskCancelled
	ErrObjectStoreFull  = errs.ErrObjectStoreFull
	ErrTimeout          = errs.ErrTimeout
	ErrNotRegistered    = errs.ErrNotRegistered
	ErrBadArgument      = errs.ErrBadArgument
	ErrChannelClosed    = errs.ErrChannelClosed
	ErrCapacityExceeded = errs.ErrCapacityExceeded
	// ErrWorkerDied: a task's worker process died and its retries are used up.
	ErrWorkerDied = errs.ErrWorkerDied
	// ErrInfeasible: no node of the cluster can ever satisfy a task's resource demand.
	ErrInfeasible = errs.ErrInfeasible
	// ErrShutdown: the runtime (or the ref's runtime) was shut down.
	ErrShutdown = errs.ErrShutdown
)

// RegisterError makes err recognisable across processes: when a task fails
// with an error that matches err (errors.Is), the caller's TaskError wraps
// err too, and RetryOn(err) can retry it. Register at package level, so
// that every process of the binary has it; the error's message names it
// and must be unique. It returns err, for use in a var declaration:
//
//	var ErrFlaky = core.RegisterError(errors.New("flaky backend"))
func RegisterError(err error) error { return worker.RegisterError(err) }

func isRegistered(err error) bool { return worker.IsRegisteredError(err) }
