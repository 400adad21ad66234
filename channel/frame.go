package channel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/goray/goray/internal/errs"
)

// Frames. Everything a TCP channel sends, either way, is a frame: a 24-byte
// header, little-endian, then the payload.
//
//	offset  size  field
//	0       2     magic "GR" (0x47 0x52)
//	2       1     version: frameVersion (1)
//	3       1     kind (below)
//	4       4     flags: 0 (reserved; a nonzero value is refused)
//	8       8     seq (per kind, below)
//	16      8     payload length
//
//	kind         from    seq                   payload
//	1  data      writer  message number        the message (≤ the reader's MaxMessageSize)
//	2  error     writer  message number        the error's text (≤ MaxMessageSize)
//	3  close     writer  message number        none: CloseWrite, the end of the stream
//	16 hello     reader  0                     index u32, readers u32 (0: any),
//	                                           MaxMessageSize u64, token (≤ maxTokenLen)
//	17 accept    writer  0                     slots u32, readers u32
//	18 ack       reader  messages released     none (cumulative, in order)
//	19 teardown  either  0                     none: the sender closed the channel
//	20 fault     either  0                     code u8, text (≤ maxFaultText): the
//	                                           sender drops the connection, and why
//
// A reader connects, sends hello and gets accept or fault; then the writer
// sends data, error and close frames, numbered from 0 without gaps, and the
// reader sends acks. A frame is checked whole before its payload is read:
// magic, version, kind, flags, seq for control kinds, and the length against
// a fixed bound for control kinds or the reader's MaxMessageSize for
// messages; the payload buffer is never sized from an unchecked length. A
// bad frame is an error wrapping ErrBadFrame, and the connection is dropped.
const (
	frameHeaderSize = 24
	frameMagic      = 0x5247 // "GR" little-endian
	frameVersion    = 1

	maxTokenLen   = 1024
	helloFixed    = 16 // index, readers, MaxMessageSize
	maxHello      = helloFixed + maxTokenLen
	acceptLen     = 8
	maxFaultText  = 4096
	maxFault      = 1 + maxFaultText
	maxStreamData = math.MaxInt64 // static bound; the reader's MaxMessageSize applies too
)

// frameKind is a frame's kind: the message kinds, then the control kinds.
type frameKind uint8

const (
	frameData               = frameKind(KindData)
	frameError              = frameKind(KindError)
	frameClose              = frameKind(KindClose)
	frameHello    frameKind = 16
	frameAccept   frameKind = 17
	frameAck      frameKind = 18
	frameTeardown frameKind = 19
	frameFault    frameKind = 20
)

func (k frameKind) String() string {
	switch k {
	case frameData, frameError, frameClose:
		return Kind(k).String()
	case frameHello:
		return "hello"
	case frameAccept:
		return "accept"
	case frameAck:
		return "ack"
	case frameTeardown:
		return "teardown"
	case frameFault:
		return "fault"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// maxLen is the longest payload a frame of kind k may claim, and whether k
// is a kind at all.
func (k frameKind) maxLen() (uint64, bool) {
	switch k {
	case frameData, frameError:
		return maxStreamData, true
	case frameClose, frameAck, frameTeardown:
		return 0, true
	case frameHello:
		return maxHello, true
	case frameAccept:
		return acceptLen, true
	case frameFault:
		return maxFault, true
	}
	return 0, false
}

// message reports whether k is one of the stream's kinds, numbered by seq.
func (k frameKind) message() bool { return k == frameData || k == frameError || k == frameClose }

// Fault codes: what the peer's fault frame maps to on this side.
const (
	faultBadFrame byte = 1 // ErrBadFrame
	faultRefused  byte = 2 // ErrBadArgument: the handshake was refused
	faultClosed   byte = 3 // ErrChannelClosed
)

type frameHeader struct {
	kind   frameKind
	flags  uint32
	seq    uint64
	length uint64
}

func badFrame(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadFrame}, args...)...)
}

