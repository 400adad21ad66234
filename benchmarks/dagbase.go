package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goray/goray/internal/reexec"
)

// The baselines of the compiled-graph cases: what a Go user would build
// instead of a compiled chain of actors.
//
// Baseline/grpc_chain4 is a chain of four gRPC services, one process each
// (processes of this binary, as the gRPC echo peer is), on loopback TCP.
// This process calls stage 1 with the message; stage i calls stage i+1
// with the request it got, inside its handler, and returns the reply it
// got back; stage 4 echoes. One op is one round trip through the whole
// chain: four nested unary calls, four protobuf messages each way. As for
// Baseline/grpc_unary_roundtrip the setting is favourable to gRPC: no
// TLS, no interceptors, warm connections, stages that do no work.
//
// Baseline/gochan_pipeline and Baseline/gochan_pipeline4 are the in-process
// counterparts: one or four goroutine stages in this process, joined by Go
// channels with a buffer of one. Each hop copies the message into a buffer
// of its own, as a compiled graph's channel writes do (and as
// ChannelRoundTrip/gochan does), then sends it on.

// roleGRPCChainStage serves Echo on loopback TCP, forwarding each request
// to the downstream stage whose address is its argument, or echoing it when
// it has none; it says "ready <address>".
const roleGRPCChainStage = "benchmarks.grpc-chain-stage"

func init() { reexec.Register(roleGRPCChainStage, peerRole(roleGRPCChainStage, grpcChainStageMain)) }

// chainStage is one stage of the gRPC chain: it forwards to next, or
// echoes when next is nil.
type chainStage struct{ next *grpc.ClientConn }

func (s chainStage) Echo(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	if s.next == nil {
		return in, nil
	}
	out := new(wrapperspb.BytesValue)
	if err := s.next.Invoke(ctx, echoFullMethod, in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// grpcChainStageMain serves one stage of the chain and says
// "ready <address>". Its argument, if any, is the downstream stage's
// address, dialled once here and used for every request.
func grpcChainStageMain(args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("want at most 1 argument (the downstream stage's address), got %q", args)
	}
	var s chainStage
	if len(args) == 1 {
		cc, err := grpc.NewClient("passthrough:///"+args[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		cc.Connect()
		s.next = cc
	}
	ln, err := net.Listen("tcp", loopback)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	srv.RegisterService(&echoDesc, s)
	say("ready %s", ln.Addr())
	return srv.Serve(ln) // until the parent closes stdin
}

// grpcChainConn calls the first stage of a chain of stage processes.
type grpcChainConn struct {
	cc     *grpc.ClientConn
	req    wrapperspb.BytesValue
	resp   wrapperspb.BytesValue
	stages []*peer // stages[0] is the one this process calls
}

// grpcChain is an opener for a chain of n gRPC stages.
func grpcChain(n int) opener {
	return func(ctx context.Context, size int) (roundTripper, error) { return openGRPCChain(ctx, n) }
}

// openGRPCChain starts the stages from the last to the first, each with
// the address of the one after it, and connects to the first.
func openGRPCChain(_ context.Context, n int) (rt roundTripper, err error) {
	c := &grpcChainConn{stages: make([]*peer, n)}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	var next []string // the downstream address, none for the last stage
	for i := n - 1; i >= 0; i-- {
		p, err := startPeer(roleGRPCChainStage, next...)
		if err != nil {
			return nil, err
		}
		c.stages[i] = p
		addr, err := p.expect("ready", peerStartTimeout)
		if err != nil {
			return nil, err
		}
		next = []string{addr}
	}
	if c.cc, err = grpc.NewClient("passthrough:///"+next[0], grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *grpcChainConn) RoundTrip(ctx context.Context, msg []byte, got func([]byte)) error {
	c.req.Value = msg
	if err := c.cc.Invoke(ctx, echoFullMethod, &c.req, &c.resp); err != nil {
		return err
	}
	got(c.resp.Value)
	return nil
}

// Close closes the connection to the first stage, then stops the stages
// from the first to the last, so that no stage is left without its
// downstream while a call might still reach it.
func (c *grpcChainConn) Close() error {
	if c.cc != nil {
		c.cc.Close()
	}
	var errs []error
	for _, p := range c.stages {
		if p != nil {
			errs = append(errs, p.stop())
		}
	}
	return errors.Join(errs...)
}

// gochanPipeline is a chain of goroutine stages joined by Go channels:
// chans[0] into the first stage, chans[len-1] out of the last.
type gochanPipeline struct {
	chans  []chan []byte
	buf    []byte
	stages sync.WaitGroup
}

// gochanPipe is an opener for a pipeline of n goroutine stages.
func gochanPipe(n int) opener {
	return func(_ context.Context, size int) (roundTripper, error) { return openGoChanPipeline(n, size), nil }
}

func openGoChanPipeline(n, size int) *gochanPipeline {
	c := &gochanPipeline{chans: make([]chan []byte, n+1), buf: make([]byte, size)}
	for i := range c.chans {
		c.chans[i] = make(chan []byte, 1)
	}
	for i := range n {
		in, out := c.chans[i], c.chans[i+1]
		c.stages.Go(func() {
			defer close(out)
			// One message is in flight at a time, so the stage's
			// buffer is free again by the time the next arrives.
			buf := make([]byte, size)
			for m := range in {
				copy(buf, m)
				out <- buf
			}
		})
	}
	return c
}

func (c *gochanPipeline) RoundTrip(_ context.Context, msg []byte, got func([]byte)) error {
	copy(c.buf, msg)
	c.chans[0] <- c.buf
	got(<-c.chans[len(c.chans)-1])
	return nil
}

// Close closes the first channel, which ends the stages one after the
// other, and waits for them.
func (c *gochanPipeline) Close() error {
	close(c.chans[0])
	c.stages.Wait()
	return nil
}

func init() {
	// The compiled-graph baselines: 64-byte messages, p50-ns and p99-ns,
	// and round trips per second as msgs/s.
	Register(NewCase("Baseline/grpc_chain4", grpcRateBody(grpcChain(4), 64)))
	Register(NewCase("Baseline/gochan_pipeline", grpcRateBody(gochanPipe(1), 64)))
	Register(NewCase("Baseline/gochan_pipeline4", grpcRateBody(gochanPipe(4), 64)))
}
