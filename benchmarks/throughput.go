package benchmarks

import (
	"context"
	"errors"
	"fmt"

	"github.com/goray/goray/channel"
)

// streamSlots is the buffer of every stream case, rings and Go channel
// alike: a stream is measured with room for a burst, as a pipeline would
// size its buffers. (With 8 slots, a writer and reader that the scheduler
// puts on one core switch every 8 messages, and the figure is the
// scheduler's, not the channel's.)
const streamSlots = 64

// streamOptions sizes a stream's ring for messages of size bytes.
func streamOptions(size int) []channel.Option {
	return append(ringOptions(size), channel.Slots(streamSlots))
}

// stream is the writing side of a one-way stream to a reader that takes
// each message's zero-copy view, touches its first and last byte and
// releases it.
type stream interface {
	Send(ctx context.Context, msg []byte) error
	// Finish ends the stream and waits for the reader's acknowledgement
	// that it read everything; it returns how many messages it read.
	Finish(ctx context.Context) (int, error)
	Close() error
}

type streamOpener func(ctx context.Context, size int) (stream, error)

// throughputBody is the body of every ChannelThroughput case: b.N messages
// one way, timed until the reader acknowledges the last one.
func throughputBody(open streamOpener, size int) func(B) {
	return func(b B) {
		ctx, cancel := runContext(b)
		defer cancel()
		s, err := open(ctx, size)
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			if err := s.Close(); err != nil {
				b.Errorf("close: %v", err)
			}
		}()
		msg := payload(size)
		n := b.Iterations()
		b.SetBytes(int64(size))
		b.ResetTimer()
		for range n {
			if err := s.Send(ctx, msg); err != nil {
				b.Fatalf("send: %v", err)
			}
		}
		got, err := s.Finish(ctx)
		b.StopTimer()
		if err != nil {
			b.Fatalf("finish: %v", err)
		}
		if got != n {
			b.Fatalf("the reader read %d messages, want %d", got, n)
		}
		if sec := b.Elapsed().Seconds(); sec > 0 {
			b.ReportMetric(float64(n)/sec, unitMsgs)
		}
	}
}

// inprocStream streams to a goroutine through an in-process ring.
type inprocStream struct {
	ring     *channel.Ring
	w        *channel.RingWriter
	done     chan sinkResult
	finished bool
}

type sinkResult struct {
	n   int
	err error
}

func openInProcStream(ctx context.Context, size int) (stream, error) {
	ring, err := channel.NewInProc(1, streamOptions(size)...)
	if err != nil {
		return nil, err
	}
	w, err := ring.Writer()
	if err != nil {
		ring.Close()
		return nil, err
	}
	r, err := ring.Reader(0)
	if err != nil {
		ring.Close()
		return nil, err
	}
	done := make(chan sinkResult, 1)
	go func() {
		n, _, err := sink(ctx, r)
		r.Close()
		done <- sinkResult{n, err}
	}()
	return &inprocStream{ring: ring, w: w, done: done}, nil
}

func (c *inprocStream) Send(ctx context.Context, p []byte) error { return c.w.Write(ctx, p) }

func (c *inprocStream) Finish(ctx context.Context) (int, error) {
	if err := c.w.CloseWrite(ctx); err != nil {
		return 0, err
	}
	c.finished = true
	r := <-c.done
	return r.n, r.err
}

func (c *inprocStream) Close() error {
	c.w.Close()
	c.ring.Close()
	if !c.finished {
		<-c.done // the ring's close ends the reader
	}
	return nil
}

// gochanStream is the Go-channel baseline for small messages: the message
// travels by value ([64]byte, copied in and out as a ring copies it in),
// through a channel buffered like a ring of channel.DefaultSlots slots.
type gochanStream struct {
	ch       chan [64]byte
	done     chan [2]int // messages read, sum of the bytes touched
	finished bool
}

func openGoChanStream(_ context.Context, size int) (stream, error) {
	if size != 64 {
		return nil, fmt.Errorf("the Go-channel stream carries 64-byte messages, not %d", size)
	}
	ch, done := make(chan [64]byte, streamSlots), make(chan [2]int, 1)
	go func() {
		n, sum := 0, 0
		for m := range ch {
			sum += int(m[0]) + int(m[63])
			n++
		}
		done <- [2]int{n, sum}
	}()
	return &gochanStream{ch: ch, done: done}, nil
}

func (c *gochanStream) Send(_ context.Context, p []byte) error {
	c.ch <- [64]byte(p)
	return nil
}

func (c *gochanStream) Finish(context.Context) (int, error) {
	if c.finished {
		return 0, errors.New("stream already finished")
	}
	c.finished = true
	close(c.ch)
	r := <-c.done
	return r[0], nil
}

func (c *gochanStream) Close() error {
	if !c.finished {
		c.finished = true
		close(c.ch)
		<-c.done
	}
	return nil
}

// memcpyBody copies 1 MiB per op: the bandwidth baseline for large
// messages, which are copied into the channel once.
func memcpyBody(size int) func(B) {
	return func(b B) {
		src, dst := payload(size), make([]byte, size)
		copy(dst, src) // fault the pages in
		b.SetBytes(int64(size))
		n := b.Iterations()
		b.ResetTimer()
		for range n {
			copy(dst, src)
		}
		b.StopTimer()
		if b.Verify() && dst[size-1] != src[size-1] {
			b.Fatal("copy did not copy")
		}
	}
}
