// The CUDA runtime through dlopen: the function table, the loader and one
// thin wrapper per call package cuda makes. See cudart.h.

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudart.h"

typedef int cudaError_t;
typedef void *cudaStream_t;
typedef void *cudaEvent_t;

enum {
	cudaStreamNonBlocking = 1,
	cudaEventDefault = 0,
	cudaMemcpyHostToDevice = 1,
	cudaMemcpyDeviceToHost = 2,
	// cudaDeviceProp starts with char name[256] in every CUDA version; its
	// other fields move between versions and are not read. The buffer is far
	// larger than any version's struct (about 1 KiB).
	propNameLen = 256,
	propBufferSize = 16384,
};

static struct {
	cudaError_t (*GetDeviceCount)(int *);
	cudaError_t (*RuntimeGetVersion)(int *);
	cudaError_t (*DriverGetVersion)(int *);
	const char *(*GetErrorName)(cudaError_t);
	const char *(*GetErrorString)(cudaError_t);
	cudaError_t (*SetDevice)(int);
	cudaError_t (*DeviceGetAttribute)(int *, int, int);
	cudaError_t (*GetDeviceProperties)(void *, int);
	cudaError_t (*DeviceGetPCIBusId)(char *, int, int);
	cudaError_t (*MemGetInfo)(size_t *, size_t *);
	cudaError_t (*DeviceCanAccessPeer)(int *, int, int);
	cudaError_t (*DeviceSynchronize)(void);
	cudaError_t (*Malloc)(void **, size_t);
	cudaError_t (*Free)(void *);
	cudaError_t (*Memset)(void *, int, size_t);
	cudaError_t (*MallocHost)(void **, size_t);
	cudaError_t (*FreeHost)(void *);
	cudaError_t (*Memcpy)(void *, const void *, size_t, int);
	cudaError_t (*MemcpyAsync)(void *, const void *, size_t, int, cudaStream_t);
	cudaError_t (*StreamCreateWithFlags)(cudaStream_t *, unsigned int);
	cudaError_t (*StreamSynchronize)(cudaStream_t);
	cudaError_t (*StreamQuery)(cudaStream_t);
	cudaError_t (*StreamDestroy)(cudaStream_t);
	cudaError_t (*StreamWaitEvent)(cudaStream_t, cudaEvent_t, unsigned int);
	cudaError_t (*EventCreateWithFlags)(cudaEvent_t *, unsigned int);
	cudaError_t (*EventRecord)(cudaEvent_t, cudaStream_t);
	cudaError_t (*EventSynchronize)(cudaEvent_t);
	cudaError_t (*EventQuery)(cudaEvent_t);
	cudaError_t (*EventElapsedTime)(float *, cudaEvent_t, cudaEvent_t);
	cudaError_t (*EventDestroy)(cudaEvent_t);
	cudaError_t (*IpcGetMemHandle)(gr_ipc_handle *, void *);
	cudaError_t (*IpcOpenMemHandle)(void **, gr_ipc_handle, unsigned int);
	cudaError_t (*IpcCloseMemHandle)(void *);
} rt;

// Each slot with the exported names that may provide it, first match wins:
// CUDA 12 headers map cudaGetDeviceProperties to the _v2 symbol, and 12.8
// added cudaEventElapsedTime_v2.
static const struct {
	void *slot;
	const char *names[3];
} symbols[] = {
	{&rt.GetDeviceCount, {"cudaGetDeviceCount"}},
	{&rt.RuntimeGetVersion, {"cudaRuntimeGetVersion"}},
	{&rt.DriverGetVersion, {"cudaDriverGetVersion"}},
	{&rt.GetErrorName, {"cudaGetErrorName"}},
	{&rt.GetErrorString, {"cudaGetErrorString"}},
	{&rt.SetDevice, {"cudaSetDevice"}},
	{&rt.DeviceGetAttribute, {"cudaDeviceGetAttribute"}},
	{&rt.GetDeviceProperties, {"cudaGetDeviceProperties_v2", "cudaGetDeviceProperties"}},
	{&rt.DeviceGetPCIBusId, {"cudaDeviceGetPCIBusId"}},
	{&rt.MemGetInfo, {"cudaMemGetInfo"}},
	{&rt.DeviceCanAccessPeer, {"cudaDeviceCanAccessPeer"}},
	{&rt.DeviceSynchronize, {"cudaDeviceSynchronize"}},
	{&rt.Malloc, {"cudaMalloc"}},
	{&rt.Free, {"cudaFree"}},
	{&rt.Memset, {"cudaMemset"}},
	{&rt.MallocHost, {"cudaMallocHost"}},
	{&rt.FreeHost, {"cudaFreeHost"}},
	{&rt.Memcpy, {"cudaMemcpy"}},
	{&rt.MemcpyAsync, {"cudaMemcpyAsync"}},
	{&rt.StreamCreateWithFlags, {"cudaStreamCreateWithFlags"}},
	{&rt.StreamSynchronize, {"cudaStreamSynchronize"}},
	{&rt.StreamQuery, {"cudaStreamQuery"}},
	{&rt.StreamDestroy, {"cudaStreamDestroy"}},
	{&rt.StreamWaitEvent, {"cudaStreamWaitEvent"}},
	{&rt.EventCreateWithFlags, {"cudaEventCreateWithFlags"}},
	{&rt.EventRecord, {"cudaEventRecord"}},
	{&rt.EventSynchronize, {"cudaEventSynchronize"}},
	{&rt.EventQuery, {"cudaEventQuery"}},
	{&rt.EventElapsedTime, {"cudaEventElapsedTime", "cudaEventElapsedTime_v2"}},
	{&rt.EventDestroy, {"cudaEventDestroy"}},
	{&rt.IpcGetMemHandle, {"cudaIpcGetMemHandle"}},
	{&rt.IpcOpenMemHandle, {"cudaIpcOpenMemHandle"}},
	{&rt.IpcCloseMemHandle, {"cudaIpcCloseMemHandle"}},
};

