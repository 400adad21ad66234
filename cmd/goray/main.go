// Command goray is goray's command-line tool: it starts and stops a head
// node (`goray start --head`, `goray stop`), shows a running cluster
// (`goray status`, `goray list nodes|jobs|actors`), runs the
// microbenchmarks (`goray microbenchmark`) and prints its version.
//
// The binary also serves as its own peer and its own goray worker: a
// benchmark whose other end is a process re-executes this binary in a role
// (internal/reexec), and the embedded cluster of the task benchmarks
// re-executes it as a worker process; which is why main calls
// core.ServeIfWorker, then reexec.Init, before anything else.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	_ "github.com/goray/goray/benchmarks" // registers the peer roles and remote functions, before either runs
	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/reexec"
)

func main() {
	core.ServeIfWorker()
	reexec.Init()
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "goray:", err)
		os.Exit(1)
	}
}

// run executes the command line args, writing results to stdout and
// progress to stderr.
func run(args []string, stdout, stderr io.Writer) error {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.Execute()
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "goray",
		Short: "goray is Ray Core in Go: tasks, actors, a shared-memory object store and compiled graphs",
		// Errors are printed once, as one line, by main.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.AddCommand(newMicrobenchmarkCmd(), newVersionCmd(), newStartCmd(), newStopCmd(), newStatusCmd(), newListCmd(), newSummaryCmd(), newTimelineCmd(), newMemoryCmd())
	return root
}
