package cuda

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "cudart.h"
*/
import "C"

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"
)

// EnvLibCUDART names the environment variable that, when set, is the only
// CUDA runtime library Load tries (a file name for the dynamic loader's
// search, or a path).
const EnvLibCUDART = "GORAY_LIBCUDART"

// runtimeLibraries are the sonames tried in order when EnvLibCUDART is unset.
var runtimeLibraries = []string{"libcudart.so.13", "libcudart.so.12", "libcudart.so"}

var (
	loadOnce sync.Once
	loadErr  error
)

// Load opens the CUDA runtime library once per process: $GORAY_LIBCUDART if
// set, else the first of libcudart.so.13, libcudart.so.12 and libcudart.so
// that loads and whose major version the installed driver supports. It
// returns nil when the runtime loaded (a GPU may still be absent; see
// DeviceCount), and otherwise an error wrapping ErrNoDriver that gives the
// loader's reasons and the fix. Every other function calls it first, so
// calling it is only needed to ask whether the runtime is there.
func Load() error {
	loadOnce.Do(func() { loadErr = load() })
	return loadErr
}

func load() error {
	// The default candidates must suit the driver; a library named by the
	// user is taken as it is, and a driver too old for it shows in
	// DeviceCount's error.
	names, checkDriver := runtimeLibraries, C.int(1)
	if p := os.Getenv(EnvLibCUDART); p != "" {
		names, checkDriver = []string{p}, 0
	}
	msg := (*C.char)(C.malloc(1024))
	defer C.free(unsafe.Pointer(msg))
	var reasons []string
	for _, name := range names {
		cname := C.CString(name)
		r := C.gr_load(cname, checkDriver, msg, 1024)
		C.free(unsafe.Pointer(cname))
		if r == 0 {
			return nil
		}
		reasons = append(reasons, C.GoString(msg))
	}
	return fmt.Errorf("%w: cannot load the CUDA runtime (%s); install a CUDA runtime the driver supports "+
		"(the CUDA toolkit, or pip install nvidia-cuda-runtime-cu12) and add the directory holding "+
		"libcudart.so.12 or .13 to LD_LIBRARY_PATH, or set %s to the library's path",
		ErrNoDriver, strings.Join(reasons, "; "), EnvLibCUDART)
}
