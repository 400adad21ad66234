package core_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/internal/testutil"
)

// markThenWait writes its pid to path when it starts, then waits: d, or
// until cancelled when cooperative, or regardless (time.Sleep) when not.
var markThenWait = core.Register("markThenWait", func(ctx context.Context, path string, d time.Duration, cooperative bool) (string, error) {
	rc, _ := core.RuntimeContextFrom(ctx)
	if rc.Attempt > 0 {
		return fmt.Sprintf("attempt %d", rc.Attempt), nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return "", err
	}
	if !cooperative {
		time.Sleep(d)
		return "slept", nil
	}
	select {
	case <-time.After(d):
		return "waited", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
})

// startedPID waits for markThenWait's pid file.
func startedPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(string(b))
		return err
	})
	return pid
}

// kill -9 of a worker mid-task: the task is retried on another worker and
// gives the right result.
func TestWorkerKilledMidTaskIsRetried(t *testing.T) {
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "pid")
	ref := markThenWait.Remote(rt, path, time.Minute, true)
	pid := startedPID(t, path)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	got, err := core.Get[string](ctx, ref)
	require.NoError(t, err)
	require.Equal(t, "attempt 1", got)

	// With no retries, the death is the task's error.
	path2 := filepath.Join(t.TempDir(), "pid")
	ref = markThenWait.Options(core.MaxRetries(0)).Remote(rt, path2, time.Minute, true)
	require.NoError(t, syscall.Kill(startedPID(t, path2), syscall.SIGKILL))
	_, err = core.Get[string](ctx, ref)
	require.ErrorIs(t, err, core.ErrWorkerDied)
	require.Contains(t, err.Error(), "MaxRetries")
}

var panicky = core.Register("panicky", func(_ context.Context, msg string) (int, error) {
	panic(msg)
})

// A panic is the task's error, with its message and stack; the worker
// goes on serving.
func TestPanicIsTaskError(t *testing.T) {
	ctx := ctxT(t)
	_, err := core.Get[int](ctx, panicky.Remote(rt, "boom at the depot"))
	var te *core.TaskError
	require.ErrorAs(t, err, &te)
	require.True(t, te.Panicked)
	require.Contains(t, te.Message, "boom at the depot")
	require.Contains(t, te.Stack, "core_test")
	require.Contains(t, err.Error(), "task panicky panicked")
	got, err := core.Get[int](ctx, add.Remote(rt, 1, 1))
	require.NoError(t, err)
	require.Equal(t, 2, got)
}

