package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/rpc"
	"github.com/goray/goray/internal/shm"
)

// The cluster commands: start, stop, status, list. A head started with
// `goray start --head` runs as a daemon; its session directory
// ($TMPDIR/goray-<port>) holds the token, the object store's socket and
// head.pid; $TMPDIR/goray-current names the running head's address, so
// that the other commands find it without --address.

const defaultPort = 6379

func currentFile() string { return filepath.Join(os.TempDir(), "goray-current") }

func logFile(port int) string { return filepath.Join(os.TempDir(), fmt.Sprintf("goray-%d.log", port)) }

// resolveAddress is --address, or the running head's.
func resolveAddress(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	b, err := os.ReadFile(currentFile())
	if err != nil {
		return "", errors.New("no goray cluster is running here (start one with `goray start --head`, or pass --address)")
	}
	return strings.TrimSpace(string(b)), nil
}

// clusterClient is a connection to a cluster's GCS and raylet.
type clusterClient struct {
	addr   string
	token  string
	cc     *grpc.ClientConn
	gcs    rpc.GcsClient
	raylet rpc.RayletClient
}

func dialCluster(ctx context.Context, addrFlag string) (*clusterClient, error) {
	addr, err := resolveAddress(addrFlag)
	if err != nil {
		return nil, err
	}
	tokenFile := os.Getenv("GORAY_TOKEN_FILE")
	if tokenFile == "" {
		tokenFile = filepath.Join(core.SessionDir(addr), "token")
	}
	token, err := rpc.ReadToken(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("cluster at %s: %w (is it running? `goray start --head`)", addr, err)
	}
	cc, err := rpc.Dial(addr, token)
	if err != nil {
		return nil, err
	}
	c := &clusterClient{addr: addr, token: token, cc: cc, gcs: rpc.NewGcsClient(cc), raylet: rpc.NewRayletClient(cc)}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.gcs.GetNodes(cctx, &rpc.GetNodesRequest{}); err != nil {
		cc.Close()
		switch status.Code(err) {
		case codes.Unauthenticated:
			return nil, fmt.Errorf("cluster at %s refused the token in %s", addr, tokenFile)
		case codes.Unavailable, codes.DeadlineExceeded:
			return nil, fmt.Errorf("no goray cluster answers at %s (start one with `goray start --head`)", addr)
		}
		return nil, fmt.Errorf("cluster at %s: %v", addr, status.Convert(err).Message())
	}
	return c, nil
}

func (c *clusterClient) Close() error { return c.cc.Close() }

// ---------------------------------------------------------------- start

type startFlags struct {
	head        bool
	port        int
	numCPUs     float64
	numGPUs     float64
	storeMemory int64
	block       bool
	metricsPort int
	logFile     string // the daemon's output, linked into the session directory
}

func newStartCmd() *cobra.Command {
	var f startFlags
	cmd := &cobra.Command{
		Use:   "start --head",
		Short: "Start a goray head node (GCS, raylet, object store) as a daemon",
		Long: `Start a goray head node: the GCS, a raylet and the node's shared-memory
object store, in a background process, and print how to connect a driver.
Drivers connect with core.Init(ctx, core.Address("127.0.0.1:PORT")); each
driver's tasks and actors run in worker processes started from its own
binary. The session directory $TMPDIR/goray-PORT holds the token, head.pid
and head.log (its output); ` + "`goray stop`" + ` stops it.`,
		Example: `  goray start --head --num-cpus 4
  goray start --head --port 6380 --block   # in the foreground, until Ctrl-C`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !f.head {
				return errors.New("only head nodes are supported: pass --head")
			}
			if f.block {
				return runHead(cmd, f)
			}
			return startDaemon(cmd, f)
		},
	}
	cmd.Flags().BoolVar(&f.head, "head", false, "start a head node")
	cmd.Flags().IntVar(&f.port, "port", defaultPort, "port of the cluster's gRPC services (on 127.0.0.1)")
	cmd.Flags().Float64Var(&f.numCPUs, "num-cpus", 0, "CPUs to offer (default: this machine's)")
	cmd.Flags().Float64Var(&f.numGPUs, "num-gpus", 0, "GPUs to offer")
	cmd.Flags().Int64Var(&f.storeMemory, "object-store-memory", 0, "object store bytes (default: 30% of RAM)")
	cmd.Flags().BoolVar(&f.block, "block", false, "run in the foreground until interrupted")
	cmd.Flags().IntVar(&f.metricsPort, "metrics-port", 0, "serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: none)")
	cmd.Flags().StringVar(&f.logFile, "log-file", "", "")
	cmd.Flags().MarkHidden("log-file")
	return cmd
}

func (f startFlags) args() []string {
	a := []string{"start", "--head", "--block", "--port", strconv.Itoa(f.port)}
	if f.numCPUs > 0 {
		a = append(a, "--num-cpus", strconv.FormatFloat(f.numCPUs, 'g', -1, 64))
	}
	if f.numGPUs > 0 {
		a = append(a, "--num-gpus", strconv.FormatFloat(f.numGPUs, 'g', -1, 64))
	}
	if f.storeMemory > 0 {
		a = append(a, "--object-store-memory", strconv.FormatInt(f.storeMemory, 10))
	}
	if f.metricsPort > 0 {
		a = append(a, "--metrics-port", strconv.Itoa(f.metricsPort))
	}
	return a
}

