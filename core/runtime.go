package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/internal/gcs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/raylet"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/internal/worker"
	"github.com/goray/goray/objstore"
)

// Runtime is a connection to a goray cluster: in the driver, the one Init
// returned (with the embedded cluster it started); inside a task, the
// worker's own (RuntimeFrom).
type Runtime struct {
	w       *worker.CoreWorker
	cluster *cluster    // the embedded cluster this driver started; nil in a worker
	conn    *connection // a driver connected with Address
	once    sync.Once
	err     error
}

// cluster is an embedded local cluster: GCS, raylet and object store as
// goroutines of the driver, and its worker processes.
type cluster struct {
	addr    string
	token   string
	job     []byte // the embedded driver's job (nil for a head alone)
	nodeID  []byte
	dir     string // session directory: token, store socket, spill files
	store   *objstore.Store
	server  *grpc.Server
	ln      net.Listener
	gcs     *gcs.Server
	raylet  *raylet.Raylet
	served  chan struct{}
	serving bool
}

// Init starts goray. In the driver (the user's program) it starts an
// embedded local cluster, unless Address names a running one, and returns
// the Runtime. In a worker process (the same binary, started by the
// raylet) it serves tasks and never returns; call it first in main, or in
// TestMain before m.Run.
func Init(ctx context.Context, opts ...Option) (*Runtime, error) {
	ServeIfWorker()
	cfg := initConfig{prestart: -1}
	for _, o := range opts {
		if o != nil {
			o.applyInit(&cfg)
		}
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, fmt.Errorf("core: Init: %w", err)
	}
	if cfg.address != "" {
		return connect(ctx, cfg)
	}
	return startEmbedded(ctx, cfg)
}

// Environment of a worker process.
const (
	envWorker     = "GORAY_WORKER" // "1" marks a worker process
	envAddress    = "GORAY_ADDRESS"
	envTokenFile  = "GORAY_TOKEN_FILE"
	envWorkerID   = "GORAY_WORKER_ID"
	envNodeID     = "GORAY_NODE_ID"
	envJobID      = "GORAY_JOB_ID"
	envStore      = "GORAY_STORE_SOCKET"
	envParentPID  = "GORAY_PARENT_PID"
	envParentTime = "GORAY_PARENT_START"
)

