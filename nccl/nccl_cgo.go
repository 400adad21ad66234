//go:build cgo

package nccl

// The C side of the NCCL backend: libnccl is opened with dlopen at run time,
// never linked, so the package builds with plain gcc and no NCCL or CUDA
// headers. The declarations below restate the small part of nccl.h (NCCL
// 2.18 and later; checked against NVIDIA/nccl src/nccl.h.in) that the
// backend calls. Every call goes through a static wrapper that takes the
// function pointer from a table filled by dlsym.

/*
#cgo noescape gr_nccl_try_open
#cgo nocallback gr_nccl_try_open
#cgo noescape gr_nccl_load
#cgo nocallback gr_nccl_load
#cgo noescape gr_nccl_get_version
#cgo nocallback gr_nccl_get_version
#cgo noescape gr_nccl_get_unique_id
#cgo nocallback gr_nccl_get_unique_id
#cgo noescape gr_nccl_comm_init_rank
#cgo nocallback gr_nccl_comm_init_rank
#cgo noescape gr_nccl_comm_init_rank_config
#cgo nocallback gr_nccl_comm_init_rank_config
#cgo noescape gr_nccl_comm_count
#cgo nocallback gr_nccl_comm_count
#cgo noescape gr_nccl_comm_user_rank
#cgo nocallback gr_nccl_comm_user_rank
#cgo noescape gr_nccl_comm_get_async_error
#cgo nocallback gr_nccl_comm_get_async_error
#cgo noescape gr_nccl_error_string
#cgo nocallback gr_nccl_error_string
#cgo noescape gr_nccl_last_error
#cgo nocallback gr_nccl_last_error
#cgo nocallback gr_nccl_has_config_init
#cgo nocallback gr_nccl_has_finalize
#cgo nocallback gr_nccl_send
#cgo nocallback gr_nccl_recv
#cgo nocallback gr_nccl_all_reduce
#cgo nocallback gr_nccl_all_gather
#cgo nocallback gr_nccl_reduce_scatter
#cgo nocallback gr_nccl_broadcast
#cgo nocallback gr_nccl_group_start
#cgo nocallback gr_nccl_group_end
#cgo nocallback gr_nccl_comm_abort
#cgo nocallback gr_nccl_comm_destroy
#cgo nocallback gr_nccl_comm_finalize
// NCCL never calls back into Go, and copies what the pointers point to.
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>

typedef int gr_ncclResult_t;   // ncclResult_t (an int-sized enum)
typedef void* gr_ncclComm_t;   // ncclComm_t (struct ncclComm*)
typedef void* gr_cudaStream_t; // cudaStream_t (struct CUstream_st*)

// ncclUniqueId: 128 opaque bytes, passed by value to ncclCommInitRank.
typedef struct { char internal[128]; } gr_ncclUniqueId;

// ncclConfig_t as NCCL 2.18 declared it (ncclConfig_v21700 plus
// splitShare). NCCL reads min(size, its own sizeof) bytes and resets the
// fields newer than version to their defaults, so this prefix stays valid
// with every later library (parseCommConfig in src/init.cc).
typedef struct {
	size_t size;
	unsigned int magic;
	unsigned int version;
	int blocking;
	int cgaClusterSize;
	int minCTAs;
	int maxCTAs;
	const char* netName;
	int splitShare;
	// The tail padding of NCCL 2.18's struct, named so that it is set: it
	// is trafficClass from 2.25 on, which NCCL resets for version 2.18
	// anyway.
	int trafficClass;
} gr_ncclConfig_v21800;

// The layout every NCCL since 2.18 expects on LP64 (x86-64, aarch64).
_Static_assert(sizeof(gr_ncclUniqueId) == 128, "ncclUniqueId is 128 bytes");
_Static_assert(offsetof(gr_ncclConfig_v21800, magic) == 8, "ncclConfig_t.magic");
_Static_assert(offsetof(gr_ncclConfig_v21800, blocking) == 16, "ncclConfig_t.blocking");
_Static_assert(offsetof(gr_ncclConfig_v21800, netName) == 32, "ncclConfig_t.netName");
_Static_assert(offsetof(gr_ncclConfig_v21800, splitShare) == 40, "ncclConfig_t.splitShare");
_Static_assert(sizeof(gr_ncclConfig_v21800) == 48, "ncclConfig_t (2.18) is 48 bytes");

#define GR_NCCL_API_MAGIC 0xcafebeef
#define GR_NCCL_CONFIG_VERSION 21800  // NCCL_VERSION(2,18,0)
#define GR_NCCL_CONFIG_UNDEF_INT INT_MIN

static struct {
	void* handle;
	gr_ncclResult_t (*getVersion)(int*);
	gr_ncclResult_t (*getUniqueId)(gr_ncclUniqueId*);
	gr_ncclResult_t (*commInitRank)(gr_ncclComm_t*, int, gr_ncclUniqueId, int);
	gr_ncclResult_t (*commInitRankConfig)(gr_ncclComm_t*, int, gr_ncclUniqueId, int, gr_ncclConfig_v21800*);
	gr_ncclResult_t (*commCount)(gr_ncclComm_t, int*);
	gr_ncclResult_t (*commUserRank)(gr_ncclComm_t, int*);
	gr_ncclResult_t (*send)(const void*, size_t, int, int, gr_ncclComm_t, gr_cudaStream_t);
	gr_ncclResult_t (*recv)(void*, size_t, int, int, gr_ncclComm_t, gr_cudaStream_t);
	gr_ncclResult_t (*allReduce)(const void*, void*, size_t, int, int, gr_ncclComm_t, gr_cudaStream_t);
	gr_ncclResult_t (*allGather)(const void*, void*, size_t, int, gr_ncclComm_t, gr_cudaStream_t);
	gr_ncclResult_t (*reduceScatter)(const void*, void*, size_t, int, int, gr_ncclComm_t, gr_cudaStream_t);
	gr_ncclResult_t (*broadcast)(const void*, void*, size_t, int, int, gr_ncclComm_t, gr_cudaStream_t);
	gr_ncclResult_t (*groupStart)(void);
	gr_ncclResult_t (*groupEnd)(void);
	gr_ncclResult_t (*commGetAsyncError)(gr_ncclComm_t, gr_ncclResult_t*);
	gr_ncclResult_t (*commAbort)(gr_ncclComm_t);
	gr_ncclResult_t (*commDestroy)(gr_ncclComm_t);
	gr_ncclResult_t (*commFinalize)(gr_ncclComm_t);        // optional (2.14+)
	const char* (*getErrorString)(gr_ncclResult_t);
	const char* (*getLastError)(gr_ncclComm_t);             // optional (2.13+)
} gr_nccl;

static void gr_nccl_copy_err(char* dst, size_t n, const char* src) {
	if (n == 0) return;
	if (src == NULL) src = "unknown error";
	strncpy(dst, src, n - 1);
	dst[n - 1] = 0;
}

// gr_nccl_try_open dlopens path and closes it again: a probe that leaves
// no state behind. Returns 0, or -1 with dlerror in err.
static int gr_nccl_try_open(const char* path, char* err, size_t errlen) {
	void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		gr_nccl_copy_err(err, errlen, dlerror());
		return -1;
	}
	dlclose(h);
	return 0;
}

#define GR_NCCL_SYM(field, name, required) do {                          \
	*(void**)(&gr_nccl.field) = dlsym(h, name);                           \
	if (gr_nccl.field == NULL && (required)) {                            \
		const char* e = dlerror();                                        \
		gr_nccl_copy_err(err, errlen, e ? e : "symbol " name " missing"); \
		memset(&gr_nccl, 0, sizeof gr_nccl);                              \
		dlclose(h);                                                       \
		return -2;                                                        \
	}                                                                     \
} while (0)

// gr_nccl_load dlopens path and binds every symbol. Returns 0; -1 when the
// library cannot be opened, -2 when a required symbol is missing (err says
// which); in both cases the table stays empty.
static int gr_nccl_load(const char* path, char* err, size_t errlen) {
	void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		gr_nccl_copy_err(err, errlen, dlerror());
		return -1;
	}
	dlerror();
	GR_NCCL_SYM(getVersion, "ncclGetVersion", 1);
	GR_NCCL_SYM(getUniqueId, "ncclGetUniqueId", 1);
	GR_NCCL_SYM(commInitRank, "ncclCommInitRank", 1);
	GR_NCCL_SYM(commInitRankConfig, "ncclCommInitRankConfig", 0);
	GR_NCCL_SYM(commCount, "ncclCommCount", 1);
	GR_NCCL_SYM(commUserRank, "ncclCommUserRank", 1);
	GR_NCCL_SYM(send, "ncclSend", 1);
	GR_NCCL_SYM(recv, "ncclRecv", 1);
	GR_NCCL_SYM(allReduce, "ncclAllReduce", 1);
	GR_NCCL_SYM(allGather, "ncclAllGather", 1);
	GR_NCCL_SYM(reduceScatter, "ncclReduceScatter", 1);
	GR_NCCL_SYM(broadcast, "ncclBroadcast", 1);
	GR_NCCL_SYM(groupStart, "ncclGroupStart", 1);
	GR_NCCL_SYM(groupEnd, "ncclGroupEnd", 1);
	GR_NCCL_SYM(commGetAsyncError, "ncclCommGetAsyncError", 1);
	GR_NCCL_SYM(commAbort, "ncclCommAbort", 1);
	GR_NCCL_SYM(commDestroy, "ncclCommDestroy", 1);
	GR_NCCL_SYM(commFinalize, "ncclCommFinalize", 0);
	GR_NCCL_SYM(getErrorString, "ncclGetErrorString", 1);
	GR_NCCL_SYM(getLastError, "ncclGetLastError", 0);
	dlerror();
	gr_nccl.handle = h;
	return 0;
}

static int gr_nccl_has_config_init(void) { return gr_nccl.commInitRankConfig != NULL; }
static int gr_nccl_has_finalize(void) { return gr_nccl.commFinalize != NULL; }

static gr_ncclResult_t gr_nccl_get_version(int* v) { return gr_nccl.getVersion(v); }

static gr_ncclResult_t gr_nccl_get_unique_id(void* id) {
	return gr_nccl.getUniqueId((gr_ncclUniqueId*)id);
}

// The id is copied from Go memory and passed by value, as nccl.h declares.
static gr_ncclResult_t gr_nccl_comm_init_rank(uintptr_t* comm, int nranks, const void* id, int rank) {
	gr_ncclUniqueId uid;
	gr_ncclComm_t c = NULL;
	memcpy(&uid, id, sizeof uid);
	gr_ncclResult_t r = gr_nccl.commInitRank(&c, nranks, uid, rank);
	*comm = (uintptr_t)c;
	return r;
}

static gr_ncclResult_t gr_nccl_comm_init_rank_config(uintptr_t* comm, int nranks, const void* id, int rank, int blocking) {
	gr_ncclUniqueId uid;
	gr_ncclComm_t c = NULL;
	gr_ncclConfig_v21800 cfg;
	memcpy(&uid, id, sizeof uid);
	memset(&cfg, 0, sizeof cfg);
	cfg.size = sizeof cfg;
	cfg.magic = GR_NCCL_API_MAGIC;
	cfg.version = GR_NCCL_CONFIG_VERSION;
	cfg.blocking = blocking;
	cfg.cgaClusterSize = GR_NCCL_CONFIG_UNDEF_INT;
	cfg.minCTAs = GR_NCCL_CONFIG_UNDEF_INT;
	cfg.maxCTAs = GR_NCCL_CONFIG_UNDEF_INT;
	cfg.netName = NULL;
	cfg.splitShare = GR_NCCL_CONFIG_UNDEF_INT;
	cfg.trafficClass = GR_NCCL_CONFIG_UNDEF_INT;
	gr_ncclResult_t r = gr_nccl.commInitRankConfig(&c, nranks, uid, rank, &cfg);
	*comm = (uintptr_t)c;
	return r;
}

static gr_ncclResult_t gr_nccl_comm_count(uintptr_t comm, int* n) { return gr_nccl.commCount((gr_ncclComm_t)comm, n); }
static gr_ncclResult_t gr_nccl_comm_user_rank(uintptr_t comm, int* r) { return gr_nccl.commUserRank((gr_ncclComm_t)comm, r); }

static gr_ncclResult_t gr_nccl_send(uintptr_t buf, size_t count, int dtype, int peer, uintptr_t comm, uintptr_t stream) {
	return gr_nccl.send((const void*)buf, count, dtype, peer, (gr_ncclComm_t)comm, (gr_cudaStream_t)stream);
}
static gr_ncclResult_t gr_nccl_recv(uintptr_t buf, size_t count, int dtype, int peer, uintptr_t comm, uintptr_t stream) {
	return gr_nccl.recv((void*)buf, count, dtype, peer, (gr_ncclComm_t)comm, (gr_cudaStream_t)stream);
}
static gr_ncclResult_t gr_nccl_all_reduce(uintptr_t in, uintptr_t out, size_t count, int dtype, int op, uintptr_t comm, uintptr_t stream) {
	return gr_nccl.allReduce((const void*)in, (void*)out, count, dtype, op, (gr_ncclComm_t)comm, (gr_cudaStream_t)stream);
}
static gr_ncclResult_t gr_nccl_all_gather(uintptr_t in, uintptr_t out, size_t sendcount, int dtype, uintptr_t comm, uintptr_t stream) {
	return gr_nccl.allGather((const void*)in, (void*)out, sendcount, dtype, (gr_ncclComm_t)comm, (gr_cudaStream_t)stream);
}
static gr_ncclResult_t gr_nccl_reduce_scatter(uintptr_t in, uintptr_t out, size_t recvcount, int dtype, int op, uintptr_t comm, uintptr_t stream) {
	return gr_nccl.reduceScatter((const void*)in, (void*)out, recvcount, dtype, op, (gr_ncclComm_t)comm, (gr_cudaStream_t)stream);
}
static gr_ncclResult_t gr_nccl_broadcast(uintptr_t in, uintptr_t out, size_t count, int dtype, int root, uintptr_t comm, uintptr_t stream) {
	return gr_nccl.broadcast((const void*)in, (void*)out, count, dtype, root, (gr_ncclComm_t)comm, (gr_cudaStream_t)stream);
}
static gr_ncclResult_t gr_nccl_group_start(void) { return gr_nccl.groupStart(); }
static gr_ncclResult_t gr_nccl_group_end(void) { return gr_nccl.groupEnd(); }

static gr_ncclResult_t gr_nccl_comm_get_async_error(uintptr_t comm, int* state) {
	gr_ncclResult_t s = 0;
	gr_ncclResult_t r = gr_nccl.commGetAsyncError((gr_ncclComm_t)comm, &s);
	*state = s;
	return r;
}
static gr_ncclResult_t gr_nccl_comm_abort(uintptr_t comm) { return gr_nccl.commAbort((gr_ncclComm_t)comm); }
static gr_ncclResult_t gr_nccl_comm_destroy(uintptr_t comm) { return gr_nccl.commDestroy((gr_ncclComm_t)comm); }
static gr_ncclResult_t gr_nccl_comm_finalize(uintptr_t comm) {
	if (gr_nccl.commFinalize == NULL) return 0;
	return gr_nccl.commFinalize((gr_ncclComm_t)comm);
}

static void gr_nccl_error_string(int r, char* dst, size_t n) {
	gr_nccl_copy_err(dst, n, gr_nccl.getErrorString ? gr_nccl.getErrorString(r) : NULL);
}
static void gr_nccl_last_error(uintptr_t comm, char* dst, size_t n) {
	if (n == 0) return;
	dst[0] = 0;
	if (gr_nccl.getLastError == NULL) return;
	const char* s = gr_nccl.getLastError((gr_ncclComm_t)comm);
	if (s != NULL) gr_nccl_copy_err(dst, n, s);
}
*/
import "C"

