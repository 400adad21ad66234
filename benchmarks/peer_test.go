package benchmarks

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/internal/testutil"
)

// roleFakeParent starts a Unix-socket echo peer (which owns no shared
// memory), prints the peer's pid and waits to be killed.
const roleFakeParent = "benchmarks.test-fake-parent"

func init() {
	reexec.Register(roleFakeParent, func(args []string) int {
		p, err := startPeer(roleUnixEcho, args[0])
		if err == nil {
			_, err = p.expect("ready", peerStartTimeout)
		}
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("peer", p.cmd.Process.Pid)
		select {}
	})
}

// TestPeerExitsWhenParentDies kills a benchmarking process with SIGKILL
// and checks that its peer goes too.
func TestPeerExitsWhenParentDies(t *testing.T) {
	parent := testutil.StartChild(t, roleFakeParent, filepath.Join(t.TempDir(), "s.sock"))
	line := parent.ReadLine(peerStartTimeout)
	pidText, ok := strings.CutPrefix(line, "peer ")
	if !ok {
		t.Fatalf("fake parent said %q", line)
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		t.Fatal(err)
	}
	peerProc, err := shm.ProcessOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	parent.Kill()
	parent.Wait(peerStopTimeout)
	testutil.CheckFor(t, peerStopTimeout, 5*time.Millisecond, func() error {
		if peerProc.Alive() { // false for a zombie too: it exited
			return fmt.Errorf("peer pid %d still runs after its parent was killed", pid)
		}
		return nil
	})
}

// TestShmPeerExitsWhenRingsClose closes the rings under a shared-memory
// echo peer while its stdin stays open: it must exit by itself, cleanly.
func TestShmPeerExitsWhenRingsClose(t *testing.T) {
	rt, err := openShm(t.Context(), 64)
	if err != nil {
		t.Fatal(err)
	}
	c := rt.(*shmConn)
	c.w.Close()
	c.r.Close()
	for _, r := range c.rings {
		r.Close()
	}
	if err := c.peers[0].wait(peerStopTimeout); err != nil {
		t.Fatalf("peer after its rings closed: %v", err)
	}
	c.peers[0].stop()
}

// TestPeerExitsOnStdinEOF closes a peer's stdin while its channel stays
// open.
func TestPeerExitsOnStdinEOF(t *testing.T) {
	s, err := openShmStream(t.Context(), 64)
	if err != nil {
		t.Fatal(err)
	}
	c := s.(*sinkStream)
	if err := c.peer.stop(); err != nil {
		t.Fatalf("peer after stdin EOF: %v", err)
	}
	c.peer = nil
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPeerDeathFailsTheBenchmark kills a shared-memory echo peer: the next
// round trip fails with an error instead of hanging.
func TestPeerDeathFailsTheBenchmark(t *testing.T) {
	rt, err := openShm(t.Context(), 64)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	c := rt.(*shmConn)
	c.peers[0].cmd.Process.Kill()
	<-c.peers[0].done
	err = rt.RoundTrip(t.Context(), payload(64), func([]byte) {})
	if err == nil {
		t.Fatal("round trip to a killed peer succeeded")
	}
	t.Logf("round trip to a killed peer: %v", err)
}
