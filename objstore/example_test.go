package objstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/objstore"
)

func Example() {
	s, err := objstore.New(objstore.Config{Capacity: 1 << 20})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	task := ids.NewTaskID(ids.NilActorIDOf(ids.JobIDFromInt(1)))
	id := ids.NewObjectID(task, 1)

	// Write a float64 vector in place, then seal it.
	b, _ := s.Create(id, 4*8)
	xs, _ := objstore.Writable[float64](b)
	copy(xs, []float64{1, 2, 3, 4})
	b.Seal()

	// Read it without a copy; the view is read-only.
	o, _ := s.Get(context.Background(), id)
	view, _ := objstore.View[float64](o)
	fmt.Println(view)
	o.Release()

	st, _ := s.Stats()
	fmt.Println(st.Objects, "object,", st.Used, "bytes allocated,", st.Pinned, "pinned")
	// Output:
	// [1 2 3 4]
	// 1 object, 64 bytes allocated, 0 pinned
}

// A second process attaches with Dial; here the client is in the same
// process, but it goes through the socket and its rings all the same.
func ExampleDial() {
	dir, _ := os.MkdirTemp("", "objstore-example")
	defer os.RemoveAll(dir)
	s, err := objstore.New(objstore.Config{Capacity: 1 << 20, Socket: filepath.Join(dir, "store.sock")})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	ctx := context.Background()
	c, err := objstore.Dial(ctx, s.Socket()) // in a worker: the node's socket path
	if err != nil {
		panic(err)
	}
	defer c.Close()

	id := ids.NewObjectID(ids.NewTaskID(ids.NilActorIDOf(ids.JobIDFromInt(1))), 0)
	c.Put(id, []byte("written by the client"))

	o, _ := s.Get(ctx, id) // the host reads the same bytes, in place
	fmt.Println(string(o.Data()))
	o.Release()
	// Output: written by the client
}
