package objstore

import (
	"context"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/goray/goray/channel"
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
// killed), then releases whatever it held. Requests and replies travel over
// two shared-memory rings made for the client: a round trip costs well
// under a microsecond while both sides are busy, against tens over the
// socket. The socket carries the hello and then only tells when the
// client is gone.
func (s *Store) handle(c *net.UnixConn, id clientID) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		s.t.dropClient(id)
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	label := "objstore." + strconv.FormatUint(s.seq, 10) + ".client" + strconv.FormatUint(uint64(id), 10)
	reqRing, err := channel.NewShm(label+".req", 1, channel.Slots(clientSlots), channel.SlotSize(maxFrame))
	if err != nil {
		return
	}
	defer reqRing.Close()
	repRing, err := channel.NewShm(label+".rep", 1, channel.Slots(clientSlots), channel.SlotSize(maxFrame))
	if err != nil {
		return
	}
	defer repRing.Close()
	in, err := reqRing.Reader(0)
	if err != nil {
		return
	}
	defer in.Close()
	out, err := repRing.Writer()
	if err != nil {
		return
	}
	defer out.Close()
	hello := reply{op: opHello, capacity: s.cfg.Capacity, client: uint32(id), name: s.seg.Name(),
		reqRing: reqRing.Name(), repRing: repRing.Name()}.encode()
	if err := shm.SendFDs(c, framed(hello), s.seg.FD()); err != nil {
		return
	}
	// The client's socket closing (or the store closing it) ends the
	// session: closing the rings wakes the loop below.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		io.Copy(io.Discard, c)
		reqRing.Close()
		repRing.Close()
	}()
	defer func() { c.Close(); <-gone }()
	ctx := context.Background()
	var scratch []byte // a reply being encoded
	for {
		m, err := in.Read(ctx)
		if err != nil {
			return // closed, or the client died
		}
		req, err := decodeRequest(m.Data)
		if err != nil {
			m.Release()
			return // a client that breaks the protocol is dropped
		}
		rep := s.serveRequest(id, req) // done with m.Data (put's bytes are copied)
		m.Release()
		if req.op == opRelease {
			continue // no reply: see proto.go
		}
		scratch = rep.appendTo(scratch[:0])
		if err := out.Write(ctx, scratch); err != nil {
			return
		}
	}
}

// clientSlots is the length of a client's rings: one request is in flight
// at a time, and releases (one-way) may queue behind it.
const clientSlots = 8

func framed(body []byte) []byte {
	b := make([]byte, 0, 4+len(body))
	b = append(b, byte(len(body)), byte(len(body)>>8), byte(len(body)>>16), byte(len(body)>>24))
	return append(b, body...)
}

func (s *Store) serveRequest(c clientID, req request) reply {
	rep := reply{op: req.op}
	evictable := req.flags&flagEvictable != 0
	var err error
	switch req.op {
	case opCreate:
		err = s.locked(func() error {
			e, err := s.create(c, req.id, req.size, evictable)
			if err == nil {
				rep.off = e.off
			}
			return err
		})
	case opPut:
		err = s.locked(func() error {
			e, err := s.create(c, req.id, int64(len(req.data)), evictable)
			if err != nil {
				return err
			}
			copy(s.rw[e.off:], req.data)
			return s.t.seal(c, req.id)
		})
	case opSeal:
		err = s.locked(func() error { return s.t.seal(c, req.id) })
	case opAbort:
		err = s.locked(func() error { return s.t.abort(c, req.id) })
	case opGet:
		ctx, cancel := context.WithTimeout(context.Background(), min(time.Duration(req.waitMs)*time.Millisecond, maxWait))
		var e *entry
		if e, err = s.get(ctx, c, req.id); err == nil {
			rep.off, rep.size = e.off, e.size
		}
		cancel()
	case opRelease:
		err = s.locked(func() error { return s.t.releaseID(c, req.id) })
	case opDelete:
		err = s.locked(func() error { return s.t.delete(c, req.id) })
	case opContains:
		err = s.locked(func() error { rep.contains = s.t.contains(req.id); return nil })
	case opStats:
		err = s.locked(func() error { rep.stats = s.t.stats(); return nil })
	}
	if err != nil {
		rep.status, rep.msg = statusOf(err), err.Error()
	}
	return rep
}
