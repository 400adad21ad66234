package benchmarks_test

import (
	"testing"

	"github.com/goray/goray/benchmarks"
)

// BenchmarkRayMicro: Ray's microbenchmarks (ray_perf.py) on package core,
// under Ray's names: tasks_sync (submit one no-op task and get it:
// latency), tasks_async (no-op tasks, 1000 in flight: tasks/s),
// multi_client_tasks_async (four tasks submitting no-op tasks at once:
// tasks/s), put_calls and get_calls (100-byte objects: ops/s) and
// put_gigabytes (64 MiB objects: bytes/s); actor_calls_sync,
// actor_calls_async, actor_calls_concurrent (an actor running up to 16
// calls at once) and n_n_actor_calls_async (2 caller actors, each calling
// its own actor). They share one embedded cluster, started by the first
// of them.
func BenchmarkRayMicro(b *testing.B) { benchmarks.RunGroup(b, "RayMicro") }

// BenchmarkBaseline: grpc_unary_roundtrip, a gRPC unary call to a peer
// process over loopback TCP, the baseline of the task and actor rows; and
// hollywood_remote_roundtrip, a Hollywood remote-actor request and reply.
func BenchmarkBaseline(b *testing.B) { benchmarks.RunGroup(b, "Baseline") }

// TestRayMicroRows pins the RayMicro rows' baselines and targets
// (DESIGN.md §7), and checks the rates the cases report.
func TestRayMicroRows(t *testing.T) {
	targets := map[string]string{}
	for _, r := range benchmarks.Rows() {
		targets[r.Name()] = r.Target.Describe(r.Kind)
	}
	for name, want := range map[string]string{
		"RayMicro/tasks_sync vs Baseline/grpc_unary_roundtrip":               "≤ 3× baseline time, p50 ≤ 50µs",
		"RayMicro/tasks_async vs Baseline/grpc_unary_roundtrip":              "≥ 0.1 M msgs/s",
		"RayMicro/multi_client_tasks_async vs Baseline/grpc_unary_roundtrip": "",
		"RayMicro/put_calls vs Objstore/put_small":                           "≥ 0.2 M msgs/s",
		"RayMicro/get_calls vs Objstore/get_small":                           "≥ 0.5 M msgs/s",
		"RayMicro/put_gigabytes vs Memcpy/64MiB":                             "≥ 0.8× baseline",
		"RayMicro/actor_calls_sync vs Baseline/grpc_unary_roundtrip":         "p50 ≤ 30µs",
		"RayMicro/actor_calls_sync vs Baseline/hollywood_remote_roundtrip":   "",
		"RayMicro/actor_calls_async vs Baseline/grpc_unary_roundtrip":        "≥ 0.2 M msgs/s",
		"RayMicro/actor_calls_concurrent vs Baseline/grpc_unary_roundtrip":   "",
		"RayMicro/n_n_actor_calls_async vs Baseline/grpc_unary_roundtrip":    "",
	} {
		if got, ok := targets[name]; !ok || got != want {
			t.Errorf("row %s: target %q (present %v), want %q", name, got, ok, want)
		}
	}
}

// TestRayMicroMetrics runs the rate cases briefly and checks that each
// reports the figure its row compares.
func TestRayMicroMetrics(t *testing.T) {
	for name, unit := range map[string]string{
		"RayMicro/tasks_async":                "msgs/s",
		"RayMicro/multi_client_tasks_async":   "msgs/s",
		"RayMicro/put_calls":                  "msgs/s",
		"RayMicro/get_calls":                  "msgs/s",
		"RayMicro/put_gigabytes":              "B/op",
		"Baseline/grpc_unary_roundtrip":       "msgs/s",
		"Baseline/hollywood_remote_roundtrip": "msgs/s",
		"RayMicro/actor_calls_async":          "msgs/s",
		"RayMicro/actor_calls_concurrent":     "msgs/s",
		"RayMicro/n_n_actor_calls_async":      "msgs/s",
	} {
		t.Run(name, func(t *testing.T) {
			c, ok := benchmarks.Lookup(name)
			if !ok {
				t.Fatalf("no case %s", name)
			}
			if m := c.RunN(t, 10); !t.Failed() && m[unit] <= 0 {
				t.Errorf("%s: %s %v, want positive (metrics %v)", name, unit, m[unit], m)
			}
		})
	}
}

// BenchmarkCompiledDAG: compiled graphs of actors (package dag), one
// Execute+Get per op: single_actor, chain4, scatter_gather4, and
// single_actor_pipelined (16 executions in flight: executions/s).
func BenchmarkCompiledDAG(b *testing.B) { benchmarks.RunGroup(b, "CompiledDAG") }

// BenchmarkTensorTransport: a float16 tensor of 100 KB or 16 MiB from one
// actor to another in a compiled graph, one execution per op: cpu_comm (an
// NCCL edge on the CPU communicator) and shm (encoded into the ring);
// compare with BenchmarkMemcpy's sizes.
func BenchmarkTensorTransport(b *testing.B) { benchmarks.RunGroup(b, "TensorTransport") }

// BenchmarkDirectTransport: b.Consume(a.Fresh(size)), a float16 tensor of
// 100 KB or 16 MiB between two actors as ordinary calls: direct (kept by a,
// received peer to peer through an actor.Group on the CPU communicator)
// against object (by value through the object store).
func BenchmarkDirectTransport(b *testing.B) { benchmarks.RunGroup(b, "DirectTransport") }
