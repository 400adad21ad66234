package rpc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TokenKey is the metadata key that carries the cluster token.
const TokenKey = "goray-token"

// MaxMessageSize bounds one gRPC message either way. Values above the
// inline limit travel through the object store, so control messages stay
// small; the bound stops a malformed length from costing memory.
const MaxMessageSize = 64 << 20

// NewToken returns a fresh random token (32 bytes, hex).
func NewToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("rpc: no randomness for the cluster token: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// WriteToken stores token in dir/token with mode 0600 and returns the path.
func WriteToken(dir, token string) (string, error) {
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("rpc: write the cluster token: %w", err)
	}
	return path, nil
}

// ReadToken reads a token file written by WriteToken. It refuses a file
// that others may read: the token is the cluster's only credential.
func ReadToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("rpc: read the cluster token: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("rpc: token file %s has mode %v: others can read it; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("rpc: read the cluster token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("rpc: token file %s is empty", path)
	}
	return tok, nil
}

// check is the servers' authentication: the call's token must equal the
// cluster's, compared in constant time.
func check(ctx context.Context, token string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	got := md.Get(TokenKey)
	if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(token)) != 1 {
		return status.Error(codes.Unauthenticated, "goray: missing or wrong cluster token: connect with the cluster's token file")
	}
	return nil
}

// NewServer returns a gRPC server that refuses calls without token.
func NewServer(token string, opts ...grpc.ServerOption) *grpc.Server {
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := check(ctx, token); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := check(ss.Context(), token); err != nil {
			return err
		}
		return h(srv, ss)
	}
	base := []grpc.ServerOption{
		grpc.UnaryInterceptor(unary),
		grpc.StreamInterceptor(stream),
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	return grpc.NewServer(append(base, opts...)...)
}

type tokenCreds string

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{TokenKey: string(t)}, nil
}

func (tokenCreds) RequireTransportSecurity() bool { return false }

// Dial connects to a goray service at addr, attaching token to every call.
// It does not wait for the connection.
func Dial(addr, token string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(tokenCreds(token)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
	}
	cc, err := grpc.NewClient(addr, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	return cc, nil
}

// ListenLoopback listens on a free loopback TCP port.
func ListenLoopback() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rpc: listen on loopback: %w", err)
	}
	return ln, nil
}
