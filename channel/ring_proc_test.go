package channel_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/internal/testutil"
)

// Child roles: real processes of this test binary.
func init() {
	reexec.Register("ring-verify-reader", verifyReaderMain)
	reexec.Register("ring-idle-reader", idleReaderMain)
	reexec.Register("ring-stuck-writer", stuckWriterMain)
	reexec.Register("ring-orphan-owner", orphanOwnerMain)
}

// openRing opens a ring by name, or by inherited descriptor for "fd:N".
func openRing(arg string) (*channel.Ring, error) {
	if fd, ok := strings.CutPrefix(arg, "fd:"); ok {
		n, _ := strconv.Atoi(fd)
		return channel.OpenShmFD(n)
	}
	return channel.OpenShm(arg)
}

func streamSizes(seed uint64, count, maxSize int) []int {
	rng := rand.New(rand.NewPCG(seed, 7))
	sizes := make([]int, count)
	for i := range sizes {
		switch rng.IntN(4) {
		case 0:
			sizes[i] = rng.IntN(64)
		case 1:
			sizes[i] = rng.IntN(maxSize + 1)
		default:
			sizes[i] = rng.IntN(4096)
		}
	}
	return sizes
}

// verifyReaderMain: args ring index seed count maxSize errorAt hold.
func verifyReaderMain(args []string) int {
	r, err := openRing(args[0])
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	defer r.Close()
	idx, _ := strconv.Atoi(args[1])
	seed, _ := strconv.ParseUint(args[2], 10, 64)
	count, _ := strconv.Atoi(args[3])
	maxSize, _ := strconv.Atoi(args[4])
	errorAt, _ := strconv.Atoi(args[5])
	hold, _ := strconv.Atoi(args[6])
	rd, err := r.Reader(idx)
	if err != nil {
		fmt.Println("reader:", err)
		return 1
	}
	defer rd.Close()
	fmt.Println("ready")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := verifyStream(ctx, rd, seed, streamSizes(seed, count, maxSize), errorAt, hold); err != nil {
		fmt.Println("verify:", err)
		return 1
	}
	fmt.Println("ok")
	return 0
}

// idleReaderMain attaches as a reader and never reads; it reports what a
// blocked Read returns if asked to read ("read" on stdin).
func idleReaderMain(args []string) int {
	r, err := openRing(args[0])
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	defer r.Close()
	idx, _ := strconv.Atoi(args[1])
	rd, err := r.Reader(idx)
	if err != nil {
		fmt.Println("reader:", err)
		return 1
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "read" {
			_, err := rd.Read(context.Background())
			fmt.Println("read:", err)
		}
	}
	return 0
}

// stuckWriterMain writes one message and then stops, holding the writer.
func stuckWriterMain(args []string) int {
	r, err := openRing(args[0])
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	w, err := r.Writer()
	if err != nil {
		fmt.Println("writer:", err)
		return 1
	}
	if err := w.Write(context.Background(), []byte("first")); err != nil {
		fmt.Println("write:", err)
		return 1
	}
	fmt.Println("ready")
	bufio.NewScanner(os.Stdin).Scan()
	return 0
}

// orphanOwnerMain creates a ring, fills an overflow buffer, prints the ring's
// name and waits to be killed.
func orphanOwnerMain(args []string) int {
	r, err := channel.NewShm("orphan", 1, channel.SlotSize(64))
	if err != nil {
		fmt.Println("create:", err)
		return 1
	}
	w, _ := r.Writer()
	w.Write(context.Background(), make([]byte, 10000))
	fmt.Println(r.Name())
	bufio.NewScanner(os.Stdin).Scan()
	return 0
}

// TestShmStreamsAcrossProcesses: a writer in this process, three reader
// processes holding messages and releasing them out of order; random sizes
// up to 25 slots; an in-band error and the in-band close. Every reader sees
// every message in order, intact.
func TestShmStreamsAcrossProcesses(t *testing.T) {
	const readers, count, maxSize, errorAt = 3, 400, 100 << 10, 123
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r, err := channel.NewShm("stream", readers, channel.Slots(4), channel.SlotSize(4096))
	require.NoError(t, err)
	defer r.Close()
	w, err := r.Writer()
	require.NoError(t, err)
	defer w.Close()
	var kids []*testutil.Child
	for i := range readers {
		c := testutil.StartChild(t, "ring-verify-reader", r.Name(), strconv.Itoa(i), strconv.FormatUint(seed, 10),
			strconv.Itoa(count), strconv.Itoa(maxSize), strconv.Itoa(errorAt), strconv.Itoa(1+i))
		require.Equal(t, "ready", c.ReadLine(30*time.Second))
		kids = append(kids, c)
	}
	ctx := ctxTimeout(t, time.Minute)
	for i, n := range streamSizes(seed, count, maxSize) {
		if i == errorAt {
			require.NoError(t, w.WriteError(ctx, fmt.Errorf("message %d failed", i)))
			continue
		}
		require.NoError(t, w.Write(ctx, payload(seed, i, n)), "message %d", i)
	}
	require.NoError(t, w.CloseWrite(ctx))
	for i, c := range kids {
		assert.Equal(t, "ok", c.ReadLine(time.Minute), "reader %d", i)
		assert.NoError(t, c.Wait(30*time.Second))
	}
}

