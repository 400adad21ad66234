package core

import (
	"sync/atomic"

	"github.com/goray/goray/internal/bridge"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/worker"
)

// processRuntime is this process's runtime, for values decoded outside a
// runtime's own calls (actor handles).
var processRuntime atomic.Pointer[Runtime]

func init() {
	bridge.Worker = func(rt any) *worker.CoreWorker { return rt.(*Runtime).w }
	bridge.EncodeArgs = func(rt any, fn *worker.Function, args []any) ([]worker.Arg, error) {
		return encodeArgs(rt.(*Runtime), fn, args)
	}
	bridge.Refs = func(rt any, idList []ids.ObjectID) any { return rt.(*Runtime).refs(idList) }
	bridge.Ref = func(rt any, id ids.ObjectID) any { return rt.(*Runtime).newRef(id) }
	bridge.Failed = func(rt any, fn string, n int, err error) any {
		return rt.(*Runtime).failed(fn, n, kindOf(err), err.Error())
	}
	bridge.ProcessRuntime = func() any {
		if rt := processRuntime.Load(); rt != nil {
			return rt
		}
		return nil
	}
	bridge.Closed = func(rt any) bool { return rt.(*Runtime).w.Closed() }
	bridge.FuncOf = func(f any) *worker.Function { return f.(*Func).f }
}
