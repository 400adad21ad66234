package objstore

import (
	"bytes"
	"errors"
	"testing"

	"github.com/goray/goray/internal/ids"
)

// FuzzSpillRecord: any bytes either parse as a record that encodes back to
// exactly those bytes, or fail with ErrSpillCorrupt; never a panic, never
// a payload that fails its checksum.
func FuzzSpillRecord(f *testing.F) {
	id := ids.NewObjectID(ids.TaskID{1, 2, 3}, 4)
	f.Add(EncodeSpillRecord(id, []byte("hello")))
	f.Add(EncodeSpillRecord(id, nil))
	f.Add(EncodeSpillRecord(ids.ObjectID{}, bytes.Repeat([]byte{0xff}, 300)))
	f.Add([]byte("GRSP"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, payload, err := ParseSpillRecord(b)
		if err != nil {
			if !errors.Is(err, ErrSpillCorrupt) {
				t.Fatalf("error %v is not ErrSpillCorrupt", err)
			}
			return
		}
		if again := EncodeSpillRecord(got, payload); !bytes.Equal(again, b) {
			t.Fatalf("record parsed but encodes differently")
		}
		// Flipping any one bit is detected.
		for _, i := range []int{0, len(b) / 2, len(b) - 1} {
			c := bytes.Clone(b)
			c[i] ^= 0x10
			if _, _, err := ParseSpillRecord(c); err == nil {
				t.Fatalf("bit flip at %d not detected", i)
			}
		}
	})
}

// FuzzMessage: the socket protocol's decoders accept exactly what the
// encoders produce, and nothing panics.
func FuzzMessage(f *testing.F) {
	id := ids.NewObjectID(ids.TaskID{9}, 1)
	for _, r := range []request{{op: opCreate, id: id, size: 100, flags: flagEvictable}, {op: opGet, id: id, waitMs: 100},
		{op: opSeal, id: id}, {op: opRelease, id: id}, {op: opStats}, {op: opAbort, id: id},
		{op: opPut, id: id, flags: flagEvictable, data: []byte("small")}} {
		f.Add(r.encode())
	}
	for _, r := range []reply{{op: opCreate, off: 64}, {op: opGet, off: 128, size: 5}, {op: opContains, contains: true},
		{op: opStats, stats: Stats{Capacity: 1 << 20, Clients: 2}}, {op: opHello, capacity: 4096, client: 3, name: "goray.1.2.objstore.x"},
		{op: opDelete, status: statusNotFound, msg: "objstore: object not found"}} {
		f.Add(r.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRequest(b); err == nil {
			if again := r.encode(); !bytes.Equal(again, b) {
				t.Fatalf("request %+v: re-encodes as %x, want %x", r, again, b)
			}
		}
		if r, err := decodeReply(b); err == nil {
			if again := r.encode(); !bytes.Equal(again, b) {
				t.Fatalf("reply %+v: re-encodes as %x, want %x", r, again, b)
			}
			if r.status != statusOK && r.err() == nil {
				t.Fatal("error reply without an error")
			}
		}
	})
}
