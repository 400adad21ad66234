package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/shm"
)

// A driver connected to a head started by `goray start` runs its tasks
// and actors in workers started from its own binary: this test binary.
var (
	cliSquare = core.Register("cli.square", func(_ context.Context, x int) (int, error) { return x * x, nil })
	cliClass  = actor.Register("cli.Counter", func(context.Context) (*cliCounter, error) { return &cliCounter{}, nil })
)

type cliCounter struct{ n int }

func (c *cliCounter) Incr(context.Context) (int, error) { c.n++; return c.n, nil }

// buildGoray builds this command for the tests that run it as a process.
func buildGoray(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "goray")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func runBin(bin string, env []string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var (
	maskHex   = regexp.MustCompile(`\b[0-9a-f]{12,}\b`)
	maskAddr  = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	maskPort  = regexp.MustCompile(`goray-\d+`)
	maskCap   = regexp.MustCompile(`used of [0-9.]+ [KMGT]?i?B`)
	maskProcs = regexp.MustCompile(`\d+ processes, \d+ leased`)
	maskUsed  = regexp.MustCompile(`(?m)^  [0-9.]+/`) // a task's lease lingers a moment after it ends
)

func mask(s string) string {
	s = maskHex.ReplaceAllString(s, "<id>")
	s = maskAddr.ReplaceAllString(s, "127.0.0.1:<port>")
	s = maskPort.ReplaceAllString(s, "goray-<port>")
	s = maskCap.ReplaceAllString(s, "used of <capacity>")
	s = maskUsed.ReplaceAllString(s, "  <used>/")
	return maskProcs.ReplaceAllString(s, "<n> processes, <n> leased")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("UPDATE_GOLDEN") != "" {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got)
}

func shmSegments() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir("/dev/shm")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "goray.") {
			out[e.Name()] = true
		}
	}
	return out
}

func TestClusterCommands(t *testing.T) {
	if os.Getenv("GORAY_SKIP_CLUSTER_TEST") != "" {
		t.Skip("GORAY_SKIP_CLUSTER_TEST set")
	}
	bin := buildGoray(t)
	tmp := t.TempDir()
	env := []string{"TMPDIR=" + tmp} // its own goray-current and session directories
	t.Setenv("TMPDIR", tmp)
	before := shmSegments()

	// A port someone else holds: start fails with one clear line.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	out, err := runBin(bin, env, "start", "--head", "--port", strconv.Itoa(held.Addr().(*net.TCPAddr).Port))
	held.Close()
	require.Error(t, err)
	require.Contains(t, out, "address already in use")

	port := freePort(t)
	out, err = runBin(bin, env, "start", "--head", "--port", strconv.Itoa(port), "--num-cpus", "2")
	require.NoError(t, err, out)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	require.Contains(t, out, "goray head started at "+addr)
	m := regexp.MustCompile(`\(pid (\d+)\)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	headPID, _ := strconv.Atoi(m[1])
	head, err := shm.ProcessOf(headPID)
	require.NoError(t, err)
	stopped := false
	defer func() {
		if !stopped {
			runBin(bin, env, "stop")
		}
	}()

	out, err = runBin(bin, env, "start", "--head", "--port", strconv.Itoa(freePort(t)))
	require.Error(t, err, "a second head")
	require.Contains(t, out, "already runs at "+addr)

	// A driver joins; its task and actor run in this test binary.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rt, err := core.Init(ctx, core.Address(addr))
	require.NoError(t, err)
	v, err := core.Get[int](ctx, cliSquare.Remote(rt, 7))
	require.NoError(t, err)
	require.Equal(t, 49, v)
	h, err := cliClass.Options(actor.Name("counter")).Remote(rt)
	require.NoError(t, err)
	n, err := core.Get[int](ctx, h.Call("Incr"))
	require.NoError(t, err)
	require.Equal(t, 1, n)

	out, err = runBin(bin, env, "status")
	require.NoError(t, err, out)
	golden(t, "status.golden", mask(out))

	out, err = runBin(bin, env, "list", "actors", "--format", "json", "--filter", "state=ALIVE")
	require.NoError(t, err, out)
	var actors []map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &actors))
	require.Len(t, actors, 1)
	require.Equal(t, "cli.Counter", actors[0]["class"])
	require.Equal(t, "counter", actors[0]["name"])
	golden(t, "list_actors.golden", mask(regexp.MustCompile(`"pid": "\d+"`).ReplaceAllString(out, `"pid": "<pid>"`)))

	out, err = runBin(bin, env, "list", "jobs", "--format", "json")
	require.NoError(t, err, out)
	var jobs []map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &jobs))
	require.Len(t, jobs, 1)
	require.Equal(t, "RUNNING", jobs[0]["status"])
	require.Equal(t, strconv.Itoa(os.Getpid()), jobs[0]["driver_pid"])

	out, err = runBin(bin, env, "list", "nodes")
	require.NoError(t, err, out)
	require.Contains(t, out, "NODE_ID")
	require.Contains(t, out, "CPU=2")
	out, err = runBin(bin, env, "list", "tasks")
	require.Error(t, err)
	require.Contains(t, out, "not built yet")
	out, err = runBin(bin, env, "list", "actors", "--filter", "colour=red")
	require.Error(t, err)
	require.Contains(t, out, `have no "colour"`)

	// A wrong token is refused, with one line.
	bad := filepath.Join(tmp, "bad-token")
	require.NoError(t, os.WriteFile(bad, []byte("0123456789abcdef0123456789abcdef"), 0o600))
	out, err = runBin(bin, append(env, "GORAY_TOKEN_FILE="+bad), "status")
	require.Error(t, err)
	require.Contains(t, out, "refused the token")
	require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one line: %q", out)

	require.NoError(t, actor.Kill(h, true))
	require.NoError(t, rt.Shutdown())
	out, err = runBin(bin, env, "stop")
	require.NoError(t, err, out)
	stopped = true
	require.Contains(t, out, "stopped the goray head at "+addr)
	require.False(t, head.Alive(), "the head process is gone")
	out, err = runBin(bin, env, "status")
	require.Error(t, err)
	require.Contains(t, out, "no goray cluster is running")
	for name := range shmSegments() {
		require.True(t, before[name], "shared memory left behind: %s", name)
	}
	_, err = os.Stat(core.SessionDir(addr))
	require.True(t, os.IsNotExist(err), "session directory removed")
	// No process of the head's is left (its workers die with it).
	require.Eventually(t, func() bool {
		return syscall.Kill(headPID, 0) != nil
	}, 5*time.Second, 20*time.Millisecond)
}
