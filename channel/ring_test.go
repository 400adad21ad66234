package channel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/goray/goray/channel"
)

// A ring kind under test: both kinds must behave the same.
type ringKind struct {
	name string
	make func(t testing.TB, readers int, opts ...channel.Option) *channel.Ring
}

var ringKinds = []ringKind{
	{"shm", func(t testing.TB, readers int, opts ...channel.Option) *channel.Ring {
		r, err := channel.NewShm("", readers, opts...)
		require.NoError(t, err)
		t.Cleanup(func() { r.Close() })
		return r
	}},
	{"inproc", func(t testing.TB, readers int, opts ...channel.Option) *channel.Ring {
		r, err := channel.NewInProc(readers, opts...)
		require.NoError(t, err)
		t.Cleanup(func() { r.Close() })
		return r
	}},
}

func forEachKind(t *testing.T, f func(t *testing.T, k ringKind)) {
	for _, k := range ringKinds {
		t.Run(k.name, func(t *testing.T) { f(t, k) })
	}
}

// payload returns message i of a test stream: n bytes that differ for every
// (seed, i), so a reader can check content without being sent it.
func payload(seed uint64, i, n int) []byte {
	b := make([]byte, n)
	fill(b, seed, i)
	return b
}

func fill(b []byte, seed uint64, i int) {
	x := seed*0x9E3779B97F4A7C15 + uint64(i)*0xBF58476D1CE4E5B9 + 1
	for j := range b {
		if j%8 == 0 {
			x ^= x >> 31
			x *= 0x94D049BB133111EB
		}
		b[j] = byte(x >> (j % 8 * 8))
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRingKinds(t *testing.T) {
	forEachKind(t, func(t *testing.T, k ringKind) {
		ctx := ctxTimeout(t, 10*time.Second)
		r := k.make(t, 2, channel.Slots(4), channel.SlotSize(128))
		w, err := r.Writer()
		require.NoError(t, err)
		rd0, err := r.Reader(0)
		require.NoError(t, err)
		rd1, err := r.Reader(1)
		require.NoError(t, err)

		require.NoError(t, w.Write(ctx, []byte("hello")))
		require.NoError(t, w.WriteError(ctx, errors.New("step 3 failed: division by zero")))
		big := payload(1, 2, 1000) // larger than a slot
		require.NoError(t, w.Write(ctx, big))
		require.NoError(t, w.CloseWrite(ctx))
		require.ErrorIs(t, w.Write(ctx, []byte("late")), channel.ErrChannelClosed)

		for _, rd := range []*channel.RingReader{rd0, rd1} {
			m, err := rd.Read(ctx)
			require.NoError(t, err)
			assert.Equal(t, channel.KindData, m.Kind)
			assert.Equal(t, "hello", string(m.Data))
			assert.NoError(t, m.Err())
			assert.Equal(t, uint64(0), m.Seq)
			m.Release()

			m, err = rd.Read(ctx)
			require.NoError(t, err)
			assert.Equal(t, channel.KindError, m.Kind)
			var re *channel.RemoteError
			require.ErrorAs(t, m.Err(), &re)
			assert.Equal(t, "step 3 failed: division by zero", re.Text)
			m.Release()

			got, err := rd.Recv(ctx, nil)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(big, got), "large message differs")

			_, err = rd.Read(ctx)
			require.ErrorIs(t, err, channel.ErrChannelClosed)
			_, err = rd.Read(ctx) // stays closed
			require.ErrorIs(t, err, channel.ErrChannelClosed)
		}
		require.NoError(t, w.Close())
		require.NoError(t, w.Close(), "Close is idempotent")
		require.NoError(t, rd0.Close())
		require.NoError(t, rd1.Close())
	})
}

func TestRingOpenEachEndOnce(t *testing.T) {
	forEachKind(t, func(t *testing.T, k ringKind) {
		r := k.make(t, 2)
		w, err := r.Writer()
		require.NoError(t, err)
		defer w.Close()
		_, err = r.Writer()
		assert.ErrorContains(t, err, "writer already attached")
		rd, err := r.Reader(1)
		require.NoError(t, err)
		defer rd.Close()
		_, err = r.Reader(1)
		assert.ErrorContains(t, err, "reader 1 already attached")
		_, err = r.Reader(2)
		assert.ErrorContains(t, err, "readers 0 to 1")
	})
}

func TestRingBadOptions(t *testing.T) {
	for _, tc := range []struct {
		readers int
		opts    []channel.Option
		want    string
	}{
		{0, nil, "0 readers"},
		{1, []channel.Option{channel.Slots(0)}, "Slots(0)"},
		{1, []channel.Option{channel.SlotSize(-1)}, "SlotSize(-1)"},
		{1, []channel.Option{channel.Spin(-time.Second)}, "Spin(-1s)"},
	} {
		_, err := channel.NewInProc(tc.readers, tc.opts...)
		assert.ErrorContains(t, err, tc.want)
		_, err = channel.NewShm("", tc.readers, tc.opts...)
		assert.ErrorContains(t, err, tc.want)
	}
}

func TestRingBackPressure(t *testing.T) {
	forEachKind(t, func(t *testing.T, k ringKind) {
		ctx := ctxTimeout(t, 10*time.Second)
		r := k.make(t, 2, channel.Slots(2))
		w, _ := r.Writer()
		fast, _ := r.Reader(0)
		slow, _ := r.Reader(1)
		for i := range 2 {
			require.NoError(t, w.Write(ctx, payload(0, i, 10)))
			m, err := fast.Read(ctx)
			require.NoError(t, err)
			m.Release()
		}
		// The slow reader holds two unread messages: the ring is full.
		short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		err := w.Write(short, []byte("third"))
		require.ErrorIs(t, err, channel.ErrTimeout)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "slowest reader")

		// Release one: the writer proceeds.
		done := make(chan error, 1)
		go func() { done <- w.Write(ctx, []byte("third")) }()
		m, err := slow.Read(ctx)
		require.NoError(t, err)
		m.Release()
		require.NoError(t, <-done)
	})
}

