package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/goray/goray/internal/gcs"
	"github.com/goray/goray/internal/rpc"
)

// Head is a cluster's head node running without a driver of its own: GCS,
// raylet and object store, waiting for drivers to connect with Address
// (`goray start --head`). Each driver's tasks and actors run in worker
// processes started from that driver's binary.
type Head struct {
	c     *cluster
	peers *rpc.Peers
	once  sync.Once
	err   error
}

// StartHead starts a head node serving on 127.0.0.1:port (0: a free port).
// Options are Init's: NumCPUs, NumGPUs, Resources, ObjectStoreMemory,
// WorkerIdleTimeout.
func StartHead(ctx context.Context, port int, opts ...Option) (*Head, error) {
	if IsWorker() {
		return nil, errors.New("core: StartHead in a worker process")
	}
	cfg := initConfig{prestart: -1}
	for _, o := range opts {
		if o != nil {
			o.applyInit(&cfg)
		}
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, fmt.Errorf("core: StartHead: %w", err)
	}
	c, err := newCluster(ctx, cfg, port, false)
	if err != nil {
		return nil, err
	}
	h := &Head{c: c, peers: &rpc.Peers{Token: c.token}}
	c.gcs.EnableActors(gcs.ActorConfig{Raylet: localRaylet{c.raylet}, Worker: h.peers.Peer,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	c.serve()
	return h, nil
}

// Address is where drivers connect (core.Address).
func (h *Head) Address() string { return h.c.addr }

// SessionDir holds the head's token, object store socket and spill files.
func (h *Head) SessionDir() string { return h.c.dir }

// Close stops the head: its workers, the services, the object store (its
// shared memory is unlinked), the session directory. Idempotent.
func (h *Head) Close() error {
	h.once.Do(func() {
		h.err = h.c.close()
		h.peers.Close()
	})
	return h.err
}
