package channel

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/goray/goray/internal/errs"
)

// Errors. They are shared with the other goray packages: errors.Is works
// with core.ErrChannelClosed and core.ErrTimeout too.
var (
	// ErrChannelClosed is returned by reads and writes after Close, and by
	// reads after the writer's CloseWrite once everything before it is read.
	ErrChannelClosed = errs.ErrChannelClosed
	// ErrTimeout is returned when a call's context deadline passes first.
	// Such errors also match context.DeadlineExceeded.
	ErrTimeout = errs.ErrTimeout
	// ErrPeerDied is returned when the process this call waits for (the
	// writer, or a reader the writer waits on) has exited.
	ErrPeerDied = errs.ErrPeerDied
	// ErrBadFrame is returned by the TCP channel for a malformed frame.
	ErrBadFrame = errors.New("channel: bad frame")
)

// Kind is what a message carries.
type Kind uint8

const (
	// KindData is an ordinary message.
	KindData Kind = 1
	// KindError carries an error value in-band: the writer's step failed,
	// and readers should pass the error on rather than a result.
	KindError Kind = 2
	// KindClose marks the end of the stream (Writer.CloseWrite). Readers
	// never see it as a message: Read returns ErrChannelClosed instead.
	KindClose Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindError:
		return "error"
	case KindClose:
		return "close"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= KindData && k <= KindClose }

// Message is one message read from a channel. Data is a view into the
// channel's memory (zero-copy for shared-memory and in-process rings): it is
// valid until Release, and must not be written to.
type Message struct {
	Kind Kind
	Data []byte
	Seq  uint64 // position in the stream, from 0
	rel  releaser
}

type releaser interface{ release(seq uint64) }

// Release hands the message's slot back to the writer. Until every reader
// has released a message, the writer cannot reuse its slot. Release is
// idempotent; after it Data must not be used.
func (m Message) Release() {
	if m.rel != nil {
		m.rel.release(m.Seq)
	}
}

// Err returns the in-band error of a KindError message, nil otherwise.
func (m Message) Err() error {
	if m.Kind != KindError {
		return nil
	}
	return &RemoteError{Text: string(m.Data)}
}

// RemoteError is an error value that the writer sent in-band with
// WriteError.
type RemoteError struct{ Text string }

func (e *RemoteError) Error() string { return e.Text }

// Writer is the one writing end of a channel. It is used by one goroutine at
// a time.
type Writer interface {
	// Write sends p as one message. It blocks while the slowest reader is
	// a full ring behind (back-pressure), up to ctx's deadline. p may be
	// reused when Write returns.
	Write(ctx context.Context, p []byte) error
	// WriteError sends err as an in-band error message.
	WriteError(ctx context.Context, err error) error
	// Reserve returns a buffer of n bytes in the channel for the next
	// message, to be filled in place and then sent with Commit: zero-copy
	// writing. It blocks like Write.
	Reserve(ctx context.Context, n int) ([]byte, error)
	// Commit sends the reserved buffer as a message of the given kind.
	Commit(kind Kind) error
	// CloseWrite ends the stream in-band: readers receive every message
	// written before it, then ErrChannelClosed. Later writes fail.
	CloseWrite(ctx context.Context) error
	// Close closes the channel for everyone at once, waking every blocked
	// reader and writer, and releases this end. Unread messages are
	// dropped. Idempotent.
	Close() error
}

// Reader is one reading end of a channel. It is used by one goroutine at a
// time.
type Reader interface {
	// Read returns the next message, blocking until one is written, up to
	// ctx's deadline. Messages may be held (unreleased) while later ones
	// are read; the writer waits once a full ring is held.
	Read(ctx context.Context) (Message, error)
	// Close leaves the channel: the writer stops waiting for this reader,
	// whose unreleased messages count as released, and the other readers go
	// on. Once every reader has left, writes fail with ErrChannelClosed.
	// Views of this reader's messages become invalid. Idempotent.
	Close() error
}

// Defaults.
const (
	DefaultSlots    = 8
	DefaultSlotSize = 64 << 10
	// MaxReaders bounds the readers of one ring.
	MaxReaders = 1024

	maxSlots    = 1 << 16
	maxSlotSize = 1 << 30
)