// startDaemon re-executes this binary with --block in a new session and
// waits until it serves (or fails).
func startDaemon(cmd *cobra.Command, f startFlags) error {
	if addr, err := resolveAddress(""); err == nil {
		if c, err := dialCluster(cmd.Context(), addr); err == nil {
			c.Close()
			return fmt.Errorf("a goray cluster already runs at %s (`goray stop` first)", addr)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := logFile(f.port)
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	child := exec.Command(exe, append(f.args(), "--log-file", logPath)...)
	child.Stdout, child.Stderr = log, log
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return fmt.Errorf("start the head process: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	addr := fmt.Sprintf("127.0.0.1:%d", f.port)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			return fmt.Errorf("the head process exited (%v): %s", err, lines[len(lines)-1])
		case <-deadline:
			child.Process.Kill()
			return fmt.Errorf("the head did not start within 30 s; see %s", logPath)
		case <-time.After(50 * time.Millisecond):
		}
		if cur, err := os.ReadFile(currentFile()); err == nil && strings.TrimSpace(string(cur)) == addr {
			if c, err := dialCluster(cmd.Context(), addr); err == nil {
				c.Close()
				pid := child.Process.Pid
				child.Process.Release()
				printConnect(cmd, addr, pid)
				return nil
			}
		}
	}
}

func printConnect(cmd *cobra.Command, addr string, pid int) {
	fmt.Fprintf(cmd.OutOrStdout(), `goray head started at %s (pid %d)
  session directory: %s
  connect a driver:  core.Init(ctx, core.Address(%q))
  see it:            goray status
  stop it:           goray stop
`, addr, pid, core.SessionDir(addr), addr)
}

// runHead runs the head in this process until SIGINT or SIGTERM.
func runHead(cmd *cobra.Command, f startFlags) error {
	var opts []core.Option
	if f.numCPUs > 0 {
		opts = append(opts, core.NumCPUs(f.numCPUs))
	}
	if f.numGPUs > 0 {
		opts = append(opts, core.NumGPUs(f.numGPUs))
	}
	if f.storeMemory > 0 {
		opts = append(opts, core.ObjectStoreMemory(f.storeMemory))
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	h, err := core.StartHead(cmd.Context(), f.port, opts...)
	if err != nil {
		return err
	}
	defer h.Close()
	// The pid and its start time: stop must not signal a process that
	// reused the pid of a head that crashed.
	self := shm.Self()
	pidFile := filepath.Join(h.SessionDir(), "head.pid")
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%d %d", self.PID, self.Start)), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(currentFile(), []byte(h.Address()), 0o600); err != nil {
		return err
	}
	if f.logFile != "" { // the daemon's log, beside its pid
		os.Symlink(f.logFile, filepath.Join(h.SessionDir(), "head.log"))
	}
	defer func() {
		if cur, err := os.ReadFile(currentFile()); err == nil && strings.TrimSpace(string(cur)) == h.Address() {
			os.Remove(currentFile())
		}
	}()
	if f.metricsPort > 0 {
		stop, err := serveMetrics(cmd.Context(), h.Address(), f.metricsPort)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(cmd.OutOrStdout(), "  metrics:           http://127.0.0.1:%d/metrics\n", f.metricsPort)
	}
	printConnect(cmd, h.Address(), os.Getpid())
	s := <-sigs
	fmt.Fprintf(cmd.ErrOrStderr(), "goray head: %v: stopping\n", s)
	return nil
}

// ---------------------------------------------------------------- stop

func newStopCmd() *cobra.Command {
	var addrFlag string
	cmd := &cobra.Command{
		Use:     "stop",
		Short:   "Stop the goray head started with `goray start`, its workers and its shared memory",
		Example: "  goray stop",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addr, err := resolveAddress(addrFlag)
			if err != nil {
				return err
			}
			dir := core.SessionDir(addr)
			b, err := os.ReadFile(filepath.Join(dir, "head.pid"))
			if err != nil {
				os.Remove(currentFile())
				return fmt.Errorf("no goray head runs at %s (its session directory %s has no head.pid)", addr, dir)
			}
			var p shm.Process
			if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d %d", &p.PID, &p.Start); err != nil {
				return fmt.Errorf("%s: bad head.pid: %w", dir, err)
			}
			pid := p.PID
			if p.Alive() { // the same process: pid and start time
				syscall.Kill(pid, syscall.SIGTERM)
				deadline := time.Now().Add(15 * time.Second)
				for p.Alive() && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if p.Alive() {
					syscall.Kill(pid, syscall.SIGKILL)
					for p.Alive() {
						time.Sleep(20 * time.Millisecond)
					}
				}
			}
			os.RemoveAll(dir)
			if cur, err := os.ReadFile(currentFile()); err == nil && strings.TrimSpace(string(cur)) == addr {
				os.Remove(currentFile())
			}
			if _, port, err := splitPort(addr); err == nil {
				os.Remove(logFile(port))
			}
			shm.CleanupStale() // what a killed head left in /dev/shm
			fmt.Fprintf(cmd.OutOrStdout(), "stopped the goray head at %s (pid %d)\n", addr, pid)
			return nil
		},
	}
	cmd.Flags().StringVar(&addrFlag, "address", "", "the cluster's address (default: the running head's)")
	return cmd
}

func splitPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("address %q has no port", addr)
	}
	port, err := strconv.Atoi(addr[i+1:])
	return addr[:i], port, err
}
