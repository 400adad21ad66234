// Package ids holds goray's fixed-size identifiers, laid out as Ray's are,
// so that an ID says where it comes from without a lookup:
//
//	JobID     4 bytes                       a job (a driver's session)
//	ActorID  16 bytes = 12 unique + JobID   an actor of that job
//	TaskID   24 bytes =  8 unique + ActorID a task (the nil ActorID's unique
//	                                        part for a normal task)
//	ObjectID 28 bytes = TaskID + 4-byte index (little-endian): the index-th
//	                                        return or put of that task
//
// IDs are comparable arrays, usable as map keys, printed and parsed as
// lowercase hex. The zero value of each is its Nil.
//
// Package ids is not an allocator of globally unique numbers: unique parts
// are random (crypto/rand), which is what Ray does too (task IDs: a random
// per-process base plus a counter).
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync/atomic"
)

// Sizes in bytes.
const (
	JobIDSize    = 4
	ActorIDSize  = 16
	TaskIDSize   = 24
	ObjectIDSize = 28

	actorUnique = ActorIDSize - JobIDSize  // 12
	taskUnique  = TaskIDSize - ActorIDSize // 8
)

type (
	// JobID identifies a job.
	JobID [JobIDSize]byte
	// ActorID identifies an actor: 12 unique bytes, then its JobID.
	ActorID [ActorIDSize]byte
	// TaskID identifies a task: 8 unique bytes, then its ActorID.
	TaskID [TaskIDSize]byte
	// ObjectID identifies an object: its TaskID, then a 4-byte index.
	ObjectID [ObjectIDSize]byte
)

// JobIDFromInt makes the JobID of job number n (Ray numbers jobs).
func JobIDFromInt(n uint32) JobID {
	var j JobID
	binary.LittleEndian.PutUint32(j[:], n)
	return j
}

// NewActorID makes a random ActorID of job.
func NewActorID(job JobID) ActorID {
	var a ActorID
	rand.Read(a[:actorUnique])
	copy(a[actorUnique:], job[:])
	return a
}

// NilActorIDOf is the ActorID of job with a nil unique part: the "actor"
// of a normal task.
func NilActorIDOf(job JobID) ActorID {
	var a ActorID
	copy(a[actorUnique:], job[:])
	return a
}

// NewTaskID makes a TaskID of actor (NilActorIDOf(job) for a normal
// task). Its unique part is a per-process random base plus a counter:
// unique within the process, and across processes as random IDs are, but
// without a call into the random source per task.
func NewTaskID(actor ActorID) TaskID {
	var t TaskID
	binary.LittleEndian.PutUint64(t[:taskUnique], taskBase+taskSeq.Add(1))
	copy(t[taskUnique:], actor[:])
	return t
}

var (
	taskBase = func() uint64 {
		var b [8]byte
		rand.Read(b[:])
		return binary.LittleEndian.Uint64(b[:])
	}()
	taskSeq atomic.Uint64
)

// NewObjectID makes the ID of the index-th object of task.
func NewObjectID(task TaskID, index uint32) ObjectID {
	var o ObjectID
	copy(o[:], task[:])
	binary.LittleEndian.PutUint32(o[TaskIDSize:], index)
	return o
}

// Job is the job an actor belongs to.
func (a ActorID) Job() JobID { return JobID(a[actorUnique:]) }

// Actor is the actor a task belongs to.
func (t TaskID) Actor() ActorID { return ActorID(t[taskUnique:]) }

// Job is the job a task belongs to.
func (t TaskID) Job() JobID { return t.Actor().Job() }

// Task is the task that made the object.
func (o ObjectID) Task() TaskID { return TaskID(o[:TaskIDSize]) }

// Index is the object's index among its task's objects.
func (o ObjectID) Index() uint32 { return binary.LittleEndian.Uint32(o[TaskIDSize:]) }

// Job is the job the object belongs to.
func (o ObjectID) Job() JobID { return o.Task().Job() }

// IsNil reports whether the ID is all zero.
func (j JobID) IsNil() bool    { return j == JobID{} }
func (a ActorID) IsNil() bool  { return a == ActorID{} }
func (t TaskID) IsNil() bool   { return t == TaskID{} }
func (o ObjectID) IsNil() bool { return o == ObjectID{} }

// String is the ID in lowercase hex.
func (j JobID) String() string    { return hex.EncodeToString(j[:]) }
func (a ActorID) String() string  { return hex.EncodeToString(a[:]) }
func (t TaskID) String() string   { return hex.EncodeToString(t[:]) }
func (o ObjectID) String() string { return hex.EncodeToString(o[:]) }

func parse(kind, s string, dst []byte) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("ids: parse %s %q: want %d hex digits, got %d", kind, s, 2*len(dst), len(s))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("ids: parse %s %q: %w", kind, s, err)
	}
	return nil
}

// ParseJobID parses the hex form of a JobID.
func ParseJobID(s string) (JobID, error) {
	var j JobID
	return j, parse("job ID", s, j[:])
}

// ParseActorID parses the hex form of an ActorID.
func ParseActorID(s string) (ActorID, error) {
	var a ActorID
	return a, parse("actor ID", s, a[:])
}

// ParseTaskID parses the hex form of a TaskID.
func ParseTaskID(s string) (TaskID, error) {
	var t TaskID
	return t, parse("task ID", s, t[:])
}

// ParseObjectID parses the hex form of an ObjectID.
func ParseObjectID(s string) (ObjectID, error) {
	var o ObjectID
	return o, parse("object ID", s, o[:])
}
