package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/jedib0t/go-pretty/v6/text"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/goray/goray/benchmarks"
)

// figureOf is a result as a row of kind k shows it.
func figureOf(k benchmarks.Kind, r benchmarks.Result) string {
	switch k {
	case benchmarks.MsgRate:
		return fmtNum(r.MsgsPerSec/1e6) + " M msgs/s"
	case benchmarks.Bandwidth:
		return fmtNum(r.BytesPerSec/1e9) + " GB/s"
	}
	if r.P50Ns <= 0 {
		return fmtNum(r.NsPerOp/1e3) + " µs per op (mean)"
	}
	return "p50 " + fmtNum(r.P50Ns/1e3) + " / p99 " + fmtNum(r.P99Ns/1e3) + " µs (mean " + fmtNum(r.NsPerOp/1e3) + ")"
}

// fmtNum prints about three significant digits.
func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// shortName drops the group a baseline shares with its row's case:
// "ChannelRoundTrip/grpc/64B" beside "ChannelRoundTrip/shm/64B" is
// "grpc/64B".
func shortName(name, beside string) string {
	group, _, _ := strings.Cut(beside, "/")
	if rest, ok := strings.CutPrefix(name, group+"/"); ok {
		return rest
	}
	return name
}

func ratioText(k benchmarks.Kind, ratio *float64) string {
	switch {
	case ratio == nil:
		return "—"
	case k != benchmarks.Latency:
		return fmtNum(*ratio) + "×"
	case *ratio >= 1:
		return fmtNum(*ratio) + "× faster"
	}
	return fmtNum(1 / *ratio) + "× slower"
}

func metText(met *bool) string {
	switch {
	case met == nil:
		return "—"
	case *met:
		return "yes"
	}
	return "NO"
}

func writeTable(w io.Writer, rep report) {
	t := table.NewWriter()
	t.SetOutputMirror(w)
	t.SetStyle(table.StyleLight)
	t.Style().Format.Header = text.FormatDefault
	runs := "benchtime " + rep.Benchtime
	if rep.Count > 1 {
		runs += ", median of " + strconv.Itoa(rep.Count) + " runs"
	}
	t.SetTitle("goray microbenchmark — %s — %s", rep.Machine, runs)
	t.AppendHeader(table.Row{"benchmark", "figure", "baseline", "ratio", "target", "met"})
	for _, r := range rep.Rows {
		figure, baseline := "failed", shortName(r.row.Baseline, r.row.Case)
		if r.Result != nil {
			figure = figureOf(r.Kind, *r.Result)
		}
		if r.Baseline != nil {
			baseline += ": " + figureOf(r.Kind, *r.Baseline)
		} else {
			baseline += ": failed"
		}
		target := r.Target
		if target == "" {
			target = "—"
		}
		met := metText(r.TargetMet)
		if rep.Quick && r.TargetMet != nil {
			met = "n/a"
		}
		t.AppendRow(table.Row{r.row.Case, figure, baseline, ratioText(r.Kind, r.Ratio), target, met})
	}
	caption := "ratio: round trips compare mean time per op, streams compare rates"
	if rep.Quick {
		caption += "\n--quick: a smoke test; runs this short do not warm up, so targets are not judged (run without --quick)"
	}
	t.SetCaption(caption)
	t.Render()
	for _, r := range rep.Rows {
		if r.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Name, r.Error)
		}
	}
}

// progress shows which benchmark runs: a bar when stderr is a terminal,
// else one plain line per finished benchmark.
type progress struct {
	w     io.Writer
	total int
	bar   *progressbar.ProgressBar
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(20),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetDescription("starting"))
	}
	return p
}

func (p *progress) start(name string) {
	if p.bar != nil {
		p.bar.Describe(name)
	}
}

func (p *progress) done(i int, name, figure string) {
	if p.bar != nil {
		p.bar.Add(1)
		return
	}
	fmt.Fprintf(p.w, "goray: [%d/%d] %s: %s\n", i+1, p.total, name, figure)
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
