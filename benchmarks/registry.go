package benchmarks

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// Case is one benchmark.
type Case struct {
	// Name is the benchmark's name without the "Benchmark" prefix, as
	// `go test -bench` prints it: "ChannelRoundTrip/shm/64B".
	Name string
	body func(B)
}

// NewCase makes a case from its name and body.
func NewCase(name string, body func(B)) Case { return Case{Name: name, body: body} }

// Run runs the case under a *testing.B.
func (c Case) Run(b *testing.B) { c.body(&benchB{B: b}) }

// RunN runs the case for n iterations inside a test, checking every reply,
// and returns the metrics it reported (by unit, plus "B/op" when it set
// bytes per op).
func (c Case) RunN(t testing.TB, n int) map[string]float64 {
	t.Helper()
	f := &fixedB{TB: t, n: n, metrics: map[string]float64{}}
	c.body(f)
	f.StopTimer()
	if f.bytes > 0 {
		f.metrics["B/op"] = float64(f.bytes)
	}
	return f.metrics
}

var (
	regMu sync.Mutex
	cases []Case
	rows  []Row
)

// Register adds a case. Call it from init; names are unique.
func Register(c Case) {
	regMu.Lock()
	defer regMu.Unlock()
	if c.Name == "" || c.body == nil {
		panic("benchmarks: Register: a case needs a name and a body")
	}
	for _, old := range cases {
		if old.Name == c.Name {
			panic("benchmarks: case registered twice: " + c.Name)
		}
	}
	cases = append(cases, c)
}

// Cases returns every registered case, in registration order.
func Cases() []Case {
	regMu.Lock()
	defer regMu.Unlock()
	return append([]Case(nil), cases...)
}

// Lookup returns the case named name.
func Lookup(name string) (Case, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	for _, c := range cases {
		if c.Name == name {
			return c, true
		}
	}
	return Case{}, false
}

// RunGroup runs, as sub-benchmarks of b, every case whose name starts with
// group + "/": the body of BenchmarkGroup.
func RunGroup(b *testing.B, group string) {
	found := false
	for _, c := range Cases() {
		if sub, ok := strings.CutPrefix(c.Name, group+"/"); ok {
			found = true
			b.Run(sub, c.Run)
		}
	}
	if !found {
		b.Fatalf("benchmarks: no case in group %s", group)
	}
}

// Kind is what a row compares.
type Kind string

const (
	// Latency compares time per op (lower is better); the figure adds
	// p50 and p99.
	Latency Kind = "latency"
	// MsgRate compares messages per second.
	MsgRate Kind = "msgs/s"
	// Bandwidth compares bytes per second.
	Bandwidth Kind = "bytes/s"
)

// Row compares a case with a baseline case measured in the same run.
type Row struct {
	Case     string // the case measured, e.g. "ChannelRoundTrip/shm/64B"
	Baseline string // the case it is compared with
	Kind     Kind
	Target   Target
}

// Name is the row's name, which --filter matches: "<case> vs <baseline>".
func (r Row) Name() string { return r.Case + " vs " + r.Baseline }

// Ratio is how many times better the case is than its baseline: the
// baseline's time over the case's for Latency, the case's rate over the
// baseline's otherwise. NaN when a figure is missing.
func (r Row) Ratio(c, base Result) float64 {
	var num, den float64
	switch r.Kind {
	case Latency:
		num, den = base.NsPerOp, c.NsPerOp
	case MsgRate:
		num, den = c.MsgsPerSec, base.MsgsPerSec
	case Bandwidth:
		num, den = c.BytesPerSec, base.BytesPerSec
	}
	if num <= 0 || den <= 0 {
		return math.NaN()
	}
	return num / den
}

// Target is what a row must meet; zero fields are not checked.
type Target struct {
	// MinRatio: Ratio ≥ MinRatio. For Latency, 20 means "20× faster" and
	// 1/1.5 means "at most 1.5× the baseline's time".
	MinRatio float64
	// MaxP50, MaxP99 bound the case's latency percentiles.
	MaxP50, MaxP99 time.Duration
	// MinMsgsPerSec bounds the case's message rate.
	MinMsgsPerSec float64
}

// IsZero reports whether t checks nothing.
func (t Target) IsZero() bool { return t == Target{} }

// Describe says the target in words, for a row of kind k; "" for none.
func (t Target) Describe(k Kind) string {
	var parts []string
	if t.MinRatio > 0 {
		switch {
		case k == Latency && t.MinRatio >= 1:
			parts = append(parts, fmt.Sprintf("≥ %s× faster", fmtFloat(t.MinRatio)))
		case k == Latency:
			parts = append(parts, fmt.Sprintf("≤ %s× baseline time", fmtFloat(1/t.MinRatio)))
		default:
			parts = append(parts, fmt.Sprintf("≥ %s× baseline", fmtFloat(t.MinRatio)))
		}
	}
	if t.MaxP50 > 0 {
		parts = append(parts, "p50 ≤ "+t.MaxP50.String())
	}
	if t.MaxP99 > 0 {
		parts = append(parts, "p99 ≤ "+t.MaxP99.String())
	}
	if t.MinMsgsPerSec > 0 {
		parts = append(parts, fmt.Sprintf("≥ %s M msgs/s", fmtFloat(t.MinMsgsPerSec/1e6)))
	}
	return strings.Join(parts, ", ")
}

// Met reports whether the row's target holds for these results; ok is false
// when the row has no target.
func (r Row) Met(c, base Result) (met, ok bool) {
	t := r.Target
	if t.IsZero() {
		return false, false
	}
	met = true
	if t.MinRatio > 0 {
		ratio := r.Ratio(c, base)
		met = met && !math.IsNaN(ratio) && ratio >= t.MinRatio
	}
	if t.MaxP50 > 0 {
		met = met && c.P50Ns > 0 && c.P50Ns <= float64(t.MaxP50.Nanoseconds())
	}
	if t.MaxP99 > 0 {
		met = met && c.P99Ns > 0 && c.P99Ns <= float64(t.MaxP99.Nanoseconds())
	}
	if t.MinMsgsPerSec > 0 {
		met = met && c.MsgsPerSec >= t.MinMsgsPerSec
	}
	return met, true
}

func fmtFloat(f float64) string { return strings.TrimSuffix(fmt.Sprintf("%.3g", f), ".0") }

// RegisterRow adds a row. Call it from init; both cases must be registered
// first.
func RegisterRow(r Row) {
	if _, ok := Lookup(r.Case); !ok {
		panic("benchmarks: RegisterRow: no case " + r.Case)
	}
	if _, ok := Lookup(r.Baseline); !ok {
		panic("benchmarks: RegisterRow: no baseline case " + r.Baseline)
	}
	switch r.Kind {
	case Latency, MsgRate, Bandwidth:
	default:
		panic(fmt.Sprintf("benchmarks: RegisterRow %s: unknown kind %q", r.Name(), r.Kind))
	}
	regMu.Lock()
	defer regMu.Unlock()
	rows = append(rows, r)
}

// Rows returns every registered row, in registration order.
func Rows() []Row {
	regMu.Lock()
	defer regMu.Unlock()
	return append([]Row(nil), rows...)
}
