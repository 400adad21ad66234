package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/goray/goray/benchmarks"
	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/testutil"
)

// TestMain serves tasks when the RayMicro rows' cluster re-executes this
// test binary as a worker, and dispatches re-executed roles: the
// cross-process benchmarks' peers are this test binary, run again.
func TestMain(m *testing.M) {
	core.ServeIfWorker()
	testutil.MainWith(m, benchmarks.ShutdownRuntime)
}

// TestMicrobenchmarkJSON runs an in-process row and a cross-process
// shared-memory row briefly and checks the JSON report.
func TestMicrobenchmarkJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run([]string{"microbenchmark", "--quick", "--json",
		"--filter", `^ChannelRoundTrip/inproc/64B vs|^ChannelRoundTrip/shm/64B vs .*unixsock|^ChannelThroughput/shm/64B vs`},
		&stdout, &stderr)
	if err != nil {
		t.Fatalf("microbenchmark: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep report
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("decode JSON: %v\n%s", err, stdout.String())
	}
	if rep.Machine.Cores <= 0 || rep.Machine.CPU == "" || !strings.HasPrefix(rep.Machine.Go, "go") {
		t.Errorf("machine %+v: want a CPU, cores and a Go version", rep.Machine)
	}
	if rep.Benchtime != quickBenchtime || rep.Count != 1 {
		t.Errorf("benchtime %q, count %d: want %q, 1", rep.Benchtime, rep.Count, quickBenchtime)
	}
	want := []string{
		"ChannelRoundTrip/shm/64B vs ChannelRoundTrip/unixsock/64B",
		"ChannelRoundTrip/inproc/64B vs ChannelRoundTrip/gochan/64B",
		"ChannelThroughput/shm/64B vs ChannelThroughput/gochan/64B",
	}
	if len(rep.Rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rep.Rows), len(want), stdout.String())
	}
	for i, r := range rep.Rows {
		if r.Name != want[i] {
			t.Errorf("row %d is %q, want %q", i, r.Name, want[i])
		}
		if r.Error != "" || r.Result == nil || r.Baseline == nil || r.Ratio == nil || *r.Ratio <= 0 {
			t.Errorf("row %s: incomplete: %+v", r.Name, r)
			continue
		}
		for _, res := range []struct {
			name string
			n    int
			ns   float64
		}{{r.Result.Case, r.Result.N, r.Result.NsPerOp}, {r.Baseline.Case, r.Baseline.N, r.Baseline.NsPerOp}} {
			if res.n <= 0 || res.ns <= 0 {
				t.Errorf("%s: n %d, ns/op %v: want both positive", res.name, res.n, res.ns)
			}
		}
		switch r.Kind {
		case "latency":
			for _, res := range []struct{ p50, p99 float64 }{
				{r.Result.P50Ns, r.Result.P99Ns}, {r.Baseline.P50Ns, r.Baseline.P99Ns}} {
				if res.p50 <= 0 || res.p99 < res.p50 {
					t.Errorf("row %s: p50 %v, p99 %v: want 0 < p50 ≤ p99", r.Name, res.p50, res.p99)
				}
			}
		case "msgs/s":
			if r.Result.MsgsPerSec <= 0 || r.Baseline.MsgsPerSec <= 0 || r.Result.BytesPerSec <= 0 {
				t.Errorf("row %s: rates %+v / %+v: want positive", r.Name, r.Result, r.Baseline)
			}
		default:
			t.Errorf("row %s: kind %q", r.Name, r.Kind)
		}
	}
	// A row with a target says whether it is met; one without says null.
	if rep.Rows[0].TargetMet != nil || rep.Rows[1].TargetMet == nil || rep.Rows[1].Target == "" {
		t.Errorf("target_met: %v and %v, want null then a value", rep.Rows[0].TargetMet, rep.Rows[1].TargetMet)
	}
	// Progress went to stderr, one line per benchmark: six, each run once.
	if n := strings.Count(stderr.String(), "\n"); n != 6 {
		t.Errorf("stderr has %d lines, want 6 (one per benchmark):\n%s", n, stderr.String())
	}
}

// TestMicrobenchmarkRayMicro runs two of Ray's microbenchmarks briefly,
// a latency row and a rate row: their cluster starts, runs and stops
// inside the command.
func TestMicrobenchmarkRayMicro(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run([]string{"microbenchmark", "--quick", "--json", "--filter", `^RayMicro/(tasks_sync|tasks_async) vs`},
		&stdout, &stderr)
	if err != nil {
		t.Fatalf("microbenchmark: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("decode JSON: %v\n%s", err, stdout.String())
	}
	want := []string{
		"RayMicro/tasks_sync vs Baseline/grpc_unary_roundtrip",
		"RayMicro/tasks_async vs Baseline/grpc_unary_roundtrip",
	}
	if len(rep.Rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(rep.Rows), len(want), stdout.String())
	}
	for i, r := range rep.Rows {
		if r.Name != want[i] {
			t.Errorf("row %d is %q, want %q", i, r.Name, want[i])
		}
		if r.Error != "" || r.Result == nil || r.Baseline == nil || r.Ratio == nil || *r.Ratio <= 0 || r.TargetMet == nil {
			t.Errorf("row %s: incomplete: %+v", r.Name, r)
		}
	}
	if len(rep.Rows) == 2 && rep.Rows[0].Result != nil && rep.Rows[1].Result != nil {
		if sync := rep.Rows[0].Result; sync.P50Ns <= 0 || sync.P99Ns < sync.P50Ns {
			t.Errorf("tasks_sync: p50 %v, p99 %v: want 0 < p50 ≤ p99", sync.P50Ns, sync.P99Ns)
		}
		if async := rep.Rows[1].Result; async.MsgsPerSec <= 0 {
			t.Errorf("tasks_async: %v tasks/s, want a rate", async.MsgsPerSec)
		}
	}
}

// TestMicrobenchmarkTable checks the table's shape on the cheapest row.
func TestMicrobenchmarkTable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"microbenchmark", "--quick", "--filter", "^ChannelRoundTrip/inproc/64B vs"}, &stdout, &stderr); err != nil {
		t.Fatalf("microbenchmark: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"benchmark", "figure", "baseline", "ratio", "target", "met",
		"ChannelRoundTrip/inproc/64B", "gochan/64B", "µs", "cores", "≤ 1.5× baseline time",
		"n/a", "targets are not judged"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestMicrobenchmarkErrors checks that bad flags give one clear error.
func TestMicrobenchmarkErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"microbenchmark", "--filter", "(["}, `invalid --filter "(["`},
		{[]string{"microbenchmark", "--filter", "nothing-matches-this"}, "matches no row"},
		{[]string{"microbenchmark", "--benchtime", "soon"}, `invalid --benchtime "soon"`},
		{[]string{"microbenchmark", "--benchtime", "0s"}, `invalid --benchtime "0s"`},
		{[]string{"microbenchmark", "--quick", "--benchtime", "2s"}, "not both"},
		{[]string{"microbenchmark", "extra"}, "unknown command"},
		{[]string{"microbenchmark", "--count", "0"}, "invalid --count 0"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(tc.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.args, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error spans lines: %q", tc.args, err)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: wrote to stdout on error: %q", tc.args, stdout.String())
		}
	}
}

func TestList(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"microbenchmark", "--list", "--filter", "Throughput"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if !strings.Contains(line, "Throughput") || !strings.Contains(line, " vs ") {
			t.Errorf("--list line %q", line)
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"version"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "goray ") || !strings.Contains(stdout.String(), "go1.") {
		t.Errorf("version printed %q", stdout.String())
	}
}
