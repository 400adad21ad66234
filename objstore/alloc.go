package objstore

import "math/bits"

// Alignment is the alignment of every object in the arena: a cache line,
// enough for SIMD loads and for typed views of any numeric type.
const Alignment = 64

const numBins = 64

// allocator hands out Alignment-aligned extents of [0, capacity): a
// segregated-fit allocator with immediate coalescing. Free extents are
// kept in bins by size class (bin b holds extents of [2^(b-1), 2^b) units
// of Alignment bytes); an allocation takes the best fit among the first
// entries of its own bin, else any extent of the smallest non-empty larger
// bin, which is certainly big enough. Freed extents merge with free
// neighbours at once, found through the start and end indexes. It is pure
// code over plain maps and slices: the caller locks.
type allocator struct {
	capacity int64
	used     int64
	free     map[int64]int64 // start → size of a free extent
	freeEnd  map[int64]int64 // end → start of a free extent
	pos      map[int64]int   // start → index in its bin
	bins     [numBins][]int64
	nonEmpty uint64 // bit b set: bins[b] is not empty
}

// binScan bounds the best-fit search inside an allocation's own bin.
const binScan = 16

func newAllocator(capacity int64) *allocator {
	a := &allocator{
		capacity: capacity,
		free:     map[int64]int64{},
		freeEnd:  map[int64]int64{},
		pos:      map[int64]int{},
	}
	if capacity >= Alignment {
		a.insert(0, capacity&^(Alignment-1))
	}
	return a
}

// allocSize is the size an object of n bytes takes in the arena.
func allocSize(n int64) int64 {
	if n <= 0 {
		n = 1
	}
	return (n + Alignment - 1) &^ (Alignment - 1)
}

func binOf(size int64) int { return bits.Len64(uint64(size / Alignment)) }

func (a *allocator) insert(start, size int64) {
	a.free[start] = size
	a.freeEnd[start+size] = start
	b := binOf(size)
	a.pos[start] = len(a.bins[b])
	a.bins[b] = append(a.bins[b], start)
	a.nonEmpty |= 1 << b
}

func (a *allocator) remove(start int64) int64 {
	size := a.free[start]
	delete(a.free, start)
	delete(a.freeEnd, start+size)
	b := binOf(size)
	i := a.pos[start]
	delete(a.pos, start)
	bin := a.bins[b]
	last := len(bin) - 1
	if i != last {
		bin[i] = bin[last]
		a.pos[bin[i]] = i
	}
	a.bins[b] = bin[:last]
	if last == 0 {
		a.nonEmpty &^= 1 << b
	}
	return size
}

// alloc reserves allocSize(n) bytes and returns their offset.
func (a *allocator) alloc(n int64) (int64, bool) {
	size := allocSize(n)
	b := binOf(size)
	if b >= numBins {
		return 0, false
	}
	start, found := int64(-1), int64(0)
	if a.nonEmpty&(1<<b) != 0 {
		bin := a.bins[b]
		for i := len(bin) - 1; i >= 0 && i >= len(bin)-binScan; i-- {
			if s := a.free[bin[i]]; s >= size && (start < 0 || s < found) {
				start, found = bin[i], s
				if s == size {
					break
				}
			}
		}
	}
	if start < 0 {
		var higher uint64
		if b+1 < numBins {
			higher = a.nonEmpty &^ (1<<(b+1) - 1)
		}
		if higher != 0 {
			bin := a.bins[bits.TrailingZeros64(higher)]
			start = bin[len(bin)-1]
		} else {
			// Nothing larger: the fit, if any, is in this bin beyond the
			// bounded scan. Rare, and cheaper than evicting.
			for _, s := range a.bins[b] {
				if a.free[s] >= size {
					start = s
					break
				}
			}
			if start < 0 {
				return 0, false
			}
		}
	}
	got := a.remove(start)
	if got > size {
		a.insert(start+size, got-size)
	}
	a.used += size
	return start, true
}

// release returns the extent of an object of n bytes at off.
func (a *allocator) release(off, n int64) {
	size := allocSize(n)
	a.used -= size
	start, end := off, off+size
	if left, ok := a.freeEnd[start]; ok {
		a.remove(left)
		start = left
	}
	if _, ok := a.free[end]; ok {
		end += a.remove(end)
	}
	a.insert(start, end-start)
}

// largestFree is the size of the largest free extent.
func (a *allocator) largestFree() int64 {
	if a.nonEmpty == 0 {
		return 0
	}
	var best int64
	for _, s := range a.bins[63-bits.LeadingZeros64(a.nonEmpty)] {
		best = max(best, a.free[s])
	}
	return best
}
