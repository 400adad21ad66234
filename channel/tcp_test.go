package channel_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goray/goray/channel"
	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/internal/testutil"
)

// Child roles for the TCP channel: real processes of this test binary.
func init() {
	reexec.Register("tcp-verify-reader", tcpVerifyReaderMain)
	reexec.Register("tcp-holding-reader", tcpHoldingReaderMain)
	reexec.Register("tcp-writer", tcpWriterMain)
}

const tcpMaxSize = 2 << 20

// tcpSizes is a seeded stream of message sizes from 0 B to 2 MiB, mostly
// small, with both ends included.
func tcpSizes(seed uint64, count int) []int {
	rng := rand.New(rand.NewPCG(seed, 11))
	sizes := make([]int, count)
	for i := range sizes {
		switch {
		case i == 0:
			sizes[i] = 0
		case i == 1:
			sizes[i] = tcpMaxSize
		case rng.IntN(5) == 0:
			sizes[i] = rng.IntN(tcpMaxSize + 1)
		default:
			sizes[i] = rng.IntN(8192)
		}
	}
	return sizes
}

// tcpFill fills b with message i's bytes for seed.
func tcpFill(b []byte, seed uint64, i int) {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, rng.Uint64())
		b = b[8:]
	}
	for j := range b {
		b[j] = byte(rng.Uint32())
	}
}

func tcpErrorText(i int) string { return fmt.Sprintf("step %d failed", i) }

func tcpCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// tcpVerifyStream reads the stream that tcpWriteStream writes and checks
// every message, holding up to hold messages and releasing them out of
// order, or copying them out with Recv.
func tcpVerifyStream(ctx context.Context, rd *channel.TCPReader, seed uint64, count, errorAt, hold int, useRecv bool) (int, error) {
	sizes := tcpSizes(seed, count)
	want := make([]byte, tcpMaxSize)
	var held []channel.Message
	var buf []byte
	total := 0
	for i := 0; i < count; i++ {
		exp := want[:sizes[i]]
		tcpFill(exp, seed, i)
		if useRecv {
			var err error
			buf, err = rd.Recv(ctx, buf)
			if i == errorAt {
				var re *channel.RemoteError
				if !errors.As(err, &re) || re.Text != tcpErrorText(i) {
					return total, fmt.Errorf("message %d: Recv error %v, want the in-band error %q", i, err, tcpErrorText(i))
				}
				continue
			}
			if err != nil {
				return total, fmt.Errorf("message %d: %w", i, err)
			}
			if !bytes.Equal(buf, exp) {
				return total, fmt.Errorf("message %d: %d bytes differ from the %d written", i, len(buf), len(exp))
			}
			total += len(buf)
			continue
		}
		m, err := rd.Read(ctx)
		if err != nil {
			return total, fmt.Errorf("message %d: %w", i, err)
		}
		if m.Seq != uint64(i) {
			return total, fmt.Errorf("message %d has seq %d", i, m.Seq)
		}
		if i == errorAt {
			if m.Kind != channel.KindError || m.Err() == nil || m.Err().Error() != tcpErrorText(i) {
				return total, fmt.Errorf("message %d: kind %v error %v, want the in-band error %q", i, m.Kind, m.Err(), tcpErrorText(i))
			}
		} else if m.Kind != channel.KindData || !bytes.Equal(m.Data, exp) {
			return total, fmt.Errorf("message %d: kind %v, %d bytes, want %d data bytes as written", i, m.Kind, len(m.Data), len(exp))
		}
		total += len(m.Data)
		held = append(held, m)
		if len(held) > hold {
			// Now and then the two oldest out of order: credit
			// follows in-order releases only, as the ring's cursor.
			if i%3 == 0 && len(held) >= 2 {
				held[1].Release()
				held[0].Release()
				held = held[2:]
			} else {
				held[0].Release()
				held = held[1:]
			}
		}
	}
	// Everything held is still intact after later reads.
	for _, m := range held {
		if m.Kind == channel.KindData {
			exp := want[:sizes[m.Seq]]
			tcpFill(exp, seed, int(m.Seq))
			if !bytes.Equal(m.Data, exp) {
				return total, fmt.Errorf("held message %d changed under the reader", m.Seq)
			}
		}
		m.Release()
	}
	for range 2 {
		if _, err := rd.Read(ctx); !errors.Is(err, channel.ErrChannelClosed) {
			return total, fmt.Errorf("after the stream: %v, want ErrChannelClosed", err)
		}
	}
	return total, nil
}

