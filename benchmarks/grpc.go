package benchmarks

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goray/goray/internal/reexec"
)

// The gRPC baseline is a unary Echo call whose request and response are
// google.protobuf.BytesValue: real protobuf on the wire, with a
// hand-written service description instead of generated code.
//
// It is a favourable baseline for gRPC: no TLS, no authentication or other
// interceptors, one warm connection, a server that does no work, and
// messages that are a single bytes field. A real control-plane call pays
// more. ChannelRoundTrip/grpc runs it over a Unix socket, which is faster
// still; Baseline/grpc_unary_roundtrip over loopback TCP, the transport of
// goray's own control plane (and so of every task it runs).
const (
	roleGRPCEcho   = "benchmarks.grpc-echo" // args: network ("unix" or "tcp"), address to serve on
	echoService    = "goray.benchmarks.Echo"
	echoFullMethod = "/" + echoService + "/Echo"
)

func init() { reexec.Register(roleGRPCEcho, peerRole(roleGRPCEcho, grpcEchoMain)) }

type echoServer interface {
	Echo(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
}

type echoImpl struct{}

func (echoImpl) Echo(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return in, nil
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*echoServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			if icpt == nil {
				return srv.(echoServer).Echo(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: echoFullMethod}
			return icpt(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(echoServer).Echo(ctx, req.(*wrapperspb.BytesValue))
			})
		},
	}},
	Metadata: "benchmarks/grpc.go",
}

// grpcEchoMain serves Echo and says "ready <address>".
func grpcEchoMain(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments (network, address), got %q", args)
	}
	ln, err := net.Listen(args[0], args[1])
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	srv.RegisterService(&echoDesc, echoImpl{})
	say("ready %s", ln.Addr())
	return srv.Serve(ln) // until the parent closes stdin
}

// grpcConn calls Echo on a server in a peer process.
type grpcConn struct {
	dir  string
	cc   *grpc.ClientConn
	req  wrapperspb.BytesValue
	resp wrapperspb.BytesValue
	peer *peer
}

// openGRPC calls a peer over a Unix socket.
func openGRPC(ctx context.Context, size int) (rt roundTripper, err error) {
	c := &grpcConn{}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.dir, err = sockDir(); err != nil {
		return nil, err
	}
	path := filepath.Join(c.dir, "grpc.sock")
	if err := c.dial("unix", path, "unix://"+path); err != nil {
		return nil, err
	}
	return c, nil
}

// openGRPCTCP calls a peer over loopback TCP.
func openGRPCTCP(ctx context.Context, size int) (rt roundTripper, err error) {
	c := &grpcConn{}
	if err := c.dial("tcp", "127.0.0.1:0", ""); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dial starts the peer serving on network and address and connects to it,
// at target, or at the address the peer reports when target is "".
func (c *grpcConn) dial(network, address, target string) (err error) {
	if c.peer, err = startPeer(roleGRPCEcho, network, address); err != nil {
		return err
	}
	addr, err := c.peer.expect("ready", peerStartTimeout)
	if err != nil {
		return err
	}
	if target == "" {
		target = "passthrough:///" + addr
	}
	c.cc, err = grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	return err
}

func (c *grpcConn) RoundTrip(ctx context.Context, msg []byte, got func([]byte)) error {
	c.req.Value = msg
	if err := c.cc.Invoke(ctx, echoFullMethod, &c.req, &c.resp); err != nil {
		return err
	}
	got(c.resp.Value)
	return nil
}

func (c *grpcConn) Close() error {
	var err error
	if c.cc != nil {
		c.cc.Close()
	}
	if c.peer != nil {
		err = c.peer.stop()
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
	return err
}