func startEmbedded(ctx context.Context, cfg initConfig) (_ *Runtime, err error) {
	c, err := newCluster(ctx, cfg, 0, true)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	w, err := worker.New(worker.Config{Driver: true, JobID: ids.JobID(c.job), NodeID: c.nodeID, WorkerID: "driver",
		Token: c.token, Address: c.addr, Raylet: localRaylet{c.raylet}, Gcs: localGcs{c.gcs}, Store: c.store,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	if err != nil {
		return nil, err
	}
	w.Register(c.server)
	c.gcs.EnableActors(gcs.ActorConfig{Raylet: localRaylet{c.raylet}, Worker: w.Peer,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	c.serve()
	w.Start()
	rt := &Runtime{w: w, cluster: c}
	w.Owner = rt
	processRuntime.CompareAndSwap(nil, rt)
	return rt, nil
}

// newCluster starts a node's services (GCS, raylet, object store) on one
// loopback gRPC server; port 0 picks a free port. With driver, this
// process's job is registered first, and the raylet prestarts its workers.
func newCluster(ctx context.Context, cfg initConfig, port int, driver bool) (_ *cluster, err error) {
	shm.CleanupStale()
	res := map[string]float64{"CPU": float64(numCPU())}
	if _, set := cfg.resources["GPU"]; !set {
		if n := numGPU(); n > 0 {
			res["GPU"] = float64(n)
		}
	}
	maps.Copy(res, cfg.resources)
	capacity, err := raylet.FromFloats(res)
	if err != nil {
		return nil, fmt.Errorf("core: Init: node resources: %w", err)
	}
	if cfg.prestart < 0 {
		cfg.prestart = min(4, int(res["CPU"]))
	}
	c := &cluster{served: make(chan struct{})}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if c.ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
		return nil, fmt.Errorf("core: listen on 127.0.0.1:%d: %w (is another cluster running there? `goray stop`, or pick another port)", port, err)
	}
	c.addr = c.ln.Addr().String()
	// The session directory is named after the port, so that a driver
	// given only the address (Address) finds the token. A directory left
	// by a dead cluster on the same port is stale: this one holds the port.
	c.dir = SessionDir(c.addr)
	os.RemoveAll(c.dir)
	if err = os.Mkdir(c.dir, 0o700); err != nil {
		return nil, fmt.Errorf("core: Init: session directory: %w", err)
	}
	c.token = rpc.NewToken()
	tokenFile, err := rpc.WriteToken(c.dir, c.token)
	if err != nil {
		return nil, fmt.Errorf("core: Init: %w", err)
	}
	spill := filepath.Join(c.dir, "spill")
	if err := os.Mkdir(spill, 0o700); err != nil {
		return nil, fmt.Errorf("core: Init: %w", err)
	}
	storeSock := filepath.Join(c.dir, "store.sock")
	c.store, err = objstore.New(objstore.Config{Capacity: cfg.storeMemory, Socket: storeSock, SpillDir: spill})
	if err != nil {
		return nil, fmt.Errorf("core: Init: object store: %w", err)
	}
	c.server = rpc.NewServer(c.token)
	c.gcs = gcs.New()
	c.gcs.Register(c.server)
	if driver {
		argv, env, err := jobCommand()
		if err != nil {
			return nil, err
		}
		job, err := c.gcs.RegisterJob(ctx, &rpc.RegisterJobRequest{DriverAddress: c.addr, DriverPid: int32(os.Getpid()), Namespace: cfg.namespace,
			WorkerArgv: argv, WorkerEnv: env})
		if err != nil {
			return nil, err
		}
		c.job = job.JobId
	}
	c.nodeID = newNodeID()
	c.raylet, err = raylet.New(raylet.Config{
		NodeID: c.nodeID, JobID: c.job, Resources: capacity, StoreSocket: storeSock, Prestart: cfg.prestart, IdleTimeout: cfg.idleTimeout,
		WorkerCommand: workerCommand(c.gcs, c.addr, tokenFile, c.nodeID, storeSock),
		Logf:          func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
		LeaseLost:     c.gcs.LeaseLost,
		StoreStats: func() (capacity, used, objects, spilled int64) {
			st, err := c.store.Stats()
			if err != nil {
				return 0, 0, 0, 0
			}
			return st.Capacity, st.Used, int64(st.Objects), st.Spilled
		},
		StoreObjects: func(limit int) []*rpc.StoreObject {
			objs, _ := c.store.Objects(limit)
			out := make([]*rpc.StoreObject, len(objs))
			for i, o := range objs {
				out[i] = &rpc.StoreObject{ObjectId: o.ID[:], Size: o.Size, State: o.State, Pins: int32(o.Pins), Evictable: o.Evictable}
			}
			return out
		},
	})
	if err != nil {
		return nil, fmt.Errorf("core: Init: %w", err)
	}
	c.raylet.Register(c.server)
	if _, err := c.gcs.RegisterNode(ctx, &rpc.NodeInfo{NodeId: c.nodeID, RayletAddress: c.addr, Resources: res, StoreSocket: storeSock}); err != nil {
		return nil, err
	}
	return c, nil
}

// serve starts answering gRPC calls.
func (c *cluster) serve() {
	c.serving = true
	go func() {
		defer close(c.served)
		c.server.Serve(c.ln)
	}()
}

func newNodeID() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}

func numCPU() int { return runtime.NumCPU() }

// numGPU counts this machine's GPUs through NVML (0 without a driver).
// Workers that hold GPUs see them as CUDA_VISIBLE_DEVICES.
func numGPU() int {
	gpus, err := cuda.Discover()
	if err != nil {
		return 0
	}
	return len(gpus)
}

func (c *cluster) close() error {
	var errs []error
	if c.gcs != nil {
		c.gcs.Close()
	}
	if c.raylet != nil {
		errs = append(errs, c.raylet.Close(2*time.Second))
		// The workers are gone: unlink what they could not (a killed
		// actor's rings, a worker's channels to actors it called).
		shm.CleanupStale()
	}
	if c.server != nil {
		c.server.Stop()
	}
	if c.serving {
		<-c.served
	} else if c.ln != nil {
		c.ln.Close()
	}
	if c.store != nil {
		errs = append(errs, c.store.Close())
	}
	if c.dir != "" {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}

// Shutdown stops the runtime: in the driver, the embedded cluster and its
// workers. Refs from it fail with ErrShutdown afterwards. Idempotent.
func (rt *Runtime) Shutdown() error {
	rt.once.Do(func() {
		rt.err = rt.w.Close()
		if rt.cluster != nil {
			rt.err = errors.Join(rt.err, rt.cluster.close())
		}
		if rt.conn != nil {
			rt.err = errors.Join(rt.err, rt.conn.close())
		}
		processRuntime.CompareAndSwap(rt, nil)
	})
	return rt.err
}

// ClusterResources is the cluster's total capacity.
func (rt *Runtime) ClusterResources() map[string]float64 {
	r, err := rt.w.Raylet().GetResources(context.Background(), &rpc.GetResourcesRequest{})
	if err != nil {
		return map[string]float64{}
	}
	return r.Total
}

// AvailableResources is what is free now.
func (rt *Runtime) AvailableResources() map[string]float64 {
	r, err := rt.w.Raylet().GetResources(context.Background(), &rpc.GetResourcesRequest{})
	if err != nil {
		return map[string]float64{}
	}
	return r.Available
}

// RuntimeFrom returns the Runtime of a task's context (nil outside one),
// for submitting nested tasks.
func RuntimeFrom(ctx context.Context) *Runtime {
	ti, ok := worker.FromContext(ctx)
	if !ok {
		return nil
	}
	rt, _ := ti.Worker.Owner.(*Runtime)
	return rt
}

// RuntimeContext says where code runs.
type RuntimeContext struct {
	JobID    string
	NodeID   string
	WorkerID string // "driver" in the driver
	TaskID   string // "" outside a task
	ActorID  string // the actor whose method (or constructor) runs; "" in a task
	TaskName string
	Attempt  int   // 0 on the first try
	GPUIDs   []int // the GPUs assigned to the task
	// Cancelled: the task (or actor call) was cancelled (Cancel) when the
	// context was described; ctx.Done() says so as it happens.
	Cancelled bool
}

// RuntimeContextFrom describes the task ctx belongs to; outside a task,
// ok is false.
func RuntimeContextFrom(ctx context.Context) (RuntimeContext, bool) {
	ti, ok := worker.FromContext(ctx)
	if !ok {
		return RuntimeContext{}, false
	}
	rc := runtimeContext(ti.Worker)
	rc.TaskID, rc.TaskName, rc.Attempt, rc.GPUIDs = ti.TaskID.String(), ti.Name, ti.Attempt, ti.GPUIDs
	if ti.ActorID != (ids.ActorID{}) {
		rc.ActorID = ti.ActorID.String()
	}
	rc.Cancelled = ctx.Err() != nil
	return rc, true
}

// Context describes the runtime itself (in the driver: the driver).
func (rt *Runtime) Context() RuntimeContext { return runtimeContext(rt.w) }

func runtimeContext(w *worker.CoreWorker) RuntimeContext {
	return RuntimeContext{JobID: w.JobID().String(), NodeID: hex.EncodeToString(w.NodeID()), WorkerID: w.WorkerID()}
}

// Address is the cluster's address, for core.Address in another driver
// (the token is in SessionDir(address), readable by this user only).
func (rt *Runtime) Address() string {
	switch {
	case rt.cluster != nil:
		return rt.cluster.ln.Addr().String()
	case rt.conn != nil:
		return rt.conn.cc.Target()
	}
	return ""
}

// SessionDir is where the cluster serving at addr keeps its token, object
// store socket and spill files: $TMPDIR/goray-<port>.
func SessionDir(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		port = addr
	}
	return filepath.Join(os.TempDir(), "goray-"+port)
}

// connection is what a driver connected with Address holds.
type connection struct {
	cc     *grpc.ClientConn
	store  *objstore.Client
	server *grpc.Server
	ln     net.Listener
	served chan struct{}
}

func (c *connection) close() error {
	if c.server != nil {
		c.server.Stop()
		<-c.served
	}
	var errs []error
	if c.store != nil {
		errs = append(errs, c.store.Close())
	}
	if c.cc != nil {
		errs = append(errs, c.cc.Close())
	}
	return errors.Join(errs...)
}

// connect joins a running cluster as a driver: its own core worker, the
// cluster's GCS, raylet and object store. The token comes from
// GORAY_TOKEN_FILE, else from the cluster's session directory.
func connect(ctx context.Context, cfg initConfig) (_ *Runtime, err error) {
	tokenFile := os.Getenv(envTokenFile)
	if tokenFile == "" {
		tokenFile = filepath.Join(SessionDir(cfg.address), "token")
	}
	token, err := rpc.ReadToken(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("core: Init: Address(%q): %w (set %s to the cluster's token file)", cfg.address, err, envTokenFile)
	}
	c := &connection{served: make(chan struct{})}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if c.cc, err = rpc.Dial(cfg.address, token); err != nil {
		return nil, fmt.Errorf("core: Init: Address(%q): %w", cfg.address, err)
	}
	gcsC := rpc.NewGcsClient(c.cc)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nodes, err := gcsC.GetNodes(cctx, &rpc.GetNodesRequest{})
	if status.Code(err) == codes.Unauthenticated {
		return nil, fmt.Errorf("core: Init: Address(%q): the cluster refused the token in %s: use its own token file (in its SessionDir, or set %s)", cfg.address, tokenFile, envTokenFile)
	}
	if err != nil {
		return nil, fmt.Errorf("core: Init: Address(%q): the cluster does not answer: %w", cfg.address, err)
	}
	if len(nodes.Nodes) == 0 {
		return nil, fmt.Errorf("core: Init: Address(%q): the cluster has no node", cfg.address)
	}
	node := nodes.Nodes[0]
	if c.store, err = objstore.Dial(cctx, node.StoreSocket); err != nil {
		return nil, fmt.Errorf("core: Init: Address(%q): object store: %w", cfg.address, err)
	}
	if c.ln, err = rpc.ListenLoopback(); err != nil {
		return nil, fmt.Errorf("core: Init: %w", err)
	}
	addr := c.ln.Addr().String()
	argv, env, err := jobCommand()
	if err != nil {
		return nil, err
	}
	job, err := gcsC.RegisterJob(cctx, &rpc.RegisterJobRequest{DriverAddress: addr, DriverPid: int32(os.Getpid()), Namespace: cfg.namespace,
		WorkerArgv: argv, WorkerEnv: env})
	if err != nil {
		return nil, fmt.Errorf("core: Init: Address(%q): register the job: %w", cfg.address, err)
	}
	w, err := worker.New(worker.Config{Driver: true, JobID: ids.JobID(job.JobId), NodeID: node.NodeId, WorkerID: "driver",
		Token: token, Address: addr, Raylet: rpc.NewRayletClient(c.cc), Gcs: gcsC, Store: c.store,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	if err != nil {
		return nil, err
	}
	c.server = rpc.NewServer(token)
	w.Register(c.server)
	go func() {
		defer close(c.served)
		c.server.Serve(c.ln)
	}()
	w.Start()
	rt := &Runtime{w: w, conn: c}
	w.Owner = rt
	processRuntime.CompareAndSwap(nil, rt)
	return rt, nil
}

// jobCommand is how this driver's workers start: its own binary and
// arguments, and its environment without goray's variables.
func jobCommand() (argv, env []string, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("core: Init: find this program's binary to start workers: %w", err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GORAY_") {
			env = append(env, kv)
		}
	}
	return append([]string{exe}, os.Args[1:]...), env, nil
}

// workerCommand starts a worker of a job: the job's binary (as its driver
// registered it) with goray's worker environment.
func workerCommand(g *gcs.Server, addr, tokenFile string, nodeID []byte, storeSock string) func(id string, job []byte) (*exec.Cmd, error) {
	self := shm.Self()
	base := []string{envWorker + "=1", envAddress + "=" + addr, envTokenFile + "=" + tokenFile,
		envNodeID + "=" + hex.EncodeToString(nodeID), envStore + "=" + storeSock,
		envParentPID + "=" + strconv.Itoa(self.PID), envParentTime + "=" + strconv.FormatUint(self.Start, 10)}
	return func(id string, job []byte) (*exec.Cmd, error) {
		argv, env, ok := g.JobCommand(job)
		if !ok {
			return nil, fmt.Errorf("job %x registered no worker command", job)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(append(env[:len(env):len(env)], base...), envJobID+"="+hex.EncodeToString(job), envWorkerID+"="+id)
		return cmd, nil
	}
}