import (
	"unsafe"
)

const ncCgo = true

// ncErrBuf is big enough for any dlerror or NCCL message.
const ncErrBuf = 2048

func ncCString(b []C.char) string {
	return C.GoString(&b[0])
}

// ncTryOpen probes path with dlopen (and closes it again); "" on success,
// else dlerror's message.
func ncTryOpen(path string) string {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var buf [ncErrBuf]C.char
	if C.gr_nccl_try_open(cpath, &buf[0], ncErrBuf) != 0 {
		return ncCString(buf[:])
	}
	return ""
}

// ncLoad opens path and binds the NCCL symbols. It returns 0 on success, -1
// when the library cannot be opened, -2 when a required symbol is missing,
// with the loader's message.
func ncLoad(path string) (int, string) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var buf [ncErrBuf]C.char
	if rc := C.gr_nccl_load(cpath, &buf[0], ncErrBuf); rc != 0 {
		return int(rc), ncCString(buf[:])
	}
	return 0, ""
}

// ncCgoAPI is the NCCL C API through the table gr_nccl_load filled.
type ncCgoAPI struct{}

// ncBound returns the API of the library ncLoad bound.
func ncBound() ncAPI { return ncCgoAPI{} }

func (ncCgoAPI) hasConfigInit() bool { return C.gr_nccl_has_config_init() != 0 }
func (ncCgoAPI) hasFinalize() bool   { return C.gr_nccl_has_finalize() != 0 }

