package objstore

import (
	"bufio"
	"context"
	"net"
	"time"

	"github.com/goray/goray/internal/shm"
)

// maxWait bounds one blocking get on the socket; a client waiting longer
// asks again, so its ctx is honoured within this time.
const maxWait = 100 * time.Millisecond

// serve accepts clients until the listener closes.
func (s *Store) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		id := s.nextID
		s.nextID++
		s.t.addClient(id)
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c, id)
	}
}

// handle serves one client until its socket closes (it exited, or was
// killed), then releases whatever it held.
func (s *Store) handle(c *net.UnixConn, id clientID) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		s.t.dropClient(id)
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	hello := reply{op: opHello, capacity: s.cfg.Capacity, client: uint32(id), name: s.seg.Name()}.encode()
	if err := shm.SendFDs(c, framed(hello), s.seg.FD()); err != nil {
		return
	}
	r := bufio.NewReader(c)
	var buf []byte
	for {
		body, err := readFrame(r, buf)
		if err != nil {
			return
		}
		buf = body
		req, err := decodeRequest(body)
		if err != nil {
			return // a client that breaks the protocol is dropped
		}
		rep := s.serveRequest(id, req)
		if req.op == opRelease {
			continue // no reply: see proto.go
		}
		if err := writeFrame(c, rep.encode()); err != nil {
			return
		}
	}
}

func framed(body []byte) []byte {
	b := make([]byte, 0, 4+len(body))
	b = append(b, byte(len(body)), byte(len(body)>>8), byte(len(body)>>16), byte(len(body)>>24))
	return append(b, body...)
}

func (s *Store) serveRequest(c clientID, req request) reply {
	rep := reply{op: req.op}
	var err error
	switch req.op {
	case opCreate:
		s.mu.Lock()
		var e *entry
		if e, err = s.t.create(c, req.id, req.size, req.flags&flagEvictable != 0); err == nil {
			rep.off = e.off
		}
		s.mu.Unlock()
	case opPut:
		s.mu.Lock()
		var e *entry
		if e, err = s.t.create(c, req.id, int64(len(req.data)), req.flags&flagEvictable != 0); err == nil {
			copy(s.rw[e.off:], req.data)
			err = s.t.seal(c, req.id)
		}
		s.mu.Unlock()
	case opSeal:
		s.mu.Lock()
		err = s.t.seal(c, req.id)
		s.mu.Unlock()
	case opAbort:
		s.mu.Lock()
		err = s.t.abort(c, req.id)
		s.mu.Unlock()
	case opGet:
		ctx, cancel := context.WithTimeout(context.Background(), min(time.Duration(req.waitMs)*time.Millisecond, maxWait))
		var e *entry
		if e, err = s.get(ctx, c, req.id); err == nil {
			rep.off, rep.size = e.off, e.size
		}
		cancel()
	case opRelease:
		s.mu.Lock()
		err = s.t.releaseID(c, req.id)
		s.mu.Unlock()
	case opDelete:
		s.mu.Lock()
		err = s.t.delete(c, req.id)
		s.mu.Unlock()
	case opContains:
		s.mu.Lock()
		rep.contains = s.t.contains(req.id)
		s.mu.Unlock()
	case opStats:
		s.mu.Lock()
		rep.stats = s.t.stats()
		s.mu.Unlock()
	}
	if err != nil {
		rep.status, rep.msg = statusOf(err), err.Error()
	}
	return rep
}
