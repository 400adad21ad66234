package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goray/goray/actor"
	"github.com/goray/goray/core"
	"github.com/goray/goray/dag"
	"github.com/goray/goray/internal/shm"
)

// A driver connected to a head started by `goray start` runs its tasks
// and actors in workers started from its own binary: this test binary.
var (
	cliSquare = core.Register("cli.square", func(_ context.Context, x int) (int, error) { return x * x, nil })
	cliClass  = actor.Register("cli.Counter", func(context.Context) (*cliCounter, error) { return &cliCounter{}, nil })
	cliFail   = core.Register("cli.fail", func(context.Context) (int, error) { return 0, errors.New("cli task failed on purpose") })
)

type cliCounter struct{ n int }

func (c *cliCounter) Incr(context.Context) (int, error) { c.n++; return c.n, nil }

// Add adds x (a compiled graph's step).
func (c *cliCounter) Add(_ context.Context, x int) (int, error) { return c.n + x, nil }

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

	port, mport := freePort(t), freePort(t)
	out, err = runBin(bin, env, "start", "--head", "--port", strconv.Itoa(port), "--num-cpus", "2", "--metrics-port", strconv.Itoa(mport))
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

	for _, f := range []string{"token", "head.pid", "head.log"} {
		_, err := os.Stat(filepath.Join(core.SessionDir(addr), f))
		require.NoError(t, err, "the session directory holds %s", f)
	}
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

	_, err = core.Get[int](ctx, cliFail.Remote(rt))
	require.ErrorContains(t, err, "on purpose")

	out, err = runBin(bin, env, "status")
	require.NoError(t, err, out)
	golden(t, "status.golden", mask(out))

	// The state API: recent tasks (workers report them within 250 ms).
	var tasks []map[string]string
	require.Eventually(t, func() bool {
		out, err = runBin(bin, env, "list", "tasks", "--format", "json")
		return err == nil && json.Unmarshal([]byte(out), &tasks) == nil && len(tasks) >= 3
	}, 10*time.Second, 50*time.Millisecond, "list tasks: %s", out)
	names := map[string]string{}
	for _, tk := range tasks {
		names[tk["name"]] = tk["state"] + " " + tk["kind"]
	}
	require.Equal(t, "FINISHED task", names["cli.square"])
	require.Equal(t, "FINISHED actor_call", names["cli.Counter.Incr"])
	require.Equal(t, "FAILED task", names["cli.fail"])
	out, err = runBin(bin, env, "summary", "tasks", "--format", "json")
	require.NoError(t, err, out)
	golden(t, "summary_tasks.golden", regexp.MustCompile(`"mean_ms": "[0-9.]+"`).ReplaceAllString(out, `"mean_ms": "<ms>"`))
	out, err = runBin(bin, env, "summary", "actors")
	require.NoError(t, err, out)
	golden(t, "summary_actors.golden", out)

	// Metrics: tasks by state, actors, the store, compiled-graph executions.
	in := dag.Input()
	g, err := dag.Compile(ctx, dag.Bind(h, "Add", in))
	require.NoError(t, err)
	for i := range 5 {
		f, err := g.Execute(ctx, i)
		require.NoError(t, err)
		v, err := dag.Get[int](ctx, f)
		require.NoError(t, err)
		require.Equal(t, i+1, v)
	}
	require.NoError(t, g.Teardown())
	var metrics string
	require.Eventually(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		metrics = string(b)
		return strings.Contains(metrics, "goray_dag_execution_seconds_count 5") &&
			strings.Contains(metrics, `goray_tasks_total{kind="task",state="FINISHED"} 1`)
	}, 10*time.Second, 50*time.Millisecond, "metrics:\n%s", metrics)
	for _, want := range []string{`goray_tasks_total{kind="task",state="FAILED"} 1`, `goray_tasks_total{kind="actor_call",state="FINISHED"}`,
		`goray_actors{state="ALIVE"} 1`, `goray_object_store_bytes{kind="capacity"}`, `goray_workers{leased="true"}`} {
		require.Contains(t, metrics, want)
	}

	// Memory: a large object the driver put is listed with its size.
	big, err := core.Put(rt, make([]byte, 3<<20))
	require.NoError(t, err)
	out, err = runBin(bin, env, "memory", "--format", "json")
	require.NoError(t, err, out)
	var objs []map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &objs))
	require.NotEmpty(t, objs, out)
	require.Equal(t, big.ID(), objs[0]["object_id"])
	require.Equal(t, "3.0 MiB", objs[0]["size"])
	require.Equal(t, "sealed", objs[0]["state"])
	out, err = runBin(bin, env, "list", "jobs", "--format", "json")
	require.NoError(t, err, out)
	var jobList []map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &jobList))
	require.Equal(t, jobList[0]["driver_address"], objs[0]["owner"], "the driver that put it owns it")
	require.Equal(t, "1 (1 local, 0 in tasks, 0 borrowers)", objs[0]["refs"])
	out, err = runBin(bin, env, "memory")
	require.NoError(t, err, out)
	require.Contains(t, out, "Object store: 3.0 MiB used")
	out, err = runBin(bin, env, "list", "objects", "--filter", "state=sealed")
	require.NoError(t, err, out)
	require.Contains(t, out, big.ID())
	core.Free(big)

	// The timeline parses as Chrome trace events.
	trace := filepath.Join(tmp, "trace.json")
	out, err = runBin(bin, env, "timeline", "-o", trace)
	require.NoError(t, err, out)
	b, err := os.ReadFile(trace)
	require.NoError(t, err)
	var evs []map[string]any
	require.NoError(t, json.Unmarshal(b, &evs))
	require.GreaterOrEqual(t, len(evs), 3)
	for _, e := range evs {
		require.Equal(t, "X", e["ph"])
		require.Greater(t, e["ts"].(float64), 0.0)
		require.GreaterOrEqual(t, e["dur"].(float64), 0.0)
		for _, k := range []string{"name", "cat", "pid", "tid", "args"} {
			require.Contains(t, e, k)
		}
	}
	golden(t, "timeline_event.golden", timelineShape(evs[0]))

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
	pg, err := core.NewPlacementGroup(rt, []map[string]float64{{"CPU": 1}}, core.PlacementStrictPack)
	require.NoError(t, err)
	require.NoError(t, pg.Ready(ctx))
	out, err = runBin(bin, env, "list", "placement-groups", "--format", "json")
	require.NoError(t, err, out)
	var pgs []map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &pgs))
	require.Len(t, pgs, 1)
	require.Equal(t, map[string]string{"placement_group_id": pg.ID(), "name": "", "strategy": "STRICT_PACK", "state": "CREATED", "bundles": "{CPU=1}"}, pgs[0])
	require.NoError(t, pg.Remove())
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
	// Orphaned workers remove what they made as they exit: give them a
	// moment. A segment whose owner still runs is not left behind: the
	// test binaries of other packages, which go test runs beside this
	// one, make and remove their own meanwhile.
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = left[:0]
		for name := range shmSegments() {
			if owner, ok := shm.Owner(name); !before[name] && (!ok || !owner.Alive()) {
				left = append(left, name)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	require.Empty(t, left, "shared memory left behind")
	_, err = os.Stat(core.SessionDir(addr))
	require.True(t, os.IsNotExist(err), "session directory removed")
	// No process of the head's is left (its workers die with it).
	require.Eventually(t, func() bool {
		return syscall.Kill(headPID, 0) != nil
	}, 5*time.Second, 20*time.Millisecond)
}

// timelineShape is an event's keys and value types: what Perfetto needs.
func timelineShape(e map[string]any) string {
	var b strings.Builder
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %T\n", k, e[k])
	}
	return b.String()
}
