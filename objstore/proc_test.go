package objstore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/internal/shm"
	"github.com/goray/goray/internal/testutil"
	"github.com/goray/goray/objstore"
)

// Child roles: real processes of this test binary attached to the parent's
// store through its socket.
const (
	roleCreate = "objstore.create" // args: socket, object ID, size, by-name: create, fill, seal
	roleRead   = "objstore.read"   // args: socket, object ID: get, sum, try to write
	roleCrash  = "objstore.crash"  // args: socket: pin, half-write, then wait to be killed
	roleHost   = "objstore.host"   // args: label: host a store with a named arena until killed
)

func init() {
	reexec.Register(roleCreate, childMain(createMain))
	reexec.Register(roleRead, childMain(readMain))
	reexec.Register(roleCrash, childMain(crashMain))
	reexec.Register(roleHost, hostMain)
}

func hostMain(args []string) int {
	s, err := objstore.New(objstore.Config{Capacity: 1 << 20, Label: args[0]})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	if err := s.Put(oid(1), []byte("left behind")); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	fmt.Println(s.ArenaName())
	select {} // until killed
}

// childMain runs body, then waits for stdin to close before detaching, so
// the parent decides when the child's state goes away.
func childMain(body func(c *objstore.Client, args []string) error) func([]string) int {
	return func(args []string) int {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		dial := objstore.Dial
		if len(args) > 3 && args[3] == "byname" {
			dial = objstore.DialByName
		}
		c, err := dial(ctx, args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		defer c.Close()
		if err := body(c, args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		bufio.NewReader(os.Stdin).ReadString('\n')
		return 0
	}
}

func createMain(c *objstore.Client, args []string) error {
	id, err := ids.ParseObjectID(args[0])
	if err != nil {
		return err
	}
	size, _ := strconv.Atoi(args[1])
	b, err := c.Create(id, int64(size))
	if err != nil {
		return err
	}
	copy(b.Data(), randBytes(uint64(id.Index()), size))
	off := b.Offset()
	if err := b.Seal(); err != nil {
		return err
	}
	fmt.Printf("sealed %d\n", off)
	return nil
}

func readMain(c *objstore.Client, args []string) error {
	id, err := ids.ParseObjectID(args[0])
	if err != nil {
		return err
	}
	o, err := c.Get(context.Background(), id)
	if err != nil {
		return err
	}
	var sum uint64
	for _, v := range o.Data() {
		sum += uint64(v)
	}
	fmt.Printf("read %d %d %v\n", o.Offset(), sum, writeFaults(o.Data()))
	return o.Release()
}

func crashMain(c *objstore.Client, _ []string) error {
	for i := uint32(1); i <= 2; i++ {
		if err := c.Put(oid(i), randBytes(uint64(i), 10000)); err != nil {
			return err
		}
	}
	if _, err := c.Get(context.Background(), oid(1)); err != nil { // pinned, never released
		return err
	}
	b, err := c.Create(oid(3), 50000) // half-written, never sealed
	if err != nil {
		return err
	}
	copy(b.Data()[:20000], randBytes(3, 20000))
	fmt.Println("ready")
	select {} // until killed
}

func socketPath(t *testing.T) string { return filepath.Join(t.TempDir(), "store.sock") }

// mappingOf returns the line of /proc/self/maps holding address p.
func mappingOf(t *testing.T, p unsafe.Pointer) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		var lo, hi uintptr
		if _, err := fmt.Sscanf(line, "%x-%x", &lo, &hi); err == nil && uintptr(p) >= lo && uintptr(p) < hi {
			return strings.TrimSpace(line)
		}
	}
	t.Fatalf("address %p is in no mapping", p)
	return ""
}