// tcpWriteStream writes count messages (an in-band error at errorAt),
// alternating Write and Reserve/Commit, then CloseWrite.
func tcpWriteStream(ctx context.Context, w *channel.TCPWriter, seed uint64, count, errorAt int) error {
	sizes := tcpSizes(seed, count)
	msg := make([]byte, tcpMaxSize)
	for i := 0; i < count; i++ {
		var err error
		switch {
		case i == errorAt:
			err = w.WriteError(ctx, errors.New(tcpErrorText(i)))
		case i%2 == 0:
			b := msg[:sizes[i]]
			tcpFill(b, seed, i)
			err = w.Write(ctx, b)
		default:
			var b []byte
			if b, err = w.Reserve(ctx, sizes[i]); err == nil {
				tcpFill(b, seed, i)
				err = w.Commit(channel.KindData)
			}
		}
		if err != nil {
			return fmt.Errorf("write %d: %w", i, err)
		}
	}
	return w.CloseWrite(ctx)
}

// tcpVerifyReaderMain: args addr index seed count errorAt hold recv.
func tcpVerifyReaderMain(args []string) int {
	index, _ := strconv.Atoi(args[1])
	seed, _ := strconv.ParseUint(args[2], 10, 64)
	count, _ := strconv.Atoi(args[3])
	errorAt, _ := strconv.Atoi(args[4])
	hold, _ := strconv.Atoi(args[5])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rd, err := channel.DialTCP(ctx, args[0], index, channel.Token([]byte("s3cret")))
	if err != nil {
		fmt.Println("FAIL dial:", err)
		return 1
	}
	defer rd.Close()
	total, err := tcpVerifyStream(ctx, rd, seed, count, errorAt, hold, args[6] == "recv")
	if err != nil {
		fmt.Println("FAIL", err)
		return 1
	}
	fmt.Println("ok", count, total)
	return 0
}

// tcpHoldingReaderMain: args addr index n. Reads n messages, releases
// none, says so, and waits to be killed.
func tcpHoldingReaderMain(args []string) int {
	index, _ := strconv.Atoi(args[1])
	n, _ := strconv.Atoi(args[2])
	ctx := context.Background()
	rd, err := channel.DialTCP(ctx, args[0], index)
	if err != nil {
		fmt.Println("FAIL dial:", err)
		return 1
	}
	for i := 0; i < n; i++ {
		if _, err := rd.Read(ctx); err != nil {
			fmt.Println("FAIL read:", err)
			return 1
		}
	}
	fmt.Println("holding", n)
	io.Copy(io.Discard, os.Stdin) // until killed
	return 0
}

// tcpWriterMain listens for one reader, says where, writes "hello" and
// waits to be killed.
func tcpWriterMain(args []string) int {
	w, err := channel.ListenTCP("127.0.0.1:0", 1)
	if err != nil {
		fmt.Println("FAIL listen:", err)
		return 1
	}
	fmt.Println("addr", w.Addr())
	if err := w.Write(context.Background(), []byte("hello")); err != nil {
		fmt.Println("FAIL write:", err)
		return 1
	}
	fmt.Println("wrote")
	io.Copy(io.Discard, os.Stdin) // until killed
	return 0
}

// tcpPair makes a writer and its readers in this process.
func tcpPair(t *testing.T, readers int, wopts []channel.Option, ropts ...channel.Option) (*channel.TCPWriter, []*channel.TCPReader) {
	t.Helper()
	w, err := channel.ListenTCP("127.0.0.1:0", readers, wopts...)
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	rds := make([]*channel.TCPReader, readers)
	for i := range rds {
		rds[i], err = channel.DialTCP(tcpCtx(t, 10*time.Second), w.Addr(), i, ropts...)
		require.NoError(t, err)
		t.Cleanup(func() { rds[i].Close() })
	}
	return w, rds
}

func TestTCPStreamsAcrossProcesses(t *testing.T) {
	const seed, count = 20260817, 64
	errorAt := count / 2
	t.Logf("seed %d", seed)
	w, err := channel.ListenTCP("127.0.0.1:0", 2, channel.Slots(4), channel.Token([]byte("s3cret")))
	require.NoError(t, err)
	defer w.Close()
	children := []*testutil.Child{
		testutil.StartChild(t, "tcp-verify-reader", w.Addr(), "0", fmt.Sprint(seed), fmt.Sprint(count), fmt.Sprint(errorAt), "3", "read"),
		testutil.StartChild(t, "tcp-verify-reader", w.Addr(), "1", fmt.Sprint(seed), fmt.Sprint(count), fmt.Sprint(errorAt), "0", "recv"),
	}
	ctx := tcpCtx(t, 2*time.Minute)
	werr := tcpWriteStream(ctx, w, seed, count, errorAt)
	// The readers' reports first: a reader's failure explains the writer's.
	for i, c := range children {
		line := c.ReadLine(2 * time.Minute)
		require.True(t, strings.HasPrefix(line, "ok "), "reader %d: %s", i, line)
		require.NoError(t, c.Wait(time.Minute), "reader %d", i)
	}
	require.NoError(t, werr)
	err = w.Write(ctx, []byte("late"))
	require.ErrorIs(t, err, channel.ErrChannelClosed, "a write after CloseWrite")
}