func TestRingCloseWakesEveryone(t *testing.T) {
	forEachKind(t, func(t *testing.T, k ringKind) {
		ctx := ctxTimeout(t, 10*time.Second)
		r := k.make(t, 2, channel.Slots(1))
		w, _ := r.Writer()
		idle, _ := r.Reader(0)
		stuck, _ := r.Reader(1)
		require.NoError(t, w.Write(ctx, []byte("x")))
		m, err := idle.Read(ctx)
		require.NoError(t, err)
		m.Release()

		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Add(2)
		go func() { defer wg.Done(); errs[0] = w.Write(ctx, []byte("blocked: reader 1 holds the slot")) }()
		go func() { defer wg.Done(); _, errs[1] = idle.Read(ctx) }()
		// Close from a third party (the owner) while both are blocked.
		require.NoError(t, r.Close())
		wg.Wait()
		assert.ErrorIs(t, errs[0], channel.ErrChannelClosed)
		assert.ErrorIs(t, errs[1], channel.ErrChannelClosed)
		_, err = stuck.Read(ctx)
		assert.ErrorIs(t, err, channel.ErrChannelClosed, "reads after close fail even with data unread")
		assert.ErrorIs(t, w.Write(ctx, nil), channel.ErrChannelClosed)
		assert.True(t, r.Closed())
		w.Close()
		idle.Close()
		stuck.Close()
	})
}

func TestRingTimeoutAndCancel(t *testing.T) {
	forEachKind(t, func(t *testing.T, k ringKind) {
		r := k.make(t, 1)
		rd, _ := r.Reader(0)
		defer rd.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err := rd.Read(ctx)
		require.ErrorIs(t, err, channel.ErrTimeout)
		var te *channel.TimeoutError
		require.ErrorAs(t, err, &te)
		assert.Equal(t, "read", te.Op)

		ctx, cancel = context.WithCancel(context.Background())
		go cancel()
		_, err = rd.Read(ctx)
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, channel.ErrTimeout)
	})
}