// Invalid submissions give refs that are already failed, saying what is
// wrong.
func TestBadArguments(t *testing.T) {
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		ref  *core.ObjectRef
		want string
	}{
		{"too many", add.Remote(rt, 1, 2, 3), "add takes 2 arguments (int, int) after the context, got 3 (int, int, int)"},
		{"too few", add.Remote(rt, 1), "got 1 (int)"},
		{"wrong type", add.Remote(rt, 1, "two"), "add argument 2: got string, want int"},
		{"does not fit", add.Remote(rt, 1, 2.5), "add argument 2: got float64 2.5, want int"},
		{"nil", add.Remote(rt, 1, nil), "got nil, want int"},
		{"func", concat.Remote(rt, "a", func() {}), "got func(), want string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := core.Get[int](ctx, tc.ref)
			require.ErrorIs(t, err, core.ErrBadArgument)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	// A result decoded as the wrong type says so.
	_, err := core.Get[string](ctx, add.Remote(rt, 1, 2))
	require.Error(t, err)
	require.Contains(t, err.Error(), "string")
}

// A function registered only in the driver (not at package level) is not
// in the workers: a clear error.
func TestUnregisteredFunction(t *testing.T) {
	ctx := ctxT(t)
	local := core.Register("registered-too-late", func(context.Context) (int, error) { return 1, nil })
	_, err := core.Get[int](ctx, local.Remote(rt))
	require.ErrorIs(t, err, core.ErrNotRegistered)
	require.Contains(t, err.Error(), "register it at package level")
}

func TestRefFromShutDownRuntime(t *testing.T) {
	ctx := ctxT(t)
	rt2, err := core.Init(ctx, core.NumCPUs(1), core.PrestartWorkers(0))
	require.NoError(t, err)
	ref := add.Remote(rt2, 20, 22)
	got, err := core.Get[int](ctx, ref)
	require.NoError(t, err)
	require.Equal(t, 42, got)
	require.NoError(t, rt2.Shutdown())
	require.NoError(t, rt2.Shutdown(), "idempotent")

	_, err = core.Get[int](ctx, ref)
	require.ErrorIs(t, err, core.ErrShutdown)
	_, err = core.Get[int](ctx, add.Remote(rt2, 1, 2))
	require.ErrorIs(t, err, core.ErrShutdown)
	_, err = core.Put(rt2, 1)
	require.ErrorIs(t, err, core.ErrShutdown)
	// The other runtime is unaffected.
	got, err = core.Get[int](ctx, add.Remote(rt, 1, 2))
	require.NoError(t, err)
	require.Equal(t, 3, got)
}

// The control plane refuses calls without the cluster's token, and
// garbage on its port does not hurt it.
func TestRPCNeedsToken(t *testing.T) {
	ctx := ctxT(t)
	addr, tokenFile := core.AddressOf(rt)
	st, err := os.Stat(tokenFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()
	_, err = rpc.NewRayletClient(cc).GetResources(ctx, &rpc.GetResourcesRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	_, err = rpc.NewGcsClient(cc).RegisterJob(ctx, &rpc.RegisterJobRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err))

	bad, err := rpc.Dial(addr, "not-the-token")
	require.NoError(t, err)
	defer bad.Close()
	_, err = rpc.NewCoreWorkerClient(bad).GetObject(ctx, &rpc.GetObjectRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err))

	sendGarbage(t, addr)
	got, err := core.Get[int](ctx, add.Remote(rt, 2, 2))
	require.NoError(t, err)
	require.Equal(t, 4, got)
}

func sendGarbage(t *testing.T, addr string) {
	t.Helper()
	for _, junk := range []string{"GET / HTTP/1.1\r\n\r\n", strings.Repeat("\xff", 4096), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00"} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		c.Write([]byte(junk))
		c.Close()
	}
}

var busy = core.Register("busy", func(ctx context.Context, d time.Duration) (int, error) {
	time.Sleep(d)
	return 1, nil
})

func TestCancel(t *testing.T) {
	ctx := ctxT(t)
	// Running, cooperative: its context is cancelled.
	path := filepath.Join(t.TempDir(), "pid")
	ref := markThenWait.Remote(rt, path, time.Minute, true)
	startedPID(t, path)
	require.NoError(t, core.Cancel(ref, false))
	_, err := core.Get[string](ctx, ref)
	require.ErrorIs(t, err, core.ErrTaskCancelled)

	// Running, ignoring its context: force kills the worker; no retry.
	path = filepath.Join(t.TempDir(), "pid")
	ref = markThenWait.Remote(rt, path, time.Minute, false)
	pid := startedPID(t, path)
	require.NoError(t, core.Cancel(ref, true))
	_, err = core.Get[string](ctx, ref)
	require.ErrorIs(t, err, core.ErrTaskCancelled)
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if p, err := shm.ProcessOf(pid); err == nil && p.Alive() {
			return fmt.Errorf("worker %d still alive", pid)
		}
		return nil
	})

	// Queued behind a task that holds every CPU: it never runs.
	blocker := busy.Options(core.NumCPUs(4)).Remote(rt, 300*time.Millisecond)
	queued := busy.Options(core.NumCPUs(4)).Remote(rt, time.Second)
	require.NoError(t, core.Cancel(queued, false))
	_, err = core.Get[int](ctx, queued)
	require.ErrorIs(t, err, core.ErrTaskCancelled)
	_, err = core.Get[int](ctx, blocker)
	require.NoError(t, err)

	// Finished: no effect.
	require.NoError(t, core.Cancel(blocker, true))
	v, err := core.Get[int](ctx, blocker)
	require.NoError(t, err)
	require.Equal(t, 1, v)
}