int gr_load(const char *path, int check_driver, char *msg, size_t msglen) {
	msg[0] = 0;
	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		const char *e = dlerror();
		snprintf(msg, msglen, "%s", e ? e : "dlopen failed");
		return 1;
	}
	size_t n = sizeof symbols / sizeof symbols[0];
	void *found[sizeof symbols / sizeof symbols[0]];
	for (size_t i = 0; i < n; i++) {
		found[i] = NULL;
		for (int j = 0; j < 3 && symbols[i].names[j] != NULL && found[i] == NULL; j++) {
			found[i] = dlsym(lib, symbols[i].names[j]);
		}
		if (found[i] == NULL) {
			snprintf(msg, msglen, "%s has no symbol %s: not a CUDA runtime this package can use", path,
			         symbols[i].names[0]);
			dlclose(lib);
			return 2;
		}
	}
	// A runtime newer (in major version) than the driver supports fails every
	// call with cudaErrorInsufficientDriver: try the next candidate instead.
	// With no driver at all (version 0) the runtime is kept, and DeviceCount
	// says so. The library is not closed: it has run code of its own.
	if (check_driver) {
		int (*driver_version)(int *) = NULL, (*runtime_version)(int *) = NULL;
		void *dv = dlsym(lib, "cudaDriverGetVersion"), *rv = dlsym(lib, "cudaRuntimeGetVersion");
		memcpy(&driver_version, &dv, sizeof dv);
		memcpy(&runtime_version, &rv, sizeof rv);
		int drv = 0, run = 0;
		if (driver_version(&drv) == 0 && runtime_version(&run) == 0 && drv != 0 && drv / 1000 < run / 1000) {
			snprintf(msg, msglen, "%s is CUDA %d.%d, but the NVIDIA driver supports CUDA %d.%d at most", path,
			         run / 1000, run % 1000 / 10, drv / 1000, drv % 1000 / 10);
			return 3;
		}
	}
	// Fill the table only once every symbol resolved: a failed candidate
	// leaves nothing behind. The library stays open for the process's life.
	for (size_t i = 0; i < n; i++) {
		memcpy(symbols[i].slot, &found[i], sizeof found[i]);
	}
	return 0;
}

const char *gr_error_name(int code) { return rt.GetErrorName(code); }
const char *gr_error_string(int code) { return rt.GetErrorString(code); }

#define SET_DEVICE(dev)                          \
	do {                                         \
		cudaError_t set_err_ = rt.SetDevice(dev); \
		if (set_err_ != 0) return -set_err_;     \
	} while (0)

int gr_device_count(int *n) { return rt.GetDeviceCount(n); }
int gr_runtime_version(int *v) { return rt.RuntimeGetVersion(v); }
int gr_driver_version(int *v) { return rt.DriverGetVersion(v); }
int gr_set_device(int dev) { return rt.SetDevice(dev); }

int gr_device_attribute(int dev, int attr, int *v) { return rt.DeviceGetAttribute(v, attr, dev); }

int gr_device_name(int dev, char *name, size_t len) {
	char *prop = calloc(1, propBufferSize);
	if (prop == NULL) return 2; // cudaErrorMemoryAllocation
	cudaError_t e = rt.GetDeviceProperties(prop, dev);
	if (e == 0 && len > 0) {
		size_t n = len - 1 < propNameLen ? len - 1 : propNameLen;
		memcpy(name, prop, n);
		name[n] = 0;
	}
	free(prop);
	return e;
}

int gr_pci_bus_id(int dev, char *id, int len) { return rt.DeviceGetPCIBusId(id, len, dev); }

int gr_mem_get_info(int dev, size_t *free_bytes, size_t *total_bytes) {
	SET_DEVICE(dev);
	return rt.MemGetInfo(free_bytes, total_bytes);
}

