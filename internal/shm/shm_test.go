package shm_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func init() {
	reexec.Register("shm-futex-waiter", futexWaiterMain)
	reexec.Register("shm-fd-receiver", fdReceiverMain)
	reexec.Register("shm-orphan", orphanMain)
}

// futexWaiterMain maps the segment, says ready, and sleeps on word 0 until
// it reads 1, then prints how it woke.
func futexWaiterMain(args []string) int {
	seg, err := shm.Open(args[0])
	if err != nil {
		fmt.Println(err)
		return 1
	}
	mem, err := seg.Map(0, seg.Size(), true)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	word := (*uint32)(unsafe.Pointer(&mem[0]))
	fmt.Println("ready")
	for atomic.LoadUint32(word) == 0 {
		if err := shm.FutexWait(word, 0, 10*time.Second); err != nil {
			fmt.Println(err)
			return 1
		}
	}
	fmt.Println("woken", atomic.LoadUint32(word))
	return 0
}

// fdReceiverMain receives a segment's descriptor over the Unix socket at
// descriptor 3 and prints the segment's first line.
func fdReceiverMain([]string) int {
	conn, err := net.FileConn(os.NewFile(3, "sock"))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	msg, fds, err := shm.RecvFDs(conn.(*net.UnixConn), 1)
	if err != nil || len(fds) != 1 {
		fmt.Println("recv:", err, len(fds))
		return 1
	}
	seg, err := shm.OpenFD(fds[0])
	unix.Close(fds[0])
	if err != nil {
		fmt.Println(err)
		return 1
	}
	mem, err := seg.Map(0, seg.Size(), false)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	line, _, _ := bufio.NewReader(bytesReader(mem)).ReadLine()
	fmt.Printf("%s: %s\n", msg, line)
	return 0
}

type bytesReader []byte

func (b bytesReader) Read(p []byte) (int, error) { return copy(p, b), nil }

func orphanMain([]string) int {
	seg, err := shm.Create(shm.Name("orphan"), 4096)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println(seg.Name())
	bufio.NewScanner(os.Stdin).Scan()
	return 0
}

func TestSegmentLifecycle(t *testing.T) {
	name := shm.Name("life")
	seg, err := shm.Create(name, 10000)
	require.NoError(t, err)
	require.NoError(t, seg.Allocate())
	_, err = shm.Create(name, 10)
	assert.ErrorContains(t, err, "file exists")

	w, err := seg.Map(0, seg.Size(), true)
	require.NoError(t, err)
	copy(w, "shared")
	other, err := shm.Open(name)
	require.NoError(t, err)
	assert.Equal(t, int64(10000), other.Size())
	r, err := other.Map(0, other.Size(), false)
	require.NoError(t, err)
	assert.Equal(t, "shared", string(r[:6]))
	w[0] = 'S'
	assert.Equal(t, byte('S'), r[0], "both mappings see one memory")

	_, err = seg.Map(100, 10, true)
	assert.ErrorContains(t, err, "unaligned")
	_, err = seg.Map(0, 20000, true)
	assert.ErrorContains(t, err, "outside segment")

	faulted := func() (f bool) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() { f = recover() != nil }()
		r[1] = 'x'
		return false
	}()
	assert.True(t, faulted, "a read-only mapping faults on write")

	require.NoError(t, shm.Unmap(w))
	require.NoError(t, shm.Unmap(r))
	require.NoError(t, other.Close())
	require.NoError(t, seg.Destroy())
	_, err = shm.Open(name)
	assert.ErrorIs(t, err, shm.ErrNotFound)
	assert.NoError(t, shm.Unlink(name), "unlinking a missing segment is not an error")
}

func TestBadNames(t *testing.T) {
	for _, n := range []string{"", "a/b", "..", ".hidden", string(make([]byte, 300))} {
		_, err := shm.Create(n, 10)
		assert.ErrorContains(t, err, "bad segment name", "%q", n)
	}
	_, err := shm.Create(shm.Name("zero"), 0)
	assert.ErrorContains(t, err, "must be positive")
}

func TestNamesAndOwners(t *testing.T) {
	n := shm.Name("ch.x.y")
	p, ok := shm.Owner(n)
	require.True(t, ok)
	assert.Equal(t, shm.Self(), p)
	assert.True(t, p.Alive())
	for _, bad := range []string{"other", "goray.", "goray.1.2", "goray.x.2.l", "goray.-1.2.l"} {
		_, ok := shm.Owner(bad)
		assert.False(t, ok, bad)
	}
	assert.False(t, shm.Process{PID: os.Getpid(), Start: shm.Self().Start + 1}.Alive(), "same pid, other start: a reused pid")
	q, err := shm.ProcessOf(os.Getpid())
	require.NoError(t, err)
	assert.Equal(t, shm.Self(), q)
}