// DefaultSpin is how long a blocked call spins (with a pause instruction)
// before it yields the CPU, at most; it then yields for up to ten times as
// long before it sleeps on a futex. Both budgets adapt down when they run
// out and back up when they succeed. A futex wake between processes costs
// 7–70 µs on a small virtual machine while a spinning handoff costs under
// 1 µs, so a short spin pays for itself whenever messages keep coming. On a
// single CPU there is no one to spin for, and the default is 0.
var DefaultSpin = defaultSpin()

func defaultSpin() time.Duration {
	if runtime.NumCPU() < 2 {
		return 0
	}
	return 20 * time.Microsecond
}

// Option configures a channel.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// Slots sets how many messages may be in flight: the ring's length, K. A
// writer more than K messages ahead of its slowest reader waits.
func Slots(k int) Option { return optionFunc(func(c *config) { c.slots = k }) }

// SlotSize sets the bytes a slot holds in place. Larger messages still
// work: they go to a per-slot overflow buffer that grows as needed and is
// reused, so the cost is paid once.
func SlotSize(bytes int) Option { return optionFunc(func(c *config) { c.slotSize = bytes }) }

// Spin sets the longest a blocked call spins before it yields the CPU (see
// DefaultSpin); it then yields for up to ten times as long before sleeping.
// 0 sleeps at once, which suits a channel whose peer is usually slow.
func Spin(d time.Duration) Option {
	return optionFunc(func(c *config) { c.spin = d; c.spinSet = true })
}

// Token sets the secret a TCP channel's readers must present when they
// connect (both ends give the same one). Rings ignore it.
func Token(secret []byte) Option {
	return optionFunc(func(c *config) { c.token = append([]byte(nil), secret...) })
}

// MaxMessageSize bounds the messages a TCP reader accepts (default
// DefaultMaxMessageSize); a larger frame is refused as ErrBadFrame rather
// than allocated. Rings ignore it: their messages never leave the node.
func MaxMessageSize(bytes int64) Option {
	return optionFunc(func(c *config) { c.maxMessage = bytes })
}

// DefaultMaxMessageSize is the largest message a TCP reader accepts unless
// told otherwise.
const DefaultMaxMessageSize = 1 << 30

type config struct {
	slots      int
	slotSize   int
	spin       time.Duration
	spinSet    bool
	token      []byte
	maxMessage int64
}

func newConfig(opts []Option) config {
	c := config{slots: DefaultSlots, slotSize: DefaultSlotSize, spin: DefaultSpin, maxMessage: DefaultMaxMessageSize}
	for _, o := range opts {
		o.apply(&c)
	}
	return c
}

func (c config) validate(readers int) error {
	switch {
	case readers < 1 || readers > MaxReaders:
		return fmt.Errorf("channel: %d readers: %w: want 1 to %d", readers, errs.ErrBadArgument, MaxReaders)
	case c.slots < 1 || c.slots > maxSlots:
		return fmt.Errorf("channel: Slots(%d): %w: want 1 to %d", c.slots, errs.ErrBadArgument, maxSlots)
	case c.slotSize < 0 || c.slotSize > maxSlotSize:
		return fmt.Errorf("channel: SlotSize(%d): %w: want 0 to 1 GiB (larger messages overflow the slot and still work)", c.slotSize, errs.ErrBadArgument)
	case c.maxMessage < 1:
		return fmt.Errorf("channel: MaxMessageSize(%d): %w: want 1 or more", c.maxMessage, errs.ErrBadArgument)
	case c.spin < 0:
		return fmt.Errorf("channel: Spin(%v): %w: want 0 or more", c.spin, errs.ErrBadArgument)
	}
	return nil
}

// TimeoutError reports a blocking call whose context deadline passed. It
// matches both ErrTimeout and context.DeadlineExceeded with errors.Is.
type TimeoutError struct {
	Op    string // "read", "write"
	After time.Duration
	What  string // what the call waited for
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("channel: %s: timed out after %v waiting for %s", e.Op, e.After.Round(time.Microsecond), e.What)
}

// Is makes errors.Is(err, ErrTimeout) true.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// Unwrap makes errors.Is(err, context.DeadlineExceeded) true.
func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }
