package core_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"

	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/rpc"
)

// rawCodec sends a fuzzer's bytes as a request body as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

// rpcMethods is every method of the cluster's services, as
// /service/method, from the generated descriptors.
func rpcMethods() []string {
	var out []string
	for _, sd := range []grpc.ServiceDesc{rpc.Gcs_ServiceDesc, rpc.Raylet_ServiceDesc, rpc.CoreWorker_ServiceDesc} {
		for _, m := range sd.Methods {
			out = append(out, "/"+sd.ServiceName+"/"+m.MethodName)
		}
	}
	return out
}

var (
	fuzzOnce sync.Once
	fuzzRT   *core.Runtime
	fuzzCC   *grpc.ClientConn
)

// FuzzRPC sends arbitrary request bodies, with the right token, to every
// method of a live cluster's gRPC services: each is refused or answered,
// and the cluster goes on running tasks. (Calls without the token are
// TestRPCNeedsToken's.)
func FuzzRPC(f *testing.F) {
	methods := rpcMethods()
	for i := range methods {
		f.Add(uint8(i), []byte{})
		f.Add(uint8(i), []byte{0x0a, 0x03, 'a', 'b', 'c'})
		f.Add(uint8(i), []byte{0xff, 0xff, 0xff})
	}
	f.Add(uint8(3), []byte("\x0a\x0cabcdefabcdef\x12\x0a\x0a\x03CPU\x11\x00\x00\x00\x00\x00\x00\xf0\x3f"))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		fuzzOnce.Do(func() {
			var err error
			fuzzRT, err = core.Init(context.Background(), core.NumCPUs(2), core.PrestartWorkers(1))
			if err != nil {
				t.Fatal(err)
			}
			addr, tokenFile := core.AddressOf(fuzzRT)
			tok, err := os.ReadFile(tokenFile)
			if err != nil {
				t.Fatal(err)
			}
			fuzzCC, err = rpc.Dial(addr, strings.TrimSpace(string(tok)), grpc.WithDefaultCallOptions(grpc.ForceCodecV2(encoding.GetCodecV2("proto"))))
			if err != nil {
				t.Fatal(err)
			}
			fuzzCleanup = func() {
				fuzzCC.Close()
				fuzzRT.Shutdown()
			}
		})
		method := methods[int(which)%len(methods)]
		if strings.HasSuffix(method, "/Exit") || strings.HasSuffix(method, "/KillWorker") {
			// Valid requests to these stop processes by design.
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		var out []byte
		in := body
		fuzzCC.Invoke(ctx, method, &in, &out, grpc.ForceCodec(rawCodec{}))
		// Unharmed: it still answers.
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer rcancel()
		if _, err := rpc.NewRayletClient(fuzzCC).GetResources(rctx, &rpc.GetResourcesRequest{}); err != nil {
			t.Fatalf("after %s(%x) the cluster no longer answers: %v", method, body, err)
		}
	})
}

// fuzzCleanup shuts FuzzRPC's cluster down (TestMain's teardown).
var fuzzCleanup = func() {}
