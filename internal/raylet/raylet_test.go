package raylet

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestFromFloats(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]float64
		want Resources
		err  string
	}{
		{map[string]float64{"CPU": 0.5, "GPU": 0}, Resources{"CPU": 5000}, ""},
		{map[string]float64{"CPU": 0.1 + 0.2}, Resources{"CPU": 3000}, ""},
		{map[string]float64{"CPU": -1}, nil, "CPU = -1"},
		{map[string]float64{"GPU": 1.5}, nil, "whole number"},
		{map[string]float64{"x": 0.00001}, nil, "smallest amount"},
		{map[string]float64{"": 1}, nil, "empty name"},
	} {
		got, err := FromFloats(tc.in)
		if tc.err != "" {
			require.ErrorIs(t, err, errs.ErrBadArgument)
			require.Contains(t, err.Error(), tc.err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
	r := Resources{"CPU": 20000}
	require.True(t, r.Fits(Resources{"CPU": 5000}))
	require.False(t, r.Fits(Resources{"GPU": 1}))
	require.Equal(t, "CPU=2", r.String())
}

func newRaylet(t *testing.T, cmd func(string) (*exec.Cmd, error)) *Raylet {
	t.Helper()
	res, err := FromFloats(map[string]float64{"CPU": 2, "GPU": 1})
	require.NoError(t, err)
	r, err := New(Config{NodeID: []byte("node"), JobID: []byte("job1"), Resources: res, RegisterTimeout: 10 * time.Second,
		WorkerCommand: func(id string, _ []byte) (*exec.Cmd, error) { return cmd(id) }})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(time.Second) })
	return r
}

// A binary that exits instead of serving (its main never calls
// core.Init) makes lease requests fail with a message that says so.
func TestWorkersThatNeverRegister(t *testing.T) {
	r := newRaylet(t, func(string) (*exec.Cmd, error) { return exec.Command("/bin/true"), nil })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.RequestLease(ctx, &rpc.LeaseRequest{LeaseId: []byte("l1"), Resources: map[string]float64{"CPU": 1}})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Contains(t, err.Error(), "exited before registering")
	require.Contains(t, err.Error(), "call core.Init at the start of main")
}

func TestLeaseRequestsRefused(t *testing.T) {
	r := newRaylet(t, func(string) (*exec.Cmd, error) { return exec.Command("/bin/true"), nil })
	ctx := context.Background()
	for _, tc := range []struct {
		req  *rpc.LeaseRequest
		code codes.Code
		msg  string
	}{
		{&rpc.LeaseRequest{LeaseId: []byte("a"), Resources: map[string]float64{"CPU": 3}}, codes.FailedPrecondition, "needs CPU=3 but the cluster has CPU=2, GPU=1"},
		{&rpc.LeaseRequest{LeaseId: []byte("b"), Resources: map[string]float64{"TPU": 1}}, codes.FailedPrecondition, "infeasible"},
		{&rpc.LeaseRequest{LeaseId: []byte("c"), Resources: map[string]float64{"CPU": -1}}, codes.InvalidArgument, "not negative"},
		{&rpc.LeaseRequest{Resources: map[string]float64{"CPU": 1}}, codes.InvalidArgument, "without an ID"},
		{&rpc.LeaseRequest{LeaseId: []byte("d"), Strategy: rpc.Strategy_STRATEGY_NODE_AFFINITY, NodeId: []byte("elsewhere")}, codes.FailedPrecondition, "soft affinity"},
	} {
		_, err := r.RequestLease(ctx, tc.req)
		require.Equal(t, tc.code, status.Code(err), "%v", err)
		require.Contains(t, err.Error(), tc.msg)
	}
	// A cancelled request leaves nothing queued.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	r2 := newRaylet(t, func(string) (*exec.Cmd, error) { return exec.Command("/bin/sleep", "30"), nil })
	_, err := r2.RequestLease(cctx, &rpc.LeaseRequest{LeaseId: []byte("e"), Resources: map[string]float64{"CPU": 1}})
	require.Equal(t, codes.DeadlineExceeded, status.Code(err))
	r2.mu.Lock()
	require.Empty(t, r2.queue)
	r2.mu.Unlock()
}

