package cuda_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goray/goray/cuda"
	"github.com/goray/goray/internal/reexec"
	"github.com/goray/goray/internal/testutil"
)

func init() {
	reexec.Register("cuda-ipc-peer", ipcPeerMain)
}

// gpuCount returns the number of GPUs, or skips the test with the reason
// this process has none.
func gpuCount(t testing.TB) int {
	t.Helper()
	n, err := cuda.DeviceCount()
	if err != nil {
		t.Skipf("no GPU: %v", err)
	}
	return n
}

// pattern is n bytes that depend on seed and on each byte's position.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i) ^ byte(i>>8)*31 ^ seed
	}
	return b
}

// hostAddr is the address of C-allocated (pinned) memory, for Memcpy.
func hostAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func malloc(t testing.TB, dev, n int) cuda.Ptr {
	t.Helper()
	p, err := cuda.Malloc(dev, n)
	require.NoError(t, err)
	require.NotZero(t, p)
	t.Cleanup(func() { assert.NoError(t, cuda.Free(dev, p)) })
	return p
}

func mallocHost(t testing.TB, n int) []byte {
	t.Helper()
	b, err := cuda.MallocHost(n)
	require.NoError(t, err)
	require.Len(t, b, n)
	t.Cleanup(func() { assert.NoError(t, cuda.FreeHost(b)) })
	return b
}

