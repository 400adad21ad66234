package nccl

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// The CPU communicator's segment. Words that different ranks write sit on
// separate 128-byte lines (two cache lines, so the adjacent-line prefetcher
// never couples them).
//
//	page 0        header: magic, version, size, slots, chunk, total bytes
//	              line 1: abort word (0, or who aborted and why)
//	              line 2: joined count (futex word Init sleeps on)
//	ranksOff      one 256-byte entry per rank:
//	                +0   state, pid, start time (who joined as this rank)
//	                +128 doorbell: seq (futex word), sleepers
//	ringsOff      one ring per ordered pair src→dst (src ≠ dst), each
//	              pairStride bytes at a page boundary:
//	                +0       tail: parts the consumer has released
//	                +128     a 64-byte header per slot
//	                dataOff  chunk bytes of data per slot, page-aligned
//
// A ring has one producer (src) and one consumer (dst). The producer fills
// slot i%slots with message part i and publishes it by storing i+1 in the
// slot header's seq word, so the consumer finds the header and the
// publication on one line; it reuses the slot once tail > i. Every part
// names the operation it belongs to (kind, dtype, op, total bytes), so ranks
// that disagree get an error instead of a corrupt result.
const (
	segMagic   = 0x43435247 // "GRCC"
	segVersion = 1
	lineSize   = 128

	offMagic   = 0
	offVersion = 4
	offSize    = 8
	offSlots   = 12
	offChunk   = 16
	offTotal   = 24
	offAbort   = 1 * lineSize
	offJoined  = 2 * lineSize
	ranksOff   = 4 * lineSize
	rankStride = 2 * lineSize

	rkState    = 0
	rkPID      = 8
	rkStart    = 16
	rkBell     = lineSize
	rkSleepers = lineSize + 4

	slotHdr    = 64 // slotHeader, padded to a cache line
	headersOff = lineSize
)

// Rank states.
const (
	rankEmpty   = 0
	rankClaimed = 1 // an Init took the rank and is writing its identity
	rankJoined  = 2
	rankLeft    = 3 // closed, or gave up in Init
)

// Limits. maxRanks keeps size² rings in a segment of reasonable size.
const (
	maxRanks     = 64
	minSlots     = 2 // one slot deadlocks a ring step that receives and sends
	maxSlots     = 64
	minChunk     = 4 << 10
	maxChunk     = 64 << 20
	maxSegData   = 256 << 20 // slot bytes beyond this shrink the chunk
	segPage      = 4096
	defaultChunk = 1 << 20
	defaultSlots = 2
)

// layout is where everything is in a segment for size ranks.
type layout struct {
	size, slots, chunk int
	ringsOff           int
	dataOff            int // of the slots' data in a ring
	pairStride         int
	total              int
}

// newLayout places size×(size-1) rings of slots×chunk bytes. A large
// communicator gets fewer slots (down to minSlots), then a smaller chunk
// (down to minChunk), so the segment stays near maxSegData; every rank
// computes the same.
func newLayout(size, chunk, slots int) layout {
	l := layout{size: size, slots: slots, chunk: chunk}
	pairs := size * (size - 1)
	for pairs*l.slots*l.chunk > maxSegData {
		if l.slots > minSlots {
			l.slots--
		} else if l.chunk > minChunk {
			l.chunk /= 2
		} else {
			break
		}
	}
	l.ringsOff = roundUp(ranksOff+size*rankStride, segPage)
	l.dataOff = roundUp(headersOff+slots*slotHdr, segPage)
	l.pairStride = l.dataOff + slots*l.chunk
	l.total = l.ringsOff + pairs*l.pairStride
	return l
}

func roundUp(n, a int) int { return (n + a - 1) / a * a }

// ringOff is the offset of the ring src→dst.
func (l layout) ringOff(src, dst int) int {
	i := dst
	if dst > src {
		i--
	}
	return l.ringsOff + (src*(l.size-1)+i)*l.pairStride
}

func (l layout) rankOff(r int) int { return ranksOff + r*rankStride }

