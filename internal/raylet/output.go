package raylet

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
)

// forwarder copies a worker's stdout and stderr to the driver's, each line
// prefixed with the worker's pid, as Ray does.
type forwarder struct {
	ws      []*os.File // write ends, closed in this process once the child has them
	wg      sync.WaitGroup
	once    sync.Once
	started chan struct{} // closed by afterStart; pid set before
	pid     int
}

func forwardOutput(cmd *exec.Cmd) (*forwarder, error) {
	f := &forwarder{started: make(chan struct{})}
	for _, dst := range []*os.File{os.Stdout, os.Stderr} {
		pr, pw, err := os.Pipe()
		if err != nil {
			f.wait()
			return nil, fmt.Errorf("pipe for worker output: %w", err)
		}
		f.ws = append(f.ws, pw)
		if dst == os.Stdout {
			cmd.Stdout = pw
		} else {
			cmd.Stderr = pw
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer pr.Close()
			copyLines(dst, pr, f)
		}()
	}
	return f, nil
}

func copyLines(dst io.Writer, src io.Reader, f *forwarder) {
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := ""
	for sc.Scan() {
		if prefix == "" {
			<-f.started
			prefix = fmt.Sprintf("(worker pid=%d) ", f.pid)
		}
		fmt.Fprintf(dst, "%s%s\n", prefix, sc.Bytes())
	}
	io.Copy(io.Discard, src) // an over-long line: drain so the child never blocks
}

// afterStart closes this process's copies of the write ends: the readers
// then see EOF when the worker exits.
func (f *forwarder) afterStart(pid int) {
	f.once.Do(func() {
		f.pid = pid
		close(f.started)
		for _, w := range f.ws {
			w.Close()
		}
	})
}

func (f *forwarder) wait() { f.afterStart(0); f.wg.Wait() }

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