// equalBytes compares without printing megabytes on failure.
func equalBytes(t testing.TB, want, got []byte, what string) {
	t.Helper()
	require.Len(t, got, len(want), what)
	if i := firstDiff(want, got); i >= 0 {
		t.Fatalf("%s: byte %d of %d is %#x, want %#x", what, i, len(want), got[i], want[i])
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// --- Without a GPU ---------------------------------------------------------

// missingDir is where TestNoDriver's child looks for libraries.
const missingDir = "/nonexistent/"

type namedCall struct {
	name string
	call func() error
}

// TestNoDriver checks that every function fails cleanly, with ErrNoDriver
// and the fix, when the process has no GPU. On a machine with a GPU it runs
// itself again in a child whose CUDA runtime and NVML paths lead nowhere.
func TestNoDriver(t *testing.T) {
	if _, err := cuda.DeviceCount(); err == nil {
		exe, err := os.Executable()
		require.NoError(t, err)
		cmd := exec.Command(exe, "-test.run=^TestNoDriver$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(),
			cuda.EnvLibCUDART+"="+missingDir+"libcudart.so.13",
			cuda.EnvLibNVML+"="+missingDir+"libnvidia-ml.so.1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "child without a CUDA runtime:\n%s", out)
		require.Contains(t, string(out), "--- PASS: TestNoDriver", "%s", out)
		return
	}

	loadErr := cuda.Load()
	t.Logf("Load: %v", loadErr)
	if p := os.Getenv(cuda.EnvLibCUDART); strings.HasPrefix(p, missingDir) {
		require.Error(t, loadErr)
		assert.Contains(t, loadErr.Error(), p, "the error names the library it tried")
	}
	dev := 0
	s := cuda.Default(dev)
	calls := []namedCall{
		{"DeviceCount", func() error {
			n, err := cuda.DeviceCount()
			if n != 0 {
				return fmt.Errorf("DeviceCount = %d, want 0", n)
			}
			return err
		}},
		{"DriverVersion", func() error { _, err := cuda.DriverVersion(); return err }},
		{"Properties", func() error { _, err := cuda.Properties(dev); return err }},
		{"WithDevice", func() error {
			return cuda.WithDevice(dev, func() error { return errors.New("f ran without a device") })
		}},
		{"Malloc", func() error { _, err := cuda.Malloc(dev, 1024); return err }},
		{"Free", func() error { return cuda.Free(dev, 0x1000) }},
		{"Memset", func() error { return cuda.Memset(dev, 0x1000, 0, 16) }},
		{"MallocHost", func() error { _, err := cuda.MallocHost(1024); return err }},
		{"Memcpy", func() error { return cuda.Memcpy(dev, 0x1000, 0x2000, 16, cuda.DeviceToDevice) }},
		{"MemcpyAsync", func() error { return cuda.MemcpyAsync(0x1000, 0x2000, 16, cuda.DeviceToDevice, s) }},
		{"CopyToDevice", func() error { return cuda.CopyToDevice(dev, 0x1000, make([]byte, 16)) }},
		{"CopyToHost", func() error { return cuda.CopyToHost(dev, make([]byte, 16), 0x1000) }},
		{"CopyDevice", func() error { return cuda.CopyDevice(dev, 0x1000, 0x2000, 16) }},
		{"NewStream", func() error { _, err := cuda.NewStream(dev); return err }},
		{"Stream.Synchronize", s.Synchronize},
		{"Stream.Query", func() error { _, err := s.Query(); return err }},
		{"NewEvent", func() error { _, err := cuda.NewEvent(dev); return err }},
		{"DeviceSynchronize", func() error { return cuda.DeviceSynchronize(dev) }},
		{"CanAccessPeer", func() error { _, err := cuda.CanAccessPeer(0, 1); return err }},
		{"IpcGetMemHandle", func() error { _, err := cuda.IpcGetMemHandle(dev, 0x1000); return err }},
		{"IpcOpenMemHandle", func() error { _, err := cuda.IpcOpenMemHandle(dev, cuda.IpcMemHandle{1}); return err }},
		{"IpcCloseMemHandle", func() error { return cuda.IpcCloseMemHandle(dev, 0x1000) }},
	}
	if loadErr != nil {
		// With a runtime but no driver these succeed or fail by CUDA's
		// choice; without a runtime they cannot run at all.
		calls = append(calls,
			namedCall{"RuntimeVersion", func() error { _, err := cuda.RuntimeVersion(); return err }},
			namedCall{"FreeHost", func() error { return cuda.FreeHost(make([]byte, 8)) }},
			namedCall{"Event.Record", func() error { return cuda.Event{}.Record(s) }},
			namedCall{"Elapsed", func() error { _, err := cuda.Elapsed(cuda.Event{}, cuda.Event{}); return err }},
		)
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			require.Error(t, err)
			require.ErrorIs(t, err, cuda.ErrNoDriver)
			if loadErr != nil {
				assert.Contains(t, err.Error(), "LD_LIBRARY_PATH", "the error says how to fix it")
				assert.Contains(t, err.Error(), cuda.EnvLibCUDART)
			} else {
				assert.Contains(t, err.Error(), "driver", "the error says how to fix it")
			}
		})
	}

	t.Run("Discover", func(t *testing.T) {
		gpus, err := cuda.Discover()
		assert.Nil(t, gpus)
		require.ErrorIs(t, err, cuda.ErrNoDriver)
		assert.Contains(t, err.Error(), "NVIDIA driver", "the error says how to fix it")
	})

	t.Run("no-ops", func(t *testing.T) {
		assert.NoError(t, cuda.Default(dev).Destroy(), "a default stream has nothing to destroy")
		assert.NoError(t, cuda.Event{}.Destroy(), "the zero Event has nothing to destroy")
	})
}

// --- Pure Go, everywhere -----------------------------------------------------

func TestErrorFormat(t *testing.T) {
	e := &cuda.Error{Op: "cudaMalloc(dev=0, n=1)", Code: 2, Name: "cudaErrorMemoryAllocation", Msg: "out of memory"}
	assert.Equal(t, "cuda: cudaMalloc(dev=0, n=1): cudaErrorMemoryAllocation (2): out of memory", e.Error())
	assert.NotErrorIs(t, e, cuda.ErrNoDriver)
	for _, code := range []int{34, 35, 100} {
		assert.ErrorIs(t, &cuda.Error{Code: code}, cuda.ErrNoDriver, "code %d means no usable GPU", code)
	}
}

func TestInvalidArguments(t *testing.T) {
	for name, call := range map[string]func() error{
		"Malloc":      func() error { _, err := cuda.Malloc(0, -1); return err },
		"Memset":      func() error { return cuda.Memset(0, 0x1000, 0, -1) },
		"MallocHost":  func() error { _, err := cuda.MallocHost(-1); return err },
		"Memcpy":      func() error { return cuda.Memcpy(0, 0x1000, 0x2000, -1, cuda.DeviceToDevice) },
		"MemcpyAsync": func() error { return cuda.MemcpyAsync(0x1000, 0x2000, -1, cuda.DeviceToDevice, cuda.Stream{}) },
		"CopyDevice":  func() error { return cuda.CopyDevice(0, 0x1000, 0x2000, -1) },
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			var ce *cuda.Error
			require.ErrorAs(t, err, &ce, "rejected before CUDA, on any machine")
			assert.Equal(t, 1, ce.Code)
			assert.Equal(t, "cudaErrorInvalidValue", ce.Name)
			assert.Contains(t, ce.Msg, "negative size -1")
			assert.NotErrorIs(t, err, cuda.ErrNoDriver)
		})
	}
}

