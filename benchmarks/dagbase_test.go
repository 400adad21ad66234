package benchmarks_test

import (
	"testing"

	"github.com/goray/goray/benchmarks"
)

// TestDagBaselines runs each compiled-graph baseline briefly, checking
// every reply, and checks that it reports latencies and a rate as the
// gRPC baseline does. TestMain's leak checks then find neither the
// pipelines' goroutines nor the chain's stage processes.
func TestDagBaselines(t *testing.T) {
	for _, name := range []string{
		"Baseline/grpc_chain4",
		"Baseline/gochan_pipeline",
		"Baseline/gochan_pipeline4",
	} {
		t.Run(name, func(t *testing.T) {
			c, ok := benchmarks.Lookup(name)
			if !ok {
				t.Fatalf("no case %s", name)
			}
			m := c.RunN(t, 20)
			if t.Failed() {
				return
			}
			if m["p50-ns"] <= 0 || m["p99-ns"] < m["p50-ns"] || m["msgs/s"] <= 0 {
				t.Errorf("p50 %v ns, p99 %v ns, %v msgs/s: want 0 < p50 ≤ p99 and a positive rate (metrics %v)",
					m["p50-ns"], m["p99-ns"], m["msgs/s"], m)
			}
		})
	}
}