// writeHeader fills a new segment's header (before anyone else can see it).
func (l layout) writeHeader(mem []byte) {
	binary.LittleEndian.PutUint32(mem[offMagic:], segMagic)
	binary.LittleEndian.PutUint32(mem[offVersion:], segVersion)
	binary.LittleEndian.PutUint32(mem[offSize:], uint32(l.size))
	binary.LittleEndian.PutUint32(mem[offSlots:], uint32(l.slots))
	binary.LittleEndian.PutUint32(mem[offChunk:], uint32(l.chunk))
	binary.LittleEndian.PutUint64(mem[offTotal:], uint64(l.total))
}

// checkHeader compares an existing segment's header (and its file size)
// with what this rank expects.
func (l layout) checkHeader(mem []byte, fileSize int64) error {
	if len(mem) < segPage {
		return fmt.Errorf("segment of %d bytes is too small to be a communicator", len(mem))
	}
	le := binary.LittleEndian
	if m := le.Uint32(mem[offMagic:]); m != segMagic {
		return fmt.Errorf("segment is not a CPU communicator (magic %#x)", m)
	}
	if v := le.Uint32(mem[offVersion:]); v != segVersion {
		return fmt.Errorf("segment has version %d, this binary speaks %d", v, segVersion)
	}
	if s := int(le.Uint32(mem[offSize:])); s != l.size {
		return fmt.Errorf("%w: this rank says the communicator has %d ranks, the rank that created it said %d: pass the same size to every Init", ErrBadArgument, l.size, s)
	}
	if s, c := int(le.Uint32(mem[offSlots:])), int(le.Uint32(mem[offChunk:])); s != l.slots || c != l.chunk {
		return fmt.Errorf("segment has %d slots of %d bytes, this rank expects %d of %d", s, c, l.slots, l.chunk)
	}
	if t := le.Uint64(mem[offTotal:]); t != uint64(l.total) || fileSize != int64(l.total) {
		return fmt.Errorf("segment is %d bytes (header says %d), this rank expects %d", fileSize, t, l.total)
	}
	return nil
}

// u32 and u64 point at a word of the mapping; off must be aligned.
func u32(mem []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
func u64(mem []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&mem[off])) }

// Abort word: who aborted the communicator and why, packed so one
// compare-and-swap records it (the first abort wins).
//
//	bits 56-63 reason, 32-47 rank, 0-31 pid
const (
	abortUser     = 1 // Abort called
	abortPeerDied = 2 // rank is the rank that died
	abortMismatch = 3 // rank saw a peer disagree about an operation
	abortCancel   = 4 // rank's operation was cancelled (ctx)
	abortInit     = 5 // rank gave up waiting in Init
	abortClosed   = 6 // rank closed with an operation pending
	abortLeft     = 7 // rank closed while a peer waited for it
)

func packAbort(reason, rank, pid int) uint64 {
	return uint64(reason)<<56 | uint64(rank&0xffff)<<32 | uint64(uint32(pid))
}

func unpackAbort(w uint64) (reason, rank, pid int) {
	return int(w >> 56), int(w >> 32 & 0xffff), int(uint32(w))
}

// abortError describes an abort word seen in shared memory.
func abortError(w uint64) error {
	reason, rank, pid := unpackAbort(w)
	switch reason {
	case abortPeerDied:
		return fmt.Errorf("%w: rank %d (pid %d) died; the communicator is aborted (%w)", ErrPeerDied, rank, pid, ErrAborted)
	case abortUser:
		return fmt.Errorf("%w by rank %d (pid %d): Abort was called", ErrAborted, rank, pid)
	case abortMismatch:
		return fmt.Errorf("%w by rank %d (pid %d): ranks disagreed about an operation (kind, dtype, size, reduction or root) or the communicator (size, rank numbers)", ErrAborted, rank, pid)
	case abortCancel:
		return fmt.Errorf("%w by rank %d (pid %d): an operation there was cancelled or timed out", ErrAborted, rank, pid)
	case abortInit:
		return fmt.Errorf("%w by rank %d (pid %d): it gave up waiting for the other ranks to join", ErrAborted, rank, pid)
	case abortClosed:
		return fmt.Errorf("%w by rank %d (pid %d): it closed the communicator with an operation pending", ErrAborted, rank, pid)
	case abortLeft:
		return fmt.Errorf("%w: rank %d (pid %d) closed the communicator while a peer waited for it", ErrAborted, rank, pid)
	}
	return fmt.Errorf("%w by rank %d (pid %d)", ErrAborted, rank, pid)
}
