package channel

import (
	"testing"
	"unsafe"
)

// FuzzRingHeader feeds arbitrary headers and segment sizes to the check
// OpenShm applies to a ring another process made: it may refuse, never
// panic, and what it accepts must describe a ring that fits the segment.
func FuzzRingHeader(f *testing.F) {
	valid := func(readers, slots, slotSize int) ([]byte, int64) {
		_, p := alignedAlloc(4096) // p keeps the allocation alive
		total := headerSize(readers) + slots*slotStride(slotSize)
		initHeader(p, "goray.1.2.ch.fuzz", readers, slots, slotSize, total)
		return append([]byte(nil), unsafe.Slice((*byte)(p), 4096)...), int64(total)
	}
	for _, s := range [][3]int{{1, 8, 64 << 10}, {3, 1, 0}, {20, 4, 100}} {
		b, size := valid(s[0], s[1], s[2])
		f.Add(b, size)
		f.Add(b, size-1)
		f.Add(b[:100], size)
	}
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		sh, err := parseHeader(b, size)
		if err != nil {
			return
		}
		if sh.readers < 1 || sh.readers > MaxReaders || sh.slots < 1 || sh.slots > maxSlots ||
			sh.slotSize < 0 || sh.slotSize > maxSlotSize || len(sh.name) > maxNameLen {
			t.Fatalf("accepted an out-of-range shape %+v", sh)
		}
		if sh.headerSize+int64(sh.slots)*int64(slotStride(sh.slotSize)) > size {
			t.Fatalf("accepted a ring of %+v that does not fit %d bytes", sh, size)
		}
	})
}