// The scheduling state, driven directly: grants follow free resources and
// idle workers; a blocked task lends its CPUs; returns give them back.
func TestDispatch(t *testing.T) {
	r := newRaylet(t, func(string) (*exec.Cmd, error) { return exec.Command("/bin/sleep", "30"), nil })
	r.mu.Lock()
	for _, id := range []string{"w1", "w2", "w3"} { // three registered, idle workers
		r.workers[id] = &workerProc{id: id, cmd: exec.Command("true"), state: idle, since: time.Now()}
	}
	queue := func(id string, cpu float64) *pending {
		d, _ := FromFloats(map[string]float64{"CPU": cpu})
		p := &pending{req: &rpc.LeaseRequest{LeaseId: []byte(id)}, demand: d, done: make(chan *lease, 1)}
		r.queue = append(r.queue, p)
		return p
	}
	a, b, c := queue("a", 1), queue("b", 0.5), queue("c", 1)
	r.dispatchLocked()
	require.Len(t, a.done, 1)
	require.Len(t, b.done, 1)
	require.Len(t, c.done, 0, "0.5 CPU left; c needs 1")
	require.Equal(t, int64(5000), r.avail[CPU])
	r.mu.Unlock()

	// a waits in Get: its CPU runs c meanwhile.
	ctx := context.Background()
	_, err := r.SetBlocked(ctx, &rpc.SetBlockedRequest{LeaseId: []byte("a"), Blocked: true})
	require.NoError(t, err)
	require.Len(t, c.done, 1)
	r.mu.Lock()
	require.Equal(t, int64(5000), r.avail[CPU])
	r.mu.Unlock()
	// a takes its CPU back (oversubscribed for a moment), then all return.
	_, err = r.SetBlocked(ctx, &rpc.SetBlockedRequest{LeaseId: []byte("a"), Blocked: false})
	require.NoError(t, err)
	r.mu.Lock()
	require.Equal(t, int64(-5000), r.avail[CPU])
	r.mu.Unlock()
	for _, id := range []string{"a", "b", "c"} {
		_, err = r.ReturnLease(ctx, &rpc.ReturnLeaseRequest{LeaseId: []byte(id)})
		require.NoError(t, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Equal(t, int64(20000), r.avail[CPU])
	require.Empty(t, r.leases)
	for _, w := range r.workers {
		require.Equal(t, idle, w.state)
		w.cmd = exec.Command("true") // never started: nothing for Close to signal
	}
	clear(r.workers)
}

// A request whose caller gave up as it was granted (both ready at once)
// leaves nothing leased: the caller will never hear of the lease. And
// returning a lease the raylet does not hold (the caller's belt and braces
// for the same race) is a no-op.
func TestLeaseGrantedAsCallerGivesUp(t *testing.T) {
	r := newRaylet(t, func(string) (*exec.Cmd, error) { return exec.Command("/bin/sleep", "30"), nil })
	r.mu.Lock()
	r.workers["w1"] = &workerProc{id: "w1", job: "job1", cmd: exec.Command("true"), state: idle, since: time.Now()}
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 50 { // the select picks either ready case: try both many times
		_, err := r.RequestLease(ctx, &rpc.LeaseRequest{LeaseId: []byte(fmt.Sprint("l", i)), JobId: []byte("job1"),
			Resources: map[string]float64{"CPU": 1}})
		require.Equal(t, codes.Canceled, status.Code(err), "try %d: %v", i, err)
		r.mu.Lock()
		require.Empty(t, r.leases, "try %d", i)
		require.Equal(t, int64(20000), r.avail[CPU], "try %d", i)
		r.mu.Unlock()
	}
	_, err := r.ReturnLease(context.Background(), &rpc.ReturnLeaseRequest{LeaseId: []byte("never-granted")})
	require.NoError(t, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.workers {
		require.Equal(t, idle, w.state)
		w.cmd = exec.Command("true")
	}
	clear(r.workers)
}