func TestTCPErrorAndCloseWriteInOrder(t *testing.T) {
	w, rds := tcpPair(t, 1, nil)
	rd := rds[0]
	ctx := tcpCtx(t, 10*time.Second)
	require.NoError(t, w.Write(ctx, []byte("a")))
	require.NoError(t, w.WriteError(ctx, errors.New("boom")))
	require.NoError(t, w.Write(ctx, []byte("b")))
	require.NoError(t, w.CloseWrite(ctx))
	require.ErrorIs(t, w.Write(ctx, []byte("c")), channel.ErrChannelClosed)
	require.ErrorIs(t, w.CloseWrite(ctx), channel.ErrChannelClosed)

	m, err := rd.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, channel.KindData, m.Kind)
	require.Equal(t, "a", string(m.Data))
	require.Nil(t, m.Err())
	m.Release()

	_, err = rd.Recv(ctx, nil)
	var re *channel.RemoteError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "boom", re.Text)

	m, err = rd.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, "b", string(m.Data))
	require.Equal(t, uint64(2), m.Seq)
	m.Release()
	m.Release() // idempotent

	for range 2 {
		_, err = rd.Read(ctx)
		require.ErrorIs(t, err, channel.ErrChannelClosed)
	}
}

func TestTCPBackPressure(t *testing.T) {
	w, rds := tcpPair(t, 1, []channel.Option{channel.Slots(2)})
	rd := rds[0]
	ctx := tcpCtx(t, 10*time.Second)
	require.NoError(t, w.Write(ctx, []byte("0")))
	require.NoError(t, w.Write(ctx, []byte("1")))
	m0, err := rd.Read(ctx)
	require.NoError(t, err)
	m1, err := rd.Read(ctx)
	require.NoError(t, err)

	// The reader holds Slots messages: the writer waits, up to its deadline.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = w.Write(short, []byte("2"))
	require.ErrorIs(t, err, channel.ErrTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var te *channel.TimeoutError
	require.ErrorAs(t, err, &te)
	require.Contains(t, err.Error(), "reader 0")

	// Holding more than Slots is the reader's error, as in the ring.
	_, err = rd.Read(ctx)
	require.ErrorIs(t, err, errs.ErrBadArgument)

	// After a release the writer goes on, and so does the stream.
	// Credit follows in-order releases, as the ring's cursor does.
	m0.Release()
	require.NoError(t, w.Write(ctx, []byte("2")))
	require.Equal(t, "1", string(m1.Data), "a held message is intact")
	m1.Release()
	m2, err := rd.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, "2", string(m2.Data))
	m2.Release()
}

// A reader that releases and then does not read again (it waits on
// something else, perhaps on this writer's next message elsewhere) must
// still hand the writer its credit: acks are batched, but never held.
func TestTCPReleaseWithoutReadReachesWriter(t *testing.T) {
	const k = 8
	w, rds := tcpPair(t, 1, []channel.Option{channel.Slots(k)})
	rd := rds[0]
	ctx := tcpCtx(t, 20*time.Second)
	var held []channel.Message
	for i := 0; i < k; i++ {
		require.NoError(t, w.Write(ctx, []byte{byte(i)}))
		m, err := rd.Read(ctx)
		require.NoError(t, err)
		held = append(held, m)
	}
	done := make(chan error, 1)
	go func() { done <- w.Write(ctx, []byte{k}) }()
	held[0].Release() // fewer than the batch, and no Read follows
	require.NoError(t, <-done)
	for _, m := range held[1:] {
		m.Release()
	}
}

