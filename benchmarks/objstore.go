package benchmarks

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/objstore"
)

// The object store cases. Host cases call a Store in this process, as the
// raylet or an embedded driver does (no socket); cross-process cases run a
// peer process attached through the store's socket, which reads the
// commands and signals it needs from the store itself: it waits for a
// "go" object, runs its loop, and puts a "done" object holding its result.
const (
	smallObject = 100
	largeSum    = 64 << 20
)

const roleObjstorePeer = "benchmarks.objstore-peer" // args: socket, mode, n

func init() {
	Register(NewCase("Objstore/put_small", putSmallBody))
	Register(NewCase("Objstore/get_small", getSmallBody))
	Register(NewCase("Objstore/put_small_cross_process", crossBody("put_small", smallObject)))
	Register(NewCase("Objstore/get_small_cross_process", crossBody("get_small", smallObject)))
	for _, size := range []int{1 << 20, 64 << 20} {
		Register(NewCase("Objstore/put_large/"+sizeName(size), putLargeBody(size)))
	}
	Register(NewCase("Objstore/get_cross_process/64MiB", crossBody("get_sum", largeSum)))
	Register(NewCase("Objstore/sum/64MiB", sumBody(largeSum)))
	Register(NewCase("Objstore/fragmentation", fragmentationBody))

	for _, r := range []Row{
		{Case: "Objstore/put_small", Baseline: "Objstore/put_small_cross_process", Kind: MsgRate,
			Target: Target{MinMsgsPerSec: 200e3}},
		{Case: "Objstore/get_small", Baseline: "Objstore/get_small_cross_process", Kind: MsgRate,
			Target: Target{MinMsgsPerSec: 500e3}},
		// From another process (requests over the client's shared-memory
		// rings): against what such a process would otherwise use to hand
		// a small value over, a gRPC round trip. put is put + delete.
		{Case: "Objstore/put_small_cross_process", Baseline: roundTripName("grpc", 64), Kind: Latency,
			Target: Target{MinMsgsPerSec: 200e3}},
		{Case: "Objstore/get_small_cross_process", Baseline: roundTripName("grpc", 64), Kind: Latency,
			Target: Target{MinMsgsPerSec: 500e3}},
		{Case: "Objstore/put_large/1MiB", Baseline: "Memcpy/1MiB", Kind: Bandwidth, Target: Target{MinRatio: 0.8}},
		{Case: "Objstore/put_large/64MiB", Baseline: "Memcpy/64MiB", Kind: Bandwidth, Target: Target{MinRatio: 0.8}},
		{Case: "Objstore/get_cross_process/64MiB", Baseline: "Objstore/sum/64MiB", Kind: Bandwidth,
			Target: Target{MinRatio: 0.8}},
	} {
		RegisterRow(r)
	}
	reexec.Register(roleObjstorePeer, peerRole(roleObjstorePeer, objstorePeerMain))
}

var benchTask atomic.Uint64

// newTask returns a task ID no other run of this process uses.
func newTask() ids.TaskID {
	var t ids.TaskID
	binary.LittleEndian.PutUint64(t[:], benchTask.Add(1))
	binary.LittleEndian.PutUint32(t[8:], uint32(os.Getpid()))
	return t
}

var sockSeq atomic.Uint64

