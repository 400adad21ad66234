package objstore

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/testutil"
)

// gatedSpiller passes each spill or restore to the real spiller only when
// the test lets it: the test holds I/O in flight and checks what the store
// does meanwhile.
type gatedSpiller struct {
	inner   spiller
	entered chan string   // "spill <id>" or "restore <id>" as an I/O starts
	release chan struct{} // one send lets one I/O go on
}

func (g *gatedSpiller) spill(e *entry) (string, error) {
	g.entered <- "spill " + e.id.String()
	<-g.release
	return g.inner.spill(e)
}

func (g *gatedSpiller) restore(e *entry) error {
	g.entered <- "restore " + e.id.String()
	<-g.release
	return g.inner.restore(e)
}

func (g *gatedSpiller) remove(path string) { g.inner.remove(path) }

const unit = 100 << 10 // objects of 100 KiB in an arena of 256 KiB: two fit

func gatedStore(t *testing.T) (*Store, *gatedSpiller) {
	t.Helper()
	s, err := New(Config{Capacity: 256 << 10, SpillDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	g := &gatedSpiller{inner: s.t.spiller, entered: make(chan string, 4), release: make(chan struct{})}
	s.t.spiller = g
	return s, g
}

func sid(i uint32) ids.ObjectID { return ids.NewObjectID(ids.TaskID{7}, i) }

func fill(i uint32) []byte { return bytes.Repeat([]byte{byte(i + 1)}, unit) }

func expect(t *testing.T, g *gatedSpiller, what string) {
	t.Helper()
	select {
	case got := <-g.entered:
		if got != what {
			t.Fatalf("I/O %q started, want %q", got, what)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("I/O %q did not start", what)
	}
}

// spillingZero fills a gated store with objects 0 and 1, starts a Put of
// object 2 that needs room, and returns once the spill of 0 (the oldest)
// has started and is held; created gets the Put's result.
func spillingZero(t *testing.T) (*Store, *gatedSpiller, <-chan error) {
	t.Helper()
	s, g := gatedStore(t)
	for i := range uint32(2) {
		if err := s.Put(sid(i), fill(i)); err != nil {
			t.Fatal(err)
		}
	}
	created := make(chan error, 1)
	go func() { created <- s.Put(sid(2), fill(2)) }()
	expect(t, g, "spill "+sid(0).String())
	return s, g, created
}

// TestSpillRunsWithoutTheLock: while a spill is written, other calls go
// on; an object pinned meanwhile stays in the arena and its file goes.
func TestSpillRunsWithoutTheLock(t *testing.T) {
	s, g, created := spillingZero(t)
	ctx := context.Background()

	// The lock is free: stats, contains and gets go on.
	if st, err := s.Stats(); err != nil || st.Objects != 2 {
		t.Fatalf("stats during a spill: %+v, %v", st, err)
	}
	if ok, _ := s.Contains(sid(1)); !ok {
		t.Fatal("contains during a spill")
	}
	// Pin the object being spilled: it is still in the arena.
	o, err := s.Get(ctx, sid(0))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.Data(), fill(0)) {
		t.Fatal("object being spilled reads wrong")
	}
	g.release <- struct{}{} // spill of 0 ends: pinned, so it stays
	expect(t, g, "spill "+sid(1).String())
	g.release <- struct{}{}
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.Data(), fill(0)) {
		t.Fatal("pinned object changed")
	}
	o.Release()
	st, _ := s.Stats()
	if st.SpilledObjects != 1 || st.Spilled != unit || st.SpillsTotal != 1 {
		t.Fatalf("after the spills: %+v, want object 1 spilled only", st)
	}
}

// TestDeleteDuringSpill: an object deleted while it is written out is
// freed when the write ends, and its file is removed.
func TestDeleteDuringSpill(t *testing.T) {
	s, g, created := spillingZero(t)
	if err := s.Delete(sid(0)); err != nil {
		t.Fatal(err)
	}
	g.release <- struct{}{}
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	st, _ := s.Stats()
	if st.SpilledObjects != 0 || st.Objects != 2 || st.Used != 2*allocSize(unit) {
		t.Fatalf("after deleting during the spill: %+v", st)
	}
}

// TestRestoreInFlight: a second Get of an object being restored waits for
// that restore; both then read it.
func TestRestoreInFlight(t *testing.T) {
	s, g := gatedStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range uint32(3) {
		done := make(chan error, 1)
		go func() { done <- s.Put(sid(i), fill(i)) }()
		if i == 2 {
			expect(t, g, "spill "+sid(0).String())
			g.release <- struct{}{}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// 0 is spilled. Two gets: one restores (after spilling 1 for room),
	// the other waits for it.
	type res struct {
		o   *Object
		err error
	}
	gets := make(chan res, 2)
	get := func() { o, err := s.Get(ctx, sid(0)); gets <- res{o, err} }
	go get()
	expect(t, g, "spill "+sid(1).String())
	g.release <- struct{}{}
	expect(t, g, "restore "+sid(0).String())
	go get()
	testutil.CheckFor(t, 30*time.Second, time.Millisecond, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.t.ioDone == nil {
			return errors.New("second get not waiting yet")
		}
		return nil
	})
	g.release <- struct{}{}
	for range 2 {
		r := <-gets
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !bytes.Equal(r.o.Data(), fill(0)) {
			t.Fatal("restored object reads wrong")
		}
		r.o.Release()
	}
	if st, _ := s.Stats(); st.RestoresTotal != 1 {
		t.Fatalf("restores %d, want 1", st.RestoresTotal)
	}
}

// TestCloseWaitsForIO: Close waits for a spill in flight, which reads the
// arena, before unmapping it; the creator then gets ErrClosed.
func TestCloseWaitsForIO(t *testing.T) {
	s, g, created := spillingZero(t)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	testutil.CheckFor(t, 30*time.Second, time.Millisecond, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed {
			return errors.New("not closing yet")
		}
		return nil
	})
	select {
	case <-closed:
		t.Fatal("Close returned while a spill was reading the arena")
	default:
	}
	g.release <- struct{}{}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := <-created; !errors.Is(err, ErrClosed) {
		t.Fatalf("create across Close: %v, want ErrClosed", err)
	}
}
