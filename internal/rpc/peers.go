package rpc

import (
	"sync"

	"google.golang.org/grpc"
)

// Peers keeps one connection per core worker address, dialled with the
// cluster's token on first use.
type Peers struct {
	Token string
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// Peer returns a client of the core worker at addr.
func (p *Peers) Peer(addr string) (CoreWorkerClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cc := p.conns[addr]
	if cc == nil {
		var err error
		if cc, err = Dial(addr, p.Token); err != nil {
			return nil, err
		}
		if p.conns == nil {
			p.conns = map[string]*grpc.ClientConn{}
		}
		p.conns[addr] = cc
	}
	return NewCoreWorkerClient(cc), nil
}

// Close closes every connection; later calls dial again.
func (p *Peers) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cc := range p.conns {
		cc.Close()
	}
	p.conns = nil
}
