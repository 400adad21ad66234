package benchmarks

import (
	"context"
	"fmt"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/internal/reexec"
)

// Peer roles of the TCP cases, over 127.0.0.1.
const (
	roleTCPEcho = "benchmarks.tcp-echo" // args: the ping writer's address; says "ready <pong address>"
	roleTCPSink = "benchmarks.tcp-sink" // args: the writer's address
)

const loopback = "127.0.0.1:0"

func init() {
	reexec.Register(roleTCPEcho, peerRole(roleTCPEcho, tcpEchoMain))
	reexec.Register(roleTCPSink, peerRole(roleTCPSink, tcpSinkMain))
}

// tcpConn is a round trip through two TCP channels: this process writes
// ping and reads pong; a peer process reads ping and writes pong.
type tcpConn struct {
	chanConn
	w    *channel.TCPWriter
	r    *channel.TCPReader
	peer *peer
}

func openTCP(ctx context.Context, _ int) (rt roundTripper, err error) {
	c := &tcpConn{}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.w, err = channel.ListenTCP(loopback, 1); err != nil {
		return nil, err
	}
	if c.peer, err = startPeer(roleTCPEcho, c.w.Addr()); err != nil {
		return nil, err
	}
	pongAddr, err := c.peer.expect("ready", peerStartTimeout)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, peerStartTimeout)
	defer cancel()
	if c.r, err = channel.DialTCP(dctx, pongAddr, 0); err != nil {
		return nil, err
	}
	c.chanConn = chanConn{ping: c.w, pong: c.r}
	return c, nil
}

// Close closes both channels, which ends the peer's echo loop, and waits
// for the peer.
func (c *tcpConn) Close() error {
	if c.w != nil {
		c.w.Close()
	}
	if c.r != nil {
		c.r.Close()
	}
	if c.peer != nil {
		return c.peer.stop()
	}
	return nil
}

// dialPeer is a TCP peer's start: args is the writer's address, dialled
// as reader 0.
func dialPeer(args []string, what string) (*channel.TCPReader, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("want 1 argument (%s), got %q", what, args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerStartTimeout)
	defer cancel()
	return channel.DialTCP(ctx, args[0], 0)
}

func tcpEchoMain(args []string) error {
	in, err := dialPeer(args, "the ping writer's address")
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := channel.ListenTCP(loopback, 1)
	if err != nil {
		return err
	}
	defer out.Close()
	say("ready %s", out.Addr())
	return echo(context.Background(), in, out)
}

func openTCPStream(_ context.Context, _ int) (stream, error) {
	w, err := channel.ListenTCP(loopback, 1, channel.Slots(streamSlots))
	if err != nil {
		return nil, err
	}
	return startSinkStream(w, nil, roleTCPSink, w.Addr())
}

func tcpSinkMain(args []string) error {
	in, err := dialPeer(args, "the writer's address")
	if err != nil {
		return err
	}
	defer in.Close()
	return sinkPeer(in)
}