func TestTCPWriterCloseWakesBlocked(t *testing.T) {
	w, rds := tcpPair(t, 2, []channel.Option{channel.Slots(1)})
	ctx := tcpCtx(t, 20*time.Second)
	require.NoError(t, w.Write(ctx, []byte("m0")))
	m, err := rds[0].Read(ctx) // reader 0 holds it: the writer will wait
	require.NoError(t, err)
	m1, err := rds[1].Read(ctx)
	require.NoError(t, err)
	m1.Release()

	werr := make(chan error, 1)
	rerr := make(chan error, 1)
	go func() { werr <- w.Write(ctx, []byte("m1")) }()
	go func() { _, err := rds[1].Read(ctx); rerr <- err }()
	require.NoError(t, w.Close())
	require.ErrorIs(t, <-werr, channel.ErrChannelClosed)
	require.ErrorIs(t, <-rerr, channel.ErrChannelClosed)
	m.Release()
	_, err = rds[0].Read(ctx)
	require.ErrorIs(t, err, channel.ErrChannelClosed)
	require.ErrorIs(t, w.Write(ctx, nil), channel.ErrChannelClosed)
	require.NoError(t, w.Close()) // idempotent
}

// A reader's Close takes that reader out: a write waiting for its credit
// proceeds, the other reader goes on, and once every reader has left, writes
// fail with ErrChannelClosed.
func TestTCPReaderCloseLeaves(t *testing.T) {
	w, rds := tcpPair(t, 2, []channel.Option{channel.Slots(1)})
	ctx := tcpCtx(t, 20*time.Second)
	require.NoError(t, w.Write(ctx, []byte("m0")))
	_, err := rds[0].Read(ctx) // held: the writer waits for reader 0
	require.NoError(t, err)
	m, err := rds[1].Read(ctx)
	require.NoError(t, err)
	m.Release()

	werr := make(chan error, 1)
	go func() { werr <- w.Write(ctx, []byte("m1")) }()
	require.NoError(t, rds[0].Close())
	require.NoError(t, <-werr, "the write no longer waits for the reader that left")
	m, err = rds[1].Read(ctx)
	require.NoError(t, err)
	require.Equal(t, "m1", string(m.Data))
	m.Release()
	_, err = rds[0].Read(ctx)
	require.ErrorIs(t, err, channel.ErrChannelClosed)
	require.NoError(t, rds[0].Close()) // idempotent

	rerr := make(chan error, 1)
	go func() { _, err := rds[1].Read(ctx); rerr <- err }()
	require.NoError(t, rds[1].Close())
	require.ErrorIs(t, <-rerr, channel.ErrChannelClosed, "Close wakes the reader's own blocked Read")
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		err := w.Write(ctx, []byte("m2"))
		if !errors.Is(err, channel.ErrChannelClosed) {
			return fmt.Errorf("write after every reader left: %v", err)
		}
		if !strings.Contains(err.Error(), "every reader has left") {
			return err
		}
		return nil
	})
}

func TestTCPContextCancel(t *testing.T) {
	w, rds := tcpPair(t, 1, []channel.Option{channel.Slots(1)})
	rd := rds[0]
	ctx := tcpCtx(t, 20*time.Second)

	// A reader waiting for a message.
	c1, cancel1 := context.WithCancel(ctx)
	rerr := make(chan error, 1)
	go func() { _, err := rd.Read(c1); rerr <- err }()
	cancel1()
	err := <-rerr
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, channel.ErrTimeout)

	// A reader with a deadline.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = rd.Read(short)
	require.ErrorIs(t, err, channel.ErrTimeout)

	// A writer waiting for credit.
	require.NoError(t, w.Write(ctx, []byte("0")))
	c2, cancel2 := context.WithCancel(ctx)
	werr := make(chan error, 1)
	go func() { werr <- w.Write(c2, []byte("1")) }()
	cancel2()
	err = <-werr
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, channel.ErrTimeout)

	// Neither end is harmed.
	m, err := rd.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, "0", string(m.Data))
	m.Release()
	require.NoError(t, w.Write(ctx, []byte("1")))
	m, err = rd.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, "1", string(m.Data))
	m.Release()
}

func TestTCPReaderKilledWhileWriterBlocked(t *testing.T) {
	w, err := channel.ListenTCP("127.0.0.1:0", 1, channel.Slots(2))
	require.NoError(t, err)
	defer w.Close()
	child := testutil.StartChild(t, "tcp-holding-reader", w.Addr(), "0", "2")
	ctx := tcpCtx(t, 30*time.Second)
	require.NoError(t, w.Write(ctx, []byte("0")))
	require.NoError(t, w.Write(ctx, []byte("1")))
	require.Equal(t, "holding 2", child.ReadLine(30*time.Second))

	werr := make(chan error, 1)
	go func() { werr <- w.Write(ctx, []byte("2")) }()
	child.Kill()
	err = <-werr
	require.ErrorIs(t, err, channel.ErrPeerDied, "never a timeout or a hang")
	require.Contains(t, err.Error(), "reader 0")
	require.ErrorIs(t, w.Write(ctx, nil), channel.ErrPeerDied)
}

