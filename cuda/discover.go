package cuda

import (
	"fmt"
	"os"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// EnvLibNVML names the environment variable that, when set, is the NVML
// library Discover loads instead of libnvidia-ml.so.1.
const EnvLibNVML = "GORAY_LIBNVML"

// GPU is one GPU of the node as NVML, the driver's management library, sees
// it: every GPU of the machine, whatever CUDA_VISIBLE_DEVICES says.
type GPU struct {
	// Index is NVML's index, in PCI bus order. CUDA's ordinals follow the
	// same order only with CUDA_DEVICE_ORDER=PCI_BUS_ID; UUID names a GPU
	// unambiguously, CUDA_VISIBLE_DEVICES included.
	Index int
	// UUID is the GPU's identity ("GPU-8a7f…").
	UUID string
	// Name is the product name.
	Name string
	// PCIBusID is "domain:bus:device.function" in lower-case hex, the form
	// Props.PCIBusID uses too.
	PCIBusID string
	// MemoryTotal is the device memory in bytes (0 where NVML cannot say).
	MemoryTotal uint64
	// Links has one entry for each other GPU of the node.
	Links []Link
}

// Link is how one GPU reaches another.
type Link struct {
	// Peer is the other GPU's Index.
	Peer int
	// P2P holds when the GPU can read the peer's memory directly.
	P2P bool
	// NVLink holds when they are connected by NVLink (directly or through
	// NVSwitch).
	NVLink bool
}

// nvmlMu serializes Discover: go-nvml keeps its loaded symbols in package
// state.
var nvmlMu sync.Mutex

// Discover lists the node's GPUs through NVML. Without the NVIDIA driver
// (no libnvidia-ml.so.1, or a driver that does not start) it returns an
// error wrapping ErrNoDriver that says why; it never crashes the process.
func Discover() ([]GPU, error) {
	nvmlMu.Lock()
	defer nvmlMu.Unlock()
	var opts []nvml.LibraryOption
	if p := os.Getenv(EnvLibNVML); p != "" {
		opts = append(opts, nvml.WithLibraryPath(p))
	}
	lib := nvml.New(opts...)
	if r := lib.Init(); r != nvml.SUCCESS {
		// No other NVML call, ErrorString included, is safe after a failed
		// Init: with the library missing its symbols are unresolved.
		return nil, fmt.Errorf("%w: NVML init failed: %s", ErrNoDriver, nvmlInitProblem(r))
	}
	defer lib.Shutdown()

	n, r := lib.DeviceGetCount()
	if r != nvml.SUCCESS {
		return nil, nvmlError("nvmlDeviceGetCount", r)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: NVML found no GPU; %s", ErrNoDriver, noDriverHint(codeNoDevice))
	}
	devs := make([]nvml.Device, n)
	gpus := make([]GPU, n)
	for i := range n {
		d, r := lib.DeviceGetHandleByIndex(i)
		if r != nvml.SUCCESS {
			return nil, nvmlError(fmt.Sprintf("nvmlDeviceGetHandleByIndex(%d)", i), r)
		}
		g, err := describe(i, d)
		if err != nil {
			return nil, err
		}
		devs[i], gpus[i] = d, g
	}
	for i, d := range devs {
		remote := nvlinkRemotes(d)
		for j, peer := range devs {
			if j == i {
				continue
			}
			gpus[i].Links = append(gpus[i].Links, Link{
				Peer:   j,
				P2P:    p2pOK(d, peer, nvml.P2P_CAPS_INDEX_READ),
				NVLink: p2pOK(d, peer, nvml.P2P_CAPS_INDEX_NVLINK) || remote[gpus[j].PCIBusID],
			})
		}
	}
	return gpus, nil
}

// describe reads one GPU's identity and memory.
func describe(i int, d nvml.Device) (GPU, error) {
	g := GPU{Index: i}
	var r nvml.Return
	if g.UUID, r = d.GetUUID(); r != nvml.SUCCESS {
		return g, nvmlError(fmt.Sprintf("nvmlDeviceGetUUID(%d)", i), r)
	}
	if g.Name, r = d.GetName(); r != nvml.SUCCESS {
		return g, nvmlError(fmt.Sprintf("nvmlDeviceGetName(%d)", i), r)
	}
	pci, r := d.GetPciInfo()
	if r != nvml.SUCCESS {
		return g, nvmlError(fmt.Sprintf("nvmlDeviceGetPciInfo(%d)", i), r)
	}
	g.PCIBusID = normalizeBusID(cString(pci.BusId[:]))
	mem, r := d.GetMemoryInfo()
	switch r {
	case nvml.SUCCESS:
		g.MemoryTotal = mem.Total
	case nvml.ERROR_NOT_SUPPORTED:
	default:
		return g, nvmlError(fmt.Sprintf("nvmlDeviceGetMemoryInfo(%d)", i), r)
	}
	return g, nil
}

// p2pOK asks NVML whether d reaches peer in the given way; "not supported"
// and any other failure count as no.
func p2pOK(d, peer nvml.Device, idx nvml.GpuP2PCapsIndex) bool {
	st, r := d.GetP2PStatus(peer, idx)
	return r == nvml.SUCCESS && st == nvml.P2P_STATUS_OK
}

// nvlinkRemotes returns the PCI bus ids at the far end of d's active NVLinks
// (for a direct GPU-to-GPU link, the peer GPU). A GPU without NVLink has
// none.
func nvlinkRemotes(d nvml.Device) map[string]bool {
	remote := map[string]bool{}
	for link := range nvml.NVLINK_MAX_LINKS {
		state, r := d.GetNvLinkState(link)
		if r == nvml.ERROR_NOT_SUPPORTED || r == nvml.ERROR_INVALID_ARGUMENT {
			break // no NVLink, or past the last link
		}
		if r != nvml.SUCCESS || state != nvml.FEATURE_ENABLED {
			continue
		}
		if pci, r := d.GetNvLinkRemotePciInfo(link); r == nvml.SUCCESS {
			remote[normalizeBusID(cString(pci.BusId[:]))] = true
		}
	}
	return remote
}

// cString reads a NUL-terminated C char array.
func cString(b []int8) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// nvmlError reports a failed NVML call after a successful Init.
func nvmlError(op string, r nvml.Return) error {
	return fmt.Errorf("cuda: NVML %s: %v (%d)", op, r, int32(r))
}

// nvmlInitProblem says what a failed nvmlInit means and how to fix it,
// without asking NVML (see Discover).
func nvmlInitProblem(r nvml.Return) string {
	switch r {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		lib := "libnvidia-ml.so.1"
		if p := os.Getenv(EnvLibNVML); p != "" {
			lib = p + " (from " + EnvLibNVML + ")"
		}
		return "ERROR_LIBRARY_NOT_FOUND: cannot load " + lib +
			"; install the NVIDIA driver, which provides it, or set " + EnvLibNVML + " to its path"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "ERROR_DRIVER_NOT_LOADED: the NVIDIA kernel driver is not running; check nvidia-smi and load the driver"
	case nvml.ERROR_NO_PERMISSION:
		return "ERROR_NO_PERMISSION: this user may not open /dev/nvidia*; fix the device permissions"
	case nvml.ERROR_LIB_RM_VERSION_MISMATCH:
		return "ERROR_LIB_RM_VERSION_MISMATCH: libnvidia-ml.so and the kernel driver differ in version; reload the driver or reboot"
	}
	return fmt.Sprintf("NVML return code %d; check nvidia-smi", int32(r))
}
