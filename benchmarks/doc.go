// Package benchmarks holds goray's microbenchmarks and the baselines a user
// would otherwise pick (gRPC, a Unix socket, Go channels, memcpy), measured
// in the same run so that every headline figure has its baseline beside it.
//
// # Cases and rows
//
// A Case is one benchmark, named as `go test -bench` names it without the
// "Benchmark" prefix ("ChannelRoundTrip/shm/64B"). Its body runs under a
// *testing.B (Case.Run, or Measure, which the CLI uses through
// testing.Benchmark) or for a fixed number of iterations (Case.RunN, which
// the package's tests use so that `go test ./...` exercises every peer).
//
// A Row compares one case with a baseline case and says what target the
// comparison must meet (DESIGN.md §7). `goray microbenchmark` measures the
// cases the selected rows need, each once, and prints the rows as a table
// or as JSON. Later work adds cases with Register and rows with
// RegisterRow, from init.
//
// # Peers
//
// Cross-process cases run their other end in a peer: a process of the same
// binary (the test binary under `go test`, the goray binary under the CLI),
// started through internal/reexec with a role registered in this package's
// init. Both mains call reexec.Init first.
//
// # The cluster of the RayMicro cases
//
// The RayMicro cases run tasks and objects through package core on one
// embedded cluster per process, started by the first of them and stopped
// by ShutdownRuntime. Its workers are this binary too, re-executed by the
// raylet, so a main that runs them calls core.ServeIfWorker before
// anything else (before reexec.Init), and ShutdownRuntime when it is done:
// after m.Run in TestMain, before the leak checks. The benchmarking process creates
// every shared-memory segment and unlinks it when the case ends; a peer owns
// none. A peer exits when its channel is closed, when its stdin reaches EOF
// (the benchmarking process closed it or died), and, as a last resort, by
// SIGKILL when its parent dies.
//
// # Case names
//
// The names are fixed: later work is compared against them.
//
//	ChannelRoundTrip/{shm,inproc,tcp,grpc,unixsock,gochan}/{64B,4KiB,1MiB}
//	    one op is one ping-pong round trip; reports p50-ns and p99-ns
//	ChannelThroughput/{shm,inproc,tcp}/{64B,1MiB}, ChannelThroughput/gochan/64B
//	    one-way streaming; reports bytes/s (SetBytes) and msgs/s
//	Memcpy/1MiB
//	    copy() of 1 MiB: the bandwidth baseline
//	RayMicro/{tasks_sync,tasks_async,multi_client_tasks_async}
//	    Ray's task microbenchmarks on no-op tasks: submit and get one
//	    (p50-ns, p99-ns); 1000 in flight from the driver; four tasks
//	    submitting at once from their workers (tasks/s as msgs/s)
//	RayMicro/{put_calls,get_calls,put_gigabytes}
//	    core.Put and core.Get of 100 B objects (msgs/s), core.Put of
//	    64 MiB (bytes/s)
//	RayMicro/{actor_calls_sync,actor_calls_async,actor_calls_concurrent,n_n_actor_calls_async}
//	    Ray's actor microbenchmarks on a no-op method: call and get one
//	    (p50-ns, p99-ns); 1000 in flight to one actor; the same to an
//	    actor with MaxConcurrency(16); two caller actors each calling its
//	    own actor (calls/s as msgs/s)
//	Baseline/grpc_unary_roundtrip
//	    a gRPC unary call of 64 B to a peer over loopback TCP (p50-ns,
//	    p99-ns, and msgs/s): the task and actor rows' baseline
//	Baseline/hollywood_remote_roundtrip
//	    a Hollywood (github.com/anthdm/hollywood) remote-actor request of
//	    64 B to a peer over loopback TCP and its reply (p50-ns, p99-ns,
//	    msgs/s): what a Go user might pick for remote actors
//	Baseline/grpc_chain4
//	    a chain of 4 gRPC services, one process each, over loopback TCP:
//	    the driver calls stage 1 with 64 B, each stage calls the next
//	    inside its handler and returns its reply (p50-ns, p99-ns, msgs/s):
//	    what a Go user would build instead of a compiled chain of 4 actors
//	Baseline/{gochan_pipeline,gochan_pipeline4}
//	    1 or 4 goroutine stages in the driver's process, joined by Go
//	    channels; one op sends 64 B in and receives it from the last stage
//	    (p50-ns, p99-ns, msgs/s): the in-process compiled graph's baseline
package benchmarks
