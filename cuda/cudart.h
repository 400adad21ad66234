// The small, stable part of the CUDA runtime C ABI that package cuda uses,
// reached through dlopen so that the package builds without CUDA headers or
// libraries. Every gr_* function returns a cudaError_t (0 is success); a
// function that takes dev first makes dev the calling thread's current
// device and returns the negated cudaSetDevice error if that fails, so one
// C call (which never changes OS thread) both selects the device and uses
// it.

#ifndef GORAY_CUDART_H
#define GORAY_CUDART_H

#include <stddef.h>
#include <stdint.h>

// cudaIpcMemHandle_t: 64 opaque bytes, passed by value.
typedef struct {
	char reserved[64];
} gr_ipc_handle;

// gr_load opens the runtime at path and resolves every symbol; with
// check_driver it also refuses a runtime whose major version the installed
// driver does not support. It returns 0, or non-zero with the reason written
// to msg (NUL-terminated).
int gr_load(const char *path, int check_driver, char *msg, size_t msglen);

const char *gr_error_name(int code);
const char *gr_error_string(int code);

int gr_device_count(int *n);
int gr_runtime_version(int *v);
int gr_driver_version(int *v);
int gr_set_device(int dev);
int gr_device_attribute(int dev, int attr, int *v);
int gr_device_name(int dev, char *name, size_t len);
int gr_pci_bus_id(int dev, char *id, int len);
int gr_mem_get_info(int dev, size_t *free_bytes, size_t *total_bytes);
int gr_can_access_peer(int dev, int peer, int *can);
int gr_device_synchronize(int dev);

int gr_malloc(int dev, uintptr_t *p, size_t n);
int gr_free(int dev, uintptr_t p);
int gr_memset(int dev, uintptr_t p, int v, size_t n);
int gr_malloc_host(void **p, size_t n);
int gr_free_host(void *p);

int gr_memcpy(int dev, uintptr_t dst, uintptr_t src, size_t n, int kind);
int gr_memcpy_to_device(int dev, uintptr_t dst, const void *src, size_t n);
int gr_memcpy_to_host(int dev, void *dst, uintptr_t src, size_t n);
int gr_memcpy_async(int dev, uintptr_t dst, uintptr_t src, size_t n, int kind, uintptr_t stream);

int gr_stream_create(int dev, uintptr_t *s);
int gr_stream_synchronize(int dev, uintptr_t s);
int gr_stream_query(int dev, uintptr_t s);
int gr_stream_destroy(int dev, uintptr_t s);
int gr_stream_wait_event(int dev, uintptr_t s, uintptr_t e);

int gr_event_create(int dev, uintptr_t *e);
int gr_event_record(int dev, uintptr_t e, uintptr_t s);
int gr_event_synchronize(int dev, uintptr_t e);
int gr_event_query(int dev, uintptr_t e);
int gr_event_elapsed(int dev, float *ms, uintptr_t start, uintptr_t end);
int gr_event_destroy(int dev, uintptr_t e);

int gr_ipc_get_mem_handle(int dev, gr_ipc_handle *h, uintptr_t p);
int gr_ipc_open_mem_handle(int dev, uintptr_t *p, const gr_ipc_handle *h, unsigned int flags);
int gr_ipc_close_mem_handle(int dev, uintptr_t p);

#endif
