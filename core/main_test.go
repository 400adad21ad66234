package core_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/testutil"
)

// rt is the runtime most tests share: a 4-CPU embedded cluster.
var rt *core.Runtime

// TestMain shows the pattern every goray test binary follows: core.Init
// first, before m.Run. In the worker processes (this test binary,
// re-executed by the raylet) Init serves tasks and never returns.
func TestMain(m *testing.M) {
	var err error
	rt, err = core.Init(context.Background(), core.NumCPUs(4))
	if err != nil {
		fmt.Fprintln(os.Stderr, "core.Init:", err)
		os.Exit(1)
	}
	testutil.MainWith(m, func() error {
		fuzzCleanup()
		return rt.Shutdown()
	})
}