func TestMemcpyKindString(t *testing.T) {
	assert.Equal(t, "cudaMemcpyHostToDevice", cuda.HostToDevice.String())
	assert.Equal(t, "cudaMemcpyDefault", cuda.DefaultKind.String())
	assert.Equal(t, "MemcpyKind(9)", cuda.MemcpyKind(9).String())
	for k, v := range []cuda.MemcpyKind{cuda.HostToHost, cuda.HostToDevice, cuda.DeviceToHost, cuda.DeviceToDevice, cuda.DefaultKind} {
		assert.Equal(t, k, int(v), "cudaMemcpyKind values")
	}
}

func TestIpcMemHandleText(t *testing.T) {
	var h cuda.IpcMemHandle
	copy(h[:], pattern(len(h), 9))
	s := h.String()
	assert.Len(t, s, 128)
	back, err := cuda.ParseIpcMemHandle(s)
	require.NoError(t, err)
	assert.Equal(t, h, back)
	_, err = cuda.ParseIpcMemHandle(s[:126])
	assert.ErrorContains(t, err, "want 128 hex digits, got 126")
	_, err = cuda.ParseIpcMemHandle(strings.Repeat("zz", 64))
	assert.ErrorContains(t, err, "invalid byte")
}

// --- With a GPU --------------------------------------------------------------

