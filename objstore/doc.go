// Package objstore is goray's shared-memory object store (Ray's Plasma):
// one arena per node, mapped by every process of the node, in which
// immutable objects are written once and then read in place, without a
// copy, by any process.
//
// # Lifecycle
//
//	s, _ := objstore.New(objstore.Config{Capacity: 1 << 30, Socket: "/run/goray/store.sock", SpillDir: dir})
//	defer s.Close()
//
//	b, _ := s.Create(id, 4096)       // allocate in the arena
//	copy(b.Data(), payload)          // write in place
//	b.Seal()                         // immutable from now on; wakes waiters
//
//	o, _ := s.Get(ctx, id)           // waits for the seal; pins the object
//	xs, _ := objstore.View[float64](o) // zero-copy, read-only
//	o.Release()                      // unpin
//	s.Delete(id)                     // freed now, or at the last Release
//
// IDs are ids.ObjectID (Ray's layout: task ID and index). The Store is the
// host: the process that owns the arena and the object table (the raylet,
// or an embedded driver); its calls take a mutex and touch the arena
// directly. Other processes Dial the store's Unix socket and get a Client
// with the same methods (Conn): the arena arrives as a descriptor
// (SCM_RIGHTS), or is opened by name (DialByName) when the store has a
// Label, and the client's requests then travel over two shared-memory rings
// the store made for it (package channel), about a microsecond a round
// trip. The socket stays open only so that its closing tells the store the
// client is gone.
//
// # Read-only views
//
// Every process maps the arena twice: read-write, for the objects it
// creates (Buffer.Data, Writable), and read-only, for the views Get
// returns (Object.Data, View). A write through a view faults in the
// writer's process and is never visible to other readers.
//
// # Clients and crashes
//
// Each attached process is a client on its own connection. When the
// connection closes (Close, exit, kill -9) the store releases the pins the
// client held and discards the objects it created but did not seal; its
// sealed objects stay. A crash never leaks store memory. A memfd arena
// vanishes with its last mapping; a named one (Label) is removed by Close
// and, after a kill -9 of the host, by shm.CleanupStale.
//
// # Pressure
//
// When an object does not fit, the store evicts sealed, unpinned objects
// created with Evictable (least recently used first: Seal and Get count as
// uses), then spills sealed, unpinned objects to SpillDir (least recently
// used first), and restores a spilled object transparently on Get. Only
// when neither frees enough does Create fail with ErrObjectStoreFull, whose
// message names the sizes involved; a request that cannot fit even after
// moving everything movable fails at once, without evicting anything.
// Spill files are checksummed (CRC-32C over header and payload; the format
// is at EncodeSpillRecord): a corrupt file is ErrSpillCorrupt, never
// returned bytes.
//
// # Allocator
//
// Objects are 64-byte aligned (Alignment). The allocator is segregated
// fit with immediate coalescing: free extents sit in power-of-two size
// bins; an allocation takes the best fit among the last few extents of
// its own bin, else any extent of the smallest larger non-empty bin (a
// bitmap finds it in O(1)), and splits it; a free merges with both
// neighbours at once. Why not a buddy allocator: buddies round every
// object up to a power of two, so a 65 MiB object takes 128 MiB, and
// large objects are the store's reason to exist. Why not slab size
// classes: the size mix is unknown and changes per job, and slabs pin
// memory to one class. Segregated fit keeps allocation and free O(1)
// (bounded scan) and wastes at most 63 bytes per object; under random
// churn (BenchmarkObjstore/fragmentation, objects 64 B to 1 MiB in 64 MiB)
// allocations start failing at about 84% occupancy.
//
// # Protocol
//
// Clients speak a small versioned binary protocol (see proto.go): a u32
// length, then version, op, fields; the reply echoes the op with a status
// that names the sentinel error and its message. One request is in flight
// per client. A Get waits on the store in slices of 100 ms, so a client's
// ctx is honoured within that.
//
// # Locks
//
// One mutex, Store.mu, guards the object table, the allocator and the
// client set; it is a leaf: nothing else is locked while it is held.
// Client.mu serialises one client's requests; a Client in the host's own
// process holds it while the store's handler takes Store.mu, so the order
// is Client.mu → Store.mu, never the reverse. Spill and restore I/O runs
// under Store.mu (simple, and correct; it stalls other calls for the
// duration of the file write or read).
//
// Package objstore is not a cache of remote objects, nor a reference
// counter: ownership (who may Delete, and when) is the caller's, as in
// Ray, where the owner's reference count drives deletion.
package objstore
