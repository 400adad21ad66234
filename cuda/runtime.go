package cuda

/*
#cgo noescape gr_device_count
#cgo nocallback gr_device_count
#cgo noescape gr_runtime_version
#cgo nocallback gr_runtime_version
#cgo noescape gr_driver_version
#cgo nocallback gr_driver_version
#cgo nocallback gr_set_device
#cgo noescape gr_device_attribute
#cgo nocallback gr_device_attribute
#cgo noescape gr_device_name
#cgo nocallback gr_device_name
#cgo noescape gr_pci_bus_id
#cgo nocallback gr_pci_bus_id
#cgo noescape gr_mem_get_info
#cgo nocallback gr_mem_get_info
#cgo noescape gr_can_access_peer
#cgo nocallback gr_can_access_peer
#cgo nocallback gr_device_synchronize
#include "cudart.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
)

// cudaDeviceAttr values (driver_types.h).
const (
	attrMultiProcessorCount = 16
	attrComputeCapMajor     = 75
	attrComputeCapMinor     = 76
)

// DeviceCount returns the number of GPUs this process can use (those
// CUDA_VISIBLE_DEVICES leaves visible). Without a runtime, a driver or a
// GPU it returns 0 and an error wrapping ErrNoDriver that says why and how
// to fix it.
func DeviceCount() (int, error) {
	if err := Load(); err != nil {
		return 0, err
	}
	var n C.int
	if r := C.gr_device_count(&n); r != 0 {
		return 0, newError("cudaGetDeviceCount", int(r))
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: cudaGetDeviceCount found no GPU; %s", ErrNoDriver, noDriverHint(codeNoDevice))
	}
	return int(n), nil
}

// RuntimeVersion returns the loaded CUDA runtime's version as 1000*major +
// 10*minor (12080 is CUDA 12.8).
func RuntimeVersion() (int, error) {
	if err := Load(); err != nil {
		return 0, err
	}
	var v C.int
	if r := C.gr_runtime_version(&v); r != 0 {
		return 0, newError("cudaRuntimeGetVersion", int(r))
	}
	return int(v), nil
}

// DriverVersion returns the newest CUDA version the installed driver
// supports, encoded as RuntimeVersion's is. Without a driver it returns 0
// and an error wrapping ErrNoDriver.
func DriverVersion() (int, error) {
	if err := Load(); err != nil {
		return 0, err
	}
	var v C.int
	if r := C.gr_driver_version(&v); r != 0 {
		return 0, newError("cudaDriverGetVersion", int(r))
	}
	if v == 0 {
		return 0, fmt.Errorf("%w: cudaDriverGetVersion found no NVIDIA driver; %s", ErrNoDriver, noDriverHint(codeNoDevice))
	}
	return int(v), nil
}

// Props describes one GPU.
type Props struct {
	// Index is the device's CUDA ordinal, as passed to every dev argument.
	Index int
	// Name is the product name, such as "NVIDIA H100 80GB HBM3".
	Name string
	// TotalMemory is the device memory in bytes.
	TotalMemory uint64
	// Major and Minor are the compute capability (9.0 for Hopper).
	Major, Minor int
	// MultiProcessors is the number of streaming multiprocessors.
	MultiProcessors int
	// PCIBusID is "domain:bus:device.function" in lower-case hex
	// ("0000:1b:00.0"), the form GPU.PCIBusID uses too.
	PCIBusID string
}

// Properties describes device dev. Reading the total memory creates the
// device's primary context, as any other use of the device does.
func Properties(dev int) (Props, error) {
	if err := Load(); err != nil {
		return Props{}, err
	}
	p := Props{Index: dev}
	for _, a := range []struct {
		attr int
		name string
		out  *int
	}{
		{attrComputeCapMajor, "cudaDevAttrComputeCapabilityMajor", &p.Major},
		{attrComputeCapMinor, "cudaDevAttrComputeCapabilityMinor", &p.Minor},
		{attrMultiProcessorCount, "cudaDevAttrMultiProcessorCount", &p.MultiProcessors},
	} {
		var v C.int
		if r := C.gr_device_attribute(C.int(dev), C.int(a.attr), &v); r != 0 {
			return Props{}, callErr(r, dev, "cudaDeviceGetAttribute", "%s, dev=%d", a.name, dev)
		}
		*a.out = int(v)
	}
	var name [257]C.char
	if r := C.gr_device_name(C.int(dev), &name[0], C.size_t(len(name))); r != 0 {
		return Props{}, callErr(r, dev, "cudaGetDeviceProperties", "dev=%d", dev)
	}
	p.Name = C.GoString(&name[0])
	var bus [64]C.char
	if r := C.gr_pci_bus_id(C.int(dev), &bus[0], C.int(len(bus))); r != 0 {
		return Props{}, callErr(r, dev, "cudaDeviceGetPCIBusId", "dev=%d", dev)
	}
	p.PCIBusID = normalizeBusID(C.GoString(&bus[0]))
	var free, total C.size_t
	if r := C.gr_mem_get_info(C.int(dev), &free, &total); r != 0 {
		return Props{}, callErr(r, dev, "cudaMemGetInfo", "dev=%d", dev)
	}
	p.TotalMemory = uint64(total)
	return p, nil
}

// normalizeBusID writes a PCI bus id, from CUDA ("0000:1B:00.0") or NVML
// ("00000000:1B:00.0"), as "dddd:bb:dd.f" in lower-case hex, so that the two
// compare equal. An id it cannot parse comes back lower-cased.
func normalizeBusID(id string) string {
	id = strings.ToLower(strings.TrimSpace(id))
	dom, rest, ok := strings.Cut(id, ":")
	if !ok {
		return id
	}
	busDev, fn, ok := strings.Cut(rest, ".")
	if !ok {
		return id
	}
	bus, dv, ok := strings.Cut(busDev, ":")
	if !ok {
		return id
	}
	var v [4]uint64
	for i, s := range []string{dom, bus, dv, fn} {
		n, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			return id
		}
		v[i] = n
	}
	return fmt.Sprintf("%04x:%02x:%02x.%x", v[0], v[1], v[2], v[3])
}

// WithDevice runs f with dev as the current CUDA device of the OS thread
// it runs on: it locks the goroutine to its thread, calls cudaSetDevice(dev),
// runs f and unlocks. Use it around calls into other CUDA libraries (NCCL)
// that act on the current device; this package's own functions select
// their device themselves and need no WithDevice. Nested calls are fine.
func WithDevice(dev int, f func() error) error {
	if err := Load(); err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if r := C.gr_set_device(C.int(dev)); r != 0 {
		return newError(fmt.Sprintf("cudaSetDevice(%d)", dev), int(r))
	}
	return f()
}

// CanAccessPeer reports whether device dev can read and write peer's memory
// directly (cudaDeviceCanAccessPeer).
func CanAccessPeer(dev, peer int) (bool, error) {
	if err := Load(); err != nil {
		return false, err
	}
	var can C.int
	if r := C.gr_can_access_peer(C.int(dev), C.int(peer), &can); r != 0 {
		return false, callErr(r, dev, "cudaDeviceCanAccessPeer", "dev=%d, peer=%d", dev, peer)
	}
	return can != 0, nil
}

// DeviceSynchronize waits until device dev has finished all work queued on
// it by this process.
func DeviceSynchronize(dev int) error {
	if err := Load(); err != nil {
		return err
	}
	if r := C.gr_device_synchronize(C.int(dev)); r != 0 {
		return callErr(r, dev, "cudaDeviceSynchronize", "dev=%d", dev)
	}
	return nil
}