var bigResult = core.Register("bigResult", func(ctx context.Context, n int) ([]byte, error) {
	rc, _ := core.RuntimeContextFrom(ctx)
	b := make([]byte, n)
	b[0] = byte(rc.Attempt)
	return b, nil
})

// A result lost from the store is rebuilt by re-running its task.
func TestLineageReconstruction(t *testing.T) {
	ctx := ctxT(t)
	ref := bigResult.Remote(rt, 1<<20)
	_, _, err := core.Wait(ctx, []*core.ObjectRef{ref}, 1, -1)
	require.NoError(t, err)
	id, err := ids.ParseObjectID(ref.ID())
	require.NoError(t, err)
	require.NoError(t, core.StoreOf(rt).Delete(id)) // the copy is lost
	b, err := core.Get[[]byte](ctx, ref)
	require.NoError(t, err)
	require.Len(t, b, 1<<20)
	require.Equal(t, byte(1), b[0], "rebuilt by a second attempt")

	// Not retryable: lost for good.
	ref = bigResult.Options(core.MaxRetries(0)).Remote(rt, 1<<20)
	_, _, err = core.Wait(ctx, []*core.ObjectRef{ref}, 1, -1)
	require.NoError(t, err)
	id, _ = ids.ParseObjectID(ref.ID())
	require.NoError(t, core.StoreOf(rt).Delete(id))
	_, err = core.Get[[]byte](ctx, ref)
	require.ErrorIs(t, err, core.ErrObjectLost)
	require.Contains(t, err.Error(), "MaxRetries 0")
}

// Refs the program drops are counted down when collected: the object
// leaves the store.
func TestDroppedRefsAreFreed(t *testing.T) {
	store := core.StoreOf(rt)
	id := func() ids.ObjectID {
		ref, err := core.Put(rt, make([]byte, 1<<20))
		require.NoError(t, err)
		id, err := ids.ParseObjectID(ref.ID())
		require.NoError(t, err)
		in, err := store.Contains(id)
		require.NoError(t, err)
		require.True(t, in)
		return id
	}()
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		runtime.GC()
		if in, _ := store.Contains(id); in {
			return fmt.Errorf("object %s still in the store after its last ref was dropped", id)
		}
		return nil
	})
}

// The driver killed with -9: its workers notice and exit, and the shared
// memory of the driver and its workers is removed.
func TestDriverKilled(t *testing.T) {
	if os.Getenv("GORAY_TEST_CHILD_DRIVER") == "1" {
		childDriver()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDriverKilled$")
	cmd.Env = append(os.Environ(), "GORAY_TEST_CHILD_DRIVER=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	driver := shm.ProcessOf
	var line string
	buf := make([]byte, 256)
	n, err := out.Read(buf)
	require.NoError(t, err)
	line = strings.TrimSpace(string(buf[:n]))
	workerPID, err := strconv.Atoi(strings.TrimPrefix(strings.Fields(line)[0], "worker="))
	require.NoError(t, err, "child said %q", line)
	wp, err := driver(workerPID)
	require.NoError(t, err)
	dp, err := driver(cmd.Process.Pid)
	require.NoError(t, err)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if wp.Alive() {
			return fmt.Errorf("worker %d still alive after its driver was killed", workerPID)
		}
		for _, p := range []shm.Process{dp, wp} {
			if names, _ := shm.List(p); len(names) > 0 {
				return fmt.Errorf("shared memory of pid %d left: %v", p.PID, names)
			}
		}
		return nil
	})
}

var whoami = core.Register("whoami", func(context.Context) (int, error) { return os.Getpid(), nil })

func childDriver() {
	ctx := context.Background()
	pid, err := core.Get[int](ctx, whoami.Remote(rt))
	if err != nil {
		fmt.Println("error", err)
		return
	}
	big, err := core.Put(rt, make([]byte, 1<<20)) // something in the store
	if err != nil {
		fmt.Println("error", err)
		return
	}
	_ = big
	running := busy.Remote(rt, time.Hour) // a worker mid-task
	_ = running
	fmt.Printf("worker=%d\n", pid)
	select {} // until killed
}
