package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"

	"github.com/goray/goray/internal/errs"
	"github.com/goray/goray/internal/ids"
)

// Function is a registered remote function: its name and what reflection
// knows of its signature.
type Function struct {
	Name     string
	fn       reflect.Value
	In       []reflect.Type // parameters after the context
	Out      []reflect.Type // results before the error
	Variadic bool
	// Generator: the function returns iter.Seq[T] (Seq2: iter.Seq2[T,
	// error]) and error; each item becomes its own object.
	Generator bool
	seq2      bool
	Item      reflect.Type
	// recv: an actor method, whose fn takes the instance first.
	recv bool
	// KeepTensors: the method's tensor results stay in the actor's
	// process (Direct).
	KeepTensors bool
	// fast calls an actor method of a common shape without reflect
	// (fastcall.go); nil: fn.Call.
	fast fastCall
}

var (
	ctxType = reflect.TypeFor[context.Context]()
	errType = reflect.TypeFor[error]()

	regMu     sync.RWMutex
	functions = map[string]*Function{}
)

// Register records fn under name. It panics on a bad signature or a name
// registered twice: both are programming errors found at init time.
func Register(name string, fn any) *Function {
	f, err := newFunction(name, fn)
	if err != nil {
		panic(err)
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := functions[name]; dup {
		panic(fmt.Sprintf("goray: function %q registered twice: names identify functions across processes and must be unique", name))
	}
	functions[name] = f
	return f
}

// Lookup finds a registered function.
func Lookup(name string) (*Function, error) {
	regMu.RLock()
	f := functions[name]
	regMu.RUnlock()
	if f == nil {
		return nil, fmt.Errorf("function %q is not registered in this binary (%s): %w: register it at package level (a var or init), so that worker processes, which run the same binary, have it too",
			name, registeredList(), errs.ErrNotRegistered)
	}
	return f, nil
}

func registeredList() string {
	regMu.RLock()
	defer regMu.RUnlock()
	if len(functions) == 0 {
		return "none are"
	}
	names := make([]string, 0, len(functions))
	for n := range functions {
		names = append(names, n)
	}
	if len(names) > 8 {
		return fmt.Sprintf("%d are, e.g. %s", len(names), strings.Join(names[:8], ", "))
	}
	return "registered: " + strings.Join(names, ", ")
}

func newFunction(name string, fn any) (*Function, error) {
	if name == "" {
		return nil, fmt.Errorf("goray: Register: empty function name: %w", errs.ErrBadArgument)
	}
	v := reflect.ValueOf(fn)
	if fn == nil || v.Kind() != reflect.Func || v.IsNil() {
		return nil, fmt.Errorf("goray: Register %q: %T is not a function: %w", name, fn, errs.ErrBadArgument)
	}
	return newFunc(name, v, false)
}

// newFunc checks a function's shape; recv: v is a method expression whose
// first parameter is the receiver.
func newFunc(name string, v reflect.Value, recv bool) (*Function, error) {
	t := v.Type()
	first := 0
	if recv {
		first = 1
	}
	sig := "func(context.Context, args...) (results..., error)"
	if t.NumIn() <= first || t.In(first) != ctxType {
		return nil, fmt.Errorf("goray: Register %q: %v: %w: the first parameter must be a context.Context (%s)", name, t, errs.ErrBadArgument, sig)
	}
	if t.NumOut() == 0 || t.Out(t.NumOut()-1) != errType {
		return nil, fmt.Errorf("goray: Register %q: %v: %w: the last result must be an error (%s)", name, t, errs.ErrBadArgument, sig)
	}
	f := &Function{Name: name, fn: v, Variadic: t.IsVariadic(), recv: recv}
	for i := first + 1; i < t.NumIn(); i++ {
		f.In = append(f.In, t.In(i))
	}
	for i := 0; i < t.NumOut()-1; i++ {
		f.Out = append(f.Out, t.Out(i))
	}
	for _, p := range f.In {
		if err := encodable(p); err != nil {
			return nil, fmt.Errorf("goray: Register %q: parameter type %v: %w", name, p, err)
		}
	}
	if len(f.Out) == 1 {
		if item, seq2, ok := seqItem(f.Out[0]); ok {
			f.Generator, f.seq2, f.Item = true, seq2, item
		}
	}
	if !f.Generator {
		for _, r := range f.Out {
			if err := encodable(r); err != nil {
				return nil, fmt.Errorf("goray: Register %q: result type %v: %w", name, r, err)
			}
		}
		if recv && os.Getenv("GORAY_REFLECT_CALLS") == "" {
			f.fast = fastCallOf(v)
		}
	}
	return f, nil
}

// seqItem recognises the shapes of iter.Seq[T] and iter.Seq2[T, error].
func seqItem(t reflect.Type) (item reflect.Type, seq2, ok bool) {
	if t.Kind() != reflect.Func || t.NumIn() != 1 || t.NumOut() != 0 {
		return nil, false, false
	}
	y := t.In(0)
	if y.Kind() != reflect.Func || y.NumOut() != 1 || y.Out(0).Kind() != reflect.Bool {
		return nil, false, false
	}
	switch {
	case y.NumIn() == 1:
		return y.In(0), false, true
	case y.NumIn() == 2 && y.In(1) == errType:
		return y.In(0), true, true
	}
	return nil, false, false
}

func encodable(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return fmt.Errorf("%w: a %v cannot travel between processes: pass plain data", errs.ErrBadArgument, t.Kind())
	}
	return nil
}

