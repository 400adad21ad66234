package shm

import (
	"errors"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	futexWait = 0 // FUTEX_WAIT without FUTEX_PRIVATE_FLAG: works across processes
	futexWake = 1
)

// FutexWait sleeps while *addr == val, for at most timeout (which must be
// positive: every wait is bounded). It returns nil when woken, when *addr
// no longer equals val, on a signal, or when the timeout expires; callers
// re-check their condition in every case. addr must be 4-byte aligned and
// may lie in memory shared with other processes.
func FutexWait(addr *uint32, val uint32, timeout time.Duration) error {
	if timeout <= 0 {
		return nil
	}
	ts := unix.NsecToTimespec(int64(timeout))
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWait, uintptr(val),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EINTR, unix.ETIMEDOUT:
		return nil
	default:
		return errors.New("shm: futex wait: " + e.Error())
	}
}

// FutexWake wakes up to n waiters sleeping on addr, in any process, and
// returns how many it woke.
func FutexWake(addr *uint32, n int) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWake, uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0, errors.New("shm: futex wake: " + e.Error())
	}
	return int(r), nil
}
