// Package bridge lets package actor reach the parts of package core that
// are not public API: core fills these in from init. (actor imports core,
// so core cannot import actor; a shared internal package breaks the cycle
// without exporting core's internals to applications.)
package bridge

import (
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/worker"
)

var (
	// Worker is a *core.Runtime's core worker.
	Worker func(rt any) *worker.CoreWorker
	// EncodeArgs checks and encodes arguments for fn, as Remote does.
	EncodeArgs func(rt any, fn *worker.Function, args []any) ([]worker.Arg, error)
	// Refs wraps object IDs (each with one live ref counted) as
	// []*core.ObjectRef.
	Refs func(rt any, ids []ids.ObjectID) any
	// Ref wraps one object ID (with one live ref counted) as a
	// *core.ObjectRef: Refs without the slice.
	Ref func(rt any, id ids.ObjectID) any
	// Failed makes n already-failed refs ([]*core.ObjectRef) whose Get
	// returns err's message as a *TaskError of kind like err.
	Failed func(rt any, fn string, n int, err error) any
	// ProcessRuntime is this process's runtime: a worker's own, or the
	// driver's most recent Init (nil if none). Handles decoded from values
	// bind to it.
	ProcessRuntime func() any
	// Closed reports whether a *core.Runtime was shut down.
	Closed func(rt any) bool
	// FuncOf is a *core.Func's registered function.
	FuncOf func(f any) *worker.Function

	// Set by package actor:

	// HandleInfo describes an *actor.Handle: its actor, class and the
	// runtime it calls through.
	HandleInfo func(h any) (id ids.ActorID, class *worker.Class, rt any, err error)
	// SystemCall runs fn (a registered function) in the actor's process,
	// with the instance reachable through worker.HostedActorFrom; it
	// returns []*core.ObjectRef.
	SystemCall func(h any, fn *worker.Function, args []any) any
)
