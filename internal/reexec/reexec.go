// Package reexec runs roles of the current binary in child processes: the
// binary is re-executed with an environment marker naming the role, and
// Init, called first thing in main (or TestMain), runs the role instead of
// the program. Go cannot ship closures to another process, so this is how
// goray's tests, benchmarks and workers get a peer that has the same code.
//
//	func init() { reexec.Register("echo", echoMain) }
//
//	func TestMain(m *testing.M) { reexec.Init(); os.Exit(m.Run()) }
//
//	cmd := reexec.Command("echo", "arg")  // an *exec.Cmd running echoMain
package reexec

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
)

// EnvRole is the environment variable that names the role to run.
const EnvRole = "GORAY_REEXEC_ROLE"

var (
	mu    sync.Mutex
	roles = map[string]func(args []string) int{}
)

// Register makes role runnable by Command. Call it from init. fn receives
// the arguments given to Command and returns the exit code.
func Register(role string, fn func(args []string) int) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := roles[role]; dup {
		panic("reexec: role registered twice: " + role)
	}
	roles[role] = fn
}

// Init runs the role named by the environment, if any, and exits with its
// code; otherwise it returns at once. Call it before anything else.
func Init() {
	role, ok := os.LookupEnv(EnvRole)
	if !ok {
		return
	}
	os.Unsetenv(EnvRole)
	mu.Lock()
	fn, found := roles[role]
	mu.Unlock()
	if !found {
		fmt.Fprintf(os.Stderr, "reexec: role %q is not registered in this binary (registered: %v)\n", role, names())
		os.Exit(97)
	}
	os.Exit(fn(os.Args[1:]))
}

func names() []string {
	mu.Lock()
	defer mu.Unlock()
	var out []string
	for n := range roles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Command returns a command that runs role in a new process of this binary
// with args. The child gets SIGKILL if this process dies, so a crashed
// parent leaves no children behind. Stdout is left unset; Stderr is this
// process's stderr.
func Command(role string, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("reexec: find own binary: %w", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), EnvRole+"="+role)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}
