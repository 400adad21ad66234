package core

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/internal/worker"
	"github.com/goray/goray/objstore"
)

// IsWorker reports whether this process is a goray worker (the binary
// re-executed by a raylet).
func IsWorker() bool { return os.Getenv(envWorker) == "1" }

// ServeIfWorker serves tasks and exits if this process is a goray worker;
// otherwise it returns at once. Init calls it first; a program that does
// other work before Init (a CLI that starts a cluster only for some
// commands) calls it at the top of main.
func ServeIfWorker() {
	if !IsWorker() {
		return
	}
	os.Exit(serveWorker())
}

// gcBallast is a heap floor for worker processes. A worker's live heap is
// small (a few MB) and a call allocates about a kilobyte, so with the
// default heap target (twice the live heap, at least 4 MB) a busy actor
// collects a hundred times a second, and on a small machine each cycle's
// stop-the-world phases and thread wake-ups cost more than the marking:
// actor_calls_async gained 10% from this. Sixteen MB that are never touched
// count toward the live heap without being resident (the allocation is
// fresh, zeroed memory from the OS), so a cycle comes every 16 MB of
// garbage instead of every 4; a worker holding a large heap is unaffected.
// A user who tunes the collector (GOGC or GOMEMLIMIT set) gets exactly
// what they asked for.
var gcBallast []byte

func serveWorker() int {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		gcBallast = make([]byte, 16<<20)
	}
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "goray worker: "+f+"\n", a...) }
	fail := func(err error) int { logf("%v", err); return 1 }
	// The worker marker must not reach processes this one starts.
	env := map[string]string{}
	for _, k := range []string{envWorker, envAddress, envTokenFile, envWorkerID, envNodeID, envJobID, envStore, envParentPID, envParentTime} {
		env[k] = os.Getenv(k)
		os.Unsetenv(k)
	}
	token, err := rpc.ReadToken(env[envTokenFile])
	if err != nil {
		return fail(err)
	}
	parentPID, _ := strconv.Atoi(env[envParentPID])
	parentStart, _ := strconv.ParseUint(env[envParentTime], 10, 64)
	parent := shm.Process{PID: parentPID, Start: parentStart}
	nodeID, _ := hex.DecodeString(env[envNodeID])
	jobBytes, _ := hex.DecodeString(env[envJobID])
	var job ids.JobID
	copy(job[:], jobBytes)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	store, err := objstore.Dial(ctx, env[envStore])
	cancel()
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	cc, err := rpc.Dial(env[envAddress], token)
	if err != nil {
		return fail(err)
	}
	defer cc.Close()
	raylet := rpc.NewRayletClient(cc)
	ln, err := rpc.ListenLoopback()
	if err != nil {
		return fail(err)
	}
	server := rpc.NewServer(token)
	w, err := worker.New(worker.Config{JobID: job, NodeID: nodeID, WorkerID: env[envWorkerID], Token: token,
		Address: ln.Addr().String(), Raylet: raylet, Gcs: rpc.NewGcsClient(cc), Store: store, Logf: logf})
	if err != nil {
		return fail(err)
	}
	wrt := &Runtime{w: w}
	w.Owner = wrt
	processRuntime.Store(wrt)
	w.Register(server)
	served := make(chan struct{})
	go func() {
		defer close(served)
		server.Serve(ln)
	}()
	w.Start()
	self := shm.Self()
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	_, err = raylet.RegisterWorker(ctx, &rpc.RegisterWorkerRequest{WorkerId: []byte(env[envWorkerID]), Pid: int32(self.PID),
		StartTime: self.Start, Address: ln.Addr().String()})
	cancel()
	code := 0
	if err != nil {
		logf("register with the raylet: %v", err)
		code = 1
	} else {
		code = waitForExit(parent)
	}
	// A task that ignores its context must not keep a dying worker alive.
	closed := make(chan struct{})
	go func() {
		w.Close()
		server.Stop()
		<-served
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		logf("exiting with a task still running")
	}
	return code
}

// waitForExit blocks until the worker is told to exit (SIGTERM, SIGINT) or
// its parent (the raylet's process) is gone (SIGHUP, its Pdeathsig, or
// seen by polling).
func waitForExit(parent shm.Process) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	orphaned := func() bool {
		if parent.PID != 0 && !parent.Alive() {
			// The driver died (kill -9): nobody else will remove what it
			// left in /dev/shm.
			shm.CleanupStale()
			return true
		}
		return false
	}
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP { // the raylet's process died (Pdeathsig)
				// It may still be exiting: wait until it is gone, so that
				// the cleanup sees its segments as stale.
				for deadline := time.Now().Add(5 * time.Second); parent.Alive() && time.Now().Before(deadline); {
					time.Sleep(2 * time.Millisecond)
				}
			}
			orphaned() // the raylet's stop (SIGTERM), or its death
			return 0
		case <-t.C:
			if orphaned() {
				return 0
			}
		}
	}
}
