package dag_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/testutil"
)

var rt *core.Runtime

func TestMain(m *testing.M) {
	var err error
	rt, err = core.Init(context.Background(), core.NumCPUs(4))
	if err != nil {
		fmt.Fprintln(os.Stderr, "core.Init:", err)
		os.Exit(1)
	}
	testutil.MainWith(m, rt.Shutdown)
}
