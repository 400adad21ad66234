// Package raylet is a node's manager: its resources, the leases that
// schedule work onto them, and the pool of worker processes that run it.
// It serves the Raylet gRPC service (package rpc). The scheduling state is
// plain data behind one mutex; processes and gRPC only wrap it.
package raylet

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/shm"
)

// Config configures a Raylet.
type Config struct {
	NodeID      []byte
	JobID       []byte
	Resources   Resources // the node's capacity
	StoreSocket string
	// WorkerCommand returns the command that starts a worker process with
	// the given ID for a job (the job's binary, re-executed with the
	// worker marker). The raylet sets its output, starts and reaps it.
	// Workers serve one job: each job's tasks run in its own binary.
	WorkerCommand func(workerID string, job []byte) (*exec.Cmd, error)
	// Prestart is how many workers to start at once and keep when idle.
	Prestart int
	// IdleTimeout is how long a worker beyond Prestart may stay idle
	// before it is asked to exit.
	IdleTimeout time.Duration
	// MaxStarting bounds the workers starting at one time.
	MaxStarting int
	// RegisterTimeout bounds a worker's start-up.
	RegisterTimeout time.Duration
	// Logf reports worker exits and other events (nil: silent).
	Logf func(format string, args ...any)
	// LeaseLost, if set, hears (from its own goroutine) that the worker of
	// a lease died while leased, and how ("exit code 2", "killed by
	// signal 9 (SIGKILL)…"). The GCS uses it to restart actors.
	LeaseLost func(leaseID string, pid int, how string)
	// StoreStats, if set, reports the node's object store for GetResources.
	StoreStats func() (capacity, used, objects, spilled int64)
	// StoreObjects, if set, lists the store's largest objects (ListObjects).
	StoreObjects func(limit int) []*rpc.StoreObject
}

func (c *Config) validate() error {
	if c.WorkerCommand == nil {
		return fmt.Errorf("raylet: no WorkerCommand: %w", errs.ErrBadArgument)
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Second
	}
	if c.MaxStarting <= 0 {
		c.MaxStarting = max(2, int(c.Resources[CPU]/unit))
	}
	if c.RegisterTimeout <= 0 {
		c.RegisterTimeout = 30 * time.Second
	}
	if c.Prestart < 0 {
		c.Prestart = 0
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return nil
}

// ErrInfeasible: no node of the cluster can ever satisfy a demand.
var ErrInfeasible = errs.ErrInfeasible

type workerState int

const (
	starting workerState = iota
	idle
	leased
	dead
)

type workerProc struct {
	id      string
	cmd     *exec.Cmd
	proc    shm.Process
	addr    string
	state   workerState
	since   time.Time // of the current state
	lease   *lease
	exiting bool   // asked to exit; do not lease
	killed  string // why the raylet killed it, if it did
	job     string // the job whose binary it runs
}

type lease struct {
	id        string
	pg        *placementGroup // the group whose bundle it draws on, if any
	bundle    int
	dedicated bool // an actor's: the worker is killed when the lease ends
	demand    Resources
	held      Resources // what it holds now (CPUs given back while blocked)
	gpus      []int
	worker    *workerProc
	submitter shm.Process
}

type pending struct {
	req    *rpc.LeaseRequest
	job    string
	demand Resources
	done   chan *lease // buffered; closed without a value when failed
	err    error
}

// Raylet is a node manager.
type Raylet struct {
	rpc.UnimplementedRayletServer
	cfg Config

	mu       sync.Mutex
	total    Resources
	avail    Resources
	gpuFree  []bool
	workers  map[string]*workerProc
	leases   map[string]*lease
	queue    []*pending
	pgs      map[string]*placementGroup
	pgOrder  []string
	failures int // consecutive workers that exited before registering
	lastFail string
	closed   bool

	spawn chan spawnReq // to the spawner goroutine (one locked OS thread: see spawner)
	stop  chan struct{}
	wg    sync.WaitGroup
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// New starts a raylet: its housekeeping, its spawner, and Prestart workers.
func New(cfg Config) (*Raylet, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Raylet{
		cfg:     cfg,
		total:   cfg.Resources.Clone(),
		avail:   cfg.Resources.Clone(),
		gpuFree: make([]bool, cfg.Resources[GPU]/unit),
		workers: map[string]*workerProc{},
		leases:  map[string]*lease{},
		pgs:     map[string]*placementGroup{},
		spawn:   make(chan spawnReq),
		stop:    make(chan struct{}),
	}
	for i := range r.gpuFree {
		r.gpuFree[i] = true
	}
	r.wg.Add(2)
	go r.spawner()
	go r.housekeeping()
	r.mu.Lock()
	if len(cfg.JobID) > 0 { // a head without a driver of its own has no job to prestart for
		for range cfg.Prestart {
			r.startWorkerLocked(string(cfg.JobID))
		}
	}
	r.mu.Unlock()
	return r, nil
}

// Register adds the Raylet service to s.
func (r *Raylet) Register(s *grpc.Server) { rpc.RegisterRayletServer(s, r) }

// Total and Available report the node's resources.
func (r *Raylet) Total() map[string]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total.Floats()
}

func (r *Raylet) Available() map[string]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.avail.Floats()
	for k, v := range out {
		if v < 0 {
			out[k] = 0
		}
	}
	return out
}

