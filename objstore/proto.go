package objstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/goray/goray/internal/ids"
)

// The client protocol. On accept, the store sends a hello over the Unix
// socket, framed (a u32 little-endian body length, then the body), with the
// arena's descriptor (SCM_RIGHTS) and the names of two shared-memory rings
// (channel.Ring) it made for this client: requests go over one, replies come
// back over the other, each message one body. The socket then carries
// nothing; its closing (exit, kill -9) is how the store learns the client
// is gone. A body starts with the protocol version and an op. A client
// sends one request and reads its reply before the next (the Client
// serialises). Bodies by op:
//
//	op          request after (version, op)      reply after (version, op, status)
//	1 hello     —  (sent by the store on accept,  capacity u64, client u32, then
//	               on the socket)                 arena, request ring, reply ring
//	                                               names, each u16 length + bytes
//	2 create    id[28], size u64, flags u8        offset u64
//	3 seal      id[28]                            —
//	4 get       id[28], wait ms u32               offset u64, size u64
//	5 release   id[28]                            none: no reply is sent
//	6 delete    id[28]                            —
//	7 contains  id[28]                            u8 (0 or 1)
//	8 stats     —                                 14 × u64 (Stats, in field order)
//	9 abort     id[28]                            —
//	10 put      id[28], flags u8, data (the rest) —   (create, copy, seal in one
//	                                               trip; data ≤ maxInline bytes)
//
// Release has no reply, so a client's Get and Release cost one round
// trip; the ring's order keeps it before the client's next request, and
// the only error it can have (not pinned) is the client's own bug. A reply
// whose status is not statusOK carries instead a u16 length and an error
// message; the status names the sentinel error. Decoders accept exactly
// these lengths and nothing else.
const (
	protoVersion = 2
	maxFrame     = 1 << 12
	// maxInline is the largest object a client puts in one round trip,
	// its bytes inside the request (they are copied once more, by the
	// store: cheap at this size).
	maxInline = maxFrame - 64
)

const (
	opHello uint8 = 1 + iota
	opCreate
	opSeal
	opGet
	opRelease
	opDelete
	opContains
	opStats
	opAbort
	opPut
)

const flagEvictable = 1

const (
	statusOK uint8 = iota
	statusNotFound
	statusExists
	statusFull
	statusNotCreator
	statusSpillCorrupt
	statusBadArgument
	statusClosed
	statusOther
)

var statusErrors = []error{nil, ErrObjectNotFound, ErrObjectExists, ErrObjectStoreFull, ErrNotCreator,
	ErrSpillCorrupt, ErrBadArgument, ErrClosed, nil}

func statusOf(err error) uint8 {
	for i, s := range statusErrors {
		if s != nil && errors.Is(err, s) {
			return uint8(i)
		}
	}
	return statusOther
}

// remoteError is an error returned by the store to a client: its message,
// and the sentinel its status names.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

type request struct {
	op     uint8
	id     ids.ObjectID
	data   []byte // put
	size   int64  // create
	flags  uint8  // create
	waitMs uint32 // get
}

type reply struct {
	op       uint8
	status   uint8
	msg      string
	off      int64  // create, get
	size     int64  // get
	contains bool   // contains
	stats    Stats  // stats
	capacity int64  // hello
	client   uint32 // hello
	name     string // hello: the arena's name, "" for a memfd
	reqRing  string // hello: the ring the client writes requests to
	repRing  string // hello: the ring the store writes replies to
}

func hasID(op uint8) bool {
	switch op {
	case opCreate, opSeal, opGet, opRelease, opDelete, opContains, opAbort, opPut:
		return true
	}
	return false
}

func (r request) encode() []byte { return r.appendTo(nil) }

// appendTo appends the request's body to b.
func (r request) appendTo(b []byte) []byte {
	b = append(b, protoVersion, r.op)
	if hasID(r.op) {
		b = append(b, r.id[:]...)
	}
	switch r.op {
	case opCreate:
		b = binary.LittleEndian.AppendUint64(b, uint64(r.size))
		b = append(b, r.flags)
	case opGet:
		b = binary.LittleEndian.AppendUint32(b, r.waitMs)
	case opPut:
		b = append(b, r.flags)
		b = append(b, r.data...)
	}
	return b
}

func decodeRequest(b []byte) (request, error) {
	var r request
	if len(b) < 2 {
		return r, fmt.Errorf("objstore: request of %d bytes: too short", len(b))
	}
	if b[0] != protoVersion {
		return r, fmt.Errorf("objstore: request version %d, want %d", b[0], protoVersion)
	}
	r.op = b[1]
	want := 2
	switch r.op {
	case opCreate:
		want += ids.ObjectIDSize + 9
	case opGet:
		want += ids.ObjectIDSize + 4
	case opSeal, opRelease, opDelete, opContains, opAbort:
		want += ids.ObjectIDSize
	case opStats:
	case opPut:
		want += ids.ObjectIDSize + 1
		if n := len(b) - want; n > 0 && n <= maxInline {
			want = len(b)
		}
	default:
		return r, fmt.Errorf("objstore: request op %d unknown", r.op)
	}
	if len(b) != want {
		return r, fmt.Errorf("objstore: request op %d: %d bytes, want %d", r.op, len(b), want)
	}
	p := b[2:]
	if hasID(r.op) {
		copy(r.id[:], p)
		p = p[ids.ObjectIDSize:]
	}
	switch r.op {
	case opCreate:
		size := binary.LittleEndian.Uint64(p)
		if size > 1<<62 {
			return r, fmt.Errorf("objstore: create: size %d out of range", size)
		}
		r.size, r.flags = int64(size), p[8]
		if r.flags&^flagEvictable != 0 {
			return r, fmt.Errorf("objstore: create: unknown flags %#x", r.flags)
		}
	case opGet:
		r.waitMs = binary.LittleEndian.Uint32(p)
	case opPut:
		r.flags, r.data = p[0], p[1:]
		if r.flags&^flagEvictable != 0 {
			return r, fmt.Errorf("objstore: put: unknown flags %#x", r.flags)
		}
	}
	return r, nil
}

