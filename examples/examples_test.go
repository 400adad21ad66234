// Package examples_test builds and runs each example program, as a user
// would with go run, and checks its output, its exit code, and that it
// leaves no process and no /dev/shm segment behind.
package examples_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// raceEnabled is set by race_test.go: under -race the examples are built
// with -race too, workers included (they are the same binary).
var raceEnabled bool

var examples = []struct {
	name string
	args []string
	want []string // lines of stdout containing these, in this order
}{
	{"walkthrough", []string{"-sleep", "200ms"}, []string{
		"1. parallel: 8 tasks of 200ms on 4 CPUs took",
		"2. chain: fetch → process → combine of 3 pages: 52 bytes",
		"3. wait: submitted 400ms 100ms 300ms 200ms, finished",
		"4. put once: 8 tasks summed one 8 MiB object in place: 549755289600, as the driver did",
		"5. actor: counter incremented 3 times: [1 2 3], value 3",
		`6. named actor: "hits", created at 100, found with actor.Get; Incr(10) gives 110`,
		`   4 tasks given its handle each called Incr(1): value 114`,
		"errors.Is(err, ErrDivByZero) = true",
	}},
	{"pipeline", []string{"-n", "200"}, []string{
		"compiled once; 200 executions each",
		"compiled, one at a time: p50 ",
		"compiled, 8 in flight: ",
		"classic actor calls, one at a time: p50 ",
		"compiled vs classic: ",
	}},
	{"allreduce", []string{"-trainers", "3", "-steps", "40", "-rows", "500"}, []string{
		"allreduce: 3 trainers × 500 rows × 32 features, AllReduce(avg) on the cpu communicator",
		"step    1: loss ",
		"40 steps in ",
		"replicas agree: true",
	}},
	{"mapreduce", []string{"-words", "50000", "-maps", "4", "-reduces", "3"}, []string{
		"mapreduce: 50000 words",
		"top 10 words:",
		"  1. the ",
		"total ok: 50000 words",
	}},
}

func TestExamples(t *testing.T) {
	root := moduleRoot(t)
	dir := t.TempDir()
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			bin := filepath.Join(dir, ex.name)
			build := []string{"build", "-o", bin}
			if raceEnabled {
				build = append(build, "-race")
			}
			cmd := exec.Command("go", append(build, "./examples/"+ex.name)...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build ./examples/%s: %v\n%s", ex.name, err, out)
			}

			before := segments(t)
			start := time.Now()
			stdout, stderr, pids, err := run(bin, ex.args, 60*time.Second)
			defer checkLeftovers(t, bin, before, pids) // also after a failure below
			t.Logf("%s %s (%d processes, %v):\n%s", ex.name, strings.Join(ex.args, " "), len(pids),
				time.Since(start).Round(time.Millisecond), stdout)
			if stderr != "" {
				t.Logf("stderr:\n%s", stderr)
			}
			if err != nil {
				t.Fatalf("%s: %v", ex.name, err)
			}
			rest := stdout
			for _, w := range ex.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("%s: output lacks %q (or has it out of order)", ex.name, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

// checkLeftovers fails the test if a process of bin still runs, or if a
// segment that was not in before, owned by one of pids, is in /dev/shm.
// Shutdown stops the workers, and the last one cleans up /dev/shm: they get
// a moment.
func checkLeftovers(t *testing.T, bin string, before []string, pids map[int]bool) {
	var left []string
	err := waitFor(10*time.Second, func() error {
		if live := running(bin); len(live) > 0 {
			return fmt.Errorf("processes of %s still running: %v", bin, live)
		}
		left = left[:0]
		for _, s := range segments(t) {
			if !slices.Contains(before, s) && pids[ownerPID(s)] {
				left = append(left, s)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("segments left in /dev/shm: %v", left)
		}
		return nil
	})
	for _, p := range running(bin) { // reported, but not left running
		syscall.Kill(p, syscall.SIGKILL)
	}
	for _, s := range left { // reported, but not left for the next run
		os.Remove(filepath.Join("/dev/shm", s))
	}
	if err != nil {
		t.Error(err)
	}
}

// run runs bin with args until it exits or the timeout passes (then it is
// killed), and returns its output and the pids of every process of bin seen
// meanwhile (the driver and its workers).
func run(bin string, args []string, timeout time.Duration) (stdout, stderr string, pids map[int]bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second // workers keep stderr open a little after the driver exits
	if err := cmd.Start(); err != nil {
		return "", "", nil, err
	}
	pids = map[int]bool{cmd.Process.Pid: true}
	var mu sync.Mutex
	done := make(chan struct{})
	polled := make(chan struct{})
	go func() { // workers come and go: look for them often
		defer close(polled)
		for {
			live := running(bin)
			mu.Lock()
			for _, p := range live {
				pids[p] = true
			}
			mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	<-polled
	if ctx.Err() != nil {
		err = fmt.Errorf("still running after %v: killed", timeout)
	} else if errors.Is(err, exec.ErrWaitDelay) {
		err = fmt.Errorf("exited, but its output stayed open %v longer (workers still running?)", cmd.WaitDelay)
	} else if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		err = fmt.Errorf("exit code %d", ee.ExitCode())
	}
	return out.String(), errOut.String(), pids, err
}

// running lists the processes whose executable is bin.
func running(bin string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// segments lists goray's segments in /dev/shm ("goray.<pid>.<start>.<label>").
func segments(t *testing.T) []string {
	ents, err := os.ReadDir("/dev/shm")
	if err != nil {
		t.Fatalf("list /dev/shm: %v", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "goray.") {
			names = append(names, e.Name())
		}
	}
	return names
}

// ownerPID is the pid in a segment's name (0 if none).
func ownerPID(name string) int {
	f := strings.SplitN(name, ".", 3)
	if len(f) < 3 {
		return 0
	}
	pid, _ := strconv.Atoi(f[1])
	return pid
}

// waitFor calls f until it returns nil or total passes, and returns its
// last error.
func waitFor(total time.Duration, f func() error) error {
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// moduleRoot is the directory of go.mod.
func moduleRoot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not in a module")
	}
	return filepath.Dir(gomod)
}
