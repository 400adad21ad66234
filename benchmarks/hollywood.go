package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/anthdm/hollywood/actor"
	"github.com/anthdm/hollywood/remote"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goray/goray/internal/reexec"
)

// The Hollywood baseline is a request/response round trip between two
// processes through github.com/anthdm/hollywood's remote actors: what a Go
// user would pick for actors that talk over the network. This process's
// engine calls Engine.Request on an echo actor in a peer process's engine,
// which answers with Context.Respond; both engines have a remote (DRPC
// streams over loopback TCP, one connection each way). The message and
// the reply are google.protobuf.BytesValue, as in the gRPC baseline
// (Hollywood's remote carries protobuf messages only).
//
// It is the baseline of a synchronous actor call: like the gRPC baseline
// it is favourable (no TLS, warm connections, an actor that does no work).
const (
	roleHollywoodEcho = "benchmarks.hollywood-echo" // says "ready <address> <echo actor's ID>"
	hollywoodEchoKind = "echo"
	hollywoodEchoID   = "1"
	// hollywoodListenTries is how many free ports a remote tries: it
	// listens on an address it is given, which must be the engine's
	// address that its peers answer to, so it cannot take port 0.
	hollywoodListenTries = 5
	// hollywoodRequestTimeout bounds one round trip. Engine.Request takes
	// a timeout, not a context, and a request whose peer has died fails
	// only then: this is how long a dead peer goes unnoticed. A live one
	// answers in microseconds.
	hollywoodRequestTimeout = 30 * time.Second
)

func init() { reexec.Register(roleHollywoodEcho, peerRole(roleHollywoodEcho, hollywoodEchoMain)) }

// newHollywoodEngine starts an engine whose remote listens on a free port
// of the loopback interface.
func newHollywoodEngine() (*actor.Engine, *remote.Remote, error) {
	var errs []error
	for range hollywoodListenTries {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, nil, err
		}
		r := remote.New(addr, remote.NewConfig())
		e, err := actor.NewEngine(actor.NewEngineConfig().WithRemote(r))
		if err == nil {
			return e, r, nil
		}
		// Another process took the port between freeLoopbackAddr and
		// the remote's listen: try another.
		errs = append(errs, err)
	}
	return nil, nil, fmt.Errorf("hollywood: start a remote: %w", errors.Join(errs...))
}

// freeLoopbackAddr returns a loopback TCP address that was free a moment
// ago.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", loopback)
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// hollywoodEchoMain serves an echo actor and says "ready <address> <ID>".
// The engine has no shutdown: the process exits when the parent closes
// its stdin (peerRole).
func hollywoodEchoMain(args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("want no arguments, got %q", args)
	}
	e, r, err := newHollywoodEngine()
	if err != nil {
		return err
	}
	pid := e.SpawnFunc(func(c *actor.Context) {
		if m, ok := c.Message().(*wrapperspb.BytesValue); ok {
			c.Respond(m)
		}
	}, hollywoodEchoKind, actor.WithID(hollywoodEchoID))
	say("ready %s %s", r.Address(), pid.ID)
	select {}
}

// hollywoodConn calls the echo actor of a peer process from an engine in
// this one.
type hollywoodConn struct {
	engine *actor.Engine
	remote *remote.Remote
	echo   *actor.PID
	req    wrapperspb.BytesValue
	peer   *peer
}

// openHollywood starts the peer and an engine here.
func openHollywood(ctx context.Context, _ int) (rt roundTripper, err error) {
	c := &hollywoodConn{}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.peer, err = startPeer(roleHollywoodEcho); err != nil {
		return nil, err
	}
	ready, err := c.peer.expect("ready", peerStartTimeout)
	if err != nil {
		return nil, err
	}
	addr, id, ok := strings.Cut(ready, " ")
	if !ok {
		return nil, fmt.Errorf("peer %s: said ready %q, want an address and an ID", roleHollywoodEcho, ready)
	}
	c.echo = actor.NewPID(addr, id)
	if c.engine, c.remote, err = newHollywoodEngine(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *hollywoodConn) RoundTrip(ctx context.Context, msg []byte, got func([]byte)) error {
	timeout := hollywoodRequestTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	c.req.Value = msg
	v, err := c.engine.Request(c.echo, &c.req, timeout).Result()
	if err != nil {
		select {
		case <-c.peer.done:
			return fmt.Errorf("hollywood request: %w (peer %s exited: %v)", err, roleHollywoodEcho, c.peer.err)
		default:
			return fmt.Errorf("hollywood request: %w", err)
		}
	}
	resp, ok := v.(*wrapperspb.BytesValue)
	if !ok {
		return fmt.Errorf("hollywood request: reply of type %T, want *wrapperspb.BytesValue", v)
	}
	got(resp.Value)
	return nil
}

// Close stops the peer, then this process's remote. The peer goes first,
// so that it exits without noticing (and logging) its connections' end.
// The engine has no shutdown of its own, and holds no goroutine once its
// remote's connections are gone: the stream to the peer ends when the
// peer exits, the server and its end of the peer's stream when the remote
// stops.
func (c *hollywoodConn) Close() error {
	var err error
	if c.peer != nil {
		err = c.peer.stop()
	}
	if c.remote != nil {
		c.remote.Stop().Wait()
	}
	return err
}

func init() {
	// A synchronous request of 64 bytes to a Hollywood actor in a peer
	// process, over loopback TCP, and its reply: the baseline of a
	// synchronous actor call.
	Register(NewCase("Baseline/hollywood_remote_roundtrip", grpcRateBody(openHollywood, 64)))
}