// spawner starts every worker process from one goroutine locked to its OS
// thread for the raylet's life: Pdeathsig fires when the thread that
// started a child exits, not the process, and Go may retire threads.
func (r *Raylet) spawner() {
	defer r.wg.Done()
	// Unlocked on the way out, so the thread lives on: Close has killed
	// the children by then anyway.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		select {
		case req := <-r.spawn:
			req.done <- req.cmd.Start()
		case <-r.stop:
			return
		}
	}
}

// startWorkerLocked launches one worker process. r.mu is held; the launch
// itself happens with it dropped and retaken.
func (r *Raylet) startWorkerLocked(job string) {
	if r.closed {
		return
	}
	id := newID()
	cmd, err := r.cfg.WorkerCommand(id, []byte(job))
	if err != nil {
		r.failLocked(fmt.Sprintf("cannot make the worker command: %v", err))
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// SIGHUP, not SIGKILL: a worker whose raylet died removes what the
	// raylet's process left in /dev/shm before it exits. (Not SIGTERM, the
	// raylet's own stop: the worker must know to wait until its parent is
	// gone for good, which a process killed with -9 is not yet when the
	// signal arrives.)
	cmd.SysProcAttr.Pdeathsig = syscall.SIGHUP
	cmd.SysProcAttr.Setpgid = true
	w := &workerProc{id: id, cmd: cmd, state: starting, since: time.Now(), job: job}
	r.workers[id] = w
	outs, err := forwardOutput(cmd)
	if err != nil {
		delete(r.workers, id)
		r.failLocked(err.Error())
		return
	}
	done := make(chan error, 1)
	r.mu.Unlock()
	select {
	case r.spawn <- spawnReq{cmd, done}:
		err = <-done
	case <-r.stop:
		err = errors.New("raylet closed")
	}
	pid := 0
	if err == nil {
		pid = cmd.Process.Pid
	}
	outs.afterStart(pid)
	r.mu.Lock()
	if err != nil {
		delete(r.workers, id)
		outs.wait()
		r.failLocked(fmt.Sprintf("cannot start a worker process: %v", err))
		return
	}
	w.proc, _ = shm.ProcessOf(pid)
	if r.closed {
		r.killLocked(w, syscall.SIGKILL)
	}
	r.wg.Add(1)
	go r.reap(w, outs)
}

// reap waits for a worker process to exit and cleans up after it.
func (r *Raylet) reap(w *workerProc, outs *forwarder) {
	defer r.wg.Done()
	err := w.cmd.Wait()
	outs.wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := w.state
	w.state = dead
	delete(r.workers, w.id)
	if l := w.lease; l != nil {
		r.releaseLocked(l)
		if r.cfg.LeaseLost != nil && !r.closed {
			how := exitDescription(err, w.killed)
			id, pid := l.id, w.cmd.Process.Pid
			go r.cfg.LeaseLost(id, pid, how)
		}
	}
	switch {
	case prev == starting && !r.closed:
		r.failures++
		r.lastFail = fmt.Sprintf("worker process %d exited before registering (%v): call core.Init at the start of main (or of TestMain) so that the binary can serve as a worker", w.cmd.Process.Pid, err)
		r.cfg.Logf("raylet: %s", r.lastFail)
		if r.failures >= 3 {
			r.failLocked(r.lastFail)
		}
	case prev == leased && !r.closed:
		r.cfg.Logf("raylet: worker %d died while leased: %v", w.cmd.Process.Pid, err)
	}
	r.dispatchLocked()
}

// failLocked fails every queued lease request: workers cannot be started.
func (r *Raylet) failLocked(why string) {
	for _, p := range r.queue {
		p.err = fmt.Errorf("raylet: %s", why)
		close(p.done)
	}
	r.queue = nil
}

// RegisterWorker is a started worker announcing itself.
func (r *Raylet) RegisterWorker(_ context.Context, req *rpc.RegisterWorkerRequest) (*rpc.RegisterWorkerReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[string(req.WorkerId)]
	if w == nil || w.state != starting {
		return nil, status.Errorf(codes.NotFound, "raylet: no worker %q is starting here", req.WorkerId)
	}
	if req.Address == "" {
		return nil, status.Error(codes.InvalidArgument, "raylet: a worker registers with its address")
	}
	w.addr = req.Address
	w.proc = shm.Process{PID: int(req.Pid), Start: req.StartTime}
	w.state, w.since = idle, time.Now()
	r.failures = 0
	r.dispatchLocked()
	return &rpc.RegisterWorkerReply{NodeId: r.cfg.NodeID, JobId: []byte(w.job), StoreSocket: r.cfg.StoreSocket}, nil
}

// RequestLease queues a lease request and waits for its grant.
func (r *Raylet) RequestLease(ctx context.Context, req *rpc.LeaseRequest) (*rpc.LeaseReply, error) {
	demand, err := FromFloats(req.Resources)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "raylet: lease: %v", err)
	}
	if len(req.LeaseId) == 0 {
		return nil, status.Error(codes.InvalidArgument, "raylet: lease without an ID")
	}
	if req.Strategy == rpc.Strategy_STRATEGY_NODE_AFFINITY && !req.Soft && string(req.NodeId) != string(r.cfg.NodeID) {
		return nil, status.Errorf(codes.FailedPrecondition, "raylet: %v: node affinity to node %x, which is not in the cluster (this node is %x); use a soft affinity to run elsewhere",
			ErrInfeasible, req.NodeId, r.cfg.NodeID)
	}
	job := string(req.JobId)
	if job == "" {
		job = string(r.cfg.JobID)
	}
	if job == "" {
		return nil, status.Error(codes.InvalidArgument, "raylet: a lease names its job (RegisterJob gives one)")
	}
	p := &pending{req: req, job: job, demand: demand, done: make(chan *lease, 1)}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "raylet: shut down")
	}
	if len(req.PlacementGroup) > 0 {
		if err := r.pgLeaseCheckLocked(req, demand); err != nil {
			r.mu.Unlock()
			return nil, err
		}
	} else if !r.total.Fits(demand) {
		total := r.total.String()
		r.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "raylet: %v: a task needs %s but the cluster has %s in all", ErrInfeasible, demand, total)
	}
	if _, dup := r.leases[string(req.LeaseId)]; dup {
		r.mu.Unlock()
		return nil, status.Errorf(codes.AlreadyExists, "raylet: lease %x already granted", req.LeaseId)
	}
	r.queue = append(r.queue, p)
	r.dispatchLocked()
	r.mu.Unlock()

	select {
	case l, ok := <-p.done:
		if !ok {
			return nil, status.Error(codes.Unavailable, p.err.Error())
		}
		if ctx.Err() != nil {
			// Granted as the caller gave up (both were ready): it will
			// not hear of the lease, so it must not stay leased.
			r.mu.Lock()
			r.returnLocked(l, false)
			r.mu.Unlock()
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return &rpc.LeaseReply{
			LeaseId: []byte(l.id), WorkerId: []byte(l.worker.id), WorkerAddress: l.worker.addr,
			WorkerPid: int32(l.worker.proc.PID), WorkerStartTime: l.worker.proc.Start,
			GpuIds: intsTo32(l.gpus), NodeId: r.cfg.NodeID,
		}, nil
	case <-ctx.Done():
		r.mu.Lock()
		defer r.mu.Unlock()
		if i := slices.Index(r.queue, p); i >= 0 {
			r.queue = slices.Delete(r.queue, i, i+1)
		} else if l, ok := <-p.done; ok {
			r.returnLocked(l, false) // granted as the caller gave up
		}
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// dispatchLocked grants what it can, in order, and starts the workers that
// queued requests with resources available are waiting for.
func (r *Raylet) dispatchLocked() {
	if r.closed {
		return
	}
	idleByJob := map[string][]*workerProc{} // per job
	startingByJob := map[string]int{}
	for _, w := range r.workers {
		switch {
		case w.state == idle && !w.exiting:
			idleByJob[w.job] = append(idleByJob[w.job], w)
		case w.state == starting:
			startingByJob[w.job]++
		}
	}
	// Most recently idle first: its caches are warm, and the others age
	// toward reaping.
	for _, ws := range idleByJob {
		slices.SortFunc(ws, func(a, b *workerProc) int { return b.since.Compare(a.since) })
	}
	need := map[string]int{}
	kept := r.queue[:0]
	for _, p := range r.queue {
		var pg *placementGroup
		bundle := -1
		if len(p.req.PlacementGroup) > 0 {
			pg, bundle = p.pgBundleLocked(r)
			if pg == nil || pg.state == "REMOVED" {
				p.err = fmt.Errorf("raylet: %v: the placement group was removed", ErrInfeasible)
				close(p.done)
				continue
			}
			if bundle < 0 {
				kept = append(kept, p)
				continue
			}
		} else if !r.avail.Fits(p.demand) {
			kept = append(kept, p)
			continue
		}
		if len(idleByJob[p.job]) == 0 {
			need[p.job]++
			kept = append(kept, p)
			continue
		}
		w := idleByJob[p.job][0]
		idleByJob[p.job] = idleByJob[p.job][1:]
		l := &lease{id: string(p.req.LeaseId), demand: p.demand, held: p.demand.Clone(), worker: w,
			submitter: shm.Process{PID: int(p.req.SubmitterPid)}, dedicated: p.req.Dedicated, pg: pg, bundle: bundle}
		if l.submitter.PID != 0 {
			l.submitter, _ = shm.ProcessOf(l.submitter.PID)
		}
		if pg != nil {
			pg.free[bundle].Sub(p.demand)
		} else {
			r.avail.Sub(p.demand)
		}
		for i := 0; i < int(p.demand[GPU]/unit) || (len(l.gpus) == 0 && p.demand[GPU] > 0 && i == 0); i++ {
			if g := r.takeGPULocked(p.demand[GPU] < unit); g >= 0 {
				l.gpus = append(l.gpus, g)
			}
		}
		w.state, w.since, w.lease = leased, time.Now(), l
		r.leases[l.id] = l
		p.done <- l
	}
	clear(r.queue[len(kept):])
	r.queue = kept
	total := 0
	for _, n := range startingByJob {
		total += n
	}
	for job, n := range need {
		for i := startingByJob[job]; i < n && total < r.cfg.MaxStarting; i++ {
			r.startWorkerLocked(job)
			total++
		}
	}
}

// takeGPULocked picks a GPU: a free one, or for a fractional demand any.
func (r *Raylet) takeGPULocked(fractional bool) int {
	for i, free := range r.gpuFree {
		if free {
			if !fractional {
				r.gpuFree[i] = false
			}
			return i
		}
	}
	if fractional && len(r.gpuFree) > 0 {
		return 0
	}
	return -1
}

func (r *Raylet) releaseLocked(l *lease) {
	if l.pg != nil && l.pg.state != "REMOVED" {
		l.pg.free[l.bundle].Add(l.held)
	} else {
		r.avail.Add(l.held)
	}
	if l.demand[GPU] >= unit {
		for _, g := range l.gpus {
			r.gpuFree[g] = true
		}
	}
	delete(r.leases, l.id)
	l.worker.lease = nil
}

func (r *Raylet) returnLocked(l *lease, failed bool) {
	r.releaseLocked(l)
	w := l.worker
	if w.state == leased {
		w.state, w.since = idle, time.Now()
		if failed || l.dedicated {
			r.killLocked(w, syscall.SIGKILL)
		}
	}
	r.dispatchLocked()
}

// ReturnLease gives a worker back.
func (r *Raylet) ReturnLease(_ context.Context, req *rpc.ReturnLeaseRequest) (*rpc.ReturnLeaseReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.leases[string(req.LeaseId)]; l != nil {
		r.returnLocked(l, req.WorkerFailed)
	}
	return &rpc.ReturnLeaseReply{}, nil
}

// KillWorker kills a leased worker at once (a forced cancel).
func (r *Raylet) KillWorker(_ context.Context, req *rpc.KillWorkerRequest) (*rpc.KillWorkerReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.leases[string(req.LeaseId)]
	if l == nil {
		return &rpc.KillWorkerReply{}, nil
	}
	r.cfg.Logf("raylet: killing worker %d: %s", l.worker.proc.PID, req.Reason)
	l.worker.killed = req.Reason
	r.killLocked(l.worker, syscall.SIGKILL)
	return &rpc.KillWorkerReply{Killed: true}, nil
}

// SetBlocked lends a blocked task's CPUs to others, and takes them back.
func (r *Raylet) SetBlocked(_ context.Context, req *rpc.SetBlockedRequest) (*rpc.SetBlockedReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.leases[string(req.LeaseId)]
	if l == nil || l.pg != nil { // a bundle's CPUs are the group's: not lent
		return &rpc.SetBlockedReply{}, nil
	}
	cpu := l.demand.only(CPU)
	switch {
	case req.Blocked && l.held[CPU] > 0:
		l.held.Sub(cpu)
		r.avail.Add(cpu)
		r.dispatchLocked()
	case !req.Blocked && l.held[CPU] == 0 && cpu[CPU] > 0:
		l.held.Add(cpu)
		r.avail.Sub(cpu)
	}
	return &rpc.SetBlockedReply{}, nil
}

// GetResources reports the node's resources.
func (r *Raylet) GetResources(context.Context, *rpc.GetResourcesRequest) (*rpc.GetResourcesReply, error) {
	rep := &rpc.GetResourcesReply{Total: r.Total(), Available: r.Available()}
	if r.cfg.StoreStats != nil {
		rep.ObjectStoreCapacity, rep.ObjectStoreUsed, rep.ObjectStoreObjects, rep.ObjectStoreSpilled = r.cfg.StoreStats()
	}
	r.mu.Lock()
	for _, w := range r.workers {
		rep.Workers++
		if w.state == leased {
			rep.LeasedWorkers++
		}
	}
	r.mu.Unlock()
	return rep, nil
}

func (r *Raylet) killLocked(w *workerProc, sig syscall.Signal) {
	w.exiting = true
	if w.cmd.Process != nil {
		w.cmd.Process.Signal(sig)
	}
}

// housekeeping reaps idle workers, kills workers that never register, and
// takes back leases whose submitter died.
func (r *Raylet) housekeeping() {
	defer r.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.mu.Lock()
			nidle := map[string]int{} // per job
			for _, w := range r.workers {
				if w.state == idle && !w.exiting {
					nidle[w.job]++
				}
			}
			for _, w := range r.workers {
				switch {
				case w.state == starting && now.Sub(w.since) > r.cfg.RegisterTimeout && !w.exiting:
					r.cfg.Logf("raylet: worker %s did not register within %v; killing it", w.id, r.cfg.RegisterTimeout)
					r.killLocked(w, syscall.SIGKILL)
				case w.state == idle && !w.exiting && now.Sub(w.since) > r.cfg.IdleTimeout &&
					(nidle[w.job] > r.cfg.Prestart || w.job != string(r.cfg.JobID)):
					// Another driver's job keeps no prestarted workers: its
					// driver may have left.
					r.killLocked(w, syscall.SIGTERM)
					nidle[w.job]--
				}
			}
			for _, l := range r.leases {
				if !r.closed && l.submitter.PID != 0 && !l.submitter.Alive() {
					r.cfg.Logf("raylet: lease %s: submitter %d died; taking the worker back", l.id, l.submitter.PID)
					r.returnLocked(l, true)
				}
			}
			r.mu.Unlock()
		}
	}
}