func TestRingHoldAndReleaseOutOfOrder(t *testing.T) {
	forEachKind(t, func(t *testing.T, k ringKind) {
		ctx := ctxTimeout(t, 10*time.Second)
		r := k.make(t, 1, channel.Slots(3))
		w, _ := r.Writer()
		rd, _ := r.Reader(0)
		defer w.Close()
		for i := range 3 {
			require.NoError(t, w.Write(ctx, []byte{byte(i)}))
		}
		var held []channel.Message
		for range 3 {
			m, err := rd.Read(ctx)
			require.NoError(t, err)
			held = append(held, m)
		}
		_, err := rd.Read(ctx)
		assert.ErrorContains(t, err, "3 messages held unreleased")
		// Releasing out of order frees nothing until the first is released.
		held[2].Release()
		held[1].Release()
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		assert.ErrorIs(t, w.Write(short, []byte{3}), channel.ErrTimeout)
		assert.Equal(t, []byte{0}, held[0].Data, "a held view is not overwritten")
		held[0].Release()
		held[0].Release() // idempotent
		for i := 3; i < 6; i++ {
			require.NoError(t, w.Write(ctx, []byte{byte(i)}))
		}
		for i := 3; i < 6; i++ {
			m, err := rd.Read(ctx)
			require.NoError(t, err)
			assert.Equal(t, []byte{byte(i)}, m.Data)
			m.Release()
		}
	})
}

func TestRingReserveCommit(t *testing.T) {
	forEachKind(t, func(t *testing.T, k ringKind) {
		ctx := ctxTimeout(t, 10*time.Second)
		r := k.make(t, 1, channel.SlotSize(64))
		w, _ := r.Writer()
		rd, _ := r.Reader(0)
		defer w.Close()
		require.ErrorContains(t, w.Commit(channel.KindData), "Commit without Reserve")
		for _, n := range []int{0, 64, 65, 5000} {
			buf, err := w.Reserve(ctx, n)
			require.NoError(t, err)
			require.Len(t, buf, n)
			_, err = w.Reserve(ctx, 1)
			require.ErrorContains(t, err, "Reserve called twice")
			fill(buf, 9, n)
			require.ErrorContains(t, w.Commit(channel.KindClose), "want KindData or KindError")
			require.NoError(t, w.Commit(channel.KindData))
			got, err := rd.Recv(ctx, nil)
			require.NoError(t, err)
			require.True(t, bytes.Equal(payload(9, n, n), got), "message of %d bytes differs", n)
		}
	})
}

// TestRingViewsAreReadOnly: a reader's view of a shared-memory ring is mapped
// read-only, so a write through it faults instead of corrupting what other
// readers see.
func TestRingViewsAreReadOnly(t *testing.T) {
	ctx := ctxTimeout(t, 10*time.Second)
	r := ringKinds[0].make(t, 1, channel.SlotSize(64))
	w, _ := r.Writer()
	rd, _ := r.Reader(0)
	defer w.Close()
	for _, n := range []int{8, 4096} { // in a slot, in an overflow buffer
		require.NoError(t, w.Write(ctx, payload(1, n, n)))
		m, err := rd.Read(ctx)
		require.NoError(t, err)
		faulted := func() (faulted bool) {
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			defer func() { faulted = recover() != nil }()
			m.Data[0]++
			return false
		}()
		assert.True(t, faulted, "a write through a %d-byte view must fault", n)
		assert.Equal(t, payload(1, n, n), m.Data)
		m.Release()
	}
}

// TestRingProperty: for random shapes (readers, slots, slot size), message
// sizes (in place and overflowing) and reader behaviour (holding messages,
// releasing out of order), every reader sees every message, in order, intact.
func TestRingProperty(t *testing.T) {
	forEachKind(t, func(t *testing.T, k ringKind) {
		rapid.Check(t, func(rt *rapid.T) {
			readers := rapid.IntRange(1, 3).Draw(rt, "readers")
			slots := rapid.IntRange(1, 6).Draw(rt, "slots")
			slotSize := rapid.IntRange(0, 256).Draw(rt, "slotSize")
			sizes := rapid.SliceOfN(rapid.IntRange(0, 1200), 1, 60).Draw(rt, "sizes")
			holds := rapid.SliceOfN(rapid.IntRange(1, slots), readers, readers).Draw(rt, "holds")
			seed := rapid.Uint64().Draw(rt, "seed")
			spin := rapid.SampledFrom([]time.Duration{0, time.Microsecond, 20 * time.Microsecond}).Draw(rt, "spin")
			withError := rapid.IntRange(-1, len(sizes)-1).Draw(rt, "errorAt")

			r := k.make(t, readers, channel.Slots(slots), channel.SlotSize(slotSize), channel.Spin(spin))
			ctx := ctxTimeout(t, 20*time.Second)
			w, err := r.Writer()
			if err != nil {
				rt.Fatal(err)
			}
			var wg sync.WaitGroup
			failures := make(chan error, readers+1)
			for ri := range readers {
				rd, err := r.Reader(ri)
				if err != nil {
					rt.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer rd.Close()
					failures <- verifyStream(ctx, rd, seed, sizes, withError, holds[ri])
				}()
			}
			werr := func() error {
				for i, n := range sizes {
					if i == withError {
						if err := w.WriteError(ctx, fmt.Errorf("message %d failed", i)); err != nil {
							return err
						}
						continue
					}
					if err := w.Write(ctx, payload(seed, i, n)); err != nil {
						return fmt.Errorf("write %d: %w", i, err)
					}
				}
				return w.CloseWrite(ctx)
			}()
			wg.Wait()
			w.Close()
			if werr != nil {
				rt.Fatal(werr)
			}
			for range readers {
				if err := <-failures; err != nil {
					rt.Fatal(err)
				}
			}
		})
	})
}

