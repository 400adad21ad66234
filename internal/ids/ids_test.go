package ids_test

import (
	"strings"
	"testing"

	"github.com/goray/goray/internal/ids"
)

func TestLayout(t *testing.T) {
	job := ids.JobIDFromInt(7)
	actor := ids.NewActorID(job)
	task := ids.NewTaskID(actor)
	obj := ids.NewObjectID(task, 3)
	if actor.Job() != job || task.Actor() != actor || task.Job() != job {
		t.Fatalf("actor %s task %s: parents do not round-trip", actor, task)
	}
	if obj.Task() != task || obj.Index() != 3 || obj.Job() != job {
		t.Fatalf("object %s: task %s index %d job %s", obj, obj.Task(), obj.Index(), obj.Job())
	}
	if !strings.HasSuffix(obj.String(), "03000000") || !strings.HasPrefix(job.String(), "07000000") {
		t.Errorf("object %s, job %s: index and job number are little-endian at the end", obj, job)
	}
	if got := ids.NilActorIDOf(job); got.Job() != job || got == actor {
		t.Errorf("NilActorIDOf(%s) = %s", job, got)
	}
	if !(ids.ObjectID{}).IsNil() || obj.IsNil() || !(ids.JobID{}).IsNil() || !(ids.ActorID{}).IsNil() || !(ids.TaskID{}).IsNil() {
		t.Error("IsNil wrong")
	}
}

func TestParse(t *testing.T) {
	obj := ids.NewObjectID(ids.NewTaskID(ids.NewActorID(ids.JobIDFromInt(1))), 9)
	got, err := ids.ParseObjectID(obj.String())
	if err != nil || got != obj {
		t.Fatalf("ParseObjectID(%s) = %s, %v", obj, got, err)
	}
	task, err := ids.ParseTaskID(obj.Task().String())
	if err != nil || task != obj.Task() {
		t.Fatalf("ParseTaskID: %s, %v", task, err)
	}
	actor, err := ids.ParseActorID(task.Actor().String())
	if err != nil || actor != task.Actor() {
		t.Fatalf("ParseActorID: %s, %v", actor, err)
	}
	job, err := ids.ParseJobID(actor.Job().String())
	if err != nil || job != actor.Job() {
		t.Fatalf("ParseJobID: %s, %v", job, err)
	}
	for _, bad := range []string{"", "00", strings.Repeat("zz", ids.ObjectIDSize), strings.Repeat("0", 2*ids.ObjectIDSize+2)} {
		if _, err := ids.ParseObjectID(bad); err == nil {
			t.Errorf("ParseObjectID(%q) accepted", bad)
		}
	}
}