func TestTCPWriterKilledWhileReaderWaits(t *testing.T) {
	child := testutil.StartChild(t, "tcp-writer")
	addr, ok := strings.CutPrefix(child.ReadLine(30*time.Second), "addr ")
	require.True(t, ok)
	ctx := tcpCtx(t, 30*time.Second)
	rd, err := channel.DialTCP(ctx, addr, 0)
	require.NoError(t, err)
	defer rd.Close()
	require.Equal(t, "wrote", child.ReadLine(30*time.Second))
	m, err := rd.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(m.Data))
	m.Release()

	rerr := make(chan error, 1)
	go func() { _, err := rd.Read(ctx); rerr <- err }()
	child.Kill()
	err = <-rerr
	require.ErrorIs(t, err, channel.ErrPeerDied, "never a timeout or a hang")
	require.Contains(t, err.Error(), addr)
	_, err = rd.Read(ctx)
	require.ErrorIs(t, err, channel.ErrPeerDied)
}

func TestTCPRefusals(t *testing.T) {
	w, err := channel.ListenTCP("127.0.0.1:0", 2, channel.Token([]byte("right")))
	require.NoError(t, err)
	defer w.Close()
	ctx := tcpCtx(t, 10*time.Second)
	for _, tc := range []struct {
		name  string
		index int
		opts  []channel.Option
		want  string
	}{
		{"wrong token", 0, []channel.Option{channel.Token([]byte("wrong"))}, "bad token: both ends must be given the same Token"},
		{"no token", 0, nil, "bad token"},
		{"index out of range", 2, []channel.Option{channel.Token([]byte("right"))}, "index out of range: this writer has readers 0 to 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := channel.DialTCP(ctx, w.Addr(), tc.index, tc.opts...)
			require.ErrorIs(t, err, errs.ErrBadArgument)
			require.ErrorContains(t, err, tc.want)
		})
	}
	r0, err := channel.DialTCP(ctx, w.Addr(), 0, channel.Token([]byte("right")))
	require.NoError(t, err)
	defer r0.Close()
	_, err = channel.DialTCP(ctx, w.Addr(), 0, channel.Token([]byte("right")))
	require.ErrorIs(t, err, errs.ErrBadArgument)
	require.ErrorContains(t, err, "already connected")

	// The refusals left the writer whole.
	r1, err := channel.DialTCP(ctx, w.Addr(), 1, channel.Token([]byte("right")))
	require.NoError(t, err)
	defer r1.Close()
	require.NoError(t, w.Write(ctx, []byte("x")))
	for _, rd := range []*channel.TCPReader{r0, r1} {
		b, err := rd.Recv(ctx, nil)
		require.NoError(t, err)
		require.Equal(t, "x", string(b))
	}
}

func TestTCPBadOptions(t *testing.T) {
	_, err := channel.ListenTCP("127.0.0.1:0", 0)
	require.ErrorIs(t, err, errs.ErrBadArgument)
	_, err = channel.ListenTCP("127.0.0.1:0", 1, channel.Slots(0))
	require.ErrorIs(t, err, errs.ErrBadArgument)
	_, err = channel.ListenTCP("127.0.0.1:0", 1, channel.Token(make([]byte, 5000)))
	require.ErrorIs(t, err, errs.ErrBadArgument)
	ctx := tcpCtx(t, 10*time.Second)
	_, err = channel.DialTCP(ctx, "127.0.0.1:1", -1)
	require.ErrorIs(t, err, errs.ErrBadArgument)
	_, err = channel.DialTCP(ctx, "127.0.0.1:1", 0, channel.MaxMessageSize(0))
	require.ErrorIs(t, err, errs.ErrBadArgument)
}

func TestTCPReserveCommitAndLimits(t *testing.T) {
	w, rds := tcpPair(t, 2, nil, channel.MaxMessageSize(100))
	ctx := tcpCtx(t, 10*time.Second)
	b, err := w.Reserve(ctx, 5)
	require.NoError(t, err)
	require.Len(t, b, 5)
	_, err = w.Reserve(ctx, 1)
	require.ErrorIs(t, err, errs.ErrBadArgument, "Reserve twice")
	copy(b, "hello")
	require.NoError(t, w.Commit(channel.KindData))
	require.ErrorIs(t, w.Commit(channel.KindData), errs.ErrBadArgument, "Commit without Reserve")

	// The writer refuses what a reader would refuse.
	err = w.Write(ctx, make([]byte, 101))
	require.ErrorIs(t, err, errs.ErrBadArgument)
	require.ErrorContains(t, err, "MaxMessageSize")
	require.NoError(t, w.Write(ctx, make([]byte, 100)))
	for _, rd := range rds {
		got, err := rd.Recv(ctx, nil)
		require.NoError(t, err)
		require.Equal(t, "hello", string(got))
		got, err = rd.Recv(ctx, got)
		require.NoError(t, err)
		require.Len(t, got, 100)
	}
}