func TestChildCreatesParentReads(t *testing.T) {
	for _, byName := range []bool{false, true} {
		t.Run(fmt.Sprintf("byname=%v", byName), func(t *testing.T) {
			cfg := objstore.Config{Capacity: 8 << 20, Socket: socketPath(t)}
			mode := "fd"
			if byName {
				cfg.Label = "test"
				mode = "byname"
			}
			s := newStore(t, cfg)
			const size = 3 << 20
			id := oid(42)
			child := testutil.StartChild(t, roleCreate, s.Socket(), id.String(), strconv.Itoa(size), mode)
			line := child.ReadLine(30 * time.Second)
			var childOff int64
			if _, err := fmt.Sscanf(line, "sealed %d", &childOff); err != nil {
				t.Fatalf("child said %q", line)
			}
			o, err := s.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Release()
			if !bytes.Equal(o.Data(), randBytes(uint64(id.Index()), size)) {
				t.Fatal("parent read different bytes than the child wrote")
			}
			// The same arena extent, mapped, not copied: the child's offset,
			// and the view lies in a read-only shared mapping of the arena.
			if o.Offset() != childOff {
				t.Errorf("parent sees the object at %d, child wrote it at %d", o.Offset(), childOff)
			}
			m := mappingOf(t, unsafe.Pointer(unsafe.SliceData(o.Data())))
			f := strings.Fields(m)
			if len(f) < 6 || f[1] != "r--s" || !strings.Contains(m, "objstore") {
				t.Errorf("view mapped by %q, want a read-only shared mapping of the arena", m)
			}
			if byName && !strings.Contains(m, s.ArenaName()) {
				t.Errorf("view mapped by %q, want the arena %s", m, s.ArenaName())
			}
			child.WriteLine("bye")
			if err := child.Wait(30 * time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParentCreatesChildReads(t *testing.T) {
	s := newStore(t, objstore.Config{Capacity: 8 << 20, Socket: socketPath(t)})
	id := oid(7)
	data := fill(t, s, id, 1<<20)
	var sum uint64
	for _, v := range data {
		sum += uint64(v)
	}
	b, _ := s.Create(oid(8), 10) // a later object: the child must not see it
	defer b.Abort()
	child := testutil.StartChild(t, roleRead, s.Socket(), id.String())
	o, _ := s.Get(context.Background(), id)
	defer o.Release()
	want := fmt.Sprintf("read %d %d true", o.Offset(), sum)
	if got := child.ReadLine(30 * time.Second); got != want {
		t.Fatalf("child said %q, want %q (same offset and sum, and a write through its view faults)", got, want)
	}
	child.WriteLine("bye")
	if err := child.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.Data(), data) {
		t.Error("object changed")
	}
}

func TestKilledClientReclaimed(t *testing.T) {
	s := newStore(t, objstore.Config{Capacity: 8 << 20, Socket: socketPath(t)})
	child := testutil.StartChild(t, roleCrash, s.Socket())
	if got := child.ReadLine(30 * time.Second); got != "ready" {
		t.Fatalf("child said %q", got)
	}
	st := stats(t, s)
	if st.PinnedObjects != 1 || st.Unsealed != 50048 || st.Clients != 2 {
		t.Fatalf("before the kill: %+v", st)
	}
	child.Kill()
	testutil.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		st := stats(t, s)
		if st.Clients != 1 || st.Pinned != 0 || st.Unsealed != 0 {
			return fmt.Errorf("after kill -9: %+v", st)
		}
		return nil
	})
	// The sealed objects survive their creator; the unsealed one is gone
	// and its ID free again; the arena holds exactly the two sealed objects.
	if !has(t, s, oid(1)) || !has(t, s, oid(2)) || has(t, s, oid(3)) {
		t.Error("after kill -9: want objects 1 and 2, not 3")
	}
	if st := stats(t, s); st.Used != 2*10048 {
		t.Errorf("after kill -9: %d bytes allocated, want %d", st.Used, 2*10048)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := s.Get(ctx, oid(1))
	if err != nil || !bytes.Equal(o.Data(), randBytes(1, 10000)) {
		t.Fatalf("object 1 after its creator died: %v", err)
	}
	o.Release()
	fill(t, s, oid(3), 50000)
}

// TestClientAPI runs the lifecycle through a Client in this process: the
// protocol path, errors included.
func TestClientAPI(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, objstore.Config{Capacity: 1 << 20, Socket: socketPath(t), SpillDir: dir})
	ctx := context.Background()
	c, err := objstore.Dial(ctx, s.Socket())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := fill(t, c, oid(1), 1000)
	if err := c.Put(oid(1), data); !errors.Is(err, objstore.ErrObjectExists) {
		t.Errorf("second Put: %v", err)
	}
	o, err := c.Get(ctx, oid(1))
	if err != nil || !bytes.Equal(o.Data(), data) {
		t.Fatalf("Get: %v", err)
	}
	if !writeFaults(o.Data()) {
		t.Error("a write through a client's view did not fault")
	}
	if st := stats(t, c); st.PinnedObjects != 1 || st.Clients != 2 {
		t.Errorf("stats via client: %+v", st)
	}
	o.Release()
	if _, err := c.Create(oid(2), 900<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(oid(4), 200<<10); !errors.Is(err, objstore.ErrObjectStoreFull) {
		t.Errorf("Create beyond what the store can free: %v", err)
	}
	if _, err := c.Create(oid(4), -1); !errors.Is(err, objstore.ErrBadArgument) {
		t.Errorf("Create of a negative size: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	if _, err := c.Get(short, oid(9)); !errors.Is(err, objstore.ErrObjectNotFound) {
		t.Errorf("Get of a missing object: %v", err)
	}
	b, _ := c.Create(oid(3), 10)
	if err := b.Abort(); err != nil {
		t.Error(err)
	}
	if ok, _ := c.Contains(oid(3)); ok {
		t.Error("aborted object present")
	}
	if err := c.Delete(oid(1)); err != nil {
		t.Error(err)
	}
	if err := c.Delete(oid(1)); !errors.Is(err, objstore.ErrObjectNotFound) {
		t.Errorf("second Delete: %v", err)
	}
}

// TestKilledHostArenaCleaned: a store host killed with kill -9 leaves its
// named arena in /dev/shm; shm.CleanupStale (run by the next session)
// removes it.
func TestKilledHostArenaCleaned(t *testing.T) {
	child := testutil.StartChild(t, roleHost, "killed")
	name := child.ReadLine(30 * time.Second)
	if _, err := os.Stat(filepath.Join(shm.Dir, name)); err != nil {
		t.Fatalf("arena %s: %v", name, err)
	}
	child.Kill()
	testutil.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if _, err := shm.CleanupStale(); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(shm.Dir, name)); err == nil {
			return fmt.Errorf("arena %s still in %s", name, shm.Dir)
		}
		return nil
	})
}
