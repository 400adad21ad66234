package worker

import (
	"context"
	"reflect"

	"github.com/goray/goray/internal/ids"
)

// Direct holds the hooks of the direct tensor transport (package actor
// fills them in; nil: off). A method marked KeepTensors returns tensors
// that stay in the actor's process: Keep swaps such a result for a small
// marker before it is encoded. Resolve turns a marker back into the tensor
// where a value is decoded (an argument, core.Get): it reports ok false
// for data that is not a marker. Dropped is told the inline encoding of
// every object its owner frees, so that a marker's producer can forget
// the tensor; it must return at once.
var Direct struct {
	Keep    func(ctx context.Context, actor ids.ActorID, class *Class, obj ids.ObjectID, v reflect.Value) (reflect.Value, error)
	Resolve func(ctx context.Context, self ids.ActorID, data []byte, t reflect.Type) (v reflect.Value, ok bool, err error)
	Dropped func(data []byte)
}

// KeepTensors marks methods whose *tensor.Tensor results stay in the
// actor's process (see Direct). It panics on a name that is not a remote
// method.
func (c *Class) KeepTensors(methods ...string) {
	for _, m := range methods {
		f, err := c.Method(m)
		if err != nil {
			panic(err)
		}
		f.KeepTensors = true
	}
}

// ResolveDirect decodes data through Direct.Resolve when it is a marker,
// for a reader that is the actor self (zero: not an actor).
func ResolveDirect(ctx context.Context, self ids.ActorID, data []byte, t reflect.Type) (reflect.Value, bool, error) {
	if Direct.Resolve == nil {
		return reflect.Value{}, false, nil
	}
	return Direct.Resolve(ctx, self, data, t)
}
