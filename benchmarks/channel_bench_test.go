package benchmarks_test

import (
	"strings"
	"testing"

	"github.com/goray/goray/benchmarks"
	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/testutil"
)

// TestMain serves tasks if this test binary was started as a goray worker
// (the RayMicro cases' cluster re-executes it), dispatches the peer roles
// (it is also every cross-process case's peer), then runs the tests, stops
// the cluster the RayMicro cases started, and checks for leaked
// goroutines, processes and shared memory.
func TestMain(m *testing.M) {
	core.ServeIfWorker()
	testutil.MainWith(m, benchmarks.ShutdownRuntime)
}

func BenchmarkChannelRoundTrip(b *testing.B)  { benchmarks.RunGroup(b, "ChannelRoundTrip") }
func BenchmarkChannelThroughput(b *testing.B) { benchmarks.RunGroup(b, "ChannelThroughput") }

// BenchmarkChannelChain: a round trip through a chain of echo processes,
// <stages> of them, each reading one ring and writing the next.
func BenchmarkChannelChain(b *testing.B) { benchmarks.RunGroup(b, "ChannelChain") }
func BenchmarkMemcpy(b *testing.B)       { benchmarks.RunGroup(b, "Memcpy") }

// TestCases runs every case for a few iterations, checking every reply, so
// that `go test ./...` exercises each transport and peer process.
func TestCases(t *testing.T) {
	const n = 20
	for _, c := range benchmarks.Cases() {
		t.Run(c.Name, func(t *testing.T) {
			m := c.RunN(t, n)
			if t.Failed() {
				return
			}
			switch {
			case strings.HasPrefix(c.Name, "ChannelRoundTrip/"), strings.HasPrefix(c.Name, "ChannelChain/"),
				c.Name == "RayMicro/tasks_sync":
				if m["p50-ns"] <= 0 || m["p99-ns"] < m["p50-ns"] {
					t.Errorf("p50 %v ns, p99 %v ns: want 0 < p50 ≤ p99", m["p50-ns"], m["p99-ns"])
				}
			case strings.HasPrefix(c.Name, "ChannelThroughput/"):
				if m["msgs/s"] <= 0 || m["B/op"] <= 0 {
					t.Errorf("msgs/s %v, B/op %v: want both positive", m["msgs/s"], m["B/op"])
				}
			}
		})
	}
}

// TestNames pins the case names: later work is compared against them, so
// none may disappear or change (new ones may be added).
func TestNames(t *testing.T) {
	got := map[string]bool{}
	for _, c := range benchmarks.Cases() {
		got[c.Name] = true
	}
	want := []string{
		"ChannelRoundTrip/shm/64B", "ChannelRoundTrip/shm/4KiB", "ChannelRoundTrip/shm/1MiB",
		"ChannelRoundTrip/inproc/64B", "ChannelRoundTrip/inproc/4KiB", "ChannelRoundTrip/inproc/1MiB",
		"ChannelRoundTrip/tcp/64B", "ChannelRoundTrip/tcp/4KiB", "ChannelRoundTrip/tcp/1MiB",
		"ChannelRoundTrip/grpc/64B", "ChannelRoundTrip/grpc/4KiB", "ChannelRoundTrip/grpc/1MiB",
		"ChannelRoundTrip/unixsock/64B", "ChannelRoundTrip/unixsock/4KiB", "ChannelRoundTrip/unixsock/1MiB",
		"ChannelRoundTrip/gochan/64B", "ChannelRoundTrip/gochan/4KiB", "ChannelRoundTrip/gochan/1MiB",
		"ChannelThroughput/shm/64B", "ChannelThroughput/shm/1MiB",
		"ChannelThroughput/inproc/64B", "ChannelThroughput/inproc/1MiB",
		"ChannelThroughput/tcp/64B", "ChannelThroughput/tcp/1MiB",
		"ChannelThroughput/gochan/64B",
		"ChannelChain/shm/2stages/64B", "ChannelChain/shm/4stages/64B",
		"Memcpy/1MiB",
		"Baseline/grpc_unary_roundtrip", "Baseline/hollywood_remote_roundtrip",
		"Baseline/grpc_chain4", "Baseline/gochan_pipeline", "Baseline/gochan_pipeline4",
		"RayMicro/tasks_sync", "RayMicro/tasks_async", "RayMicro/multi_client_tasks_async",
		"RayMicro/put_calls", "RayMicro/get_calls", "RayMicro/put_gigabytes",
		"RayMicro/actor_calls_sync", "RayMicro/actor_calls_async", "RayMicro/actor_calls_concurrent",
		"RayMicro/n_n_actor_calls_async",
		"Memcpy/100KB", "Memcpy/16MiB",
		"TensorTransport/cpu_comm/100KB", "TensorTransport/cpu_comm/16MiB",
		"TensorTransport/shm/100KB", "TensorTransport/shm/16MiB",
		"DirectTransport/direct/100KB", "DirectTransport/direct/16MiB",
		"DirectTransport/object/100KB", "DirectTransport/object/16MiB",
	}
	for _, name := range want {
		if !got[name] {
			t.Errorf("case %s is no longer registered", name)
		}
	}
}

// TestRows checks that every row names registered cases and that targets
// read as DESIGN.md §7 states them.
func TestRows(t *testing.T) {
	rows := benchmarks.Rows()
	if len(rows) == 0 {
		t.Fatal("no rows")
	}
	targets := map[string]string{}
	for _, r := range rows {
		for _, name := range []string{r.Case, r.Baseline} {
			if _, ok := benchmarks.Lookup(name); !ok {
				t.Errorf("row %s: no case %s", r.Name(), name)
			}
		}
		targets[r.Name()] = r.Target.Describe(r.Kind)
	}
	for name, want := range map[string]string{
		"ChannelRoundTrip/shm/64B vs ChannelRoundTrip/grpc/64B":      "≥ 20× faster, p50 ≤ 5µs, p99 ≤ 50µs",
		"ChannelRoundTrip/inproc/64B vs ChannelRoundTrip/gochan/64B": "≤ 1.5× baseline time",
		"ChannelThroughput/shm/64B vs ChannelThroughput/gochan/64B":  "≥ 5 M msgs/s",
		"ChannelThroughput/shm/1MiB vs Memcpy/1MiB":                  "≥ 0.5× baseline",
		"ChannelRoundTrip/shm/64B vs ChannelRoundTrip/unixsock/64B":  "",
	} {
		if got, ok := targets[name]; !ok || got != want {
			t.Errorf("row %s: target %q (present %v), want %q", name, got, ok, want)
		}
	}
}

// TestMetTarget checks the target arithmetic on made-up results.
func TestMetTarget(t *testing.T) {
	row := benchmarks.Row{Case: "a", Baseline: "b", Kind: benchmarks.Latency,
		Target: benchmarks.Target{MinRatio: 1 / 1.5}}
	for _, tc := range []struct {
		c, base float64
		want    bool
	}{{100, 100, true}, {150, 100, true}, {151, 100, false}, {50, 100, true}} {
		got, ok := row.Met(benchmarks.Result{NsPerOp: tc.c}, benchmarks.Result{NsPerOp: tc.base})
		if !ok || got != tc.want {
			t.Errorf("%v ns vs %v ns: met %v (ok %v), want %v", tc.c, tc.base, got, ok, tc.want)
		}
	}
	if _, ok := (benchmarks.Row{Kind: benchmarks.Latency}).Met(benchmarks.Result{}, benchmarks.Result{}); ok {
		t.Error("a row without a target reports one")
	}
}
