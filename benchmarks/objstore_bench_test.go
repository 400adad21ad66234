package benchmarks_test

import (
	"testing"

	"github.com/goray/goray/benchmarks"
)

// BenchmarkObjstore: put_small and get_small (100 B objects, ops/s, in the
// host process and from a second process), put_large (bandwidth, beside
// BenchmarkMemcpy), get_cross_process/64MiB (a second process maps and
// sums an object, beside sum/64MiB, the sum alone), fragmentation.
func BenchmarkObjstore(b *testing.B) { benchmarks.RunGroup(b, "Objstore") }

// TestObjstoreNames pins the object store's case names and row targets.
func TestObjstoreNames(t *testing.T) {
	for _, name := range []string{
		"Memcpy/64MiB",
		"Objstore/put_small", "Objstore/get_small",
		"Objstore/put_small_cross_process", "Objstore/get_small_cross_process",
		"Objstore/put_large/1MiB", "Objstore/put_large/64MiB",
		"Objstore/get_cross_process/64MiB", "Objstore/sum/64MiB", "Objstore/fragmentation",
	} {
		if _, ok := benchmarks.Lookup(name); !ok {
			t.Errorf("no case %s", name)
		}
	}
	targets := map[string]string{}
	for _, r := range benchmarks.Rows() {
		targets[r.Name()] = r.Target.Describe(r.Kind)
	}
	for name, want := range map[string]string{
		"Objstore/put_small vs Objstore/put_small_cross_process":        "≥ 0.2 M msgs/s",
		"Objstore/put_small_cross_process vs ChannelRoundTrip/grpc/64B": "≥ 0.2 M msgs/s",
		"Objstore/get_small_cross_process vs ChannelRoundTrip/grpc/64B": "≥ 0.5 M msgs/s",
		"Objstore/get_small vs Objstore/get_small_cross_process":        "≥ 0.5 M msgs/s",
		"Objstore/put_large/1MiB vs Memcpy/1MiB":                        "≥ 0.8× baseline",
		"Objstore/put_large/64MiB vs Memcpy/64MiB":                      "≥ 0.8× baseline",
		"Objstore/get_cross_process/64MiB vs Objstore/sum/64MiB":        "≥ 0.8× baseline",
	} {
		if got, ok := targets[name]; !ok || got != want {
			t.Errorf("row %s: target %q (present %v), want %q", name, got, ok, want)
		}
	}
}
