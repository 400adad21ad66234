package actor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/testutil"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

func sumTo(rank, n int) float64 {
	s := 0.0
	for i := range n {
		s += float64(rank*1000 + i)
	}
	return s
}

func directState(t *testing.T, h *actor.Handle) []int64 {
	t.Helper()
	st, err := core.Get[[]int64](testCtx(t), h.Call("State"))
	require.NoError(t, err)
	return st
}

func TestDirectTransport(t *testing.T) {
	ctx := testCtx(t)
	hs := make([]*actor.Handle, 3)
	for i := range hs {
		h, err := actor.DirectWorkerClass.Remote(rt, i+1)
		require.NoError(t, err)
		hs[i] = h
		t.Cleanup(func() { actor.Kill(h, true) })
	}
	a, b, c := hs[0], hs[1], hs[2]
	g, err := actor.NewGroup(ctx, nccl.CPU, a, b)
	require.NoError(t, err)
	t.Cleanup(func() { g.Destroy(testCtx(t)) })
	assert.Equal(t, []int64{0, 0, 2}, directState(t, a), "a pair communicator each way")

	const n = 300_000 // 1.2 MB: more than one chunk of the communicator
	ref := a.Call("Make", n)
	// b is in a's group: the tensor comes peer to peer.
	sum, err := core.Get[float64](ctx, b.Call("Sum", ref))
	require.NoError(t, err)
	assert.Equal(t, sumTo(1, n), sum)
	assert.Equal(t, int64(1), directState(t, b)[1], "b received the tensor from a directly")
	assert.Equal(t, int64(1), directState(t, a)[0], "a keeps it")
	// a reads its own tensor in place.
	sum, err = core.Get[float64](ctx, a.Call("Sum", ref))
	require.NoError(t, err)
	assert.Equal(t, sumTo(1, n), sum)
	// c is outside the group: a host copy through a.
	sum, err = core.Get[float64](ctx, c.Call("Sum", ref))
	require.NoError(t, err)
	assert.Equal(t, sumTo(1, n), sum)
	assert.Equal(t, int64(0), directState(t, c)[1])
	// The driver gets a host copy too.
	got, err := core.Get[*tensor.Tensor](ctx, ref)
	require.NoError(t, err)
	v, err := tensor.As[float32](got)
	require.NoError(t, err)
	assert.Equal(t, float32(1000+n-1), v[n-1])
	// Twice more, both ways, to use the pairs again.
	for range 2 {
		sum, err = core.Get[float64](ctx, a.Call("Sum", b.Call("Make", 10)))
		require.NoError(t, err)
		assert.Equal(t, sumTo(2, 10), sum)
	}
	assert.Equal(t, int64(2), directState(t, a)[1])
	// A method not marked KeepTensors returns its tensor by value.
	sum, err = core.Get[float64](ctx, b.Call("Sum", a.Call("Plain", 5)))
	require.NoError(t, err)
	assert.Equal(t, sumTo(1, 5), sum)

	// Freeing the ref frees the kept tensor in a.
	core.Free(ref)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := directState(t, a); st[0] != 0 {
			return assert.AnError
		}
		return nil
	})
}

func TestDirectTransportErrors(t *testing.T) {
	ctx := testCtx(t)
	a, err := actor.DirectWorkerClass.Remote(rt, 1)
	require.NoError(t, err)
	t.Cleanup(func() { actor.Kill(a, true) })
	_, err = actor.NewGroup(ctx, nccl.CPU, a)
	require.ErrorContains(t, err, "at least two")
	_, err = actor.NewGroup(ctx, nccl.CPU, a, a)
	require.ErrorContains(t, err, "repeated")
	_, err = actor.NewGroup(ctx, nil, a)
	require.ErrorContains(t, err, "nccl.CPU")
	require.Panics(t, func() { actor.DirectWorkerClass.KeepTensors("NoSuchMethod") })
}

// joinFailing is the CPU backend whose rank 1 cannot join.
type joinFailing struct{ nccl.Backend }

func (joinFailing) Name() string { return "actor-test-failing" }

func (b joinFailing) Init(ctx context.Context, id nccl.UniqueID, rank, size, device int) (nccl.Communicator, error) {
	if rank == 1 {
		return nil, errors.New("rank 1 cannot join (test)")
	}
	return b.Backend.Init(ctx, id, rank, size, device)
}

func init() { nccl.Register(joinFailing{nccl.CPU}) }

// A group one actor cannot join fails at once, and leaves the others free.
func TestNewGroupJoinFails(t *testing.T) {
	ctx := testCtx(t)
	hs := make([]*actor.Handle, 2)
	for i := range hs {
		h, err := actor.DirectWorkerClass.Remote(rt, i)
		require.NoError(t, err)
		hs[i] = h
		t.Cleanup(func() { actor.Kill(h, true) })
	}
	start := time.Now()
	_, err := actor.NewGroup(ctx, joinFailing{nccl.CPU}, hs...)
	require.ErrorContains(t, err, "rank 1 cannot join")
	for _, h := range hs {
		st := directState(t, h)
		assert.Equal(t, int64(0), st[2], "no pair communicator left behind")
	}
	assert.Less(t, time.Since(start), 15*time.Second)
}
