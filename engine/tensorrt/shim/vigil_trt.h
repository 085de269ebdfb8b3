/*
 * vigil_trt.h: the C ABI between Vigil (Rust) and TensorRT (C++).
 *
 * Two implementations exist and must stay symbol-for-symbol identical:
 *   - shim/vigil_trt.cpp: TensorRT 10.x (and 8.6) + CUDA runtime, compiled by build.rs with the
 *     cargo feature `native`;
 *   - src/double.rs: a Rust test double used everywhere else (CI, developers' machines).
 * src/ffi.rs declares the same functions and structs for Rust; tests/abi_layout.rs checks the
 * struct layouts of this header against the Rust declarations with the system C compiler.
 *
 * Ownership: every handle returned through an `out` parameter belongs to the caller, who frees it
 * with the matching *_destroy / *_free function exactly once. The Rust side guarantees the order
 * TensorRT needs: contexts before their engine, engines before their runtime, and a stream is
 * synchronised before the buffers its pending copies touch are freed.
 *
 * Errors: every fallible function returns VTRT_OK (0) or a VTRT_E_* code and, when `err` is not
 * NULL, copies a NUL-terminated message (truncated to err_len - 1 bytes) into it. No C++ exception
 * crosses this boundary: the shim catches everything and reports VTRT_E_INTERNAL.
 *
 * Threads: a runtime and an engine may be used from several threads; a context and a stream are
 * used by one thread at a time (Rust enforces this with &mut).
 */
#ifndef VIGIL_TRT_H
#define VIGIL_TRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any change to a signature or struct below. */
#define VTRT_ABI_VERSION 2u
/* nvinfer1::Dims::MAX_DIMS in TensorRT 8.6 and 10.x. */
#define VTRT_MAX_DIMS 8
#define VTRT_NAME_LEN 256

/* Status codes. */
#define VTRT_OK 0
#define VTRT_E_INVALID 1     /* NULL handle, bad argument */
#define VTRT_E_CUDA 2        /* a CUDA runtime call failed */
#define VTRT_E_LOAD 3        /* engine deserialisation failed (wrong version, device, corrupt) */
#define VTRT_E_NOT_FOUND 4   /* no I/O tensor with that name */
#define VTRT_E_SIZE 5        /* buffer size does not match the tensor's shape and type */
#define VTRT_E_DTYPE 6       /* unsupported or mismatched data type */
#define VTRT_E_UNBOUND 7     /* enqueue while an I/O tensor has no address */
#define VTRT_E_ENQUEUE 8     /* enqueueV3 returned false */
#define VTRT_E_PARSE 9       /* the ONNX parser rejected the model */
#define VTRT_E_BUILD 10      /* the builder failed */
#define VTRT_E_UNSUPPORTED 11 /* e.g. DLA requested where there is none */
#define VTRT_E_CANCELLED 12  /* the progress callback asked to stop */
#define VTRT_E_INTERNAL 99   /* a C++ exception or bad_alloc caught at the boundary */

/* Data types (our numbering, stable across TensorRT versions). */
#define VTRT_DTYPE_FLOAT 0
#define VTRT_DTYPE_HALF 1
#define VTRT_DTYPE_INT8 2
#define VTRT_DTYPE_INT32 3
#define VTRT_DTYPE_BOOL 4
#define VTRT_DTYPE_UINT8 5
#define VTRT_DTYPE_FP8 6
#define VTRT_DTYPE_BF16 7
#define VTRT_DTYPE_INT64 8
#define VTRT_DTYPE_INT4 9
#define VTRT_DTYPE_OTHER 255

/* Log severities (same order as nvinfer1::ILogger::Severity). */
#define VTRT_LOG_INTERNAL_ERROR 0
#define VTRT_LOG_ERROR 1
#define VTRT_LOG_WARNING 2
#define VTRT_LOG_INFO 3
#define VTRT_LOG_VERBOSE 4

/* Build progress events. */
#define VTRT_PHASE_START 0
#define VTRT_PHASE_STEP 1
#define VTRT_PHASE_END 2

typedef struct vtrt_runtime vtrt_runtime;
typedef struct vtrt_engine vtrt_engine;
typedef struct vtrt_context vtrt_context;
typedef struct vtrt_stream vtrt_stream;
typedef struct vtrt_blob vtrt_blob;

typedef struct vtrt_device_info {
    /* Version of the libnvinfer actually loaded (getInferLibVersion), which is what engines are
     * tied to; header_* is what the shim was compiled against. */
    int32_t trt_major, trt_minor, trt_patch;
    int32_t header_major, header_minor, header_patch;
    int32_t cuda_device;
    int32_t sm_major, sm_minor;
    int32_t dla_cores;
    int32_t integrated; /* 1 on Jetson (GPU shares DRAM with the CPU) */
    int32_t cuda_runtime_version; /* cudaRuntimeGetVersion, e.g. 12060 */
    char device_name[VTRT_NAME_LEN];
} vtrt_device_info;

