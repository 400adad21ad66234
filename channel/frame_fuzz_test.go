package channel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// fuzzLimit is the MaxMessageSize the fuzzed frame reader enforces; no
// input may make it allocate more.
const fuzzLimit = 1 << 20

func fuzzSeeds() [][]byte {
	hello := binary.LittleEndian.AppendUint32(nil, 1)
	hello = binary.LittleEndian.AppendUint32(hello, 2)
	hello = binary.LittleEndian.AppendUint64(hello, 1<<20)
	hello = append(hello, "token"...)
	acc := binary.LittleEndian.AppendUint32(nil, 8)
	acc = binary.LittleEndian.AppendUint32(acc, 2)
	stream := appendFrame(nil, frameData, 0, []byte("hello"))
	stream = appendFrame(stream, frameError, 1, []byte("boom"))
	stream = appendFrame(stream, frameData, 2, bytes.Repeat([]byte{7}, 300))
	stream = appendFrame(stream, frameClose, 3, nil)
	huge := appendFrame(nil, frameData, 0, nil)
	binary.LittleEndian.PutUint64(huge[16:], 1<<40)
	short := appendFrame(nil, frameData, 0, nil)
	binary.LittleEndian.PutUint64(short[16:], fuzzLimit)
	v2 := appendFrame(nil, frameAck, 5, nil)
	v2[2] = 2
	return [][]byte{
		nil,
		stream,
		stream[:30],
		appendFrame(nil, frameHello, 0, hello),
		appendFrame(nil, frameAccept, 0, acc),
		appendFrame(appendFrame(nil, frameAck, 3, nil), frameAck, 9, nil),
		appendFrame(nil, frameTeardown, 0, nil),
		faultFrame(faultRefused, "bad token"),
		huge,
		short,
		v2,
	}
}

// FuzzFrame feeds arbitrary bytes to the header decoder and to the frame
// reader: neither may panic, the reader may not allocate beyond the limit
// (nor much beyond what it was sent), errors are ErrBadFrame or the end of
// the input, and what decodes re-encodes to the same bytes.
func FuzzFrame(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("decodeHeader: %v does not wrap ErrBadFrame", err)
			}
		} else {
			var enc [frameHeaderSize]byte
			encodeHeader(enc[:], h)
			if !bytes.Equal(enc[:], b[:frameHeaderSize]) {
				t.Fatalf("header %+v re-encodes to %x, was %x", h, enc, b[:frameHeaderSize])
			}
		}

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fr := newFrameReader(bytes.NewReader(b), 64) // small: payloads also bypass it
		var again []byte
		var keep []byte
		for {
			h, p, err := fr.next(func(h frameHeader) error {
				if h.kind.message() && h.length > fuzzLimit {
					return badFrame("%d bytes over the limit", h.length)
				}
				return nil
			}, func(frameHeader) []byte { return keep })
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrBadFrame) {
					t.Fatalf("frame reader: unexpected error %v", err)
				}
				break
			}
			if uint64(len(p)) != h.length {
				t.Fatalf("%v frame of %d bytes returned %d", h.kind, h.length, len(p))
			}
			again = appendFrame(again, h.kind, h.seq, p)
			keep = p[:0]
		}
		runtime.ReadMemStats(&after)
		if !bytes.Equal(again, b[:len(again)]) {
			t.Fatalf("frames re-encode to %x, were %x", again, b[:len(again)])
		}
		if fr.allocated > fuzzLimit || fr.allocated > 2*len(b)+initialPayload {
			t.Fatalf("frame reader allocated %d bytes for %d bytes of input", fr.allocated, len(b))
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > fuzzLimit {
			t.Fatalf("%d bytes allocated for %d bytes of input", got, len(b))
		}
	})
}

// Every kind round-trips through the encoder, the frame reader and back.
func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		kind    frameKind
		seq     uint64
		payload []byte
	}{
		{frameData, 0, nil},
		{frameData, 1<<64 - 1, bytes.Repeat([]byte("x"), 200<<10)},
		{frameError, 7, []byte("boom")},
		{frameClose, 8, nil},
		{frameHello, 0, make([]byte, maxHello)},
		{frameAccept, 0, make([]byte, acceptLen)},
		{frameAck, 12345, nil},
		{frameTeardown, 0, nil},
		{frameFault, 0, append([]byte{faultBadFrame}, make([]byte, maxFaultText)...)},
	} {
		enc := appendFrame(nil, tc.kind, tc.seq, tc.payload)
		h, err := decodeHeader(enc)
		if err != nil {
			t.Fatalf("%v: %v", tc.kind, err)
		}
		if h != (frameHeader{kind: tc.kind, seq: tc.seq, length: uint64(len(tc.payload))}) {
			t.Fatalf("%v: decoded %+v", tc.kind, h)
		}
		fr := newFrameReader(bytes.NewReader(enc), 4096)
		h2, p, err := fr.next(nil, nil)
		if err != nil || h2 != h || !bytes.Equal(p, tc.payload) {
			t.Fatalf("%v: read back %+v, %d bytes, %v", tc.kind, h2, len(p), err)
		}
		if _, _, err := fr.next(nil, nil); err != io.EOF {
			t.Fatalf("%v: after the frame: %v, want io.EOF", tc.kind, err)
		}
	}
	// One byte over each control kind's bound is refused.
	for _, k := range []frameKind{frameClose, frameHello, frameAccept, frameAck, frameTeardown, frameFault} {
		limit, _ := k.maxLen()
		enc := appendFrame(nil, k, 0, nil)
		binary.LittleEndian.PutUint64(enc[16:], limit+1)
		if _, err := decodeHeader(enc); !errors.Is(err, ErrBadFrame) {
			t.Fatalf("%v of %d bytes: %v, want ErrBadFrame", k, limit+1, err)
		}
	}
}
