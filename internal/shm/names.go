package shm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every segment goray creates.
const Prefix = "goray."

// Process identifies a process across pid reuse: its pid and its start time
// in clock ticks since boot.
type Process struct {
	PID   int
	Start uint64
}

var (
	selfOnce sync.Once
	self     Process
)

// Self is the current process.
func Self() Process {
	selfOnce.Do(func() {
		pid := os.Getpid()
		start, err := startTime(pid)
		if err != nil {
			panic(fmt.Sprintf("shm: cannot read own start time: %v", err))
		}
		self = Process{PID: pid, Start: start}
	})
	return self
}

// Alive reports whether p still runs: the pid exists, is not a zombie, and
// started at the recorded time.
func (p Process) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/stat")
	if err != nil {
		return false
	}
	state, start, err := parseStat(b)
	if err != nil {
		return false
	}
	return start == p.Start && state != 'Z' && state != 'X'
}

// ProcessOf identifies the running process pid.
func ProcessOf(pid int) (Process, error) {
	start, err := startTime(pid)
	if err != nil {
		return Process{}, fmt.Errorf("shm: process %d: %w", pid, err)
	}
	return Process{PID: pid, Start: start}, nil
}

func (p Process) String() string { return "pid " + strconv.Itoa(p.PID) }

func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	_, start, err := parseStat(b)
	return start, err
}

// parseStat returns the state (field 3) and start time (field 22) from the
// text of /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (byte, uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, errors.New("shm: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, errors.New("shm: malformed /proc stat")
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("shm: malformed /proc stat start time: %w", err)
	}
	return f[0][0], start, nil
}

// Name returns the segment name for label owned by the current process.
func Name(label string) string { return NameFor(Self(), label) }

// NameFor returns the segment name for label owned by p.
func NameFor(p Process, label string) string {
	return Prefix + strconv.Itoa(p.PID) + "." + strconv.FormatUint(p.Start, 10) + "." + label
}

// Owner parses the owning process out of a segment name made by Name.
func Owner(name string) (Process, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return Process{}, false
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) != 3 || parts[2] == "" {
		return Process{}, false
	}
	pid, err1 := strconv.Atoi(parts[0])
	start, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return Process{}, false
	}
	return Process{PID: pid, Start: start}, true
}

// List returns the names of goray segments in /dev/shm owned by p, or by
// any process when p is the zero Process.
func List(p Process) ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if err != nil {
		return nil, fmt.Errorf("shm: list %s: %w", Dir, err)
	}
	var out []string
	for _, e := range ents {
		owner, ok := Owner(e.Name())
		if !ok {
			continue
		}
		if p == (Process{}) || owner == p {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// CleanupStale unlinks every goray segment whose owning process is gone and
// returns the names it removed. Segments of running processes are kept.
func CleanupStale() ([]string, error) {
	names, err := List(Process{})
	if err != nil {
		return nil, err
	}
	var removed []string
	alive := map[Process]bool{}
	for _, n := range names {
		owner, _ := Owner(n)
		a, seen := alive[owner]
		if !seen {
			a = owner.Alive()
			alive[owner] = a
		}
		if a {
			continue
		}
		if err := unix.Unlink(filepath.Join(Dir, n)); err != nil && !errors.Is(err, unix.ENOENT) {
			return removed, fmt.Errorf("shm: remove stale %s: %w", n, err)
		}
		removed = append(removed, n)
	}
	return removed, nil
}

// RemoveOwned unlinks every segment owned by the current process whose
// label starts with labelPrefix.
func RemoveOwned(labelPrefix string) error {
	names, err := List(Self())
	if err != nil {
		return err
	}
	base := Name(labelPrefix)
	for _, n := range names {
		if strings.HasPrefix(n, base) {
			if err := Unlink(n); err != nil {
				return err
			}
		}
	}
	return nil
}
