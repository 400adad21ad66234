package cuda_test

import (
	"testing"

	"github.com/goray/goray/internal/testutil"
)

// TestMain runs re-executed child roles (registered in init with
// reexec.Register), then the tests, then the leak checks.
func TestMain(m *testing.M) { testutil.Main(m) }