// Signature renders the parameters after the context: "(int, []byte)".
func (f *Function) Signature() string {
	parts := make([]string, len(f.In))
	for i, t := range f.In {
		parts[i] = t.String()
		if f.Variadic && i == len(f.In)-1 {
			parts[i] = "..." + t.Elem().String()
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// NumReturns is how many objects a call returns (generators: items come
// one by one instead).
func (f *Function) NumReturns() int {
	if f.Generator {
		return 0
	}
	return max(1, len(f.Out)) // a function with only an error returns nil, so its ref says when it is done
}

// ParamType is the type argument i is decoded into.
func (f *Function) ParamType(i int) reflect.Type {
	if f.Variadic && i >= len(f.In)-1 {
		return f.In[len(f.In)-1].Elem()
	}
	return f.In[i]
}

// CheckArity reports a wrong argument count, naming expected and given.
func (f *Function) CheckArity(given []reflect.Type) error {
	n := len(given)
	if f.arityOK(n) {
		return nil
	}
	want := fmt.Sprintf("%d", len(f.In))
	if f.Variadic {
		want = fmt.Sprintf("at least %d", len(f.In)-1)
	}
	names := make([]string, n)
	for i, t := range given {
		if t == nil {
			names[i] = "nil"
		} else {
			names[i] = t.String()
		}
	}
	return fmt.Errorf("%s takes %s arguments %s after the context, got %d (%s): %w",
		f.Name, want, f.Signature(), n, strings.Join(names, ", "), errs.ErrBadArgument)
}

// arityOK says whether f takes n arguments after the context.
func (f *Function) arityOK(n int) bool {
	return n == len(f.In) || f.Variadic && n >= len(f.In)-1
}

// ---------------------------------------------------------------- errors

var (
	sentMu    sync.RWMutex
	sentinels = map[string]error{}
	sentOrder []string
)

// RegisterError makes err a sentinel that errors.Is recognises across
// processes: a remote error that matches it comes back as a TaskError that
// wraps it. Its message is its name, so it must be unique.
func RegisterError(err error) error {
	if err == nil {
		panic("goray: RegisterError(nil)")
	}
	name := err.Error()
	sentMu.Lock()
	defer sentMu.Unlock()
	if prev, dup := sentinels[name]; dup {
		if prev == err {
			return err
		}
		panic(fmt.Sprintf("goray: RegisterError: two different errors named %q: sentinels are matched by message across processes, so messages must be unique", name))
	}
	sentinels[name] = err
	sentOrder = append(sentOrder, name)
	return err
}

// matchSentinels lists the registered sentinels err matches.
func matchSentinels(err error) []string {
	sentMu.RLock()
	defer sentMu.RUnlock()
	var out []string
	for _, name := range sentOrder {
		if errors.Is(err, sentinels[name]) {
			out = append(out, name)
		}
	}
	return out
}

func sentinelByName(name string) error {
	sentMu.RLock()
	defer sentMu.RUnlock()
	return sentinels[name]
}

func init() {
	for _, e := range []error{context.Canceled, context.DeadlineExceeded, errs.ErrTimeout, errs.ErrChannelClosed,
		errs.ErrPeerDied, errs.ErrBadArgument, errs.ErrObjectStoreFull, errs.ErrActorDied, errs.ErrObjectLost,
		errs.ErrTaskCancelled, errs.ErrNotRegistered, errs.ErrCapacityExceeded, errs.ErrWorkerDied,
		errs.ErrInfeasible, errs.ErrShutdown} {
		RegisterError(e)
	}
}

// taskIDOf and objectIDOf read IDs from the wire without trusting their
// length: a short or long one becomes an ID that matches nothing.
func taskIDOf(b []byte) (id ids.TaskID) {
	if len(b) == len(id) {
		copy(id[:], b)
	}
	return id
}

func objectIDOf(b []byte) (id ids.ObjectID) {
	if len(b) == len(id) {
		copy(id[:], b)
	}
	return id
}

// IsRegisteredError reports whether err is a registered sentinel.
func IsRegisteredError(err error) bool {
	sentMu.RLock()
	defer sentMu.RUnlock()
	return sentinels[err.Error()] == err
}
