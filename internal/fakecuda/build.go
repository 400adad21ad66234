package fakecuda

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

//go:embed fakecudart.c.in
var source []byte

// Install compiles the fake runtime (with the C compiler cgo uses, $CC or
// gcc) into dir as libcudart.so.13 and returns its path. A process uses it
// when GORAY_LIBCUDART names the path; its child processes (workers, whose
// environment drops GORAY_ variables) when dir is on LD_LIBRARY_PATH.
func Install(dir string) (string, error) {
	src := filepath.Join(dir, "fakecudart.c")
	if err := os.WriteFile(src, source, 0o644); err != nil {
		return "", err
	}
	lib := filepath.Join(dir, "libcudart.so.13")
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	out, err := exec.Command(cc, "-shared", "-fPIC", "-O1", "-o", lib, src, "-lrt").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("fakecuda: %s: %w\n%s", cc, err, out)
	}
	return lib, nil
}

// RemoveStale unlinks the /dev/shm segments of fake allocations whose
// process is gone (a process killed before it freed them).
func RemoveStale() {
	ents, _ := os.ReadDir("/dev/shm")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "fakecuda-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			os.Remove(filepath.Join("/dev/shm", e.Name()))
		}
	}
}
