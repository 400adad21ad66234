package worker

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/rpc"
)

// TaskError is a task's failure as its caller sees it: the remote error's
// message, type and stack, the task's name, and (for errors.Is) the
// registered sentinels the remote error matched.
type TaskError struct {
	Function string // the registered function (or actor method)
	Task     string // the task's name: Name(…) or the function's
	Message  string // the remote error's message
	Type     string // the remote error's Go type
	Stack    string // where it failed: the panic's stack, or the task's
	Panicked bool
	causes   []error
}

func (e *TaskError) Error() string {
	verb := "failed"
	if e.Panicked {
		verb = "panicked"
	}
	return fmt.Sprintf("task %s %s: %s", e.Task, verb, e.Message)
}

// Unwrap gives errors.Is and errors.As the sentinels the remote error
// matched.
func (e *TaskError) Unwrap() []error { return e.causes }

// errorFromInfo rebuilds a remote failure.
func errorFromInfo(info *rpc.ErrorInfo) error {
	e := &TaskError{Function: info.Function, Task: info.Function, Message: info.Message,
		Type: info.Type, Stack: info.Stack, Panicked: info.Panicked}
	if info.Task != "" {
		e.Task = info.Task
	}
	seen := map[error]bool{}
	add := func(err error) {
		if err != nil && !seen[err] {
			seen[err] = true
			e.causes = append(e.causes, err)
		}
	}
	switch info.Kind {
	case rpc.ErrorKind_ERROR_CANCELLED:
		add(errs.ErrTaskCancelled)
	case rpc.ErrorKind_ERROR_NOT_REGISTERED:
		add(errs.ErrNotRegistered)
	case rpc.ErrorKind_ERROR_BAD_ARGUMENT:
		add(errs.ErrBadArgument)
	case rpc.ErrorKind_ERROR_WORKER_DIED:
		add(errs.ErrWorkerDied)
	case rpc.ErrorKind_ERROR_OBJECT_LOST:
		add(errs.ErrObjectLost)
	case rpc.ErrorKind_ERROR_OBJECT_STORE_FULL:
		add(errs.ErrObjectStoreFull)
	case rpc.ErrorKind_ERROR_ACTOR_DIED:
		add(errs.ErrActorDied)
	}
	for _, name := range info.Sentinels {
		add(sentinelByName(name))
	}
	return e
}

// infoFromError describes a failure for the wire.
func infoFromError(fn, task string, err error, stack []byte, panicked bool) *rpc.ErrorInfo {
	// Protobuf strings must be UTF-8: an error text with other bytes would
	// make the whole reply unencodable.
	info := &rpc.ErrorInfo{Kind: rpc.ErrorKind_ERROR_APPLICATION, Message: strings.ToValidUTF8(err.Error(), "\uFFFD"), Function: fn, Task: task,
		Type: fmt.Sprintf("%T", err), Panicked: panicked, Sentinels: matchSentinels(err)}
	var te *TaskError
	if errors.As(err, &te) && te.Stack != "" {
		info.Stack = te.Stack // a nested task's failure keeps the deepest stack
	} else if stack != nil {
		info.Stack = strings.ToValidUTF8(string(stack), "\uFFFD")
	}
	switch {
	case errors.Is(err, errs.ErrTaskCancelled):
		info.Kind = rpc.ErrorKind_ERROR_CANCELLED
	case errors.Is(err, errs.ErrNotRegistered):
		info.Kind = rpc.ErrorKind_ERROR_NOT_REGISTERED
	case errors.Is(err, errs.ErrBadArgument) && !panicked:
		info.Kind = rpc.ErrorKind_ERROR_BAD_ARGUMENT
	}
	return info
}

func systemError(kind rpc.ErrorKind, fn, task, msg string) *rpc.ErrorInfo {
	return &rpc.ErrorInfo{Kind: kind, Function: fn, Task: task, Message: msg, Stack: string(debug.Stack())}
}