// TestShmOpenByDescriptor: the reader process gets the ring's descriptor
// (here at exec; shm.SendFDs does the same over a Unix socket) instead of
// its name.
func TestShmOpenByDescriptor(t *testing.T) {
	r, err := channel.NewShm("byfd", 1, channel.SlotSize(256))
	require.NoError(t, err)
	defer r.Close()
	w, _ := r.Writer()
	defer w.Close()
	f := os.NewFile(uintptr(r.FD()), "ring")
	seed := uint64(42)
	c := testutil.StartChildFiles(t, []*os.File{f}, "ring-verify-reader", "fd:3", "0", "42", "50", "5000", "-1", "2")
	require.Equal(t, "ready", c.ReadLine(30*time.Second))
	ctx := ctxTimeout(t, time.Minute)
	for i, n := range streamSizes(seed, 50, 5000) {
		require.NoError(t, w.Write(ctx, payload(seed, i, n)))
	}
	require.NoError(t, w.CloseWrite(ctx))
	assert.Equal(t, "ok", c.ReadLine(time.Minute))
	assert.NoError(t, c.Wait(30*time.Second))
}

// TestShmReaderKilled: kill -9 of a reader process while the writer waits
// for it gives the writer ErrPeerDied, not a hang.
func TestShmReaderKilled(t *testing.T) {
	r, err := channel.NewShm("rkill", 1, channel.Slots(2))
	require.NoError(t, err)
	defer r.Close()
	w, _ := r.Writer()
	defer w.Close()
	c := testutil.StartChild(t, "ring-idle-reader", r.Name(), "0")
	require.Equal(t, "ready", c.ReadLine(30*time.Second))
	ctx := ctxTimeout(t, 30*time.Second)
	require.NoError(t, w.Write(ctx, []byte("1")))
	require.NoError(t, w.Write(ctx, []byte("2")))
	done := make(chan error, 1)
	go func() { done <- w.Write(ctx, []byte("3: waits for the reader")) }()
	c.Kill()
	err = <-done
	require.ErrorIs(t, err, channel.ErrPeerDied)
	assert.Contains(t, err.Error(), fmt.Sprintf("reader 0 (pid %d) died", c.Cmd.Process.Pid))
}

// TestShmWriterKilled: kill -9 of the writer process while a reader waits
// gives the reader ErrPeerDied.
func TestShmWriterKilled(t *testing.T) {
	r, err := channel.NewShm("wkill", 1)
	require.NoError(t, err)
	defer r.Close()
	rd, _ := r.Reader(0)
	defer rd.Close()
	c := testutil.StartChild(t, "ring-stuck-writer", r.Name())
	require.Equal(t, "ready", c.ReadLine(30*time.Second))
	ctx := ctxTimeout(t, 30*time.Second)
	got, err := rd.Recv(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, "first", string(got))
	done := make(chan error, 1)
	go func() { _, err := rd.Read(ctx); done <- err }()
	c.Kill()
	err = <-done
	require.ErrorIs(t, err, channel.ErrPeerDied)
	assert.Contains(t, err.Error(), "writer (pid")
}

// TestShmOwnerCloseWakesOtherProcesses: the owner's Close wakes a reader
// blocked in another process with ErrChannelClosed.
func TestShmOwnerCloseWakesOtherProcesses(t *testing.T) {
	r, err := channel.NewShm("teardown", 1)
	require.NoError(t, err)
	c := testutil.StartChild(t, "ring-idle-reader", r.Name(), "0")
	require.Equal(t, "ready", c.ReadLine(30*time.Second))
	c.WriteLine("read")
	require.NoError(t, r.Close())
	assert.Equal(t, "read: "+channel.ErrChannelClosed.Error(), c.ReadLine(30*time.Second))
	names, _ := shm.List(shm.Self())
	assert.Empty(t, names, "the owner's Close unlinks the ring")
}

// TestShmKilledOwnerLeavesNothing: a ring owner killed with kill -9 leaves
// its segments (ring and overflow) behind; the next CleanupStale removes
// them, and leaves a live owner's alone.
func TestShmKilledOwnerLeavesNothing(t *testing.T) {
	live, err := channel.NewShm("live", 1)
	require.NoError(t, err)
	defer live.Close()
	c := testutil.StartChild(t, "ring-orphan-owner")
	name := c.ReadLine(30 * time.Second)
	require.True(t, strings.HasPrefix(name, shm.Prefix), name)
	c.Kill()
	c.Wait(30 * time.Second)
	owner, ok := shm.Owner(name)
	require.True(t, ok)
	left, _ := shm.List(owner)
	assert.ElementsMatch(t, []string{name, name + ".x1"}, left, "ring and overflow left behind")
	removed, err := shm.CleanupStale()
	require.NoError(t, err)
	assert.Subset(t, removed, []string{name, name + ".x1"})
	assert.NotContains(t, removed, live.Name())
	left, _ = shm.List(owner)
	assert.Empty(t, left)
}

func TestShmOpenErrors(t *testing.T) {
	_, err := channel.OpenShm(shm.Name("missing"))
	assert.ErrorIs(t, err, shm.ErrNotFound)
	seg, err := shm.Create(shm.Name("notaring"), 1<<16)
	require.NoError(t, err)
	defer seg.Destroy()
	_, err = channel.OpenShm(seg.Name())
	assert.ErrorContains(t, err, "not a goray ring")
	_, err = channel.OpenShm("../etc/passwd")
	assert.ErrorContains(t, err, "bad segment name")
}
