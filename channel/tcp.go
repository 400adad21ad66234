package channel

import (
	"net"
	"time"
)

// The TCP channel carries a compiled graph's edge between nodes: the same
// Writer and Reader, kinds, ordering, back-pressure and close semantics as
// the ring, over one TCP connection per reader (frames: frame.go).
//
// Back-pressure is by credit: the writer may be Slots (K) messages ahead of
// each reader's acknowledged releases, as in the ring. Readers acknowledge
// releases in batches: every K/2 releases; before a read that may block, if
// K/2 messages came since the last ack (so the writer may be short of
// credit); and at the latest ackLinger after a release, for a reader that
// releases and then waits on something else, perhaps on this writer. So a
// stream costs far less than one ack per message, and neither a ping-pong
// nor a release without a read leaves the writer waiting.
//
// A write is committed once its frame is in the writer's slot buffer, as in
// the ring: Write then tries each reader's socket without blocking, and the
// reader's pump goroutine sends what the socket did not take. So a context
// bounds only the wait for credit, and a timed-out write sent nothing.
//
// Locks never nest: TCPWriter.mu, TCPReader.mu and connCtx.mu are each
// taken alone.
const (
	tcpReadBuffer    = 64 << 10
	ackReadBuffer    = 4 << 10
	handshakeTimeout = 10 * time.Second
	// closeGrace bounds how long closing waits to finish a frame already
	// on the wire and to say goodbye to a peer that does not read.
	closeGrace = 500 * time.Millisecond
	// ackLinger bounds how long a release waits to be acknowledged when
	// the reader does not read again: the writer may be waiting for it.
	ackLinger = 200 * time.Microsecond
)

var aLongTimeAgo = time.Unix(1, 0)

// keepAlive finds a silent peer node in about 20 s; a killed process is
// seen at once (its kernel resets the connection).
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 5 * time.Second, Count: 3}