typedef struct vtrt_tensor_desc {
    /* Owned by the engine, valid while the engine lives; copy it. */
    const char* name;
    int32_t is_input;
    int32_t dtype;          /* VTRT_DTYPE_* */
    int32_t nb_dims;
    int32_t vectorized_dim; /* -1 for a plain linear layout */
    int64_t dims[VTRT_MAX_DIMS]; /* -1 marks a dynamic dimension */
} vtrt_tensor_desc;

typedef struct vtrt_build_options {
    const char* onnx_path;
    int32_t fp16;
    int32_t int8;
    /* INT8 calibration cache (TensorRT's text format), required when int8 is set. */
    const uint8_t* calib_cache;
    size_t calib_cache_len;
    /* A previously saved timing cache, or NULL/0. */
    const uint8_t* timing_cache;
    size_t timing_cache_len;
    int32_t dla_core;     /* -1: GPU only */
    int32_t gpu_fallback; /* with dla_core >= 0: run unsupported layers on the GPU */
    uint64_t workspace_bytes; /* 0: TensorRT's default */
} vtrt_build_options;

/* Receives TensorRT's log lines (all severities; the callee filters). Must not unwind. */
typedef void (*vtrt_log_fn)(int32_t severity, const char* msg);

/* event: VTRT_PHASE_*; parent may be NULL; step/nb_steps are meaningful for START (nb_steps) and
 * STEP (step). Return 0 to continue, non-zero to cancel the build. Must not unwind. */
typedef int32_t (*vtrt_progress_fn)(void* user, int32_t event, const char* phase,
                                    const char* parent, int32_t step, int32_t nb_steps);

uint32_t vtrt_abi_version(void);
/* The loaded libnvinfer's version (getInferLibVersion, decoded: 8.x and 10.x encode it
 * differently). Needs no GPU and no CUDA driver. */
void vtrt_library_version(int32_t* major, int32_t* minor, int32_t* patch);
/* Process-wide, like TensorRT's own logger; NULL silences. */
void vtrt_set_logger(vtrt_log_fn fn);

int32_t vtrt_runtime_create(int32_t cuda_device, vtrt_runtime** out, char* err, size_t err_len);
void vtrt_runtime_destroy(vtrt_runtime* rt);
int32_t vtrt_runtime_info(vtrt_runtime* rt, vtrt_device_info* out, char* err, size_t err_len);

/* dla_core: -1 for a GPU engine, else the DLA core the engine was built for. */
int32_t vtrt_engine_deserialize(vtrt_runtime* rt, const void* data, size_t len, int32_t dla_core,
                                vtrt_engine** out, char* err, size_t err_len);
void vtrt_engine_destroy(vtrt_engine* engine);
int32_t vtrt_engine_num_io(const vtrt_engine* engine);
int32_t vtrt_engine_io(const vtrt_engine* engine, int32_t index, vtrt_tensor_desc* out, char* err,
                       size_t err_len);

int32_t vtrt_context_create(vtrt_engine* engine, vtrt_context** out, char* err, size_t err_len);
void vtrt_context_destroy(vtrt_context* ctx);
/* bytes: size of the buffer at device_ptr; must equal the tensor's volume times its type size. */
int32_t vtrt_context_set_tensor_address(vtrt_context* ctx, const char* name, void* device_ptr,
                                        size_t bytes, char* err, size_t err_len);
int32_t vtrt_context_enqueue(vtrt_context* ctx, vtrt_stream* stream, char* err, size_t err_len);

int32_t vtrt_stream_create(vtrt_runtime* rt, vtrt_stream** out, char* err, size_t err_len);
void vtrt_stream_destroy(vtrt_stream* stream);
int32_t vtrt_stream_sync(vtrt_stream* stream, char* err, size_t err_len);

/* Pinned (page-locked) host memory and device memory, both allocated by the shim because only
 * the CUDA runtime can; Rust owns them and frees them with the matching function. */
int32_t vtrt_host_alloc(vtrt_runtime* rt, size_t bytes, void** out, char* err, size_t err_len);
void vtrt_host_free(void* ptr);
int32_t vtrt_device_alloc(vtrt_runtime* rt, size_t bytes, void** out, char* err, size_t err_len);
void vtrt_device_free(void* ptr);
int32_t vtrt_memcpy_h2d_async(void* dst_device, const void* src_host, size_t bytes,
                              vtrt_stream* stream, char* err, size_t err_len);
int32_t vtrt_memcpy_d2h_async(void* dst_host, const void* src_device, size_t bytes,
                              vtrt_stream* stream, char* err, size_t err_len);

/* Builds a serialized engine from an ONNX file. On success *engine_out holds the plan and, when
 * timing_cache_out is not NULL, *timing_cache_out the updated timing cache (may be NULL if
 * TensorRT has none). `progress` may be NULL. */
int32_t vtrt_build(vtrt_runtime* rt, const vtrt_build_options* opts, vtrt_progress_fn progress,
                   void* progress_user, vtrt_blob** engine_out, vtrt_blob** timing_cache_out,
                   char* err, size_t err_len);
const uint8_t* vtrt_blob_data(const vtrt_blob* blob);
size_t vtrt_blob_size(const vtrt_blob* blob);
void vtrt_blob_destroy(vtrt_blob* blob);

#ifdef __cplusplus
}
#endif

#endif /* VIGIL_TRT_H */
