package nccl_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/nccl"
	"github.com/goray/goray/tensor"
)

func TestJoinAll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := nccl.CPU.NewUniqueID()
	require.NoError(t, err)
	b, err := nccl.CPU.NewUniqueID()
	require.NoError(t, err)
	// Both ranks of two communicators, in an order that joining one by one
	// would deadlock on (rank 0 of a waits for rank 1 of a, listed last).
	comms, err := nccl.JoinAll(ctx, []nccl.Join{
		{Backend: "cpu", ID: a[:], Rank: 0, Size: 2, Device: -1},
		{Backend: "cpu", ID: b[:], Rank: 0, Size: 2, Device: -1},
		{Backend: "cpu", ID: b[:], Rank: 1, Size: 2, Device: -1},
		{Backend: "cpu", ID: a[:], Rank: 1, Size: 2, Device: -1},
	})
	require.NoError(t, err)
	require.Len(t, comms, 4)
	x, y := tensor.Zeros(tensor.Int32, 2), tensor.Zeros(tensor.Int32, 2)
	v, _ := tensor.As[int32](x)
	v[0], v[1] = 3, 4
	done := make(chan error, 1)
	go func() { done <- comms[0].Send(ctx, x, 1, cuda.Stream{}) }()
	require.NoError(t, comms[3].Recv(ctx, y, 0, cuda.Stream{}))
	require.NoError(t, <-done)
	assert.True(t, y.Equal(x))
	for _, c := range comms {
		require.NoError(t, c.Close())
	}

	// A join that cannot happen cancels the others at once.
	c, err := nccl.CPU.NewUniqueID()
	require.NoError(t, err)
	start := time.Now()
	_, err = nccl.JoinAll(ctx, []nccl.Join{
		{Backend: "cpu", ID: c[:], Rank: 0, Size: 2, Device: -1}, // its rank 1 never comes
		{Backend: "no-such-backend", ID: c[:], Rank: 1, Size: 2},
	})
	require.ErrorIs(t, err, nccl.ErrUnavailable)
	assert.Less(t, time.Since(start), 5*time.Second)
	_, err = nccl.JoinAll(ctx, []nccl.Join{{Backend: "cpu", ID: []byte{1, 2}, Size: 1}})
	require.ErrorIs(t, err, nccl.ErrBadArgument)
}
