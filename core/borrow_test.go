package core_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goray/goray/core"
	"github.com/goray/goray/internal/ids"
	"github.com/goray/goray/internal/testutil"
)

// Refs inside values: passed in arguments, returned in results, stored in
// Put values; the decoding process borrows the object.

type refBag struct {
	Name string
	Refs map[string]*core.ObjectRef
	Any  []any
}

var (
	// sumRefs gets every ref inside its argument: the refs arrive as refs
	// (not resolved), and the worker borrows them.
	sumRefs = core.Register("sumRefs", func(ctx context.Context, refs []*core.ObjectRef) (int, error) {
		vals, err := core.GetAll[int](ctx, refs)
		if err != nil {
			return 0, err
		}
		s := 0
		for _, v := range vals {
			s += v
		}
		return s, nil
	})
	// readBag reads a struct holding refs in a map and in an []any.
	readBag = core.Register("readBag", func(ctx context.Context, b refBag) (string, error) {
		parts := []string{b.Name}
		for _, k := range []string{"a", "b"} {
			v, err := core.Get[string](ctx, b.Refs[k])
			if err != nil {
				return "", err
			}
			parts = append(parts, v)
		}
		for _, x := range b.Any {
			r, ok := x.(*core.ObjectRef)
			if !ok {
				return "", fmt.Errorf("an []any element came back as %T, want *core.ObjectRef", x)
			}
			v, err := core.Get[string](ctx, r)
			if err != nil {
				return "", err
			}
			parts = append(parts, v)
		}
		return strings.Join(parts, ","), nil
	})
	// refParam takes a *core.ObjectRef parameter: a top-level ref argument
	// is then passed as the ref, not resolved.
	refParam = core.Register("refParam", func(ctx context.Context, r *core.ObjectRef) (string, error) {
		v, err := core.Get[string](ctx, r)
		return "got " + v, err
	})
	// makeRefs Puts values in the worker and returns refs to them: the
	// worker owns them, the caller borrows them.
	makeRefs = core.Register("makeRefs", func(ctx context.Context, n, size int) ([]*core.ObjectRef, error) {
		rt := core.RuntimeFrom(ctx)
		out := make([]*core.ObjectRef, n)
		for i := range out {
			r, err := core.Put(rt, strings.Repeat(string(rune('a'+i)), size))
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	})
	// holdRefs keeps the refs it got in this worker for d, then lets them
	// go and collects them, so that the worker stops borrowing.
	holdRefs = core.Register("holdRefs", func(ctx context.Context, refs []*core.ObjectRef, d time.Duration) (int, error) {
		heldMu.Lock()
		held = append(held, refs...)
		heldMu.Unlock()
		time.AfterFunc(d, func() {
			heldMu.Lock()
			held = nil
			heldMu.Unlock()
			runtime.GC()
			runtime.GC()
		})
		return len(refs), nil
	})
	heldMu sync.Mutex
	held   []*core.ObjectRef

	// holdForever keeps the refs in this worker and returns its pid.
	holdForever = core.Register("holdForever", func(ctx context.Context, refs []*core.ObjectRef) (int, error) {
		heldMu.Lock()
		held = append(held, refs...)
		heldMu.Unlock()
		return os.Getpid(), nil
	})
)

func TestRefsInsideArguments(t *testing.T) {
	ctx := context.Background()
	var refs []*core.ObjectRef
	want := 0
	for i := range 5 {
		r, err := core.Put(rt, i*10)
		require.NoError(t, err)
		refs = append(refs, r)
		want += i * 10
	}
	// One more, the result of a task still running when sumRefs starts.
	slow := add.Remote(rt, 1, 2)
	refs = append(refs, slow)
	got, err := core.Get[int](ctx, sumRefs.Remote(rt, refs))
	require.NoError(t, err)
	require.Equal(t, want+3, got)

	a, err := core.Put(rt, "A")
	require.NoError(t, err)
	b, err := core.Put(rt, "B")
	require.NoError(t, err)
	c, err := core.Put(rt, "C")
	require.NoError(t, err)
	s, err := core.Get[string](ctx, readBag.Remote(rt, refBag{Name: "bag", Refs: map[string]*core.ObjectRef{"a": a, "b": b}, Any: []any{c}}))
	require.NoError(t, err)
	require.Equal(t, "bag,A,B,C", s)

	s, err = core.Get[string](ctx, refParam.Remote(rt, a))
	require.NoError(t, err)
	require.Equal(t, "got A", s)
}

func TestRefsInsideResults(t *testing.T) {
	ctx := context.Background()
	// Small values (inline at their worker-owner) and large ones (in the
	// store): the driver borrows both kinds from the worker that made them.
	for _, size := range []int{10, 300 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			outer := makeRefs.Remote(rt, 3, size)
			inner, err := core.Get[[]*core.ObjectRef](ctx, outer)
			require.NoError(t, err)
			require.Len(t, inner, 3)
			core.Free(outer) // the inner refs are the driver's own now
			runtime.GC()
			for i, r := range inner {
				v, err := core.Get[string](ctx, r)
				require.NoError(t, err)
				require.Equal(t, strings.Repeat(string(rune('a'+i)), size), v)
			}
			// Passed on to another task, which borrows from the worker.
			n, err := core.Get[string](ctx, readBag.Remote(rt, refBag{Name: "x", Refs: map[string]*core.ObjectRef{"a": inner[0], "b": inner[1]}}))
			require.NoError(t, err)
			require.Equal(t, "x,"+strings.Repeat("a", size)+","+strings.Repeat("b", size), n)
		})
	}
}

