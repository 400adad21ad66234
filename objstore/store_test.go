package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/objstore"
)

// testTask is fixed, so that parent and child processes name the same objects.
var testTask = ids.TaskID{0: 0x7a, 23: 1}

func oid(i uint32) ids.ObjectID { return ids.NewObjectID(testTask, i) }

func newStore(t *testing.T, cfg objstore.Config) *objstore.Store {
	t.Helper()
	s, err := objstore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func stats(t *testing.T, c objstore.Conn) objstore.Stats {
	t.Helper()
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestLifecycle(t *testing.T) {
	s := newStore(t, objstore.Config{Capacity: 1 << 20})
	id := oid(1)
	b, err := s.Create(id, 100)
	if err != nil {
		t.Fatal(err)
	}
	if b.Offset()%objstore.Alignment != 0 {
		t.Errorf("offset %d not %d-aligned", b.Offset(), objstore.Alignment)
	}
	want := randBytes(1, 100)
	copy(b.Data(), want)
	if ok, _ := s.Contains(id); ok {
		t.Error("Contains before Seal")
	}
	if _, err := s.Create(id, 10); !errors.Is(err, objstore.ErrObjectExists) {
		t.Errorf("second Create: %v, want ErrObjectExists", err)
	}
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	if err := b.Seal(); !errors.Is(err, objstore.ErrNotCreator) {
		t.Errorf("second Seal: %v", err)
	}
	if ok, _ := s.Contains(id); !ok {
		t.Error("not Contains after Seal")
	}
	o, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.Data(), want) || o.Offset() != b.Offset() {
		t.Fatalf("Get: %d bytes at %d, want the %d written at %d", len(o.Data()), o.Offset(), len(want), b.Offset())
	}
	if st := stats(t, s); st.PinnedObjects != 1 || st.Pinned != 128 || st.Used != 128 {
		t.Errorf("pinned stats %+v", st)
	}
	if err := s.Delete(id); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Contains(id); ok {
		t.Error("Contains after Delete")
	}
	if !bytes.Equal(o.Data(), want) {
		t.Error("a pinned object changed after Delete")
	}
	if st := stats(t, s); st.Used != 128 {
		t.Errorf("a deleted pinned object was freed early: %+v", st)
	}
	if err := o.Release(); err != nil {
		t.Fatal(err)
	}
	if err := o.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if st := stats(t, s); st.Used != 0 || st.Pinned != 0 || st.Objects != 0 {
		t.Errorf("after Release of a deleted object: %+v", st)
	}
	if err := s.Delete(id); !errors.Is(err, objstore.ErrObjectNotFound) {
		t.Errorf("Delete of a deleted object: %v", err)
	}

	// Abort, and zero-length objects.
	b, _ = s.Create(oid(2), 50)
	if err := b.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(oid(3), nil); err != nil {
		t.Fatal(err)
	}
	o, err = s.Get(context.Background(), oid(3))
	if err != nil || len(o.Data()) != 0 {
		t.Fatalf("empty object: %v, %d bytes", err, len(o.Data()))
	}
	o.Release()
	if st := stats(t, s); st.Unsealed != 0 || st.Objects != 1 {
		t.Errorf("after abort: %+v", st)
	}
}

func TestGetWaitsForSeal(t *testing.T) {
	s := newStore(t, objstore.Config{Capacity: 1 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := s.Get(ctx, oid(1)); !errors.Is(err, objstore.ErrObjectNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get of a missing object: %v, want ErrObjectNotFound and DeadlineExceeded", err)
	}
	got := make(chan error, 1)
	go func() {
		o, err := s.Get(context.Background(), oid(1))
		if err == nil {
			if string(o.Data()) != "late" {
				err = errors.New("wrong bytes: " + string(o.Data()))
			}
			o.Release()
		}
		got <- err
	}()
	b, err := s.Create(oid(1), 4)
	if err != nil {
		t.Fatal(err)
	}
	copy(b.Data(), "late")
	select {
	case err := <-got:
		t.Fatalf("Get returned before Seal: %v", err)
	default:
	}
	if err := b.Seal(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// writeFaults reports whether writing to b faults (the mapping is read-only).
func writeFaults(b []byte) (faulted bool) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() { faulted = recover() != nil }()
	b[0] = ^b[0]
	return false
}

func TestViewsReadOnly(t *testing.T) {
	s := newStore(t, objstore.Config{Capacity: 1 << 20})
	b, _ := s.Create(oid(1), 8*1000)
	w, err := objstore.Writable[float64](b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range w {
		w[i] = float64(i)
	}
	b.Seal()
	o, err := s.Get(context.Background(), oid(1))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Release()
	f, err := objstore.View[float64](o)
	if err != nil || len(f) != 1000 || f[999] != 999 {
		t.Fatalf("View[float64]: %d elements, %v", len(f), err)
	}
	if &f[0] != (*float64)(unsafePointer(o.Data())) {
		t.Error("typed view is a copy")
	}
	if _, err := objstore.View[int64](o); err != nil {
		t.Error(err)
	}
	if !writeFaults(o.Data()) {
		t.Fatal("a write through a Get view did not fault")
	}
	b2, _ := s.Create(oid(2), 3)
	b2.Seal()
	o2, _ := s.Get(context.Background(), oid(2))
	defer o2.Release()
	if _, err := objstore.View[uint32](o2); !errors.Is(err, objstore.ErrBadArgument) {
		t.Errorf("View[uint32] of 3 bytes: %v", err)
	}
}

func fill(t *testing.T, s objstore.Conn, id ids.ObjectID, size int, opts ...objstore.CreateOption) []byte {
	t.Helper()
	data := randBytes(uint64(id.Index()), size)
	if err := s.Put(id, data, opts...); err != nil {
		t.Fatalf("put %d (%d bytes): %v", id.Index(), size, err)
	}
	return data
}

func has(t *testing.T, s objstore.Conn, id ids.ObjectID) bool {
	t.Helper()
	ok, err := s.Contains(id)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestEvictionOrder(t *testing.T) {
	const obj = 4096
	s := newStore(t, objstore.Config{Capacity: 4 * obj})
	for i := uint32(1); i <= 4; i++ {
		fill(t, s, oid(i), obj, objstore.Evictable())
	}
	// Touch 1: 2 is now the least recently used.
	o, _ := s.Get(context.Background(), oid(1))
	o.Release()
	// Pin 3: never evicted while pinned.
	pinned, _ := s.Get(context.Background(), oid(3))
	defer pinned.Release()

	var evicted []uint32
	for i := uint32(5); i <= 7; i++ {
		fill(t, s, oid(i), obj, objstore.Evictable())
		for j := uint32(1); j < i; j++ {
			if !has(t, s, oid(j)) && !contains(evicted, j) {
				evicted = append(evicted, j)
			}
		}
	}
	if want := []uint32{2, 4, 1}; !equal(evicted, want) {
		t.Errorf("eviction order %v, want %v", evicted, want)
	}
	if st := stats(t, s); st.Evictions != 3 || st.EvictedBytes != 3*obj {
		t.Errorf("stats %+v: want 3 evictions of %d bytes", st, obj)
	}

	// Objects not marked evictable stay; with no spill directory the store
	// is full, and says by how much.
	s2 := newStore(t, objstore.Config{Capacity: 4 * obj})
	for i := uint32(1); i <= 4; i++ {
		fill(t, s2, oid(i), obj)
	}
	_, err := s2.Create(oid(9), 100)
	if !errors.Is(err, objstore.ErrObjectStoreFull) || !errors.Is(err, errs.ErrObjectStoreFull) {
		t.Fatalf("Create in a full store: %v", err)
	}
	for _, want := range []string{"needs 128 bytes", "capacity 16384", "spilling disabled"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	for i := uint32(1); i <= 4; i++ {
		if !has(t, s2, oid(i)) {
			t.Errorf("non-evictable object %d was dropped", i)
		}
	}
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func equal(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSpillRestore(t *testing.T) {
	dir := t.TempDir()
	const capacity = 1 << 20
	s := newStore(t, objstore.Config{Capacity: capacity, SpillDir: dir})
	// Each object is larger than the free space left by the others.
	sizes := []int{700 << 10, 600 << 10, 900 << 10, capacity}
	want := map[uint32][]byte{}
	for i, n := range sizes {
		want[uint32(i)] = fill(t, s, oid(uint32(i)), n)
	}
	st := stats(t, s)
	if st.SpilledObjects != 3 || st.Spilled != int64(700<<10+600<<10+900<<10) || st.SpillsTotal != 3 {
		t.Fatalf("after filling: %+v", st)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.spill"))
	if len(files) != 3 {
		t.Fatalf("spill files %v, want 3", files)
	}
	for round := range 2 {
		for i := range sizes {
			o, err := s.Get(context.Background(), oid(uint32(i)))
			if err != nil {
				t.Fatalf("round %d: get %d: %v", round, i, err)
			}
			if !bytes.Equal(o.Data(), want[uint32(i)]) {
				t.Fatalf("round %d: object %d restored with different bytes", round, i)
			}
			o.Release()
		}
	}
	st = stats(t, s)
	if st.RestoresTotal < 6 || st.Pinned != 0 || st.SpilledObjects != 3 {
		t.Errorf("after restores: %+v", st)
	}
	// A pinned object cannot be spilled: with it pinned, the arena-sized
	// object cannot come back.
	o, err := s.Get(context.Background(), oid(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), oid(3)); !errors.Is(err, objstore.ErrObjectStoreFull) {
		t.Errorf("restore with the arena pinned: %v, want ErrObjectStoreFull", err)
	}
	o.Release()
	for i := range sizes {
		if err := s.Delete(oid(uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 0 {
		t.Errorf("spill files left after Delete: %v", files)
	}
}

func TestSpillCorrupt(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, objstore.Config{Capacity: 64 << 10, SpillDir: dir})
	fill(t, s, oid(1), 40<<10)
	fill(t, s, oid(2), 40<<10) // spills 1
	paths, _ := filepath.Glob(filepath.Join(dir, "*"+oid(1).String()+".spill"))
	if len(paths) != 1 {
		t.Fatalf("spill files of object 1: %v", paths)
	}
	path := paths[0]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), oid(1)); !errors.Is(err, objstore.ErrSpillCorrupt) {
		t.Fatalf("Get of a corrupt spilled object: %v, want ErrSpillCorrupt", err)
	}
	// The failed restore left nothing allocated and object 2 intact.
	o, err := s.Get(context.Background(), oid(2))
	if err != nil {
		t.Fatal(err)
	}
	o.Release()
	if st := stats(t, s); st.Pinned != 0 || st.Unsealed != 0 {
		t.Errorf("after a failed restore: %+v", st)
	}
}

func TestDefaultCapacity(t *testing.T) {
	s := newStore(t, objstore.Config{})
	st := stats(t, s)
	if st.Capacity <= 0 || st.Used != 0 {
		t.Fatalf("default capacity %d", st.Capacity)
	}
}

// TestCloseWithWaiters: Close wakes host and client Gets waiting for a
// seal, and disconnects clients; nothing leaks (TestMain checks).
func TestCloseWithWaiters(t *testing.T) {
	s, err := objstore.New(objstore.Config{Capacity: 1 << 20, Socket: filepath.Join(t.TempDir(), "s")})
	if err != nil {
		t.Fatal(err)
	}
	c, err := objstore.Dial(context.Background(), s.Socket())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 2)
	for _, conn := range []objstore.Conn{s, c} {
		go func() {
			_, err := conn.Get(context.Background(), oid(1))
			errc <- err
		}()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errc; err == nil {
			t.Error("a Get waiting at Close returned no error")
		}
	}
	if _, err := s.Create(oid(2), 1); !errors.Is(err, objstore.ErrClosed) {
		t.Errorf("Create after Close: %v", err)
	}
	if err := c.Put(oid(3), []byte("x")); err == nil {
		t.Error("client Put after the store closed succeeded")
	}
}

// TestBadConfig: what New refuses, and that the refusal says what to do.
func TestBadConfig(t *testing.T) {
	free, err := shm.Free()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  objstore.Config
		want string
	}{
		{objstore.Config{Capacity: -1}, "want 0 (30% of RAM) or a positive size"},
		{objstore.Config{Capacity: 1 << 20, SpillDir: "/no/such/dir"}, "must be an existing directory"},
		{objstore.Config{Capacity: free + 1<<30, Label: "toobig"}, "does not fit /dev/shm"},
	} {
		s, err := objstore.New(tc.cfg)
		if err == nil {
			s.Close()
			t.Fatalf("New(%+v) succeeded", tc.cfg)
		}
		if !errors.Is(err, objstore.ErrBadArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want ErrBadArgument saying %q", tc.cfg, err, tc.want)
		}
	}
}

// TestNewFailsCleanly: a failure part-way through New (here the label's
// segment exists already) returns an error and leaves nothing behind.
func TestNewFailsCleanly(t *testing.T) {
	first := newStore(t, objstore.Config{Capacity: 1 << 20, Label: "twice"})
	_, err := objstore.New(objstore.Config{Capacity: 1 << 20, Label: "twice"})
	if err == nil || !strings.Contains(err.Error(), "file exists") {
		t.Fatalf("second store with the same label: %v", err)
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	second := newStore(t, objstore.Config{Capacity: 1 << 20, Socket: sock})
	_ = second
	if _, err := objstore.New(objstore.Config{Capacity: 1 << 20, Socket: sock}); err == nil {
		t.Fatal("second store on a taken socket path succeeded")
	}
	if _, err := first.Stats(); err != nil {
		t.Fatal(err)
	}
}

// TestDialNotAStore: a socket that answers with something other than a
// store's hello gives Dial an error, not a panic, and leaves nothing open.
func TestDialNotAStore(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = objstore.Dial(ctx, sock)
	if err == nil || !strings.Contains(err.Error(), "objstore: dial") {
		t.Fatalf("Dial to a socket that is not a store: %v", err)
	}
	<-done
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }
