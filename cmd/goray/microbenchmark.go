package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/goray/goray/benchmarks"
	"github.com/goray/goray/internal/shm"
)

// quickBenchtime is --quick's benchtime: enough to run every case's peers
// and code paths, not enough for figures to mean much.
const quickBenchtime = "30ms"

type microbenchmarkOptions struct {
	benchtime string
	count     int
	filter    string
	json      bool
	quick     bool
	list      bool
}

func newMicrobenchmarkCmd() *cobra.Command {
	var o microbenchmarkOptions
	cmd := &cobra.Command{
		Use:   "microbenchmark",
		Short: "Measure goray's tasks, objects, channels and object store against the baselines a user would otherwise pick",
		Long: `Measure goray's tasks, objects, channels and object store against the baselines
a user would otherwise pick.

Each row compares a goray benchmark with a baseline measured in the same run
(gRPC over a Unix socket or loopback TCP, a raw Unix socket, Go channels,
memcpy, a plain sum over memory) and checks the target DESIGN.md §7 sets for
it. A baseline that several rows share is measured once. Cross-process
benchmarks run their peer as a second process of this binary. The RayMicro
rows are Ray's microbenchmarks under Ray's names; they share one embedded
cluster, whose workers are processes of this binary, started by the first of
them and stopped at the end.

Round trips are reported as latency (p50 / p99 and the mean, in µs), and their
ratio is the baseline's mean time over goray's ("20× faster"); streams as
M msgs/s or GB/s, and their ratio is goray's rate over the baseline's.

Progress goes to stderr; the table, or with --json the raw numbers, to stdout.`,
		Example: `  # every row, about a second per benchmark
  goray microbenchmark

  # Ray's task and object microbenchmarks
  goray microbenchmark --filter RayMicro

  # only the shared-memory round trips, as JSON
  goray microbenchmark --filter 'RoundTrip/shm' --json

  # steadier figures on a busy machine: the median of five runs each
  goray microbenchmark --count 5

  # a smoke test of every row
  goray microbenchmark --quick`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.quick && cmd.Flags().Changed("benchtime") {
				return errors.New("--quick sets the benchtime: give --quick or --benchtime, not both")
			}
			if o.quick {
				o.benchtime = quickBenchtime
			}
			return runMicrobenchmark(o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.benchtime, "benchtime", "1s", "time to run each benchmark (a duration such as 500ms), or an iteration count such as 1000x")
	f.IntVar(&o.count, "count", 1, "run each benchmark this many times and keep the run with the median time per op (figures on a small shared machine can be bimodal)")
	f.StringVar(&o.filter, "filter", "", `run only the rows whose name ("<benchmark> vs <baseline>") matches this regular expression`)
	f.BoolVar(&o.json, "json", false, "print the rows as JSON (raw numbers) instead of a table")
	f.BoolVar(&o.quick, "quick", false, "run each benchmark very briefly ("+quickBenchtime+"): a smoke test, not a measurement")
	f.BoolVar(&o.list, "list", false, "list the rows' names and exit")
	return cmd
}

// report is the JSON form of a run.
type report struct {
	Machine   machine     `json:"machine"`
	Benchtime string      `json:"benchtime"`
	Count     int         `json:"count"`
	Quick     bool        `json:"quick"` // a smoke test: figures too short to judge targets by
	Rows      []rowReport `json:"rows"`
}

type rowReport struct {
	Name      string             `json:"name"`
	Kind      benchmarks.Kind    `json:"kind"`
	Result    *benchmarks.Result `json:"result"`
	Baseline  *benchmarks.Result `json:"baseline"`
	Ratio     *float64           `json:"ratio"`
	Target    string             `json:"target,omitempty"`
	TargetMet *bool              `json:"target_met"` // null: no target, or a benchmark failed
	Error     string             `json:"error,omitempty"`

	row benchmarks.Row
}

func runMicrobenchmark(o microbenchmarkOptions, stdout, stderr io.Writer) (err error) {
	re, err := regexp.Compile(o.filter)
	if err != nil {
		return fmt.Errorf("invalid --filter %q: %w", o.filter, err)
	}
	var rows []benchmarks.Row
	for _, r := range benchmarks.Rows() {
		if re.MatchString(r.Name()) {
			rows = append(rows, r)
		}
	}
	if o.list {
		for _, r := range rows {
			fmt.Fprintln(stdout, r.Name())
		}
		return nil
	}
	if len(rows) == 0 {
		return fmt.Errorf("--filter %q matches no row (goray microbenchmark --list shows them)", o.filter)
	}
	if err := checkBenchtime(o.benchtime); err != nil {
		return err
	}
	if o.count < 1 {
		return fmt.Errorf("invalid --count %d: want 1 or more", o.count)
	}
	restore, err := setBenchtime(o.benchtime)
	if err != nil {
		return err
	}
	defer restore()
	stopSignals := removeSegmentsOnSignal(stderr)
	defer stopSignals()
	// The cluster the RayMicro cases started, if they ran.
	defer func() { err = errors.Join(err, benchmarks.ShutdownRuntime()) }()

	// Each case once, in the order rows need them.
	var order []string
	seen := map[string]bool{}
	for _, r := range rows {
		for _, name := range []string{r.Case, r.Baseline} {
			if !seen[name] {
				seen[name] = true
				order = append(order, name)
			}
		}
	}
	results := map[string]benchmarks.Result{}
	failures := map[string]error{}
	prog := newProgress(stderr, len(order))
	for i, name := range order {
		c, _ := benchmarks.Lookup(name)
		prog.start(name)
		res, err := measure(c, o.count)
		if err != nil {
			failures[name] = err
			prog.done(i, name, "FAILED: "+err.Error())
			continue
		}
		results[name] = res
		prog.done(i, name, figureOf(kindFor(rows, name), res))
	}
	prog.finish()

	rep := report{Machine: thisMachine(), Benchtime: o.benchtime, Count: o.count, Quick: o.quick}
	for _, r := range rows {
		rep.Rows = append(rep.Rows, makeRowReport(r, results, failures))
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeTable(stdout, rep)
	}
	if len(failures) > 0 {
		var names []string
		for _, name := range order {
			if failures[name] != nil {
				names = append(names, name)
			}
		}
		return fmt.Errorf("%d benchmark(s) failed: %s (first: %v)", len(names), strings.Join(names, ", "), failures[names[0]])
	}
	return nil
}

// measure runs c count times and keeps the run with the median time per op.
func measure(c benchmarks.Case, count int) (benchmarks.Result, error) {
	var runs []benchmarks.Result
	for range count {
		r, err := benchmarks.Measure(c)
		if err != nil {
			return benchmarks.Result{}, err
		}
		runs = append(runs, r)
	}
	slices.SortFunc(runs, func(a, b benchmarks.Result) int { return cmp.Compare(a.NsPerOp, b.NsPerOp) })
	return runs[len(runs)/2], nil
}

func makeRowReport(r benchmarks.Row, results map[string]benchmarks.Result, failures map[string]error) rowReport {
	rr := rowReport{Name: r.Name(), Kind: r.Kind, Target: r.Target.Describe(r.Kind), row: r}
	c, okC := results[r.Case]
	base, okB := results[r.Baseline]
	if okC {
		rr.Result = &c
	}
	if okB {
		rr.Baseline = &base
	}
	for _, name := range []string{r.Case, r.Baseline} {
		if err := failures[name]; err != nil && rr.Error == "" {
			rr.Error = err.Error()
		}
	}
	if !okC || !okB {
		return rr
	}
	if ratio := r.Ratio(c, base); !math.IsNaN(ratio) {
		rr.Ratio = &ratio
	}
	if met, ok := r.Met(c, base); ok {
		rr.TargetMet = &met
	}
	return rr
}

// kindFor is how the rows present case name: as a latency, a message rate
// or a bandwidth.
func kindFor(rows []benchmarks.Row, name string) benchmarks.Kind {
	for _, r := range rows {
		if r.Case == name || r.Baseline == name {
			return r.Kind
		}
	}
	return benchmarks.Latency
}

// checkBenchtime accepts what `go test -benchtime` accepts: a positive
// duration, or a positive count followed by x.
func checkBenchtime(s string) error {
	bad := fmt.Errorf("invalid --benchtime %q: want a duration such as 1s or 500ms, or an iteration count such as 1000x", s)
	if n, ok := strings.CutSuffix(s, "x"); ok {
		if v, err := strconv.Atoi(n); err != nil || v <= 0 {
			return bad
		}
		return nil
	}
	if d, err := time.ParseDuration(s); err != nil || d <= 0 {
		return bad
	}
	return nil
}

// setBenchtime points testing.Benchmark at benchtime and returns a function
// that restores the previous value (the flag is process-wide).
func setBenchtime(benchtime string) (restore func(), err error) {
	testing.Init()
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return nil, errors.New("internal error: testing did not register -test.benchtime")
	}
	prev := f.Value.String()
	if err := flag.Set("test.benchtime", benchtime); err != nil {
		return nil, fmt.Errorf("invalid --benchtime %q: %w", benchtime, err)
	}
	return func() { flag.Set("test.benchtime", prev) }, nil
}

// removeSegmentsOnSignal makes an interrupt (^C) or SIGTERM unlink the
// shared-memory segments this process created before it exits: a benchmark
// in flight cannot be cancelled, and its deferred Close would never run. The
// peers exit on their own (stdin EOF, parent-death signal), and so do the
// shared cluster's workers (their parent is gone); the cluster is asked to
// stop first, for a moment, so that its session directory goes too.
func removeSegmentsOnSignal(stderr io.Writer) (stop func()) {
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sig:
			stopped := make(chan struct{})
			go func() {
				benchmarks.ShutdownRuntime()
				close(stopped)
			}()
			select {
			case <-stopped:
			case <-time.After(3 * time.Second):
			}
			shm.RemoveOwned("")
			fmt.Fprintf(stderr, "\ngoray: %v: stopped; shared memory removed\n", s)
			os.Exit(130)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}
