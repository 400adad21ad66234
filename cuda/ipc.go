package cuda

/*
#cgo noescape gr_ipc_get_mem_handle
#cgo nocallback gr_ipc_get_mem_handle
#cgo noescape gr_ipc_open_mem_handle
#cgo nocallback gr_ipc_open_mem_handle
#cgo nocallback gr_ipc_close_mem_handle
#include "cudart.h"
*/
import "C"

import (
	"encoding/hex"
	"fmt"
	"unsafe"
)

// cudaIpcMemLazyEnablePeerAccess: open the memory on another device of the
// node too, enabling peer access as needed.
const ipcMemLazyEnablePeerAccess = 1

// IpcGetMemHandle returns a handle to the allocation p (from Malloc on
// device dev) that another process of the same node can open with
// IpcOpenMemHandle. The memory must stay allocated while others use it.
func IpcGetMemHandle(dev int, p Ptr) (IpcMemHandle, error) {
	if err := Load(); err != nil {
		return IpcMemHandle{}, err
	}
	var h IpcMemHandle
	if r := C.gr_ipc_get_mem_handle(C.int(dev), (*C.gr_ipc_handle)(unsafe.Pointer(&h)), C.uintptr_t(p)); r != 0 {
		return IpcMemHandle{}, callErr(r, dev, "cudaIpcGetMemHandle", "dev=%d, p=%#x", dev, uintptr(p))
	}
	return h, nil
}

// IpcOpenMemHandle maps the memory behind h, a handle from another process,
// into this process for device dev (cudaIpcOpenMemHandle with
// cudaIpcMemLazyEnablePeerAccess) and returns its address here. A handle
// cannot be opened in the process that made it. Close it with
// IpcCloseMemHandle.
func IpcOpenMemHandle(dev int, h IpcMemHandle) (Ptr, error) {
	if err := Load(); err != nil {
		return 0, err
	}
	var p C.uintptr_t
	if r := C.gr_ipc_open_mem_handle(C.int(dev), &p, (*C.gr_ipc_handle)(unsafe.Pointer(&h)), ipcMemLazyEnablePeerAccess); r != 0 {
		return 0, callErr(r, dev, "cudaIpcOpenMemHandle", "dev=%d, handle=%s", dev, h.String())
	}
	return Ptr(p), nil
}

// IpcCloseMemHandle unmaps memory that IpcOpenMemHandle mapped; the owner's
// allocation is untouched.
func IpcCloseMemHandle(dev int, p Ptr) error {
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_ipc_close_mem_handle(C.int(dev), C.uintptr_t(p)); r != 0 {
		return callErr(r, dev, "cudaIpcCloseMemHandle", "dev=%d, p=%#x", dev, uintptr(p))
	}
	return nil
}

// String is the handle in hex (128 characters), for command lines and
// logs; ParseIpcMemHandle reads it back.
func (h IpcMemHandle) String() string { return hex.EncodeToString(h[:]) }

// ParseIpcMemHandle reads a handle that IpcMemHandle.String wrote.
func ParseIpcMemHandle(s string) (IpcMemHandle, error) {
	var h IpcMemHandle
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("cuda: IPC memory handle %q: want %d hex digits, got %d", s, 2*len(h), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return IpcMemHandle{}, fmt.Errorf("cuda: IPC memory handle %q: %w", s, err)
	}
	return h, nil
}