func TestProperties(t *testing.T) {
	n := gpuCount(t)
	rv, err := cuda.RuntimeVersion()
	require.NoError(t, err)
	dv, err := cuda.DriverVersion()
	require.NoError(t, err)
	t.Logf("CUDA runtime %d, driver supports %d, %d GPU(s)", rv, dv, n)
	assert.GreaterOrEqual(t, rv, 12000)
	assert.Positive(t, dv)

	gpus, err := cuda.Discover()
	require.NoError(t, err, "NVML works where CUDA does")
	require.GreaterOrEqual(t, len(gpus), n, "NVML sees every GPU, CUDA the visible ones")
	byBus := map[string]cuda.GPU{}
	for i, g := range gpus {
		t.Logf("NVML GPU %d: %+v", i, g)
		assert.Equal(t, i, g.Index)
		assert.True(t, strings.HasPrefix(g.UUID, "GPU-"), "UUID %q", g.UUID)
		assert.NotEmpty(t, g.Name)
		assert.Positive(t, g.MemoryTotal)
		assert.Len(t, g.Links, len(gpus)-1, "one link per other GPU")
		byBus[g.PCIBusID] = g
	}

	busID := regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$`)
	for dev := range n {
		p, err := cuda.Properties(dev)
		require.NoError(t, err)
		t.Logf("CUDA device %d: %+v", dev, p)
		assert.Equal(t, dev, p.Index)
		assert.NotEmpty(t, p.Name)
		assert.GreaterOrEqual(t, p.Major, 5)
		assert.GreaterOrEqual(t, p.Minor, 0)
		assert.Positive(t, p.MultiProcessors)
		assert.Greater(t, p.TotalMemory, uint64(1<<30))
		assert.Regexp(t, busID, p.PCIBusID)
		g, ok := byBus[p.PCIBusID]
		if assert.True(t, ok, "CUDA device %d at %s is among NVML's GPUs", dev, p.PCIBusID) {
			assert.Equal(t, g.Name, p.Name, "CUDA and NVML name the same GPU alike")
			assert.InEpsilon(t, float64(g.MemoryTotal), float64(p.TotalMemory), 0.1)
		}
	}
}

func TestMemory(t *testing.T) {
	gpuCount(t)
	const n = 1<<20 + 3
	p := malloc(t, 0, n)
	require.NoError(t, cuda.Memset(0, p, 0xab, n))
	got := make([]byte, n)
	require.NoError(t, cuda.CopyToHost(0, got, p))
	equalBytes(t, bytes.Repeat([]byte{0xab}, n), got, "after Memset")

	// Zero-length copies do nothing, wherever they point.
	require.NoError(t, cuda.CopyToDevice(0, 0, nil))
	require.NoError(t, cuda.CopyToHost(0, nil, 0))

	empty, err := cuda.MallocHost(0)
	require.NoError(t, err)
	assert.Empty(t, empty)
	require.NoError(t, cuda.FreeHost(empty))
}

func TestCopies(t *testing.T) {
	gpuCount(t)
	const n = 4<<20 + 13
	d1, d2 := malloc(t, 0, n), malloc(t, 0, n)
	h1, h2 := mallocHost(t, n), mallocHost(t, n)

	t.Run("slices", func(t *testing.T) {
		src := pattern(n, 1)
		require.NoError(t, cuda.CopyToDevice(0, d1, src))
		require.NoError(t, cuda.CopyDevice(0, d2, d1, n))
		got := make([]byte, n)
		require.NoError(t, cuda.CopyToHost(0, got, d2))
		equalBytes(t, src, got, "Go slice → device → device → Go slice")
	})

	t.Run("Memcpy", func(t *testing.T) {
		want := pattern(n, 2)
		copy(h1, want)
		clear(h2)
		require.NoError(t, cuda.Memcpy(0, hostAddr(h2), hostAddr(h1), n, cuda.HostToHost))
		equalBytes(t, want, h2, "HostToHost")
		require.NoError(t, cuda.Memcpy(0, uintptr(d1), hostAddr(h1), n, cuda.HostToDevice))
		require.NoError(t, cuda.Memcpy(0, uintptr(d2), uintptr(d1), n, cuda.DeviceToDevice))
		clear(h2)
		require.NoError(t, cuda.Memcpy(0, hostAddr(h2), uintptr(d2), n, cuda.DeviceToHost))
		equalBytes(t, want, h2, "HostToDevice, DeviceToDevice, DeviceToHost")

		want = pattern(n, 3)
		copy(h1, want)
		require.NoError(t, cuda.Memcpy(0, uintptr(d1), hostAddr(h1), n, cuda.DefaultKind))
		clear(h2)
		require.NoError(t, cuda.Memcpy(0, hostAddr(h2), uintptr(d1), n, cuda.DefaultKind))
		equalBytes(t, want, h2, "DefaultKind both ways")
	})

	t.Run("async", func(t *testing.T) {
		s, err := cuda.NewStream(0)
		require.NoError(t, err)
		defer func() { require.NoError(t, s.Destroy()) }()
		assert.Equal(t, 0, s.Device())
		assert.NotZero(t, s.Handle())

		want := pattern(n, 4)
		copy(h1, want)
		clear(h2)
		require.NoError(t, cuda.MemcpyAsync(uintptr(d1), hostAddr(h1), n, cuda.HostToDevice, s))
		require.NoError(t, cuda.MemcpyAsync(uintptr(d2), uintptr(d1), n, cuda.DeviceToDevice, s))
		require.NoError(t, cuda.MemcpyAsync(hostAddr(h2), uintptr(d2), n, cuda.DeviceToHost, s))
		require.NoError(t, s.Synchronize())
		done, err := s.Query()
		require.NoError(t, err)
		assert.True(t, done, "nothing is left after Synchronize")
		equalBytes(t, want, h2, "async HostToDevice, DeviceToDevice, DeviceToHost")

		// The legacy default stream works the same way.
		want = pattern(n, 5)
		copy(h1, want)
		clear(h2)
		def := cuda.Default(0)
		require.NoError(t, cuda.MemcpyAsync(uintptr(d1), hostAddr(h1), n, cuda.HostToDevice, def))
		require.NoError(t, cuda.MemcpyAsync(hostAddr(h2), uintptr(d1), n, cuda.DeviceToHost, def))
		require.NoError(t, def.Synchronize())
		equalBytes(t, want, h2, "async on the default stream")
	})
}

func TestStreamQuery(t *testing.T) {
	gpuCount(t)
	const n = 256 << 20
	a, b := malloc(t, 0, n), malloc(t, 0, n)
	s, err := cuda.NewStream(0)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Destroy()) }()

	// About a gigabyte per copy moved through device memory: milliseconds
	// of work, queued in microseconds.
	for range 16 {
		require.NoError(t, cuda.MemcpyAsync(uintptr(b), uintptr(a), n, cuda.DeviceToDevice, s))
	}
	done, err := s.Query()
	require.NoError(t, err)
	assert.False(t, done, "the queued copies have not run yet")
	require.NoError(t, s.Synchronize())
	done, err = s.Query()
	require.NoError(t, err)
	assert.True(t, done)
}

func TestEvents(t *testing.T) {
	gpuCount(t)
	const n = 64 << 20
	a, b := malloc(t, 0, n), malloc(t, 0, n)
	s, err := cuda.NewStream(0)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Destroy()) }()
	start, err := cuda.NewEvent(0)
	require.NoError(t, err)
	defer func() { require.NoError(t, start.Destroy()) }()
	end, err := cuda.NewEvent(0)
	require.NoError(t, err)
	defer func() { require.NoError(t, end.Destroy()) }()
	assert.Equal(t, 0, end.Device())
	assert.NotZero(t, end.Handle())

	require.NoError(t, start.Record(s))
	for range 8 {
		require.NoError(t, cuda.MemcpyAsync(uintptr(b), uintptr(a), n, cuda.DeviceToDevice, s))
	}
	require.NoError(t, end.Record(s))

	// A second stream ordered after the first through the event.
	s2, err := cuda.NewStream(0)
	require.NoError(t, err)
	defer func() { require.NoError(t, s2.Destroy()) }()
	require.NoError(t, s2.WaitEvent(end))

	require.NoError(t, end.Synchronize())
	done, err := end.Query()
	require.NoError(t, err)
	assert.True(t, done)
	d, err := cuda.Elapsed(start, end)
	require.NoError(t, err)
	t.Logf("8 device copies of 64 MiB: %v (%.0f GB/s)", d, 8*n/d.Seconds()/1e9)
	assert.Positive(t, d)
	assert.Less(t, d, 10*time.Second)
	require.NoError(t, s2.Synchronize())
}

func TestWithDevice(t *testing.T) {
	n := gpuCount(t)
	ran := false
	require.NoError(t, cuda.WithDevice(0, func() error { ran = true; return nil }))
	assert.True(t, ran)
	boom := errors.New("boom")
	assert.ErrorIs(t, cuda.WithDevice(0, func() error { return boom }), boom, "f's error comes back")

	ran = false
	err := cuda.WithDevice(n+7, func() error { ran = true; return nil })
	assert.False(t, ran, "f does not run on a device that does not exist")
	var ce *cuda.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 101, ce.Code)
}

func TestInvalidDevice(t *testing.T) {
	bad := gpuCount(t) + 7
	_, err := cuda.Malloc(bad, 16)
	var ce *cuda.Error
	require.ErrorAs(t, err, &ce)
	t.Log(err)
	assert.Equal(t, 101, ce.Code)
	assert.Equal(t, "cudaErrorInvalidDevice", ce.Name)
	assert.NotEmpty(t, ce.Msg)
	assert.Contains(t, ce.Op, fmt.Sprintf("cudaSetDevice(%d)", bad))
	assert.Contains(t, err.Error(), "cudaErrorInvalidDevice (101)")
	assert.NotErrorIs(t, err, cuda.ErrNoDriver)

	_, err = cuda.Properties(bad)
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 101, ce.Code)

	_, err = cuda.CanAccessPeer(0, bad)
	require.ErrorAs(t, err, &ce)
	t.Log(err)
}

func TestCanAccessPeer(t *testing.T) {
	n := gpuCount(t)
	for dev := range n {
		for peer := range n {
			if peer == dev {
				continue
			}
			can, err := cuda.CanAccessPeer(dev, peer)
			require.NoError(t, err)
			t.Logf("device %d can access %d: %v", dev, peer, can)
		}
	}
	require.NoError(t, cuda.DeviceSynchronize(0))
}

// TestIPC shares device memory between two real processes on one GPU: the
// child opens the parent's allocation through its handle, checks what the
// parent wrote, and overwrites it for the parent to check.
func TestIPC(t *testing.T) {
	gpuCount(t)
	const n = 4<<20 + 5
	const seed = 77
	p := malloc(t, 0, n)
	require.NoError(t, cuda.CopyToDevice(0, p, pattern(n, seed)))
	h, err := cuda.IpcGetMemHandle(0, p)
	require.NoError(t, err)
	require.NotEqual(t, cuda.IpcMemHandle{}, h)

	child := testutil.StartChild(t, "cuda-ipc-peer", "0", h.String(), strconv.Itoa(n), strconv.Itoa(seed))
	assert.Equal(t, "OK", child.ReadLine(time.Minute))
	require.NoError(t, child.Wait(time.Minute))

	got := make([]byte, n)
	require.NoError(t, cuda.CopyToHost(0, got, p))
	equalBytes(t, bytes.Repeat([]byte{0x5a}, n), got, "what the child wrote")
}

// ipcPeerMain: args dev handle size seed. It prints OK, or what went wrong.
func ipcPeerMain(args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Printf(format+"\n", a...)
		return 1
	}
	dev, _ := strconv.Atoi(args[0])
	h, err := cuda.ParseIpcMemHandle(args[1])
	if err != nil {
		return fail("parse: %v", err)
	}
	n, _ := strconv.Atoi(args[2])
	seed, _ := strconv.Atoi(args[3])
	p, err := cuda.IpcOpenMemHandle(dev, h)
	if err != nil {
		return fail("open: %v", err)
	}
	got := make([]byte, n)
	if err := cuda.CopyToHost(dev, got, p); err != nil {
		return fail("copy: %v", err)
	}
	if i := firstDiff(pattern(n, byte(seed)), got); i >= 0 {
		return fail("byte %d differs from what the parent wrote", i)
	}
	if err := cuda.Memset(dev, p, 0x5a, n); err != nil {
		return fail("memset: %v", err)
	}
	if err := cuda.DeviceSynchronize(dev); err != nil {
		return fail("synchronize: %v", err)
	}
	if err := cuda.IpcCloseMemHandle(dev, p); err != nil {
		return fail("close: %v", err)
	}
	fmt.Println("OK")
	return 0
}

// --- Benchmarks ----------------------------------------------------------------

var copySizes = []struct {
	name string
	n    int
}{{"100KB", 100_000}, {"16MiB", 16 << 20}}

// BenchmarkCopy measures copies between host and device memory, each beside
// a plain host memcpy of the same size (host_memcpy), which always runs.
func BenchmarkCopy(b *testing.B) {
	_, gpuErr := cuda.DeviceCount()
	for _, kind := range []string{"HtoD", "DtoH", "DtoD", "HtoD_pinned"} {
		for _, size := range copySizes {
			b.Run(kind+"/"+size.name, func(b *testing.B) {
				if gpuErr != nil {
					b.Skipf("no GPU: %v", gpuErr)
				}
				benchDeviceCopy(b, kind, size.n)
			})
		}
	}
	for _, size := range copySizes {
		b.Run("host_memcpy/"+size.name, func(b *testing.B) {
			src, dst := pattern(size.n, 1), make([]byte, size.n)
			b.SetBytes(int64(size.n))
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}

func benchDeviceCopy(b *testing.B, kind string, n int) {
	d1, d2 := malloc(b, 0, n), malloc(b, 0, n)
	host := pattern(n, 1)
	var pinned []byte
	if kind == "HtoD_pinned" {
		pinned = mallocHost(b, n)
		copy(pinned, host)
	}
	b.SetBytes(int64(n))
	b.ResetTimer()
	var err error
	for range b.N {
		switch kind {
		case "HtoD":
			err = cuda.CopyToDevice(0, d1, host)
		case "DtoH":
			err = cuda.CopyToHost(0, host, d1)
		case "DtoD":
			err = cuda.CopyDevice(0, d2, d1, n)
		case "HtoD_pinned":
			err = cuda.Memcpy(0, uintptr(d1), hostAddr(pinned), n, cuda.HostToDevice)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	// Device-to-device copies return before they are done: the timer runs
	// until they are.
	if err := cuda.DeviceSynchronize(0); err != nil {
		b.Fatal(err)
	}
}
