package benchmarks

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// B is what a benchmark body needs from whatever drives it: a *testing.B
// (Case.Run, Measure) or a fixed number of iterations (Case.RunN). Bodies
// call its failure methods from their own goroutine only.
type B interface {
	testing.TB
	// Iterations is the number of operations to time (b.N).
	Iterations() int
	ResetTimer()
	StopTimer()
	SetBytes(n int64)
	ReportMetric(n float64, unit string)
	// Elapsed is the time measured so far.
	Elapsed() time.Duration
	// Verify reports whether the body should check every reply's content,
	// not only its length: true in tests, false when timing.
	Verify() bool
}

// runLimit bounds one run of a body: a peer that stops answering fails the
// run instead of hanging it. Dead peers are noticed at once (ring liveness,
// EOF on sockets); this covers a live peer that is stuck.
const runLimit = 10 * time.Minute

// runContext is the context every blocking call of one body run takes.
func runContext(b B) (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.Context(), runLimit)
}

// benchB drives a body from a *testing.B. It keeps the first failure's
// message, because testing.Benchmark discards a failed benchmark's output.
type benchB struct {
	*testing.B
	mu   sync.Mutex
	fail string
}

func (b *benchB) Iterations() int { return b.N }
func (b *benchB) Verify() bool    { return false }

func (b *benchB) record(msg string) {
	b.mu.Lock()
	if b.fail == "" {
		b.fail = msg
	}
	b.mu.Unlock()
}

func (b *benchB) Error(args ...any) { b.record(fmt.Sprint(args...)); b.B.Error(args...) }
func (b *benchB) Errorf(format string, args ...any) {
	b.record(fmt.Sprintf(format, args...))
	b.B.Errorf(format, args...)
}
func (b *benchB) Fatal(args ...any) { b.record(fmt.Sprint(args...)); b.B.Fatal(args...) }
func (b *benchB) Fatalf(format string, args ...any) {
	b.record(fmt.Sprintf(format, args...))
	b.B.Fatalf(format, args...)
}

// fixedB drives a body for a fixed number of iterations inside a test.
type fixedB struct {
	testing.TB
	n       int
	start   time.Time
	elapsed time.Duration
	running bool
	bytes   int64
	metrics map[string]float64
}

func (f *fixedB) Iterations() int { return f.n }
func (f *fixedB) Verify() bool    { return true }
func (f *fixedB) SetBytes(n int64) {
	f.bytes = n
}

func (f *fixedB) ResetTimer() {
	f.start, f.elapsed, f.running = time.Now(), 0, true
}

func (f *fixedB) StopTimer() {
	if f.running {
		f.elapsed += time.Since(f.start)
		f.running = false
	}
}

func (f *fixedB) Elapsed() time.Duration {
	if f.running {
		return f.elapsed + time.Since(f.start)
	}
	return f.elapsed
}

func (f *fixedB) ReportMetric(n float64, unit string) { f.metrics[unit] = n }

// Result is one case's measurement.
type Result struct {
	Case        string  `json:"name"`
	N           int     `json:"n"`
	NsPerOp     float64 `json:"ns_per_op"`
	P50Ns       float64 `json:"p50_ns,omitempty"`
	P99Ns       float64 `json:"p99_ns,omitempty"`
	BytesPerSec float64 `json:"bytes_per_sec,omitempty"`
	MsgsPerSec  float64 `json:"msgs_per_sec,omitempty"`
}

// Metric units the bodies report.
const (
	unitP50  = "p50-ns"
	unitP99  = "p99-ns"
	unitMsgs = "msgs/s"
)

// Measure runs c with testing.Benchmark, under the test.benchtime flag
// (call testing.Init first, then flag.Set("test.benchtime", …)), and
// returns its result, or the body's first failure as an error.
func Measure(c Case) (Result, error) {
	var fail string
	r := testing.Benchmark(func(tb *testing.B) {
		b := &benchB{B: tb}
		defer func() {
			if b.fail != "" {
				fail = b.fail
			}
		}()
		c.body(b)
	})
	switch {
	case fail != "":
		return Result{}, fmt.Errorf("benchmark %s: %s", c.Name, fail)
	case r.N == 0:
		return Result{}, fmt.Errorf("benchmark %s: failed without a message (did the body panic or skip?)", c.Name)
	}
	return resultOf(c.Name, r), nil
}

func resultOf(name string, r testing.BenchmarkResult) Result {
	res := Result{Case: name, N: r.N, NsPerOp: float64(r.T.Nanoseconds()) / float64(r.N),
		P50Ns: r.Extra[unitP50], P99Ns: r.Extra[unitP99], MsgsPerSec: r.Extra[unitMsgs]}
	if r.Bytes > 0 && r.T > 0 {
		res.BytesPerSec = float64(r.Bytes) * float64(r.N) / r.T.Seconds()
	}
	return res
}

// timeOps runs op Iterations() times under the timer and reports the p50
// and p99 of the time from one completion to the next, and the ops/s.
func timeOps(b B, op func(i int)) {
	hist := hdrhistogram.New(histMin, histMax, 3)
	iters := b.Iterations()
	b.ResetTimer()
	prev := time.Now()
	for i := range iters {
		op(i)
		now := time.Now()
		hist.RecordValue(min(max(int64(now.Sub(prev)), histMin), histMax))
		prev = now
	}
	b.StopTimer()
	b.ReportMetric(float64(hist.ValueAtQuantile(50)), unitP50)
	b.ReportMetric(float64(hist.ValueAtQuantile(99)), unitP99)
	if e := b.Elapsed(); e > 0 {
		b.ReportMetric(float64(iters)/e.Seconds(), unitMsgs)
	}
}