// Raw frames, encoded here by hand from the documented layout, so the wire
// format is pinned by these tests.

func tcpRawFrame(version, kind byte, flags uint32, seq uint64, payload []byte) []byte {
	b := make([]byte, 24, 24+len(payload))
	b[0], b[1], b[2], b[3] = 'G', 'R', version, kind
	binary.LittleEndian.PutUint32(b[4:], flags)
	binary.LittleEndian.PutUint64(b[8:], seq)
	binary.LittleEndian.PutUint64(b[16:], uint64(len(payload)))
	return append(b, payload...)
}

type tcpRaw struct {
	kind    byte
	seq     uint64
	payload []byte
}

func tcpReadRaw(t *testing.T, r io.Reader) tcpRaw {
	t.Helper()
	var h [24]byte
	_, err := io.ReadFull(r, h[:])
	require.NoError(t, err)
	require.Equal(t, "GR", string(h[:2]))
	require.Equal(t, byte(1), h[2], "version")
	require.Zero(t, binary.LittleEndian.Uint32(h[4:]), "flags")
	n := binary.LittleEndian.Uint64(h[16:])
	require.Less(t, n, uint64(1<<20))
	p := make([]byte, n)
	_, err = io.ReadFull(r, p)
	require.NoError(t, err)
	return tcpRaw{kind: h[3], seq: binary.LittleEndian.Uint64(h[8:]), payload: p}
}

func tcpHello(index, readers uint32, maxMsg uint64, token string) []byte {
	p := binary.LittleEndian.AppendUint32(nil, index)
	p = binary.LittleEndian.AppendUint32(p, readers)
	p = binary.LittleEndian.AppendUint64(p, maxMsg)
	return tcpRawFrame(1, 16, 0, 0, append(p, token...))
}

func tcpRawDial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn, bufio.NewReader(conn)
}

func TestTCPWriterRefusesBadVersion(t *testing.T) {
	w, err := channel.ListenTCP("127.0.0.1:0", 1)
	require.NoError(t, err)
	defer w.Close()
	conn, br := tcpRawDial(t, w.Addr())
	hello := tcpHello(0, 1, 1<<20, "")
	hello[2] = 2 // a future build
	_, err = conn.Write(hello)
	require.NoError(t, err)
	f := tcpReadRaw(t, br)
	require.Equal(t, byte(20), f.kind, "fault")
	require.Equal(t, byte(1), f.payload[0], "bad frame")
	text := string(f.payload[1:])
	require.Contains(t, text, "protocol version 2, this build speaks version 1: run the same goray build on both nodes")
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "then the writer hangs up")

	// The writer still takes its real reader.
	ctx := tcpCtx(t, 10*time.Second)
	rd, err := channel.DialTCP(ctx, w.Addr(), 0)
	require.NoError(t, err)
	defer rd.Close()
	require.NoError(t, w.Write(ctx, []byte("ok")))
	b, err := rd.Recv(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, "ok", string(b))
}

func TestTCPWriterDropsReaderSendingBadFrame(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"wrong version", tcpRawFrame(2, 18, 0, 1, nil)},
		{"wrong magic", append([]byte("XX"), tcpRawFrame(1, 18, 0, 1, nil)[2:]...)},
		{"unknown kind", tcpRawFrame(1, 99, 0, 0, nil)},
		{"flags", tcpRawFrame(1, 18, 4, 1, nil)},
		{"ack with payload", tcpRawFrame(1, 18, 0, 1, []byte{1})},
		{"data from a reader", tcpRawFrame(1, 1, 0, 0, []byte("x"))},
		{"ack beyond the writes", tcpRawFrame(1, 18, 0, 7, nil)},
		{"oversize fault", tcpRawFrame(1, 20, 0, 0, make([]byte, 5000))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := channel.ListenTCP("127.0.0.1:0", 1, channel.Slots(1))
			require.NoError(t, err)
			defer w.Close()
			conn, br := tcpRawDial(t, w.Addr())
			_, err = conn.Write(tcpHello(0, 1, 1<<20, ""))
			require.NoError(t, err)
			acc := tcpReadRaw(t, br)
			require.Equal(t, byte(17), acc.kind, "accept")
			require.Equal(t, uint32(1), binary.LittleEndian.Uint32(acc.payload[0:]), "slots")
			require.Equal(t, uint32(1), binary.LittleEndian.Uint32(acc.payload[4:]), "readers")

			ctx := tcpCtx(t, 20*time.Second)
			require.NoError(t, w.Write(ctx, []byte("m0")))
			_, err = conn.Write(tc.frame)
			require.NoError(t, err)
			// The next write waits for the ack that never comes, and
			// wakes with the reason.
			err = w.Write(ctx, []byte("m1"))
			require.ErrorIs(t, err, channel.ErrBadFrame)
			require.Contains(t, err.Error(), "reader 0")

			d := tcpReadRaw(t, br)
			require.Equal(t, tcpRaw{kind: 1, seq: 0, payload: []byte("m0")}, d)
			f := tcpReadRaw(t, br)
			require.Equal(t, byte(20), f.kind, "fault")
			require.Equal(t, byte(1), f.payload[0])
		})
	}
}