// TestFutexAcrossProcesses: a waiter in another process sleeps on a word in
// shared memory and wakes when this process changes it and calls wake.
func TestFutexAcrossProcesses(t *testing.T) {
	seg, err := shm.Create(shm.Name("futex"), 4096)
	require.NoError(t, err)
	defer seg.Destroy()
	mem, err := seg.Map(0, 4096, true)
	require.NoError(t, err)
	defer shm.Unmap(mem)
	word := (*uint32)(unsafe.Pointer(&mem[0]))
	c := testutil.StartChild(t, "shm-futex-waiter", seg.Name())
	require.Equal(t, "ready", c.ReadLine(30*time.Second))
	// Store, then wake: a waiter not yet asleep sees the store, because
	// FutexWait sleeps only while the word still holds the value it passes.
	atomic.StoreUint32(word, 1)
	_, err = shm.FutexWake(word, 1)
	require.NoError(t, err)
	assert.Equal(t, "woken 1", c.ReadLine(30*time.Second))
	require.NoError(t, c.Wait(30*time.Second))
}

func TestFutexTimeout(t *testing.T) {
	var word uint32
	start := time.Now()
	require.NoError(t, shm.FutexWait(&word, 0, 5*time.Millisecond))
	assert.GreaterOrEqual(t, time.Since(start), 4*time.Millisecond, "slept until the timeout")
	require.NoError(t, shm.FutexWait(&word, 1, time.Hour), "returns at once when the word differs")
	require.NoError(t, shm.FutexWait(&word, 0, 0), "a zero timeout does not sleep")
	n, err := shm.FutexWake(&word, 1)
	require.NoError(t, err)
	assert.Equal(t, 0, n)
}

// TestPassDescriptor: an anonymous segment (memfd, no name anywhere) reaches
// another process as a descriptor over a Unix socket.
func TestPassDescriptor(t *testing.T) {
	seg, err := shm.CreateAnon("passed", 4096)
	require.NoError(t, err)
	defer seg.Destroy()
	assert.Equal(t, "", seg.Name())
	mem, err := seg.Map(0, 4096, true)
	require.NoError(t, err)
	copy(mem, "written before passing\n")
	shm.Unmap(mem)

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	defer mine.Close()
	c := testutil.StartChildFiles(t, []*os.File{theirs}, "shm-fd-receiver")
	theirs.Close()
	conn, err := net.FileConn(mine)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, shm.SendFDs(conn.(*net.UnixConn), []byte("segment"), seg.FD()))
	assert.Equal(t, "segment: written before passing", c.ReadLine(30*time.Second))
	require.NoError(t, c.Wait(30*time.Second))
}

// TestCleanupStale: kill -9 leaves the segment; CleanupStale removes it and
// keeps the segments of live processes.
func TestCleanupStale(t *testing.T) {
	mine, err := shm.Create(shm.Name("keep"), 4096)
	require.NoError(t, err)
	defer mine.Destroy()
	c := testutil.StartChild(t, "shm-orphan")
	name := c.ReadLine(30 * time.Second)
	owner, ok := shm.Owner(name)
	require.True(t, ok)
	assert.Equal(t, c.Cmd.Process.Pid, owner.PID)
	removed, err := shm.CleanupStale()
	require.NoError(t, err)
	assert.NotContains(t, removed, name, "the owner is alive")
	c.Kill()
	c.Wait(30 * time.Second)
	removed, err = shm.CleanupStale()
	require.NoError(t, err)
	assert.Contains(t, removed, name)
	assert.NotContains(t, removed, mine.Name())
	_, err = shm.Open(name)
	assert.ErrorIs(t, err, shm.ErrNotFound)
}

func TestPause(t *testing.T) {
	shm.Pause(0)
	shm.Pause(1000) // returns: it is a hint, not a sleep
}

func TestRemoveOwned(t *testing.T) {
	for i := range 3 {
		_, err := shm.Create(shm.Name("grp."+strconv.Itoa(i)), 4096)
		require.NoError(t, err)
	}
	require.NoError(t, shm.RemoveOwned("grp."))
	left, _ := shm.List(shm.Self())
	assert.Empty(t, left)
}
