package nccl_test

import (
	"testing"

	"github.com/goray/goray/internal/testutil"
)

// TestMain runs re-executed child roles (registered in the test files'
// init with reexec.Register), then the tests, then the leak checks:
// goroutines, child processes and segments in /dev/shm.
func TestMain(m *testing.M) { testutil.Main(m) }
