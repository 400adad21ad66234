// Package shm is goray's shared-memory toolkit: named and anonymous segments,
// mmap, a futex on a shared 32-bit word, a CPU pause for spin loops, passing
// descriptors over Unix sockets, and the naming scheme that lets a new session
// remove what a killed process left in /dev/shm.
//
// # Segments
//
// A Segment is a file in /dev/shm (Create, Open) or a memfd (CreateAnon, shared
// by passing its descriptor). Map maps any window of it with the protection
// the caller asks for, so a reader can map data read-only while it writes its
// own cursor through a second, writable mapping of the header.
//
// # Names and stale segments
//
// Every named segment goray creates is called
//
//	goray.<pid>.<start>.<label>
//
// where pid and start (the process start time in clock ticks, field 22 of
// /proc/<pid>/stat) identify the process that owns it. The pair survives pid
// reuse: a segment whose owner no longer runs with that start time is stale,
// and CleanupStale unlinks it. Owners unlink their segments when they stop;
// CleanupStale covers kill -9.
//
// # Futex
//
// FutexWait and FutexWake operate on a 32-bit word in shared memory without
// FUTEX_PRIVATE_FLAG, so waiters and wakers may live in different processes.
// Every wait has a timeout: a dead peer never wakes anyone.
//
// Package shm is Linux-only. It is not a general IPC library: it holds what
// goray's channels and object store share and nothing more.
package shm
