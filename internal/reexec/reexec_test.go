package reexec_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/internal/testutil"
)

func init() {
	reexec.Register("reexec-echo", func(args []string) int {
		os.Stdout.WriteString(strings.Join(args, ",") + ";" + os.Getenv(reexec.EnvRole) + "\n")
		return len(args)
	})
}

func TestMain(m *testing.M) { testutil.Main(m) }

func TestRoleRunsWithArgs(t *testing.T) {
	cmd, err := reexec.Command("reexec-echo", "a", "b c")
	require.NoError(t, err)
	out, err := cmd.Output()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "the role's return value is the exit code: %v", err)
	assert.Equal(t, 2, exit.ExitCode())
	assert.Equal(t, "a,b c;\n", string(out), "the role gets its args, and the marker is gone from its environment")
}

func TestUnknownRole(t *testing.T) {
	cmd, err := reexec.Command("no-such-role")
	require.NoError(t, err)
	cmd.Stderr = nil
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit))
	assert.Equal(t, 97, exit.ExitCode())
	assert.Contains(t, string(out), `role "no-such-role" is not registered in this binary`)
	assert.Contains(t, string(out), "reexec-echo", "it lists the roles it has")
}

func TestRegisterTwicePanics(t *testing.T) {
	assert.Panics(t, func() { reexec.Register("reexec-echo", func([]string) int { return 0 }) })
}