func (ncCgoAPI) version() (int, int) {
	var v C.int
	r := C.gr_nccl_get_version(&v)
	return int(v), int(r)
}

func (ncCgoAPI) uniqueID(id *UniqueID) int {
	var buf [128]byte
	r := C.gr_nccl_get_unique_id(unsafe.Pointer(&buf[0]))
	*id = buf
	return int(r)
}

func (ncCgoAPI) commInitRank(id *UniqueID, nranks, rank int) (uintptr, int) {
	var comm C.uintptr_t
	buf := *id
	r := C.gr_nccl_comm_init_rank(&comm, C.int(nranks), unsafe.Pointer(&buf[0]), C.int(rank))
	return uintptr(comm), int(r)
}

func (ncCgoAPI) commInitRankConfig(id *UniqueID, nranks, rank int, blocking bool) (uintptr, int) {
	var comm C.uintptr_t
	buf := *id
	b := C.int(0)
	if blocking {
		b = 1
	}
	r := C.gr_nccl_comm_init_rank_config(&comm, C.int(nranks), unsafe.Pointer(&buf[0]), C.int(rank), b)
	return uintptr(comm), int(r)
}

func (ncCgoAPI) commCount(comm uintptr) (int, int) {
	var n C.int
	r := C.gr_nccl_comm_count(C.uintptr_t(comm), &n)
	return int(n), int(r)
}

