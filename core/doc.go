// Package core is goray's classic runtime, Ray Core for dynamic work:
// remote functions that run in worker processes, and objects that flow
// between them through refs and a shared-memory object store.
//
// # A program
//
//	var square = core.Register("square", func(ctx context.Context, x int) (int, error) {
//		return x * x, nil
//	})
//
//	func main() {
//		rt, err := core.Init(context.Background()) // first thing in main
//		if err != nil { log.Fatal(err) }
//		defer rt.Shutdown()
//		refs := make([]*core.ObjectRef, 10)
//		for i := range refs {
//			refs[i] = square.Remote(rt, i) // returns at once
//		}
//		squares, err := core.GetAll[int](context.Background(), refs)
//		...
//	}
//
// # Processes: why Register at package level, and Init first
//
// Init with no Address starts an embedded local cluster inside the
// program: the GCS, the raylet and the node's object store run as
// goroutines, and worker processes are this same binary, re-executed with
// an environment marker. In such a worker process Init does not return: it
// serves tasks until the cluster stops. So:
//
//   - call Init (or ServeIfWorker) first in main, before anything else the
//     program would do once per run;
//
//   - register functions at package level (a var or init), so that every
//     process of the binary has them; a function registered later exists
//     only in the driver, and its tasks fail with ErrNotRegistered;
//
//   - a test binary does the same in TestMain, before m.Run — its workers
//     are the test binary re-executed (see below).
//
// The TestMain pattern:
//
//	var rt *core.Runtime
//
//	func TestMain(m *testing.M) {
//		var err error
//		rt, err = core.Init(context.Background(), core.NumCPUs(4)) // in a worker: never returns
//		if err != nil {
//			log.Fatal(err)
//		}
//		code := m.Run()
//		rt.Shutdown()
//		os.Exit(code)
//	}
//
// Workers exit when the driver does, also when it is killed: they watch
// its process, and the last of them removes what it left in /dev/shm.
//
// # Tasks
//
// A function is func(context.Context, args...) (results..., error).
// Remote submits a call and returns a ref to its first result (RemoteN:
// all of them); a function with only an error gives a ref to nil, which
// says when it is done. Submission never blocks on the work and never
// fails by itself: a call with the wrong number or types of arguments, or
// bad options, gives a ref that is already failed, whose Get names what
// is wrong. Arguments are values or refs; a ref argument is resolved before
// the task runs, by the runtime, while the caller goes on.
//
// Options (Func.Options) set a task's resources (NumCPUs, default 1;
// NumGPUs; Memory; Resources, fractional amounts allowed), MaxRetries
// (default 3: a task whose worker dies is retried), RetryOn (application
// errors to retry, matched with errors.Is across processes: register them
// with RegisterError), Name, and a scheduling Strategy. A task's context is
// cancelled by Cancel; RuntimeFrom(ctx) submits nested tasks from inside
// one; RuntimeContextFrom(ctx) says where it runs.
//
// A function whose result is an iter.Seq[T] or iter.Seq2[T, error] is a
// generator: RemoteGenerator gives a stream with one ref per item, each
// ready as soon as the task yields it.
//
// # Objects
//
// Values up to 100 KiB travel inline (in the task's message, or in the
// owner's memory after Put); larger ones are written once into the node's
// object store, in shared memory, and read in place: Get of a []byte or a
// numeric slice aliases the store, read-only, valid while the ref is
// reachable. Values are encoded with package internal/codec (CBOR, raw for
// byte and numeric slices); register concrete types that travel in
// interface-typed places with codec.RegisterType.
//
// The process that creates a ref owns the object (Ray's ownership model):
// it keeps the value or its location, counts its refs, and deletes the
// object when nothing refers to it any more: refs that Free releases, or
// that become unreachable (runtime.AddCleanup), and tasks that take it as
// an argument until they finish. An object lost from the store is rebuilt
// by re-running the task that made it, if that task may be retried.
//
// # Errors
//
// A failed task's Get returns a *TaskError with the remote message, Go
// type and stack (a panic's, for a panic), and errors.Is matches the
// registered sentinels the remote error matched, and this package's:
// ErrTaskCancelled, ErrWorkerDied, ErrNotRegistered, ErrBadArgument,
// ErrInfeasible, ErrObjectLost, ErrObjectStoreFull, ErrShutdown…
//
// # Performance
//
// The driver's core worker leases workers from the raylet once, and then
// pushes task specs to each over a shared-memory ring pair (package
// channel), several at a time when tasks are short; replies come back the
// same way. A task round trip costs no gRPC call and no system call while
// both sides are busy. The control plane (leases, object lookups between
// processes, cancellation) is gRPC on loopback, and every call carries the
// cluster's token, kept in a file only its user can read.
package core
