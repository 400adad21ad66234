// Package worker is the core worker: the part of goray that lives in every
// driver and worker process. It submits tasks (leasing workers from the
// raylet and pushing task specs to them over shared-memory rings), owns
// the objects its tasks return (Ray's ownership model: a value table,
// reference counts, lineage), and, in a worker process, executes the tasks
// pushed to it. Package core is its public face.
package worker

import (
	"fmt"
	"sync"

	"google.golang.org/grpc"

	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/objstore"
)

// InlineLimit is the largest value that travels inline with a task or in
// the owner's memory; larger ones go to the node's object store.
const InlineLimit = 100 << 10

// Config configures a CoreWorker.
type Config struct {
	Driver   bool // a driver (owner of the job), not a worker process
	JobID    ids.JobID
	NodeID   []byte
	WorkerID string
	Token    string
	Address  string // this core worker's gRPC address, for owners and borrowers
	Raylet   rpc.RayletClient
	Gcs      rpc.GcsClient // actors: where they live, why they died
	Store    objstore.Conn
	Logf     func(format string, args ...any)
}

// CoreWorker is one process's core worker.
type CoreWorker struct {
	cfg  Config
	self shm.Process

	mu      sync.Mutex
	objects map[ids.ObjectID]*object
	tasks   map[ids.TaskID]*task
	keys    map[string]*keyQueue
	actors  map[ids.ActorID]*actorConn
	// borrowerProcs are the processes of this owner's borrowers, checked
	// now and then so that a dead borrower's registrations go.
	borrowerProcs map[string]shm.Process
	putTask       ids.TaskID
	putIdx        uint32
	closed        bool

	peers *rpc.Peers // other core workers, by address

	exec *executor // worker processes only

	events eventBuffer // task events for the GCS

	bg     sync.WaitGroup // goroutines this core worker owns
	stop   chan struct{}
	closer sync.Once

	// Owner is what wraps this core worker in the public API (a
	// *core.Runtime); RuntimeFrom reads it back.
	Owner any
}

// New starts a core worker.
func New(cfg Config) (*CoreWorker, error) {
	if cfg.Raylet == nil || cfg.Store == nil {
		return nil, fmt.Errorf("worker: a core worker needs its raylet and object store: %w", errs.ErrBadArgument)
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	self := shm.Self()
	w := &CoreWorker{
		cfg:     cfg,
		self:    self,
		objects: map[ids.ObjectID]*object{},
		tasks:   map[ids.TaskID]*task{},
		keys:    map[string]*keyQueue{},
		actors:  map[ids.ActorID]*actorConn{},

		borrowerProcs: map[string]shm.Process{},
		peers:         &rpc.Peers{Token: cfg.Token},
		stop:          make(chan struct{}),
	}
	w.putTask = ids.NewTaskID(ids.NilActorIDOf(cfg.JobID))
	if !cfg.Driver {
		w.exec = newExecutor(w)
	}
	return w, nil
}

// Register adds the CoreWorker service to s.
func (w *CoreWorker) Register(s *grpc.Server) { rpc.RegisterCoreWorkerServer(s, &service{w: w}) }

// Address is this core worker's gRPC address.
func (w *CoreWorker) Address() string { return w.cfg.Address }

// JobID, NodeID and WorkerID identify where this core worker runs.
func (w *CoreWorker) JobID() ids.JobID { return w.cfg.JobID }
func (w *CoreWorker) NodeID() []byte   { return w.cfg.NodeID }
func (w *CoreWorker) WorkerID() string { return w.cfg.WorkerID }
func (w *CoreWorker) IsDriver() bool   { return w.cfg.Driver }

// Raylet is the node's raylet client.
func (w *CoreWorker) Raylet() rpc.RayletClient { return w.cfg.Raylet }

// Closed reports whether Close has begun.
func (w *CoreWorker) Closed() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// Done is closed when the core worker shuts down.
func (w *CoreWorker) Done() <-chan struct{} { return w.stop }

// Close stops the core worker: queued and running tasks fail with
// ErrShutdown, leases are returned, pinned objects released.
func (w *CoreWorker) Close() error {
	w.closer.Do(func() {
		close(w.stop)
		w.mu.Lock()
		w.closed = true
		var leases []*leaseConn
		for _, k := range w.keys {
			for _, q := range k.queue {
				w.failTaskLocked(q, shutdownInfo(q))
			}
			k.queue = nil
			for _, c := range k.cancelLease {
				c()
			}
			leases = append(leases, k.leases...)
		}
		for _, ac := range w.actors {
			for _, t := range ac.queue {
				if t.state != taskDone {
					w.failTaskLocked(t, shutdownInfo(t))
				}
			}
			ac.queue = nil
			if ac.conn != nil && !ac.conn.broken {
				leases = append(leases, ac.conn)
			}
		}
		for _, t := range w.tasks {
			if t.state == taskWaitingDeps {
				w.failTaskLocked(t, shutdownInfo(t))
			}
		}
		for _, l := range leases {
			// A detach, not a failure: the worker is not killed for it, so
			// it closes (and unlinks) what it made itself, such as the
			// rings of its own actor calls, when the raylet stops it.
			l.returning = true
		}
		w.mu.Unlock()
		for _, l := range leases {
			l.shutdown()
		}
		if w.exec != nil {
			w.exec.close()
		}
		w.bg.Wait()
		w.mu.Lock()
		for _, t := range w.tasks {
			w.failTaskLocked(t, shutdownInfo(t))
		}
		for _, o := range w.objects {
			o.unpin()
		}
		w.mu.Unlock()
		w.peers.Close()
	})
	return nil
}

func shutdownInfo(t *task) *rpc.ErrorInfo {
	return systemError(rpc.ErrorKind_ERROR_SYSTEM, t.fn, t.name, errs.ErrShutdown.Error()+": the runtime was shut down before the task finished")
}

// peer returns a client of the core worker at addr.
func (w *CoreWorker) peer(addr string) (rpc.CoreWorkerClient, error) { return w.peers.Peer(addr) }

// goBG runs f as a goroutine Close waits for.
func (w *CoreWorker) goBG(f func()) {
	w.bg.Add(1)
	go func() {
		defer w.bg.Done()
		f()
	}()
}

// Peer returns a client of the core worker at addr (the GCS hosts actors
// through it).
func (w *CoreWorker) Peer(addr string) (rpc.CoreWorkerClient, error) { return w.peer(addr) }

// Gcs is the cluster's GCS client.
func (w *CoreWorker) Gcs() rpc.GcsClient { return w.cfg.Gcs }
