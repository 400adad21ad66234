package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/internal/reexec"
)

// Peer roles of the shared-memory cases.
const (
	roleShmEcho = "benchmarks.shm-echo" // args: ping ring, pong ring
	roleShmSink = "benchmarks.shm-sink" // args: ring
)

func init() {
	reexec.Register(roleShmEcho, peerRole(roleShmEcho, shmEchoMain))
	reexec.Register(roleShmSink, peerRole(roleShmSink, shmSinkMain))
}

var ringSeq atomic.Uint64

// newShmRing creates a one-reader shared-memory ring with a recognisable
// label for messages of size bytes.
func newShmRing(what string, size int) (*channel.Ring, error) {
	label := "bench." + strconv.FormatUint(ringSeq.Add(1), 10) + "." + what
	return channel.NewShm(label, 1, ringOptions(size)...)
}

// shmConn is a round trip through a chain of shared-memory rings: this
// process writes ring 0; stage i, a peer process, echoes ring i into ring
// i+1; this process reads the last ring. One stage is the plain ping-pong.
type shmConn struct {
	chanConn
	rings []*channel.Ring
	w     *channel.RingWriter
	r     *channel.RingReader
	peers []*peer
}

func openShm(ctx context.Context, size int) (roundTripper, error) { return openShmChain(ctx, size, 1) }

// shmChain is an opener for a chain of n echo stages.
func shmChain(n int) opener {
	return func(ctx context.Context, size int) (roundTripper, error) { return openShmChain(ctx, size, n) }
}

func openShmChain(_ context.Context, size, stages int) (rt roundTripper, err error) {
	c := &shmConn{}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for i := range stages + 1 {
		r, err := newShmRing("chain"+strconv.Itoa(i), size)
		if err != nil {
			return nil, err
		}
		c.rings = append(c.rings, r)
	}
	if c.w, err = c.rings[0].Writer(); err != nil {
		return nil, err
	}
	if c.r, err = c.rings[stages].Reader(0); err != nil {
		return nil, err
	}
	c.chanConn = chanConn{ping: c.w, pong: c.r}
	for i := range stages {
		p, err := startPeer(roleShmEcho, c.rings[i].Name(), c.rings[i+1].Name())
		if err != nil {
			return nil, err
		}
		c.peers = append(c.peers, p)
		if _, err = p.expect("ready", peerStartTimeout); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Close tears the rings down (which ends the peers' echo loops), unlinks
// them, and waits for the peers.
func (c *shmConn) Close() error {
	var errs []error
	if c.w != nil {
		errs = append(errs, c.w.Close())
	}
	if c.r != nil {
		errs = append(errs, c.r.Close())
	}
	for _, r := range c.rings {
		errs = append(errs, r.Close())
	}
	for _, p := range c.peers {
		errs = append(errs, p.stop())
	}
	return errors.Join(errs...)
}

func shmEchoMain(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments (ping and pong ring names), got %q", args)
	}
	ping, err := channel.OpenShm(args[0])
	if err != nil {
		return err
	}
	defer ping.Close()
	pong, err := channel.OpenShm(args[1])
	if err != nil {
		return err
	}
	defer pong.Close()
	in, err := ping.Reader(0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := pong.Writer()
	if err != nil {
		return err
	}
	defer out.Close()
	say("ready")
	return echo(context.Background(), in, out)
}

// sink reads every message until the stream ends, touching the first and
// last byte of each zero-copy view, and returns how many it read and the
// sum of the bytes it touched.
func sink(ctx context.Context, in channel.Reader) (n int, sum uint64, err error) {
	for {
		m, err := in.Read(ctx)
		if errors.Is(err, channel.ErrChannelClosed) {
			return n, sum, nil
		}
		if err != nil {
			return n, sum, err
		}
		if len(m.Data) > 0 {
			sum += uint64(m.Data[0]) + uint64(m.Data[len(m.Data)-1])
		}
		m.Release()
		n++
	}
}

func shmSinkMain(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want 1 argument (the ring's name), got %q", args)
	}
	ring, err := channel.OpenShm(args[0])
	if err != nil {
		return err
	}
	defer ring.Close()
	in, err := ring.Reader(0)
	if err != nil {
		return err
	}
	defer in.Close()
	return sinkPeer(in)
}

func openShmStream(_ context.Context, size int) (s stream, err error) {
	ring, err := channel.NewShm("bench."+strconv.FormatUint(ringSeq.Add(1), 10)+".stream", 1, streamOptions(size)...)
	if err != nil {
		return nil, err
	}
	w, err := ring.Writer()
	if err != nil {
		ring.Close()
		return nil, err
	}
	return startSinkStream(w, ring.Close, roleShmSink, ring.Name())
}

// sinkStream streams through a channel writer to a sink peer process.
type sinkStream struct {
	w     channel.Writer
	after func() error // releases what the transport holds beside w
	peer  *peer
}

// startSinkStream starts the sink peer role with args and waits until it
// is ready. On failure it closes w and calls after.
func startSinkStream(w channel.Writer, after func() error, role string, args ...string) (*sinkStream, error) {
	c := &sinkStream{w: w, after: after}
	var err error
	if c.peer, err = startPeer(role, args...); err == nil {
		_, err = c.peer.expect("ready", peerStartTimeout)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *sinkStream) Send(ctx context.Context, p []byte) error { return c.w.Write(ctx, p) }

func (c *sinkStream) Finish(ctx context.Context) (int, error) {
	if err := c.w.CloseWrite(ctx); err != nil {
		return 0, err
	}
	return readDone(c.peer)
}

func (c *sinkStream) Close() error {
	errs := []error{c.w.Close()}
	if c.after != nil {
		errs = append(errs, c.after())
	}
	if c.peer != nil {
		errs = append(errs, c.peer.stop())
	}
	return errors.Join(errs...)
}

// sinkPeer is the body of a sink peer once its reader is open: say ready,
// read the stream to its end, acknowledge with "done <messages> <sum>".
func sinkPeer(in channel.Reader) error {
	say("ready")
	n, sum, err := sink(context.Background(), in)
	if err != nil {
		return err
	}
	say("done %d %d", n, sum)
	return nil
}

// readDone reads a sink peer's acknowledgement: "done <messages> <sum>".
func readDone(p *peer) (int, error) {
	rest, err := p.expect("done", runLimit)
	if err != nil {
		return 0, err
	}
	var n int
	var sum uint64
	if _, err := fmt.Sscan(rest, &n, &sum); err != nil {
		return 0, fmt.Errorf("peer %s: bad acknowledgement %q: %w", p.role, rest, err)
	}
	return n, nil
}