// decodeHeader checks and decodes the header at the start of b.
func decodeHeader(b []byte) (frameHeader, error) {
	if len(b) < frameHeaderSize {
		return frameHeader{}, badFrame("%d bytes is too short for a %d-byte header", len(b), frameHeaderSize)
	}
	if m := binary.LittleEndian.Uint16(b[0:]); m != frameMagic {
		return frameHeader{}, badFrame("magic %#04x is not a goray channel's: is something else connected to this port?", m)
	}
	if v := b[2]; v != frameVersion {
		return frameHeader{}, badFrame("protocol version %d, this build speaks version %d: run the same goray build on both nodes", v, frameVersion)
	}
	h := frameHeader{
		kind:   frameKind(b[3]),
		flags:  binary.LittleEndian.Uint32(b[4:]),
		seq:    binary.LittleEndian.Uint64(b[8:]),
		length: binary.LittleEndian.Uint64(b[16:]),
	}
	limit, ok := h.kind.maxLen()
	switch {
	case !ok:
		return frameHeader{}, badFrame("unknown frame kind %d", uint8(h.kind))
	case h.flags != 0:
		return frameHeader{}, badFrame("%v frame with flags %#x, want 0", h.kind, h.flags)
	case h.length > limit:
		return frameHeader{}, badFrame("%v frame of %d bytes, at most %d allowed", h.kind, h.length, limit)
	case h.kind == frameAccept && h.length != acceptLen:
		return frameHeader{}, badFrame("accept frame of %d bytes, want %d", h.length, acceptLen)
	case h.kind == frameHello && h.length < helloFixed:
		return frameHeader{}, badFrame("hello frame of %d bytes, want at least %d", h.length, helloFixed)
	case !h.kind.message() && h.kind != frameAck && h.seq != 0:
		return frameHeader{}, badFrame("%v frame with seq %d, want 0", h.kind, h.seq)
	}
	return h, nil
}

// encodeHeader writes h into b[:frameHeaderSize].
func encodeHeader(b []byte, h frameHeader) {
	_ = b[frameHeaderSize-1]
	binary.LittleEndian.PutUint16(b[0:], frameMagic)
	b[2] = frameVersion
	b[3] = byte(h.kind)
	binary.LittleEndian.PutUint32(b[4:], h.flags)
	binary.LittleEndian.PutUint64(b[8:], h.seq)
	binary.LittleEndian.PutUint64(b[16:], h.length)
}

// appendFrame appends a whole frame to dst.
func appendFrame(dst []byte, kind frameKind, seq uint64, payload []byte) []byte {
	var hdr [frameHeaderSize]byte
	encodeHeader(hdr[:], frameHeader{kind: kind, seq: seq, length: uint64(len(payload))})
	return append(append(dst, hdr[:]...), payload...)
}

// faultFrame is a fault frame with the given code and text, cut to the
// bound.
func faultFrame(code byte, text string) []byte {
	if len(text) > maxFaultText {
		text = text[:maxFaultText]
	}
	return appendFrame(nil, frameFault, 0, append([]byte{code}, text...))
}

// faultError turns a peer's fault payload into an error wrapping the
// sentinel its code names.
func faultError(who string, p []byte) error {
	if len(p) == 0 {
		return badFrame("empty fault frame from %s", who)
	}
	text := string(p[1:])
	switch p[0] {
	case faultBadFrame:
		return fmt.Errorf("%s dropped the connection: %s (%w)", who, text, ErrBadFrame)
	case faultRefused:
		return fmt.Errorf("%s refused: %s (%w)", who, text, errs.ErrBadArgument)
	case faultClosed:
		return fmt.Errorf("%s: %s (%w)", who, text, ErrChannelClosed)
	}
	return fmt.Errorf("%s dropped the connection: %s", who, text)
}

// Payload buffers grow as bytes arrive, from at most initialPayload, so a
// peer that claims a large length and sends less costs at most twice what it
// sent.
const initialPayload = 64 << 10