func (ncCgoAPI) commUserRank(comm uintptr) (int, int) {
	var n C.int
	r := C.gr_nccl_comm_user_rank(C.uintptr_t(comm), &n)
	return int(n), int(r)
}

func (ncCgoAPI) enqueue(comm uintptr, op *ncOp) int {
	c, s := C.uintptr_t(comm), C.uintptr_t(op.stream.Handle())
	n := C.size_t(op.count)
	switch op.kind {
	case ncSend:
		return int(C.gr_nccl_send(C.uintptr_t(op.in), n, C.int(op.dtype), C.int(op.peer), c, s))
	case ncRecv:
		return int(C.gr_nccl_recv(C.uintptr_t(op.out), n, C.int(op.dtype), C.int(op.peer), c, s))
	case ncAllReduce:
		return int(C.gr_nccl_all_reduce(C.uintptr_t(op.in), C.uintptr_t(op.out), n, C.int(op.dtype), C.int(op.redop), c, s))
	case ncAllGather:
		return int(C.gr_nccl_all_gather(C.uintptr_t(op.in), C.uintptr_t(op.out), n, C.int(op.dtype), c, s))
	case ncReduceScatter:
		return int(C.gr_nccl_reduce_scatter(C.uintptr_t(op.in), C.uintptr_t(op.out), n, C.int(op.dtype), C.int(op.redop), c, s))
	case ncBroadcast:
		return int(C.gr_nccl_broadcast(C.uintptr_t(op.in), C.uintptr_t(op.out), n, C.int(op.dtype), C.int(op.peer), c, s))
	}
	return ncclInvalidArgument
}

