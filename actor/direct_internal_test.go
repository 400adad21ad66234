package actor

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/tensor"
)

// received counts the tensors this process received peer to peer.
var received atomic.Int64

func init() { receivedHook = func() { received.Add(1) } }

// DirectWorker is the direct-transport test actor (registered here, in
// the package, so that tests can read the transport's state).
type DirectWorker struct{ rank int }

func (w *DirectWorker) Make(_ context.Context, n int) (*tensor.Tensor, error) {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(w.rank*1000 + i)
	}
	return tensor.FromSlice(v)
}

// Plain is Make without KeepTensors.
func (w *DirectWorker) Plain(ctx context.Context, n int) (*tensor.Tensor, error) {
	return w.Make(ctx, n)
}

func (w *DirectWorker) Sum(_ context.Context, t *tensor.Tensor) (float64, error) {
	v, err := tensor.As[float32](t)
	if err != nil {
		return 0, err
	}
	s := 0.0
	for _, x := range v {
		s += float64(x)
	}
	return s, nil
}

// State is what this process's transport holds: kept tensors, tensors
// received peer to peer, pair communicators.
func (w *DirectWorker) State(context.Context) ([]int64, error) {
	dmu.Lock()
	defer dmu.Unlock()
	return []int64{int64(len(kept)), received.Load(), int64(len(pairs))}, nil
}

// DirectWorkerClass is exported to the external tests.
var DirectWorkerClass = Register("actor.DirectWorker", func(_ context.Context, rank int) (*DirectWorker, error) {
	return &DirectWorker{rank: rank}, nil
}).KeepTensors("Make")

// FuzzParseMarker: a kept tensor's marker comes from the object store or
// another process; whatever the bytes, parseMarker returns a checked marker
// or an error, and never panics.
func FuzzParseMarker(f *testing.F) {
	good, err := codec.Marshal(&directRef{Producer: &Handle{class: DirectWorkerClass.c}, Object: make([]byte, len(ids.ObjectID{})),
		Meta: tensor.AppendMeta(nil, tensor.Meta{DType: tensor.Float16, Shape: []int{2, 3}})})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, meta, _, err := parseMarker(b)
		if err != nil {
			return
		}
		if m.Producer == nil {
			t.Fatal("a marker without a producer was accepted")
		}
		if _, err := meta.NumBytes(); err != nil {
			t.Fatalf("accepted metadata with a bad size: %v", err)
		}
	})
}
