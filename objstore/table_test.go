package objstore

import (
	"errors"
	"testing"

	"pgregory.net/rapid"

	"github.com/goray/goray/internal/ids"
)

// mobj is the model of one object.
type mobj struct {
	size    int64
	sealed  bool
	creator clientID
}

// handle is one pin held in the model.
type handle struct {
	c  clientID
	id ids.ObjectID
	e  *entry
}

// tableMachine checks the object table against a plain model: objects by
// ID, the pins handed out, and the bytes that must be allocated.
type tableMachine struct {
	t       *table
	objects map[ids.ObjectID]*mobj
	pins    []handle
	ids     []ids.ObjectID
}

const numClients = 3

func newTableMachine() *tableMachine {
	m := &tableMachine{t: newTable(1<<30, nil), objects: map[ids.ObjectID]*mobj{}}
	for c := clientID(1); c < numClients; c++ {
		m.t.addClient(c)
	}
	task := ids.TaskID{1}
	for i := range 6 {
		m.ids = append(m.ids, ids.NewObjectID(task, uint32(i)))
	}
	return m
}

func (m *tableMachine) drawID(rt *rapid.T) ids.ObjectID {
	return m.ids[rapid.IntRange(0, len(m.ids)-1).Draw(rt, "id")]
}

func (m *tableMachine) drawClient(rt *rapid.T) clientID {
	return clientID(rapid.IntRange(0, numClients-1).Draw(rt, "client"))
}

func (m *tableMachine) create(rt *rapid.T) {
	c, id := m.drawClient(rt), m.drawID(rt)
	size := rapid.Int64Range(0, 5000).Draw(rt, "size")
	_, err := m.t.create(c, id, size, false)
	if _, exists := m.objects[id]; exists {
		if !errors.Is(err, ErrObjectExists) {
			rt.Fatalf("create of an existing object: %v", err)
		}
		return
	}
	if err != nil {
		rt.Fatalf("create: %v", err)
	}
	m.objects[id] = &mobj{size: size, creator: c}
}

func (m *tableMachine) seal(rt *rapid.T) {
	c, id := m.drawClient(rt), m.drawID(rt)
	err := m.t.seal(c, id)
	o, ok := m.objects[id]
	switch {
	case !ok:
		if !errors.Is(err, ErrObjectNotFound) {
			rt.Fatalf("seal of a missing object: %v", err)
		}
	case o.sealed || o.creator != c:
		if !errors.Is(err, ErrNotCreator) {
			rt.Fatalf("seal by a non-creator or twice: %v", err)
		}
	default:
		if err != nil {
			rt.Fatalf("seal: %v", err)
		}
		o.sealed = true
	}
}

func (m *tableMachine) get(rt *rapid.T) {
	c, id := m.drawClient(rt), m.drawID(rt)
	e, err := m.t.pin(c, id)
	o, ok := m.objects[id]
	if !ok || !o.sealed {
		if err != errNotSealed {
			rt.Fatalf("get of a missing or unsealed object: %v", err)
		}
		return
	}
	if err != nil || e.size != o.size {
		rt.Fatalf("get: %v", err)
	}
	m.pins = append(m.pins, handle{c, id, e})
}

func (m *tableMachine) release(rt *rapid.T) {
	if len(m.pins) == 0 {
		rt.Skip("nothing pinned")
	}
	i := rapid.IntRange(0, len(m.pins)-1).Draw(rt, "pin")
	h := m.pins[i]
	var err error
	if rapid.Bool().Draw(rt, "by id") && m.t.objects[h.id] == h.e {
		err = m.t.releaseID(h.c, h.id)
	} else {
		err = m.t.release(h.c, h.e)
	}
	if err != nil {
		rt.Fatalf("release: %v", err)
	}
	m.pins = append(m.pins[:i], m.pins[i+1:]...)
}