func statsToWords(s Stats) [14]uint64 {
	return [14]uint64{uint64(s.Capacity), uint64(s.Used), uint64(s.LargestFree), uint64(s.Objects),
		uint64(s.Pinned), uint64(s.PinnedObjects), uint64(s.Unsealed), uint64(s.Spilled), uint64(s.SpilledObjects),
		uint64(s.SpillsTotal), uint64(s.RestoresTotal), uint64(s.Evictions), uint64(s.EvictedBytes), uint64(s.Clients)}
}

func wordsToStats(w [14]uint64) Stats {
	return Stats{Capacity: int64(w[0]), Used: int64(w[1]), LargestFree: int64(w[2]), Objects: int(w[3]),
		Pinned: int64(w[4]), PinnedObjects: int64(w[5]), Unsealed: int64(w[6]), Spilled: int64(w[7]),
		SpilledObjects: int64(w[8]), SpillsTotal: int64(w[9]), RestoresTotal: int64(w[10]), Evictions: int64(w[11]),
		EvictedBytes: int64(w[12]), Clients: int(w[13])}
}

func (r reply) encode() []byte { return r.appendTo(nil) }

// appendTo appends the reply's body to b.
func (r reply) appendTo(b []byte) []byte {
	b = append(b, protoVersion, r.op, r.status)
	if r.status != statusOK {
		msg := r.msg
		if len(msg) > maxFrame-16 {
			msg = msg[:maxFrame-16]
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(len(msg)))
		return append(b, msg...)
	}
	switch r.op {
	case opHello:
		b = binary.LittleEndian.AppendUint64(b, uint64(r.capacity))
		b = binary.LittleEndian.AppendUint32(b, r.client)
		for _, str := range []string{r.name, r.reqRing, r.repRing} {
			b = binary.LittleEndian.AppendUint16(b, uint16(len(str)))
			b = append(b, str...)
		}
	case opCreate:
		b = binary.LittleEndian.AppendUint64(b, uint64(r.off))
	case opGet:
		b = binary.LittleEndian.AppendUint64(b, uint64(r.off))
		b = binary.LittleEndian.AppendUint64(b, uint64(r.size))
	case opContains:
		if r.contains {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	case opStats:
		for _, w := range statsToWords(r.stats) {
			b = binary.LittleEndian.AppendUint64(b, w)
		}
	}
	return b
}

func decodeReply(b []byte) (reply, error) {
	var r reply
	if len(b) < 3 {
		return r, fmt.Errorf("objstore: reply of %d bytes: too short", len(b))
	}
	if b[0] != protoVersion {
		return r, fmt.Errorf("objstore: reply version %d, want %d", b[0], protoVersion)
	}
	r.op, r.status = b[1], b[2]
	if r.op < opHello || r.op > opPut {
		return r, fmt.Errorf("objstore: reply op %d unknown", r.op)
	}
	p := b[3:]
	if r.status != statusOK {
		if int(r.status) >= len(statusErrors) {
			return r, fmt.Errorf("objstore: reply status %d unknown", r.status)
		}
		if len(p) < 2 || int(binary.LittleEndian.Uint16(p)) != len(p)-2 {
			return r, fmt.Errorf("objstore: error reply: bad message length")
		}
		r.msg = string(p[2:])
		return r, nil
	}
	want := 0
	switch r.op {
	case opHello:
		// capacity, client, then three length-prefixed names.
		want = 12
		for range 3 {
			if len(p) < want+2 {
				return r, fmt.Errorf("objstore: hello of %d bytes: too short", len(b))
			}
			want += 2 + int(binary.LittleEndian.Uint16(p[want:]))
		}
	case opCreate:
		want = 8
	case opGet:
		want = 16
	case opContains:
		want = 1
	case opStats:
		want = 14 * 8
	}
	if len(p) != want {
		return r, fmt.Errorf("objstore: reply op %d: %d bytes, want %d", r.op, len(p), want+3)
	}
	u64 := func(i int) int64 { return int64(binary.LittleEndian.Uint64(p[i:])) }
	switch r.op {
	case opHello:
		r.capacity, r.client = u64(0), binary.LittleEndian.Uint32(p[8:])
		at := 12
		for _, dst := range []*string{&r.name, &r.reqRing, &r.repRing} {
			n := int(binary.LittleEndian.Uint16(p[at:]))
			*dst = string(p[at+2 : at+2+n])
			at += 2 + n
		}
	case opCreate:
		r.off = u64(0)
	case opGet:
		r.off, r.size = u64(0), u64(8)
	case opContains:
		if p[0] > 1 {
			return r, fmt.Errorf("objstore: contains reply: bad value %d", p[0])
		}
		r.contains = p[0] == 1
	case opStats:
		var w [14]uint64
		for i := range w {
			w[i] = binary.LittleEndian.Uint64(p[8*i:])
		}
		r.stats = wordsToStats(w)
	}
	if r.off < 0 || r.size < 0 || r.capacity < 0 {
		return r, fmt.Errorf("objstore: reply op %d: offset, size or capacity out of range", r.op)
	}
	return r, nil
}

func (r reply) err() error {
	if r.status == statusOK {
		return nil
	}
	return &remoteError{msg: r.msg, sentinel: statusErrors[r.status]}
}
