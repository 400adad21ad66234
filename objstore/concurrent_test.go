package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/internal/testutil"
	"github.com/goray/goray/objstore"
)

// TestConcurrentPressure runs host goroutines and in-process clients
// against a small store with eviction and spilling, checking every byte
// read: under -race it is the store's lock discipline test.
func TestConcurrentPressure(t *testing.T) {
	s := newStore(t, objstore.Config{Capacity: 256 << 10, Socket: socketPath(t), SpillDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var conns []objstore.Conn
	for range 2 {
		conns = append(conns, s)
		c, err := objstore.Dial(ctx, s.Socket())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(conns))
	for w, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				id := oid(uint32(w*1000 + i))
				size := 1000 + (i*7919)%30000
				data := randBytes(uint64(id.Index()), size)
				var opts []objstore.CreateOption
				if i%2 == 0 {
					opts = append(opts, objstore.Evictable())
				}
				if err := c.Put(id, data, opts...); err != nil && !errors.Is(err, objstore.ErrObjectStoreFull) {
					errc <- fmt.Errorf("worker %d put %d: %w", w, i, err)
					return
				}
				if i%3 != 0 {
					continue
				}
				if ok, _ := c.Contains(id); !ok {
					continue // evicted already, or the put did not fit
				}
				short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				o, err := c.Get(short, id)
				cancel()
				if errors.Is(err, objstore.ErrObjectNotFound) || errors.Is(err, objstore.ErrObjectStoreFull) {
					continue // evicted meanwhile, or no room to restore while others pin
				}
				if err != nil {
					errc <- fmt.Errorf("worker %d get %d: %w", w, i, err)
					return
				}
				if !bytes.Equal(o.Data(), data) {
					errc <- fmt.Errorf("worker %d: object %d has different bytes", w, i)
				}
				o.Release()
				if i%2 == 1 {
					c.Delete(id)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	// Releases from clients are one-way messages: wait for them to land.
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if st := stats(t, s); st.Pinned != 0 || st.Unsealed != 0 {
			return fmt.Errorf("store not idle: %+v", st)
		}
		return nil
	})
	if st := stats(t, s); st.Evictions == 0 || st.SpillsTotal == 0 {
		t.Errorf("stats %+v: want pressure to have evicted and spilled", st)
	}
}
