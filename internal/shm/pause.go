package shm

import "golang.org/x/sys/unix"

// Pause executes the CPU's spin-wait hint n times (PAUSE on amd64, YIELD on
// arm64): it tells the core a spin loop is running, saving power and giving
// a hyper-thread sibling the pipeline, and costs tens of cycles each.
func Pause(n uint32) { pause(n) }

// Yield gives up the CPU to another runnable thread, if any (sched_yield).
func Yield() { unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
