package benchmarks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/goray/goray/internal/reexec"
)

// Timeouts of the peer protocol (never of the measured path).
const (
	peerStartTimeout = 30 * time.Second // start, and print the ready line
	peerStopTimeout  = 10 * time.Second // exit after its input is closed
)

// peer is a running peer process: a role of this binary. Its stdout is a
// line protocol (a ready line, an acknowledgement); closing its stdin asks
// it to exit.
type peer struct {
	role  string
	cmd   *exec.Cmd
	stdin *os.File
	out   *os.File
	lines *bufio.Reader
	done  chan struct{}
	err   error
}

// startPeer starts role with args.
func startPeer(role string, args ...string) (*peer, error) {
	cmd, err := reexec.Command(role, args...)
	if err != nil {
		return nil, err
	}
	// A race-enabled binary sleeps a second at exit by default, for other
	// goroutines' reports; a peer's exit is on the benchmark's setup path.
	cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", role, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("peer %s: %w", role, err)
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("peer %s: start: %w", role, err)
	}
	p := &peer{role: role, cmd: cmd, stdin: inW, out: outR, lines: bufio.NewReader(outR), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// readLine returns the peer's next line, without its newline.
func (p *peer) readLine(timeout time.Duration) (string, error) {
	if err := p.out.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", fmt.Errorf("peer %s: %w", p.role, err)
	}
	s, err := p.lines.ReadString('\n')
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "", fmt.Errorf("peer %s (pid %d): no answer within %v", p.role, p.cmd.Process.Pid, timeout)
	case errors.Is(err, io.EOF):
		return "", fmt.Errorf("peer %s (pid %d) exited before answering: %w", p.role, p.cmd.Process.Pid, p.wait(peerStopTimeout))
	case err != nil:
		return "", fmt.Errorf("peer %s: read: %w", p.role, err)
	}
	return strings.TrimSuffix(s, "\n"), nil
}

// expect reads a line that must start with want and returns the rest.
func (p *peer) expect(want string, timeout time.Duration) (string, error) {
	s, err := p.readLine(timeout)
	if err != nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(s, want)
	if !ok {
		return "", fmt.Errorf("peer %s: said %q, want %q", p.role, s, want+"…")
	}
	return strings.TrimSpace(rest), nil
}

// wait waits for the peer to exit, killing it after timeout.
func (p *peer) wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("peer %s (pid %d) still running %v after it was asked to stop: killed", p.role, p.cmd.Process.Pid, timeout)
	}
	if p.err != nil {
		return fmt.Errorf("peer %s (pid %d): %w", p.role, p.cmd.Process.Pid, p.err)
	}
	return nil
}

// stop closes the peer's stdin, which asks it to exit, and waits for it.
// Idempotent.
func (p *peer) stop() error {
	p.stdin.Close()
	err := p.wait(peerStopTimeout)
	p.out.Close()
	return err
}

// peerRole wraps a peer's body as a reexec role: it exits as soon as stdin
// reaches EOF (the benchmarking process closed it, or died), and reports a
// body's error on stderr with exit code 1.
func peerRole(role string, body func(args []string) error) func([]string) int {
	return func(args []string) int {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		}()
		if err := body(args); err != nil {
			fmt.Fprintf(os.Stderr, "goray benchmark peer %s: %v\n", role, err)
			return 1
		}
		return 0
	}
}

// say writes one line of the peer protocol on stdout.
func say(format string, args ...any) {
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}