int gr_can_access_peer(int dev, int peer, int *can) { return rt.DeviceCanAccessPeer(can, dev, peer); }

int gr_device_synchronize(int dev) {
	SET_DEVICE(dev);
	return rt.DeviceSynchronize();
}

int gr_malloc(int dev, uintptr_t *p, size_t n) {
	SET_DEVICE(dev);
	void *q = NULL;
	cudaError_t e = rt.Malloc(&q, n);
	*p = (uintptr_t)q;
	return e;
}

int gr_free(int dev, uintptr_t p) {
	SET_DEVICE(dev);
	return rt.Free((void *)p);
}

int gr_memset(int dev, uintptr_t p, int v, size_t n) {
	SET_DEVICE(dev);
	return rt.Memset((void *)p, v, n);
}

int gr_malloc_host(void **p, size_t n) { return rt.MallocHost(p, n); }
int gr_free_host(void *p) { return rt.FreeHost(p); }

int gr_memcpy(int dev, uintptr_t dst, uintptr_t src, size_t n, int kind) {
	SET_DEVICE(dev);
	return rt.Memcpy((void *)dst, (const void *)src, n, kind);
}

int gr_memcpy_to_device(int dev, uintptr_t dst, const void *src, size_t n) {
	SET_DEVICE(dev);
	return rt.Memcpy((void *)dst, src, n, cudaMemcpyHostToDevice);
}

int gr_memcpy_to_host(int dev, void *dst, uintptr_t src, size_t n) {
	SET_DEVICE(dev);
	return rt.Memcpy(dst, (const void *)src, n, cudaMemcpyDeviceToHost);
}

int gr_memcpy_async(int dev, uintptr_t dst, uintptr_t src, size_t n, int kind, uintptr_t stream) {
	SET_DEVICE(dev);
	return rt.MemcpyAsync((void *)dst, (const void *)src, n, kind, (cudaStream_t)stream);
}

int gr_stream_create(int dev, uintptr_t *s) {
	SET_DEVICE(dev);
	cudaStream_t q = NULL;
	cudaError_t e = rt.StreamCreateWithFlags(&q, cudaStreamNonBlocking);
	*s = (uintptr_t)q;
	return e;
}

int gr_stream_synchronize(int dev, uintptr_t s) {
	SET_DEVICE(dev);
	return rt.StreamSynchronize((cudaStream_t)s);
}

int gr_stream_query(int dev, uintptr_t s) {
	SET_DEVICE(dev);
	return rt.StreamQuery((cudaStream_t)s);
}

int gr_stream_destroy(int dev, uintptr_t s) {
	SET_DEVICE(dev);
	return rt.StreamDestroy((cudaStream_t)s);
}

int gr_stream_wait_event(int dev, uintptr_t s, uintptr_t e) {
	SET_DEVICE(dev);
	return rt.StreamWaitEvent((cudaStream_t)s, (cudaEvent_t)e, 0);
}

int gr_event_create(int dev, uintptr_t *e) {
	SET_DEVICE(dev);
	cudaEvent_t q = NULL;
	cudaError_t err = rt.EventCreateWithFlags(&q, cudaEventDefault);
	*e = (uintptr_t)q;
	return err;
}

int gr_event_record(int dev, uintptr_t e, uintptr_t s) {
	SET_DEVICE(dev);
	return rt.EventRecord((cudaEvent_t)e, (cudaStream_t)s);
}

int gr_event_synchronize(int dev, uintptr_t e) {
	SET_DEVICE(dev);
	return rt.EventSynchronize((cudaEvent_t)e);
}

int gr_event_query(int dev, uintptr_t e) {
	SET_DEVICE(dev);
	return rt.EventQuery((cudaEvent_t)e);
}

int gr_event_elapsed(int dev, float *ms, uintptr_t start, uintptr_t end) {
	SET_DEVICE(dev);
	return rt.EventElapsedTime(ms, (cudaEvent_t)start, (cudaEvent_t)end);
}

int gr_event_destroy(int dev, uintptr_t e) {
	SET_DEVICE(dev);
	return rt.EventDestroy((cudaEvent_t)e);
}

int gr_ipc_get_mem_handle(int dev, gr_ipc_handle *h, uintptr_t p) {
	SET_DEVICE(dev);
	return rt.IpcGetMemHandle(h, (void *)p);
}

int gr_ipc_open_mem_handle(int dev, uintptr_t *p, const gr_ipc_handle *h, unsigned int flags) {
	SET_DEVICE(dev);
	void *q = NULL;
	cudaError_t e = rt.IpcOpenMemHandle(&q, *h, flags);
	*p = (uintptr_t)q;
	return e;
}

int gr_ipc_close_mem_handle(int dev, uintptr_t p) {
	SET_DEVICE(dev);
	return rt.IpcCloseMemHandle((void *)p);
}
