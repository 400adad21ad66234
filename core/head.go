package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"google.golang.org/grpc"

	"github.com/goray/goray/internal/gcs"
	"github.com/goray/goray/internal/rpc"
)

// Head is a cluster's head node running without a driver of its own: GCS,
// raylet and object store, waiting for drivers to connect with Address
// (`goray start --head`). Each driver's tasks and actors run in worker
// processes started from that driver's binary.
type Head struct {
	c     *cluster
	peers *peerDialer
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
	h := &Head{c: c, peers: &peerDialer{token: c.token, conns: map[string]*grpc.ClientConn{}}}
	c.gcs.EnableActors(gcs.ActorConfig{Raylet: localRaylet{c.raylet}, Worker: h.peers.dial,
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
		h.peers.close()
	})
	return h.err
}

// peerDialer keeps one connection per core worker the GCS talks to.
type peerDialer struct {
	token string
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (p *peerDialer) dial(addr string) (rpc.CoreWorkerClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cc := p.conns[addr]
	if cc == nil {
		var err error
		if cc, err = rpc.Dial(addr, p.token); err != nil {
			return nil, err
		}
		p.conns[addr] = cc
	}
	return rpc.NewCoreWorkerClient(cc), nil
}

func (p *peerDialer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cc := range p.conns {
		cc.Close()
	}
	p.conns = nil
}