// tcpFakeWriter accepts one DialTCP, checks its hello and accepts it with
// k slots; the test then speaks for the writer.
func tcpFakeWriter(t *testing.T, k uint32, opts ...channel.Option) (*channel.TCPReader, net.Conn, *bufio.Reader) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	type res struct {
		rd  *channel.TCPReader
		err error
	}
	ch := make(chan res, 1)
	go func() {
		rd, err := channel.DialTCP(tcpCtx(t, 10*time.Second), ln.Addr().String(), 0, opts...)
		ch <- res{rd, err}
	}()
	conn, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	hello := tcpReadRaw(t, br)
	require.Equal(t, byte(16), hello.kind)
	acc := binary.LittleEndian.AppendUint32(nil, k)
	acc = binary.LittleEndian.AppendUint32(acc, 1)
	_, err = conn.Write(tcpRawFrame(1, 17, 0, 0, acc))
	require.NoError(t, err)
	r := <-ch
	require.NoError(t, r.err)
	t.Cleanup(func() { r.rd.Close() })
	return r.rd, conn, br
}

func TestTCPHelloWireFormat(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		_, err := channel.DialTCP(tcpCtx(t, 10*time.Second), ln.Addr().String(), 3,
			channel.Token([]byte("tok")), channel.MaxMessageSize(777))
		done <- err
	}()
	conn, err := ln.Accept()
	require.NoError(t, err)
	defer conn.Close()
	var b [24 + 16 + 3]byte
	_, err = io.ReadFull(conn, b[:])
	require.NoError(t, err)
	want := tcpHello(3, 0, 777, "tok")
	require.Equal(t, want, b[:])
	conn.Close()
	require.Error(t, <-done)
}

func TestTCPReaderRefusesBadFrames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"oversize", tcpRawFrame(1, 1, 0, 0, nil), "MaxMessageSize"},
		{"gap in seq", tcpRawFrame(1, 1, 0, 5, []byte("x")), "message 5 from the writer, want 0"},
		{"wrong version", tcpRawFrame(3, 1, 0, 0, []byte("x")), "protocol version 3, this build speaks version 1"},
		{"wrong magic", append([]byte("HT"), tcpRawFrame(1, 1, 0, 0, nil)[2:]...), "magic"},
		{"unknown kind", tcpRawFrame(1, 200, 0, 0, nil), "unknown frame kind 200"},
		{"flags", tcpRawFrame(1, 1, 1, 0, nil), "flags"},
		{"ack from a writer", tcpRawFrame(1, 18, 0, 0, nil), "ack frame from a writer"},
		{"close with payload", tcpRawFrame(1, 3, 0, 0, []byte("x")), "close frame of 1 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd, conn, br := tcpFakeWriter(t, 4, channel.MaxMessageSize(1024))
			frame := tc.frame
			if tc.name == "oversize" {
				// Claims 1 TiB and sends nothing more: refused before
				// anything is allocated for it.
				binary.LittleEndian.PutUint64(frame[16:], 1<<40)
			}
			_, err := conn.Write(frame)
			require.NoError(t, err)
			_, err = rd.Read(tcpCtx(t, 10*time.Second))
			require.ErrorIs(t, err, channel.ErrBadFrame)
			require.ErrorContains(t, err, tc.want)
			f := tcpReadRaw(t, br)
			require.Equal(t, byte(20), f.kind, "the reader says why")
			require.Equal(t, byte(1), f.payload[0])
			_, err = rd.Read(tcpCtx(t, 10*time.Second))
			require.ErrorIs(t, err, channel.ErrBadFrame, "and stays failed")
		})
	}
}

