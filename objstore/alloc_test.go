package objstore

import (
	"math/rand/v2"
	"sort"
	"testing"
)

// checkAllocator verifies the allocator's invariants: free extents are
// aligned, disjoint from each other and from the allocated ones, never
// adjacent (coalesced), and the indexes agree.
func checkAllocator(t *testing.T, a *allocator, live map[int64]int64) {
	t.Helper()
	type ext struct{ start, size int64 }
	var all []ext
	var freeBytes int64
	for s, n := range a.free {
		if s%Alignment != 0 || n%Alignment != 0 || n <= 0 {
			t.Fatalf("free extent [%d,+%d) unaligned or empty", s, n)
		}
		if a.freeEnd[s+n] != s {
			t.Fatalf("free extent [%d,+%d) missing from the end index", s, n)
		}
		if b := binOf(n); a.bins[b][a.pos[s]] != s {
			t.Fatalf("free extent [%d,+%d) missing from bin %d", s, n, b)
		}
		all = append(all, ext{s, n})
		freeBytes += n
	}
	if len(a.freeEnd) != len(a.free) || len(a.pos) != len(a.free) {
		t.Fatalf("indexes disagree: %d free, %d ends, %d positions", len(a.free), len(a.freeEnd), len(a.pos))
	}
	var usedBytes int64
	for s, n := range live {
		all = append(all, ext{s, -allocSize(n)})
		usedBytes += allocSize(n)
	}
	if usedBytes != a.used || usedBytes+freeBytes != a.capacity {
		t.Fatalf("used %d (counted %d) + free %d != capacity %d", a.used, usedBytes, freeBytes, a.capacity)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start < all[j].start })
	var at int64
	prevFree := false
	for _, e := range all {
		size, isFree := e.size, e.size > 0
		if !isFree {
			size = -size
		}
		if e.start != at {
			t.Fatalf("gap or overlap at %d (next extent at %d)", at, e.start)
		}
		if isFree && prevFree {
			t.Fatalf("adjacent free extents at %d: not coalesced", e.start)
		}
		at, prevFree = at+size, isFree
	}
}

func TestAllocatorChurn(t *testing.T) {
	const capacity = 1 << 20
	a := newAllocator(capacity)
	live := map[int64]int64{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		if len(live) > 0 && rng.IntN(3) == 0 {
			for off, n := range live {
				a.release(off, n)
				delete(live, off)
				break
			}
		} else {
			n := int64(rng.IntN(1 << uint(rng.IntN(15))))
			off, ok := a.alloc(n)
			if ok {
				if off%Alignment != 0 {
					t.Fatalf("offset %d not aligned", off)
				}
				live[off] = n
			} else if a.largestFree() >= allocSize(n) {
				t.Fatalf("alloc(%d) failed with a free extent of %d", n, a.largestFree())
			}
		}
		if i%500 == 0 {
			checkAllocator(t, a, live)
		}
	}
	for off, n := range live {
		a.release(off, n)
	}
	checkAllocator(t, a, nil)
	if len(a.free) != 1 || a.free[0] != capacity {
		t.Fatalf("after freeing everything: free extents %v, want one of %d", a.free, capacity)
	}
}

func TestAllocatorExactFit(t *testing.T) {
	a := newAllocator(4 * Alignment)
	var offs []int64
	for range 4 {
		off, ok := a.alloc(Alignment)
		if !ok {
			t.Fatal("alloc failed before the arena is full")
		}
		offs = append(offs, off)
	}
	if _, ok := a.alloc(1); ok {
		t.Fatal("alloc succeeded in a full arena")
	}
	a.release(offs[1], Alignment)
	a.release(offs[2], Alignment)
	if off, ok := a.alloc(2 * Alignment); !ok || off != offs[1] {
		t.Fatalf("alloc(2 units) = %d, %v: want the coalesced hole at %d", off, ok, offs[1])
	}
	if _, ok := a.alloc(Alignment + 1); ok {
		t.Fatal("an allocation larger than any hole succeeded")
	}
}

// TestAllocFindsFitBeyondScan: when the only extent that fits sits deeper
// in its bin than the bounded best-fit scan looks, and no larger bin has
// space, the allocation still succeeds rather than report a full arena.
func TestAllocFindsFitBeyondScan(t *testing.T) {
	const unit = Alignment
	// Extents of 33 units (fits a 33-unit object), then 20 extents of 32
	// units (bin 6 as well, too small), separated by allocated spacers.
	a := newAllocator(1 << 20)
	var offs []int64
	for i := 0; a.used < 1<<20-unit; i++ {
		off, ok := a.alloc(unit)
		if !ok {
			break
		}
		offs = append(offs, off)
	}
	// Free a 33-unit hole first, then 20 32-unit holes, all in bin 6.
	freeRun := func(from, n int) {
		for i := from; i < from+n; i++ {
			a.release(offs[i], unit)
		}
	}
	freeRun(0, 33)
	for k := 0; k < 20; k++ {
		freeRun(40+k*40, 32)
	}
	off, ok := a.alloc(33 * unit)
	if !ok {
		t.Fatal("a fitting extent exists but was not found")
	}
	if off != offs[0] {
		t.Fatalf("allocated at %d, want the 33-unit hole at %d", off, offs[0])
	}
}
