package benchmarks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/goray/goray/channel"
)

// roundTripper is one connection of a transport: RoundTrip sends msg to the
// echoing end and hands the reply to got, whose argument is valid only
// during the call.
type roundTripper interface {
	RoundTrip(ctx context.Context, msg []byte, got func(reply []byte)) error
	Close() error
}

// opener sets up a round-tripper for messages of size bytes.
type opener func(ctx context.Context, size int) (roundTripper, error)

// Histogram range: 1 ns to one minute, three significant digits.
const (
	histMin = 1
	histMax = int64(time.Minute)
)

// roundTripBody is the body of every ChannelRoundTrip case: one op is one
// round trip, timed with one time.Now per op; the latency of op i is the
// difference of consecutive timestamps, recorded in an HDR histogram and
// reported as p50-ns and p99-ns.
func roundTripBody(open opener, size int) func(B) {
	return func(b B) {
		ctx, cancel := runContext(b)
		defer cancel()
		conn, err := open(ctx, size)
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			if err := conn.Close(); err != nil {
				b.Errorf("close: %v", err)
			}
		}()
		msg := payload(size)
		verify := b.Verify()
		var bad error
		got := func(reply []byte) {
			switch {
			case bad != nil:
			case len(reply) != size:
				bad = fmt.Errorf("reply of %d bytes, want %d", len(reply), size)
			case verify && !bytes.Equal(reply, msg):
				bad = errors.New("reply differs from the message sent")
			}
		}
		roundTrip := func() {
			if err := conn.RoundTrip(ctx, msg, got); err != nil {
				b.Fatalf("round trip: %v", err)
			}
			if bad != nil {
				b.Fatal(bad)
			}
		}
		for range warmUps(size) {
			roundTrip()
		}

		h := hdrhistogram.New(histMin, histMax, 3)
		n := b.Iterations()
		b.ResetTimer()
		prev := time.Now()
		for range n {
			roundTrip()
			now := time.Now()
			h.RecordValue(min(max(int64(now.Sub(prev)), histMin), histMax))
			prev = now
		}
		b.StopTimer()
		b.ReportMetric(float64(h.ValueAtQuantile(50)), unitP50)
		b.ReportMetric(float64(h.ValueAtQuantile(99)), unitP99)
	}
}

// warmUps is how many untimed round trips come first: enough to fault in
// the buffers and settle the spin budgets, few for large messages.
func warmUps(size int) int { return min(max((4<<20)/max(size, 1), 2), 200) }

// payload is a message of size bytes whose first and last bytes differ.
func payload(size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(i*7 + 1)
	}
	return p
}

// ringOptions sizes a ring so a message of size bytes fits a slot in place,
// as a compiled graph sizes its channels for its buffers.
func ringOptions(size int) []channel.Option {
	return []channel.Option{channel.SlotSize(max(size, channel.DefaultSlotSize))}
}

// echo answers every message read from in with a copy written to out: read
// the view, reserve, copy, commit, release. It returns nil once in is
// closed.
func echo(ctx context.Context, in channel.Reader, out channel.Writer) error {
	for {
		m, err := in.Read(ctx)
		if errors.Is(err, channel.ErrChannelClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		buf, err := out.Reserve(ctx, len(m.Data))
		if errors.Is(err, channel.ErrChannelClosed) {
			m.Release()
			return nil
		}
		if err != nil {
			m.Release()
			return err
		}
		copy(buf, m.Data)
		err = out.Commit(channel.KindData)
		m.Release()
		if err != nil {
			return err
		}
	}
}

// chanConn is the sending side of a channel round trip: write the message
// into ping, read the echo from pong.
type chanConn struct {
	ping channel.Writer
	pong channel.Reader
}

func (c chanConn) RoundTrip(ctx context.Context, msg []byte, got func([]byte)) error {
	if err := c.ping.Write(ctx, msg); err != nil {
		return err
	}
	m, err := c.pong.Read(ctx)
	if err != nil {
		return err
	}
	got(m.Data)
	m.Release()
	return nil
}

// inprocConn is a round trip through two in-process rings, echoed by a
// goroutine.
type inprocConn struct {
	chanConn
	pingRing, pongRing *channel.Ring
	done               chan error
}

func openInProc(ctx context.Context, size int) (roundTripper, error) {
	ping, err := channel.NewInProc(1, ringOptions(size)...)
	if err != nil {
		return nil, err
	}
	pong, err := channel.NewInProc(1, ringOptions(size)...)
	if err != nil {
		ping.Close()
		return nil, err
	}
	c := &inprocConn{pingRing: ping, pongRing: pong, done: make(chan error, 1)}
	if err := c.open(ctx); err != nil {
		ping.Close()
		pong.Close()
		return nil, err
	}
	return c, nil
}

func (c *inprocConn) open(ctx context.Context) error {
	w, err := c.pingRing.Writer()
	if err != nil {
		return err
	}
	r, err := c.pongRing.Reader(0)
	if err != nil {
		return err
	}
	er, err := c.pingRing.Reader(0)
	if err != nil {
		return err
	}
	ew, err := c.pongRing.Writer()
	if err != nil {
		return err
	}
	c.chanConn = chanConn{ping: w, pong: r}
	go func() {
		err := echo(ctx, er, ew)
		er.Close()
		ew.Close()
		c.done <- err
	}()
	return nil
}

func (c *inprocConn) Close() error {
	c.pingRing.Close()
	c.pongRing.Close()
	err := <-c.done
	c.ping.Close()
	c.pong.Close()
	return err
}

// gochanConn is the Go-channel baseline: the same two copies per round trip
// as a ring (into the message, and the echo's copy), through two buffered
// channels and an echoing goroutine.
type gochanConn struct {
	ping, pong chan []byte
	buf        []byte
	done       chan struct{}
}

func openGoChan(_ context.Context, size int) (roundTripper, error) {
	c := &gochanConn{ping: make(chan []byte, 1), pong: make(chan []byte, 1), buf: make([]byte, size),
		done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.pong)
		echoBuf := make([]byte, size)
		for m := range c.ping {
			copy(echoBuf, m)
			c.pong <- echoBuf
		}
	}()
	return c, nil
}

func (c *gochanConn) RoundTrip(ctx context.Context, msg []byte, got func([]byte)) error {
	copy(c.buf, msg)
	c.ping <- c.buf
	got(<-c.pong)
	return nil
}

func (c *gochanConn) Close() error {
	close(c.ping)
	<-c.done
	return nil
}