func (ncCgoAPI) groupStart() int { return int(C.gr_nccl_group_start()) }
func (ncCgoAPI) groupEnd() int   { return int(C.gr_nccl_group_end()) }

func (ncCgoAPI) commGetAsyncError(comm uintptr) (int, int) {
	var s C.int
	r := C.gr_nccl_comm_get_async_error(C.uintptr_t(comm), &s)
	return int(s), int(r)
}

func (ncCgoAPI) commAbort(comm uintptr) int   { return int(C.gr_nccl_comm_abort(C.uintptr_t(comm))) }
func (ncCgoAPI) commDestroy(comm uintptr) int { return int(C.gr_nccl_comm_destroy(C.uintptr_t(comm))) }
func (ncCgoAPI) commFinalize(comm uintptr) int {
	return int(C.gr_nccl_comm_finalize(C.uintptr_t(comm)))
}

func (ncCgoAPI) errorString(r int) string {
	var buf [256]C.char
	C.gr_nccl_error_string(C.int(r), &buf[0], C.size_t(len(buf)))
	return ncCString(buf[:])
}

func (ncCgoAPI) lastError(comm uintptr) string {
	var buf [ncErrBuf]C.char
	C.gr_nccl_last_error(C.uintptr_t(comm), &buf[0], ncErrBuf)
	return ncCString(buf[:])
}