func TestRefsInsidePutValues(t *testing.T) {
	ctx := context.Background()
	inner, err := core.Put(rt, "inside")
	require.NoError(t, err)
	outer, err := core.Put(rt, []*core.ObjectRef{inner})
	require.NoError(t, err)
	core.Free(inner) // the outer object holds it
	require.True(t, core.HasObject(rt, inner))

	got, err := core.Get[[]*core.ObjectRef](ctx, outer)
	require.NoError(t, err)
	v, err := core.Get[string](ctx, got[0])
	require.NoError(t, err)
	require.Equal(t, "inside", v)

	core.Free(outer)
	require.True(t, core.HasObject(rt, inner), "the decoded ref still holds it")
	core.Free(got...)
	require.False(t, core.HasObject(rt, inner), "no ref left: freed")
}

// A borrower keeps an object alive after its owner dropped every ref, and
// the object is freed once the borrower lets go too.
func TestBorrowerKeepsObjectAlive(t *testing.T) {
	ctx := context.Background()
	big := make([]byte, 1<<20) // in the store: its deletion is visible there
	x, err := core.Put(rt, big)
	require.NoError(t, err)
	n, err := core.Get[int](ctx, holdRefs.Remote(rt, []*core.ObjectRef{x}, 500*time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, 1, n)

	raw, err := hex.DecodeString(x.ID())
	require.NoError(t, err)
	var id ids.ObjectID
	copy(id[:], raw)
	core.Free(x)
	require.True(t, core.HasObject(rt, x), "a worker still borrows it")
	ok, err := core.StoreOf(rt).Contains(id)
	require.NoError(t, err)
	require.True(t, ok)

	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if core.HasObject(rt, x) {
			return errors.New("the borrower let go, but the owner still has the object")
		}
		return nil
	})
	ok, err = core.StoreOf(rt).Contains(id)
	require.NoError(t, err)
	require.False(t, ok, "deleted from the store")
}

func TestRefInsideValueErrors(t *testing.T) {
	ctx := context.Background()
	r, err := core.Put(rt, 1)
	require.NoError(t, err)
	core.Free(r)
	got, err := core.Get[int](ctx, sumRefs.Remote(rt, []*core.ObjectRef{r}))
	require.ErrorIs(t, err, core.ErrObjectLost)
	require.Zero(t, got)

	_, err = core.Put(rt, []*core.ObjectRef{r})
	require.ErrorIs(t, err, core.ErrObjectLost)
}

// A borrower killed with kill -9 cannot unregister: the owner notices the
// dead process and frees what only it held.
func TestDeadBorrowerReleased(t *testing.T) {
	ctx := context.Background()
	x, err := core.Put(rt, "borrowed")
	require.NoError(t, err)
	pid, err := core.Get[int](ctx, holdForever.Remote(rt, []*core.ObjectRef{x}))
	require.NoError(t, err)
	core.Free(x)
	time.Sleep(300 * time.Millisecond)
	require.True(t, core.HasObject(rt, x), "the worker still borrows it")
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if core.HasObject(rt, x) {
			return errors.New("the borrower is dead, but the owner still has the object")
		}
		return nil
	})
}

var slowRefs = core.Register("slowRefs", func(ctx context.Context, d time.Duration, inner *core.ObjectRef) ([]*core.ObjectRef, error) {
	time.Sleep(d) // ignores cancellation: its result arrives after Cancel
	return []*core.ObjectRef{inner}, nil
})

// A result holding refs that arrives for a cancelled task is not adopted,
// and the registration its worker made is undone: the object is freed.
func TestCancelledResultReleasesRefs(t *testing.T) {
	ctx := context.Background()
	inner, err := core.Put(rt, "inner")
	require.NoError(t, err)
	ref := slowRefs.Remote(rt, 300*time.Millisecond, inner)
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, core.Cancel(ref, false))
	_, err = core.Get[[]*core.ObjectRef](ctx, ref)
	require.ErrorIs(t, err, core.ErrTaskCancelled)
	core.Free(inner)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if core.HasObject(rt, inner) {
			return errors.New("the cancelled task's result still holds the object")
		}
		return nil
	})
}