// frameReader reads frames from a stream through a fixed buffer: small
// frames arrive many per system call, and a payload larger than the buffer
// is read straight into its destination. A frame cut short by an error (a
// read deadline) is kept, and the next call resumes it.
type frameReader struct {
	r          io.Reader
	buf        []byte
	head, tail int

	cur     frameHeader
	haveHdr bool
	payload []byte
	got     int

	// beforeRead, if set, runs before each read from r, which may block.
	beforeRead func()
	// allocated counts the payload bytes this reader has allocated.
	allocated int
}

func newFrameReader(r io.Reader, size int) *frameReader {
	return &frameReader{r: r, buf: make([]byte, max(size, 2*frameHeaderSize))}
}

// buffered is how many bytes are read but not yet consumed.
func (fr *frameReader) buffered() int { return fr.tail - fr.head }

// fill reads at least one more byte into the buffer, making room for at
// least need contiguous bytes from head.
func (fr *frameReader) fill(need int) error {
	if fr.head == fr.tail {
		fr.head, fr.tail = 0, 0
	} else if len(fr.buf)-fr.head < need {
		fr.tail = copy(fr.buf, fr.buf[fr.head:fr.tail])
		fr.head = 0
	}
	for empty := 0; ; empty++ {
		if fr.beforeRead != nil {
			fr.beforeRead()
		}
		n, err := fr.r.Read(fr.buf[fr.tail:])
		fr.tail += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return fr.eof(err)
		}
		if empty >= 100 {
			return io.ErrNoProgress
		}
	}
}

// eof turns a clean end of stream inside a frame into io.ErrUnexpectedEOF.
func (fr *frameReader) eof(err error) error {
	if err == io.EOF && (fr.haveHdr || fr.buffered() > 0) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// next returns the next frame. check vets a decoded header before any of
// its payload is read or allocated; reuse offers a buffer for the payload
// (nil, or too small, is fine: the payload buffer then grows as bytes
// arrive). The payload returned is reuse's buffer or its replacement, of the
// frame's length.
func (fr *frameReader) next(check func(frameHeader) error, reuse func(frameHeader) []byte) (frameHeader, []byte, error) {
	if !fr.haveHdr {
		for fr.buffered() < frameHeaderSize {
			if err := fr.fill(frameHeaderSize); err != nil {
				return frameHeader{}, nil, err
			}
		}
		h, err := decodeHeader(fr.buf[fr.head:fr.tail])
		if err == nil && check != nil {
			err = check(h)
		}
		if err != nil {
			return frameHeader{}, nil, err
		}
		fr.head += frameHeaderSize
		var b []byte
		if reuse != nil {
			b = reuse(h)
		}
		if uint64(cap(b)) >= h.length {
			b = b[:h.length]
		} else {
			n := int(min(h.length, uint64(max(initialPayload, cap(b)))))
			if n > cap(b) {
				b = make([]byte, n)
				fr.allocated += n
			}
			b = b[:n]
		}
		fr.cur, fr.haveHdr, fr.payload, fr.got = h, true, b, 0
	}
	for uint64(fr.got) < fr.cur.length {
		if fr.got == len(fr.payload) {
			n := int(min(fr.cur.length, 2*uint64(len(fr.payload))))
			b := make([]byte, n)
			fr.allocated += n
			copy(b, fr.payload[:fr.got])
			fr.payload = b
		}
		if fr.buffered() > 0 {
			n := copy(fr.payload[fr.got:], fr.buf[fr.head:fr.tail])
			fr.head += n
			fr.got += n
			continue
		}
		if len(fr.payload)-fr.got >= len(fr.buf) {
			// Large: straight into the payload, skipping the buffer.
			if fr.beforeRead != nil {
				fr.beforeRead()
			}
			n, err := fr.r.Read(fr.payload[fr.got:])
			fr.got += n
			if n == 0 && err != nil {
				return frameHeader{}, nil, fr.eof(err)
			}
			continue
		}
		if err := fr.fill(1); err != nil {
			return frameHeader{}, nil, err
		}
	}
	h, p := fr.cur, fr.payload
	fr.haveHdr, fr.payload, fr.got = false, nil, 0
	return h, p, nil
}

// isBadFrame reports whether err is about the peer's bytes.
func isBadFrame(err error) bool { return errors.Is(err, ErrBadFrame) }