func (m *tableMachine) delete(rt *rapid.T) {
	c, id := m.drawClient(rt), m.drawID(rt)
	err := m.t.delete(c, id)
	o, ok := m.objects[id]
	if !ok {
		if !errors.Is(err, ErrObjectNotFound) {
			rt.Fatalf("delete of a missing object: %v", err)
		}
		return
	}
	if !o.sealed && o.creator != c {
		if !errors.Is(err, ErrNotCreator) {
			rt.Fatalf("delete of another client's unsealed object: %v", err)
		}
		return
	}
	if err != nil {
		rt.Fatalf("delete: %v", err)
	}
	delete(m.objects, id)
}

// dropClient is a client dying: its pins and unsealed objects go.
func (m *tableMachine) dropClient(rt *rapid.T) {
	c := clientID(rapid.IntRange(1, numClients-1).Draw(rt, "client"))
	m.t.dropClient(c)
	m.t.addClient(c)
	kept := m.pins[:0]
	for _, h := range m.pins {
		if h.c != c {
			kept = append(kept, h)
		}
	}
	m.pins = kept
	for id, o := range m.objects {
		if o.creator == c && !o.sealed {
			delete(m.objects, id)
		}
	}
}

func (m *tableMachine) check(rt *rapid.T) {
	live := map[*entry]bool{}
	var used, unsealed int64
	for id, o := range m.objects {
		e := m.t.objects[id]
		if e == nil || e.size != o.size || (e.state == stateSealed) != o.sealed {
			rt.Fatalf("object %d: table %+v, model %+v", id.Index(), e, o)
		}
		if m.t.contains(id) != o.sealed {
			rt.Fatalf("object %d: contains %v, sealed %v", id.Index(), !o.sealed, o.sealed)
		}
		live[e] = true
		if !o.sealed {
			unsealed += allocSize(o.size)
		}
	}
	if len(m.t.objects) != len(m.objects) {
		rt.Fatalf("table has %d objects, model %d", len(m.t.objects), len(m.objects))
	}
	pinned := map[*entry]int{}
	for _, h := range m.pins {
		pinned[h.e]++
		live[h.e] = true
	}
	var pinnedBytes int64
	for e, n := range pinned {
		if e.pins != n {
			rt.Fatalf("object %d: %d pins, model %d", e.id.Index(), e.pins, n)
		}
		pinnedBytes += allocSize(e.size)
	}
	for e := range live {
		used += allocSize(e.size)
	}
	st := m.t.stats()
	if st.Used != used || st.Pinned != pinnedBytes || st.PinnedObjects != int64(len(pinned)) || st.Unsealed != unsealed {
		rt.Fatalf("stats %+v: want used %d, pinned %d in %d objects, unsealed %d", st, used, pinnedBytes, len(pinned), unsealed)
	}
	if m.t.evictable.bytes != 0 || m.t.spillable.bytes != used-pinnedBytes-unsealed {
		rt.Fatalf("LRU holds %d bytes, want %d (sealed, unpinned)", m.t.spillable.bytes, used-pinnedBytes-unsealed)
	}
}

func TestTableModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := newTableMachine()
		rt.Repeat(map[string]func(*rapid.T){
			"create":     m.create,
			"seal":       m.seal,
			"get":        m.get,
			"release":    m.release,
			"delete":     m.delete,
			"dropClient": m.dropClient,
			"":           m.check,
		})
	})
}

func TestTableEvictBeforeSpillAndNoPointlessEviction(t *testing.T) {
	tb := newTable(4*Alignment, nil)
	for i := range 4 {
		id := ids.NewObjectID(ids.TaskID{}, uint32(i))
		if _, err := tb.create(hostClient, id, Alignment, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		tb.seal(hostClient, id)
	}
	// 3 units needed, 2 evictable: fail without evicting anything.
	if _, err := tb.create(hostClient, ids.ObjectID{9}, 3*Alignment, false); !errors.Is(err, ErrObjectStoreFull) {
		t.Fatalf("create: %v", err)
	}
	if tb.evictions != 0 || len(tb.objects) != 4 {
		t.Fatalf("a create that cannot succeed evicted %d objects", tb.evictions)
	}
}
