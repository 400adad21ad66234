// Package testutil is what every goray test package shares: a TestMain that
// dispatches re-executed child roles and then checks for leaked goroutines
// and leaked shared memory, child processes that are real processes of the
// test binary, and CheckFor, which waits for a condition instead of
// sleeping.
package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/internal/shm"
)

var (
	childMu  sync.Mutex
	children []shm.Process
)

// Main is the body of every package's TestMain:
//
//	func TestMain(m *testing.M) { testutil.Main(m) }
//
// In a re-executed child it runs the child's role and exits. Otherwise it
// runs the tests, then fails the run if goroutines leaked, if a child it
// started still runs, or if /dev/shm still holds a segment owned by this
// process or by one of its children.
func Main(m *testing.M, ignore ...goleak.Option) {
	MainWith(m, nil, ignore...)
}

// MainWith is Main with a teardown that runs after the tests and before
// the leak checks (a runtime that TestMain started and the tests shared).
func MainWith(m *testing.M, teardown func() error, ignore ...goleak.Option) {
	reexec.Init()
	code := m.Run()
	if teardown != nil {
		if err := teardown(); err != nil {
			fmt.Fprintf(os.Stderr, "testutil: teardown: %v\n", err)
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(ignore...); err != nil {
			fmt.Fprintf(os.Stderr, "testutil: goroutines leaked:\n%v\n", err)
			code = 1
		}
		if alive := liveChildren(); len(alive) > 0 {
			fmt.Fprintf(os.Stderr, "testutil: child processes still running: %v\n", alive)
			code = 1
		}
		if left := leftoverSegments(); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "testutil: shared memory left in %s: %v\n", shm.Dir, left)
			code = 1
		}
	}
	os.Exit(code)
}

func liveChildren() []shm.Process {
	childMu.Lock()
	defer childMu.Unlock()
	var alive []shm.Process
	for _, p := range children {
		if p.Alive() {
			alive = append(alive, p)
		}
	}
	// Children started some other way (a raylet's workers) count too.
	for _, pid := range ownChildren() {
		if p, err := shm.ProcessOf(pid); err == nil && !slices.Contains(alive, p) {
			alive = append(alive, p)
		}
	}
	return alive
}

// ownChildren lists the live processes whose parent is this one.
func ownChildren() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[0] != "Z" && f[1] == strconv.Itoa(self) {
			out = append(out, pid)
		}
	}
	return out
}

// AddChild makes the leak checks cover p's shared memory too.
func AddChild(p shm.Process) {
	childMu.Lock()
	children = append(children, p)
	childMu.Unlock()
}

func leftoverSegments() []string {
	childMu.Lock()
	owners := append([]shm.Process{shm.Self()}, children...)
	childMu.Unlock()
	var left []string
	for _, p := range owners {
		names, _ := shm.List(p)
		left = append(left, names...)
	}
	return left
}

// Child is a running child process of the test binary.
type Child struct {
	Cmd    *exec.Cmd
	Stdout *bufio.Reader
	stdin  io.WriteCloser
	t      testing.TB
	once   sync.Once
	err    error
	done   chan struct{}
}

// StartChild starts role (registered with reexec.Register) in a child
// process with args. Its stdout is readable line by line (ReadLine); its
// stdin is a pipe (WriteLine). The child is killed at the end of the test
// if it is still running.
func StartChild(t testing.TB, role string, args ...string) *Child {
	t.Helper()
	return StartChildFiles(t, nil, role, args...)
}

// StartChildFiles is StartChild with descriptors passed to the child: files[i]
// becomes descriptor 3+i there.
func StartChildFiles(t testing.TB, files []*os.File, role string, args ...string) *Child {
	t.Helper()
	cmd, err := reexec.Command(role, args...)
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = files
	// A plain pipe, not cmd.StdoutPipe: Wait closes that one as soon as the
	// child exits, losing output not yet read.
	out, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		out.Close()
		t.Fatalf("start child %s: %v", role, err)
	}
	// Record the child so its segments count as ours in the leak check.
	if p, err := shm.ProcessOf(cmd.Process.Pid); err == nil {
		childMu.Lock()
		children = append(children, p)
		childMu.Unlock()
	}
	c := &Child{Cmd: cmd, Stdout: bufio.NewReader(out), stdin: in, t: t, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.Kill()
		<-c.done
		out.Close()
	})
	return c
}

// ReadLine returns the child's next line of output without its newline,
// failing the test if the child ends first or nothing comes within
// timeout.
func (c *Child) ReadLine(timeout time.Duration) string {
	c.t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := c.Stdout.ReadString('\n')
		ch <- res{strings.TrimSuffix(s, "\n"), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			c.t.Fatalf("child %d: read line: %v (partial %q)", c.Cmd.Process.Pid, r.err, r.s)
		}
		return r.s
	case <-time.After(timeout):
		c.Kill()
		<-ch
		c.t.Fatalf("child %d: no line within %v", c.Cmd.Process.Pid, timeout)
		return ""
	}
}

// WriteLine sends a line to the child's stdin.
func (c *Child) WriteLine(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, s+"\n"); err != nil {
		c.t.Fatalf("child %d: write line: %v", c.Cmd.Process.Pid, err)
	}
}

// Kill sends SIGKILL (kill -9).
func (c *Child) Kill() {
	c.once.Do(func() { c.stdin.Close() })
	c.Cmd.Process.Kill()
}

// Wait waits for the child to exit, up to timeout, and returns its error.
func (c *Child) Wait(timeout time.Duration) error {
	c.t.Helper()
	c.once.Do(func() { c.stdin.Close() })
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		c.Kill()
		<-c.done
		c.t.Fatalf("child %d: still running after %v", c.Cmd.Process.Pid, timeout)
		return nil
	}
}

// CheckFor calls f every interval until it returns nil or total passes, and
// then fails the test with f's last error.
func CheckFor(t testing.TB, total, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", total, err)
		}
		time.Sleep(interval)
	}
}
