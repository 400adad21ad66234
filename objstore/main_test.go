package objstore_test

import (
	"testing"

	"github.com/goray/goray/internal/testutil"
)

// TestMain runs re-executed child roles, then the tests, then the leak
// checks (goroutines, children, /dev/shm).
func TestMain(m *testing.M) { testutil.Main(m) }