// Close stops the raylet: queued requests fail, workers are asked to exit
// and killed if they do not within grace, and everything is waited for.
func (r *Raylet) Close(grace time.Duration) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.failLocked("shut down")
	for _, w := range r.workers {
		r.killLocked(w, syscall.SIGTERM)
	}
	procs := make([]*workerProc, 0, len(r.workers))
	for _, w := range r.workers {
		procs = append(procs, w)
	}
	r.mu.Unlock()
	deadline := time.Now().Add(grace)
	for _, w := range procs {
		for time.Now().Before(deadline) && w.proc.Alive() {
			time.Sleep(5 * time.Millisecond)
		}
		w.cmd.Process.Signal(syscall.SIGKILL)
	}
	close(r.stop)
	r.wg.Wait()
	return nil
}

func intsTo32(xs []int) []int32 {
	out := make([]int32, len(xs))
	for i, x := range xs {
		out[i] = int32(x)
	}
	return out
}

// exitDescription says how a worker process ended, for ErrActorDied and
// the logs: the raylet's own reason when it killed it, else the exit code
// or the signal.
func exitDescription(err error, killedFor string) string {
	if killedFor != "" {
		return "killed by the raylet: " + killedFor
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		if err == nil {
			return "the process exited (code 0)"
		}
		return fmt.Sprintf("the process ended: %v", err)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		return "the process was killed by signal 9 (SIGKILL: kill -9, or the kernel's OOM killer)"
	case ok && ws.Signaled():
		return fmt.Sprintf("the process was killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("the process exited with code %d", ee.ExitCode())
}

// ListObjects lists the node's largest stored objects.
func (r *Raylet) ListObjects(_ context.Context, req *rpc.ListObjectsRequest) (*rpc.ListObjectsReply, error) {
	if r.cfg.StoreObjects == nil {
		return &rpc.ListObjectsReply{}, nil
	}
	return &rpc.ListObjectsReply{Objects: r.cfg.StoreObjects(int(req.Limit))}, nil
}

// ListWorkers lists the node's registered worker processes.
func (r *Raylet) ListWorkers(context.Context, *rpc.ListWorkersRequest) (*rpc.ListWorkersReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := &rpc.ListWorkersReply{}
	for _, w := range r.workers {
		if w.addr == "" {
			continue
		}
		out.Workers = append(out.Workers, &rpc.WorkerInfo{WorkerId: []byte(w.id), Pid: int32(w.proc.PID), Address: w.addr,
			Leased: w.state == leased, JobId: []byte(w.job)})
	}
	return out, nil
}