// newBenchStore makes a store; with serve, it also listens on a socket in
// a fresh temporary directory.
func newBenchStore(b B, capacity int64, serve bool) *objstore.Store {
	cfg := objstore.Config{Capacity: capacity}
	if serve {
		dir, err := os.MkdirTemp("", "goray-objstore-bench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		cfg.Socket = filepath.Join(dir, "s"+strconv.FormatUint(sockSeq.Add(1), 10))
	}
	s, err := objstore.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// putSmallBody: one op is Put (create, write 100 B, seal) of a new
// object, then Delete, so the arena stays small over any b.N.
func putSmallBody(b B) {
	s := newBenchStore(b, 64<<20, false)
	task, data := newTask(), payload(smallObject)
	n := b.Iterations()
	b.ResetTimer()
	for i := range n {
		id := ids.NewObjectID(task, uint32(i))
		if err := s.Put(id, data); err != nil {
			b.Fatal(err)
		}
		if err := s.Delete(id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unitMsgs)
}

// getSmallBody: one op is Get and Release of a 100 B object.
func getSmallBody(b B) {
	s := newBenchStore(b, 64<<20, false)
	id := ids.NewObjectID(newTask(), 0)
	want := payload(smallObject)
	if err := s.Put(id, want); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := runContext(b)
	defer cancel()
	n := b.Iterations()
	b.ResetTimer()
	for range n {
		o, err := s.Get(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if len(o.Data()) != smallObject {
			b.Fatalf("got %d bytes, want %d", len(o.Data()), smallObject)
		}
		o.Release()
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unitMsgs)
}

// putLargeBody: one op is Create, copy size bytes in, Seal, Delete; the
// freed extent is reused, so the copy lands in memory already faulted in,
// as in a store that has been running a while.
func putLargeBody(size int) func(B) {
	return func(b B) {
		s := newBenchStore(b, int64(2*size+(1<<20)), false)
		task, src := newTask(), payload(size)
		put := func(i int) {
			id := ids.NewObjectID(task, uint32(i))
			buf, err := s.Create(id, int64(size))
			if err != nil {
				b.Fatal(err)
			}
			copy(buf.Data(), src)
			if err := buf.Seal(); err != nil {
				b.Fatal(err)
			}
			if err := s.Delete(id); err != nil {
				b.Fatal(err)
			}
		}
		put(0) // fault the arena's pages in
		b.SetBytes(int64(size))
		n := b.Iterations()
		b.ResetTimer()
		for i := range n {
			put(i + 1)
		}
		b.StopTimer()
	}
}

// sum adds d as little-endian uint64 words (d's length is a multiple of 8).
func sum(d []uint64) uint64 {
	var s0, s1, s2, s3 uint64
	i := 0
	for ; i+4 <= len(d); i += 4 {
		s0 += d[i]
		s1 += d[i+1]
		s2 += d[i+2]
		s3 += d[i+3]
	}
	for ; i < len(d); i++ {
		s0 += d[i]
	}
	return s0 + s1 + s2 + s3
}

// sumBody is the baseline of get_cross_process: the sum alone, over the
// same kind of memory (a read-only view of an object in this process).
func sumBody(size int) func(B) {
	return func(b B) {
		s := newBenchStore(b, int64(size+(1<<20)), false)
		id := ids.NewObjectID(newTask(), 0)
		data := payload(size)
		if err := s.Put(id, data); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := runContext(b)
		defer cancel()
		o, err := s.Get(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		defer o.Release()
		words, err := objstore.View[uint64](o)
		if err != nil {
			b.Fatal(err)
		}
		want := sum(words)
		b.SetBytes(int64(size))
		n := b.Iterations()
		b.ResetTimer()
		for range n {
			if got := sum(words); got != want {
				b.Fatalf("sum %d, want %d", got, want)
			}
		}
		b.StopTimer()
	}
}

// Object indexes of the cross-process protocol, under the run's task.
const (
	idxData = 0 // the object a get loop reads
	idxGo   = 1 // put by the benchmark: start
	idxDone = 2 // put by the peer: finished; holds the result and the cold get's ns (2 × u64)
	idxLoop = 3 // first index the put loop uses
)

// crossBody runs mode's loop in a peer process for b.N ops: put_small
// (Put and Delete of 100 B objects), get_small (Get and Release of a
// 100 B object), get_sum (Get, sum as []uint64, Release of a size-byte
// object: the zero-copy read).
func crossBody(mode string, size int) func(B) {
	return func(b B) {
		s := newBenchStore(b, int64(size+(16<<20)), true)
		ctx, cancel := runContext(b)
		defer cancel()
		task := newTask()
		id := func(i uint32) ids.ObjectID { return ids.NewObjectID(task, i) }
		data := payload(size)
		var want uint64
		if mode != "put_small" {
			buf, err := s.Create(id(idxData), int64(size))
			if err != nil {
				b.Fatal(err)
			}
			copy(buf.Data(), data)
			if err := buf.Seal(); err != nil {
				b.Fatal(err)
			}
			if mode == "get_sum" {
				o, _ := s.Get(ctx, id(idxData))
				w, _ := objstore.View[uint64](o)
				want = sum(w)
				o.Release()
			}
		}
		n := b.Iterations()
		p, err := startPeer(roleObjstorePeer, s.Socket(), mode, task.String(), strconv.Itoa(n))
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			if err := p.stop(); err != nil {
				b.Error(err)
			}
		}()
		if _, err := p.expect("ready", peerStartTimeout); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		if err := s.Put(id(idxGo), nil); err != nil {
			b.Fatal(err)
		}
		done, err := s.Get(ctx, id(idxDone))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		got := binary.LittleEndian.Uint64(done.Data())
		cold := binary.LittleEndian.Uint64(done.Data()[8:])
		done.Release()
		if mode == "get_sum" {
			b.SetBytes(int64(size))
			b.ReportMetric(float64(cold), "cold-get-ns")
			if want*uint64(n) != got {
				b.Fatalf("peer summed %d, want %d × %d", got, n, want)
			}
		} else {
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), unitMsgs)
			if got != uint64(n) {
				b.Fatalf("peer did %d ops, want %d", got, n)
			}
		}
	}
}

func objstorePeerMain(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("want 4 arguments (socket, mode, task, n), got %q", args)
	}
	mode := args[1]
	task, err := ids.ParseTaskID(args[2])
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(args[3])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), runLimit)
	defer cancel()
	c, err := objstore.Dial(ctx, args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	id := func(i uint32) ids.ObjectID { return ids.NewObjectID(task, i) }
	// The first Get in a process fills its page table for the object (one
	// minor fault per 4 KiB page, proportional to the size): measured here,
	// reported as cold-get-ns, and kept out of the timed loop.
	var cold time.Duration
	if mode == "get_sum" {
		t0 := time.Now()
		o, err := c.Get(ctx, id(idxData))
		if err != nil {
			return err
		}
		w, err := objstore.View[uint64](o)
		if err != nil {
			return err
		}
		sum(w)
		cold = time.Since(t0)
		o.Release()
	}
	say("ready")
	start, err := c.Get(ctx, id(idxGo))
	if err != nil {
		return err
	}
	start.Release()
	var result uint64
	switch mode {
	case "put_small":
		data := payload(smallObject)
		for i := range n {
			oid := id(idxLoop + uint32(i))
			if err := c.Put(oid, data); err != nil {
				return err
			}
			if err := c.Delete(oid); err != nil {
				return err
			}
			result++
		}
	case "get_small", "get_sum":
		for range n {
			o, err := c.Get(ctx, id(idxData))
			if err != nil {
				return err
			}
			if mode == "get_sum" {
				w, err := objstore.View[uint64](o)
				if err != nil {
					return err
				}
				result += sum(w)
			} else {
				result++
			}
			if err := o.Release(); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	var out [16]byte
	binary.LittleEndian.PutUint64(out[:], result)
	binary.LittleEndian.PutUint64(out[8:], uint64(cold))
	if err := c.Put(id(idxDone), out[:]); err != nil {
		return err
	}
	// Wait to be stopped, so that the result outlives this client.
	<-ctx.Done()
	return errors.New("not stopped in time")
}

// fragmentationBody measures the allocator under churn: one op puts an
// object of a random size (log-uniform, 64 B to 1 MiB) into a 64 MiB
// store without eviction or spilling; when it does not fit, random
// objects are deleted until it does. util-% is how full the arena was,
// on average, when an allocation failed: 100 would be no fragmentation.
func fragmentationBody(b B) {
	const capacity = 64 << 20
	s := newBenchStore(b, capacity, false)
	task := newTask()
	rng := rand.New(rand.NewPCG(1, 2))
	data := payload(1 << 20)
	var live []ids.ObjectID
	var fails, utilSum, largestSum float64
	n := b.Iterations()
	b.ResetTimer()
	for i := range n {
		size := int(64 << rng.IntN(15))
		size += rng.IntN(size)
		size = min(size, 1<<20)
		id := ids.NewObjectID(task, uint32(i))
		for {
			err := s.Put(id, data[:size])
			if err == nil {
				break
			}
			if !errors.Is(err, objstore.ErrObjectStoreFull) || len(live) == 0 {
				b.Fatal(err)
			}
			st, _ := s.Stats()
			fails++
			utilSum += float64(st.Used) / capacity
			largestSum += float64(st.LargestFree) / float64(max(1, st.Capacity-st.Used))
			k := rng.IntN(len(live))
			if err := s.Delete(live[k]); err != nil {
				b.Fatal(err)
			}
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
		}
		live = append(live, id)
	}
	b.StopTimer()
	if fails > 0 {
		b.ReportMetric(100*utilSum/fails, "util-%")
		b.ReportMetric(100*largestSum/fails, "largest-free-%")
	}
}
