package benchmarks_test

import (
	"testing"

	"github.com/goray/goray/benchmarks"
)

// TestHollywoodBaseline runs the Hollywood baseline briefly, twice (a
// second engine and peer start cleanly after the first are gone), and
// checks that it reports what the gRPC baseline does: latencies and a
// rate. TestMain's leak checks then find neither of its engines'
// goroutines nor its peers.
func TestHollywoodBaseline(t *testing.T) {
	const name = "Baseline/hollywood_remote_roundtrip"
	c, ok := benchmarks.Lookup(name)
	if !ok {
		t.Fatalf("no case %s", name)
	}
	for range 2 {
		m := c.RunN(t, 10)
		if t.Failed() {
			return
		}
		if m["p50-ns"] <= 0 || m["p99-ns"] < m["p50-ns"] || m["msgs/s"] <= 0 {
			t.Errorf("p50 %v ns, p99 %v ns, %v msgs/s: want 0 < p50 ≤ p99 and a positive rate (metrics %v)",
				m["p50-ns"], m["p99-ns"], m["msgs/s"], m)
		}
	}
}