func TestTCPReadResumesAfterTimeout(t *testing.T) {
	rd, conn, br := tcpFakeWriter(t, 2)
	frame := tcpRawFrame(1, 1, 0, 0, bytes.Repeat([]byte("abcdefgh"), 100))
	for _, cut := range []int{10, 24, 300} { // in the header, after it, in the payload
		_, err := conn.Write(frame[:cut])
		require.NoError(t, err)
		short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err = rd.Read(short)
		cancel()
		require.ErrorIs(t, err, channel.ErrTimeout)
		_, err = conn.Write(frame[cut:])
		require.NoError(t, err)
		m, err := rd.Read(tcpCtx(t, 10*time.Second))
		require.NoError(t, err)
		require.Equal(t, frame[24:], m.Data)
		m.Release()
		// The next frame continues the sequence.
		binary.LittleEndian.PutUint64(frame[8:], m.Seq+1)
	}
	// Releases come back as acks: cumulative counts.
	var acked uint64
	for acked < 3 {
		f := tcpReadRaw(t, br)
		require.Equal(t, byte(18), f.kind)
		require.Greater(t, f.seq, acked)
		acked = f.seq
	}
	require.Equal(t, uint64(3), acked)
}

// A write is committed once it is in the writer's buffer, as in the ring:
// a reader that does not read yet (its socket full) does not block the
// writer within its credit, and gets every byte when it reads.
func TestTCPWriteCommitsWhileTheSocketIsFull(t *testing.T) {
	const big = 16 << 20 // more than loopback's socket buffers hold
	w, rds := tcpPair(t, 2, []channel.Option{channel.Slots(3)})
	ctx := tcpCtx(t, time.Minute)
	msg := make([]byte, big)
	for i := 0; i < 3; i++ {
		tcpFill(msg, 5, i)
		require.NoError(t, w.Write(ctx, msg), "write %d", i)
	}
	require.Equal(t, uint64(3), w.Seq())
	for _, rd := range rds {
		for i := 0; i < 3; i++ {
			m, err := rd.Read(ctx)
			require.NoError(t, err)
			tcpFill(msg, 5, i)
			require.True(t, bytes.Equal(msg, m.Data), "reader %d message %d", rd.Index(), i)
			m.Release()
		}
	}
	require.NoError(t, w.Write(ctx, []byte("after")))
	for _, rd := range rds {
		b, err := rd.Recv(ctx, nil)
		require.NoError(t, err)
		require.Equal(t, "after", string(b))
	}
}

// Close does not wait on a reader that does not read: it gives up on the
// frame it is in the middle of after a grace period, and returns with every
// goroutine gone. That reader then sees the stream cut short.
func TestTCPWriterCloseWithAFullSocket(t *testing.T) {
	w, rds := tcpPair(t, 1, []channel.Option{channel.Slots(2)})
	ctx := tcpCtx(t, time.Minute)
	msg := make([]byte, 16<<20)
	require.NoError(t, w.Write(ctx, msg))
	require.NoError(t, w.Write(ctx, msg))
	require.NoError(t, w.Close())
	var err error
	for err == nil {
		var m channel.Message
		m, err = rds[0].Read(ctx)
		m.Release()
	}
	require.True(t, errors.Is(err, channel.ErrPeerDied) || errors.Is(err, channel.ErrChannelClosed), "%v", err)
}

// A reader that closes while the writer streams closes the channel: the
// writer learns ErrChannelClosed (the reader said goodbye), never
// ErrPeerDied, however its writes and the goodbye interleave.
func TestTCPReaderCloseWhileStreaming(t *testing.T) {
	for i := 0; i < 20; i++ {
		w, rds := tcpPair(t, 1, []channel.Option{channel.Slots(64)})
		ctx := tcpCtx(t, 20*time.Second)
		werr := make(chan error, 1)
		go func() {
			msg := make([]byte, 32<<10)
			for {
				if err := w.Write(ctx, msg); err != nil {
					werr <- err
					return
				}
			}
		}()
		for j := 0; j < 10; j++ {
			m, err := rds[0].Read(ctx)
			require.NoError(t, err)
			m.Release()
		}
		require.NoError(t, rds[0].Close())
		err := <-werr
		require.ErrorIs(t, err, channel.ErrChannelClosed, "round %d", i)
		require.NotErrorIs(t, err, channel.ErrPeerDied, "round %d", i)
		w.Close()
	}
}

// DialTCP waits for the writer's answer only as long as its context lets
// it (here a listener that never answers: the kernel accepts for it).
func TestTCPDialHonoursContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = channel.DialTCP(short, ln.Addr().String(), 0)
	require.ErrorIs(t, err, channel.ErrTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	c, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := channel.DialTCP(c, ln.Addr().String(), 0)
		done <- err
	}()
	cancel2()
	err = <-done
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, channel.ErrTimeout)
}