// verifyStream reads a test stream to its end, holding up to hold messages
// before releasing them (every other time in reverse order).
func verifyStream(ctx context.Context, rd channel.Reader, seed uint64, sizes []int, errorAt, hold int) error {
	var held []channel.Message
	flush := func(i int) {
		if i%2 == 0 {
			for j := len(held) - 1; j >= 0; j-- {
				held[j].Release()
			}
		} else {
			for _, m := range held {
				m.Release()
			}
		}
		held = held[:0]
	}
	for i, n := range sizes {
		if len(held) >= hold {
			flush(i)
		}
		m, err := rd.Read(ctx)
		if err != nil {
			return fmt.Errorf("read %d: %w", i, err)
		}
		if m.Seq != uint64(i) {
			return fmt.Errorf("message %d arrived as seq %d", i, m.Seq)
		}
		if i == errorAt {
			if m.Kind != channel.KindError || m.Err().Error() != fmt.Sprintf("message %d failed", i) {
				return fmt.Errorf("message %d: want in-band error, got kind %v %q", i, m.Kind, m.Data)
			}
		} else if m.Kind != channel.KindData || !bytes.Equal(m.Data, payload(seed, i, n)) {
			return fmt.Errorf("message %d (%d bytes): content differs (kind %v, %d bytes)", i, n, m.Kind, len(m.Data))
		}
		held = append(held, m)
	}
	flush(0)
	if _, err := rd.Read(ctx); !errors.Is(err, channel.ErrChannelClosed) {
		return fmt.Errorf("after the stream: want ErrChannelClosed, got %v", err)
	}
	return nil
}

// TestShmNoMappingLeft: once every end and handle is closed, including ends
// whose opening failed, nothing of the ring stays mapped.
func TestShmNoMappingLeft(t *testing.T) {
	ctx := ctxTimeout(t, 10*time.Second)
	r, err := channel.NewShm("maps", 1, channel.SlotSize(64))
	require.NoError(t, err)
	name := r.Name()
	w, err := r.Writer()
	require.NoError(t, err)
	_, err = r.Writer()
	require.Error(t, err)
	rd, err := r.Reader(0)
	require.NoError(t, err)
	_, err = r.Reader(0)
	require.Error(t, err)
	require.NoError(t, w.Write(ctx, make([]byte, 1000))) // an overflow segment, mapped by both ends
	got, err := rd.Recv(ctx, nil)
	require.NoError(t, err)
	require.Len(t, got, 1000)
	assert.Contains(t, mappings(t), name)

	require.NoError(t, rd.Close())
	require.NoError(t, w.Close())
	require.NoError(t, r.Close())
	assert.NotContains(t, mappings(t), name)
}

func mappings(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	return string(b)
}

func TestRingReady(t *testing.T) {
	forEachKind(t, func(t *testing.T, k ringKind) {
		ctx := ctxTimeout(t, 10*time.Second)
		r := k.make(t, 1, channel.Slots(4), channel.SlotSize(128))
		w, err := r.Writer()
		require.NoError(t, err)
		rd, err := r.Reader(0)
		require.NoError(t, err)
		require.False(t, rd.Ready(), "nothing written")
		require.NoError(t, w.Write(ctx, []byte("x")))
		require.True(t, rd.Ready())
		m, err := rd.Read(ctx)
		require.NoError(t, err)
		m.Release()
		require.False(t, rd.Ready(), "the one message was read")
		require.NoError(t, w.Close())
		require.True(t, rd.Ready(), "closed: Read returns at once")
	})
}
