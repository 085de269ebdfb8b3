// vigil_trt.cpp: the TensorRT implementation of vigil_trt.h (see that file for the contract).
//
// Written against the TensorRT 10.x C++ API (nvinfer1 / nvonnxparser) with `#if` branches for
// 8.5 and 8.6, the versions JetPack 5.1 and 6.0 ship. It is compiled by build.rs with the cargo
// feature `native`. tests/abi_layout.rs compiles it in every test run against the real headers of
// TensorRT 8.5.3, 8.6.1, 10.3.0 and 10.16.0 and the CUDA 12.6 runtime headers, with -Wall -Wextra
// -Werror; it has not been linked against the full TensorRT library nor run on a GPU here (see
// docs/tensorrt.md "Verified where").
//
// Rules kept throughout: every entry point is noexcept and funnels through guarded(), so no C++
// exception crosses the C ABI; TensorRT objects are held in std::unique_ptr (plain `delete` is the
// documented way to free them since TensorRT 8.0, destroy() is gone in 10); all CUDA calls are
// preceded by cudaSetDevice because Rust may call from any thread.

#include "vigil_trt.h"

#include <NvInfer.h>
#ifndef VTRT_RUNTIME_ONLY
#include <NvOnnxParser.h>
#endif
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#if NV_TENSORRT_MAJOR < 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR < 5)
#error "vigil_trt.cpp needs TensorRT >= 8.5: it uses the name-based I/O API (setTensorAddress, enqueueV3)"
#endif
#if NV_TENSORRT_MAJOR > 10
#error "vigil_trt.cpp targets TensorRT 8.5, 8.6 and 10.x; review the INT8 calibrator and BuilderFlag use before building against a newer major version"
#endif

// The INT8 calibrator interface is deprecated in TensorRT 10 (explicit quantization is preferred)
// but remains the only way to feed an existing calibration cache, which is what vigil-calib makes.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

using namespace nvinfer1;

struct vtrt_runtime {
    int32_t device = 0;
    std::unique_ptr<IRuntime> runtime;
    vtrt_device_info info{};
    // IRuntime::setDLACore is state on the runtime that the next deserializeCudaEngine reads;
    // two threads loading engines for different cores must not interleave.
    std::mutex load_lock;
};

struct vtrt_engine {
    int32_t device = 0;
    std::unique_ptr<ICudaEngine> engine;
};

struct vtrt_context {
    int32_t device = 0;
    std::unique_ptr<IExecutionContext> context;
};

struct vtrt_stream {
    int32_t device = 0;
    cudaStream_t stream = nullptr;
};

struct vtrt_blob {
    std::unique_ptr<IHostMemory> memory;
};

namespace {

std::atomic<vtrt_log_fn> g_log{nullptr};

// TensorRT says why deserialisation, enqueue or a build failed only through the logger; the last
// error logged on the calling thread is appended to the message returned to Rust.
thread_local std::string t_last_error;

void emit(int32_t severity, char const* msg) noexcept {
    vtrt_log_fn fn = g_log.load(std::memory_order_acquire);
    if (fn != nullptr && msg != nullptr) {
        fn(severity, msg);
    }
}

class Logger final : public ILogger {
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override {
        if (msg == nullptr) {
            return;
        }
        if (severity <= Severity::kERROR) {
            try {
                t_last_error = msg;
            } catch (...) {
            }
        }
        emit(static_cast<int32_t>(severity), msg);
    }
};

// TensorRT keeps the first logger it is given for the life of the process, so it is a static.
Logger& logger() {
    static Logger instance;
    return instance;
}

int32_t fail(char* err, size_t err_len, int32_t code, char const* msg) noexcept {
    if (err != nullptr && err_len > 0) {
        size_t n = std::min(err_len - 1, std::strlen(msg));
        std::memcpy(err, msg, n);
        err[n] = '\0';
    }
    return code;
}

int32_t fail(char* err, size_t err_len, int32_t code, std::string const& msg) noexcept {
    return fail(err, err_len, code, msg.c_str());
}

std::string with_trt_reason(std::string what) {
    if (!t_last_error.empty()) {
        what += ": ";
        what += t_last_error;
        t_last_error.clear();
    } else {
        what += " (TensorRT logged no error; run with RUST_LOG=vigil_tensorrt=debug for its log)";
    }
    return what;
}

int32_t cuda_fail(char* err, size_t err_len, char const* call, cudaError_t e) {
    std::string msg = std::string(call) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    return fail(err, err_len, VTRT_E_CUDA, msg);
}

template <typename F>
int32_t guarded(char* err, size_t err_len, F&& body) noexcept {
    try {
        return body();
    } catch (std::bad_alloc const&) {
        return fail(err, err_len, VTRT_E_INTERNAL, "out of host memory in the TensorRT shim");
    } catch (std::exception const& e) {
        return fail(err, err_len, VTRT_E_INTERNAL, e.what());
    } catch (...) {
        return fail(err, err_len, VTRT_E_INTERNAL, "unknown C++ exception in the TensorRT shim");
    }
}

int32_t to_vtrt_dtype(DataType t) noexcept {
    switch (t) {
    case DataType::kFLOAT: return VTRT_DTYPE_FLOAT;
    case DataType::kHALF: return VTRT_DTYPE_HALF;
    case DataType::kINT8: return VTRT_DTYPE_INT8;
    case DataType::kINT32: return VTRT_DTYPE_INT32;
    case DataType::kBOOL: return VTRT_DTYPE_BOOL;
#if NV_TENSORRT_MAJOR > 8 || NV_TENSORRT_MINOR >= 6
    case DataType::kUINT8: return VTRT_DTYPE_UINT8;
    case DataType::kFP8: return VTRT_DTYPE_FP8;
#endif
#if NV_TENSORRT_MAJOR >= 10
    case DataType::kBF16: return VTRT_DTYPE_BF16;
    case DataType::kINT64: return VTRT_DTYPE_INT64;
    case DataType::kINT4: return VTRT_DTYPE_INT4;
#endif
    default: return VTRT_DTYPE_OTHER;
    }
}

// Bits per element; 0 for types whose storage this shim does not know.
uint64_t dtype_bits(int32_t vtrt_dtype) noexcept {
    switch (vtrt_dtype) {
    case VTRT_DTYPE_FLOAT:
    case VTRT_DTYPE_INT32: return 32;
    case VTRT_DTYPE_HALF:
    case VTRT_DTYPE_BF16: return 16;
    case VTRT_DTYPE_INT8:
    case VTRT_DTYPE_BOOL:
    case VTRT_DTYPE_UINT8:
    case VTRT_DTYPE_FP8: return 8;
    case VTRT_DTYPE_INT64: return 64;
    case VTRT_DTYPE_INT4: return 4;
    default: return 0;
    }
}

std::string dims_text(Dims const& d) {
    std::string s = "[";
    for (int32_t i = 0; i < d.nbDims; ++i) {
        if (i > 0) {
            s += ", ";
        }
        s += std::to_string(static_cast<int64_t>(d.d[i]));
    }
    return s + "]";
}

// Feeds TensorRT the calibration cache made by vigil-calib and nothing else: getBatch() reports
// "no data", so a cache that does not cover the network makes the build fail instead of silently
// calibrating on nothing.
class CacheCalibrator final : public IInt8EntropyCalibrator2 {
public:
    CacheCalibrator(uint8_t const* data, size_t len) : cache_(data, data + len) {}
    int32_t getBatchSize() const noexcept override { return 1; }
    bool getBatch(void* /*bindings*/[], char const* /*names*/[], int32_t /*nbBindings*/) noexcept override {
        return false;
    }
    void const* readCalibrationCache(std::size_t& length) noexcept override {
        length = cache_.size();
        return cache_.empty() ? nullptr : cache_.data();
    }
    void writeCalibrationCache(void const* /*ptr*/, std::size_t /*length*/) noexcept override {}

private:
    std::vector<uint8_t> cache_;
};

struct Progress {
    vtrt_progress_fn fn = nullptr;
    void* user = nullptr;
    bool cancelled = false;

    // Our own coarse phases; TensorRT 10's fine-grained ones arrive through ProgressMonitor.
    bool start(char const* phase) {
        if (fn != nullptr && fn(user, VTRT_PHASE_START, phase, nullptr, 0, 1) != 0) {
            cancelled = true;
        }
        return !cancelled;
    }
    bool end(char const* phase) {
        if (fn != nullptr && fn(user, VTRT_PHASE_END, phase, nullptr, 1, 1) != 0) {
            cancelled = true;
        }
        return !cancelled;
    }
};

#if NV_TENSORRT_MAJOR >= 10
// IProgressMonitor exists from TensorRT 10 on; with 8.6 only the shim's coarse phases are reported.
class ProgressMonitor final : public IProgressMonitor {
public:
    explicit ProgressMonitor(Progress& p) : p_(p) {}
    void phaseStart(char const* phaseName, char const* parentPhase, int32_t nbSteps) noexcept override {
        p_.fn(p_.user, VTRT_PHASE_START, phaseName, parentPhase, 0, nbSteps);
    }
    bool stepComplete(char const* phaseName, int32_t step) noexcept override {
        if (p_.fn(p_.user, VTRT_PHASE_STEP, phaseName, nullptr, step, 0) != 0) {
            p_.cancelled = true;
        }
        return !p_.cancelled;
    }
    void phaseFinish(char const* phaseName) noexcept override {
        p_.fn(p_.user, VTRT_PHASE_END, phaseName, nullptr, 0, 0);
    }

private:
    Progress& p_;
};
#endif

} // namespace

extern "C" {

uint32_t vtrt_abi_version(void) { return VTRT_ABI_VERSION; }

void vtrt_set_logger(vtrt_log_fn fn) { g_log.store(fn, std::memory_order_release); }

void vtrt_library_version(int32_t* major, int32_t* minor, int32_t* patch) {
    // getInferLibVersion() reports the library actually loaded. Its encoding changed: 8.x is
    // major*1000 + minor*100 + patch, 10.x is (major*100 + minor)*100 + patch (see the comment
    // above its declaration in NvInferRuntimeBase.h of each version).
    int32_t const v = getInferLibVersion();
    int32_t const ma = v >= 10000 ? v / 10000 : v / 1000;
    int32_t const mi = v >= 10000 ? (v / 100) % 100 : (v / 100) % 10;
    if (major != nullptr) *major = ma;
    if (minor != nullptr) *minor = mi;
    if (patch != nullptr) *patch = v % 100;
}

int32_t vtrt_runtime_create(int32_t cuda_device, vtrt_runtime** out, char* err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (out == nullptr) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_runtime_create: out is NULL");
        }
        *out = nullptr;
        int count = 0;
        cudaError_t e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess) {
            return cuda_fail(err, err_len, "cudaGetDeviceCount", e);
        }
        if (cuda_device < 0 || cuda_device >= count) {
            return fail(err, err_len, VTRT_E_INVALID,
                        "CUDA device " + std::to_string(cuda_device) + " does not exist (" +
                            std::to_string(count) + " device(s) visible)");
        }
        if ((e = cudaSetDevice(cuda_device)) != cudaSuccess) {
            return cuda_fail(err, err_len, "cudaSetDevice", e);
        }
        cudaDeviceProp prop{};
        if ((e = cudaGetDeviceProperties(&prop, cuda_device)) != cudaSuccess) {
            return cuda_fail(err, err_len, "cudaGetDeviceProperties", e);
        }
        auto rt = std::make_unique<vtrt_runtime>();
        rt->device = cuda_device;
        t_last_error.clear();
        rt->runtime.reset(createInferRuntime(logger()));
        if (!rt->runtime) {
            return fail(err, err_len, VTRT_E_INTERNAL, with_trt_reason("createInferRuntime failed"));
        }
        vtrt_device_info& info = rt->info;
        vtrt_library_version(&info.trt_major, &info.trt_minor, &info.trt_patch);
        info.header_major = NV_TENSORRT_MAJOR;
        info.header_minor = NV_TENSORRT_MINOR;
        info.header_patch = NV_TENSORRT_PATCH;
        info.cuda_device = cuda_device;
        info.sm_major = prop.major;
        info.sm_minor = prop.minor;
        info.dla_cores = rt->runtime->getNbDLACores();
        info.integrated = prop.integrated;
        int runtime_version = 0;
        if (cudaRuntimeGetVersion(&runtime_version) == cudaSuccess) {
            info.cuda_runtime_version = runtime_version;
        }
        std::strncpy(info.device_name, prop.name, VTRT_NAME_LEN - 1);
        info.device_name[VTRT_NAME_LEN - 1] = '\0';
        *out = rt.release();
        return VTRT_OK;
    });
}

void vtrt_runtime_destroy(vtrt_runtime* rt) { delete rt; }

int32_t vtrt_runtime_info(vtrt_runtime* rt, vtrt_device_info* out, char* err, size_t err_len) {
    if (rt == nullptr || out == nullptr) {
        return fail(err, err_len, VTRT_E_INVALID, "vtrt_runtime_info: NULL argument");
    }
    *out = rt->info;
    return VTRT_OK;
}

int32_t vtrt_engine_deserialize(vtrt_runtime* rt, const void* data, size_t len, int32_t dla_core,
                                vtrt_engine** out, char* err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (rt == nullptr || data == nullptr || out == nullptr || len == 0) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_engine_deserialize: NULL or empty argument");
        }
        *out = nullptr;
        cudaError_t e = cudaSetDevice(rt->device);
        if (e != cudaSuccess) {
            return cuda_fail(err, err_len, "cudaSetDevice", e);
        }
        auto engine = std::make_unique<vtrt_engine>();
        engine->device = rt->device;
        {
            std::lock_guard<std::mutex> lock(rt->load_lock);
            if (dla_core >= 0) {
                if (dla_core >= rt->runtime->getNbDLACores()) {
                    return fail(err, err_len, VTRT_E_UNSUPPORTED,
                                "the engine was built for DLA core " + std::to_string(dla_core) + " but this device has " +
                                    std::to_string(rt->runtime->getNbDLACores()) + " DLA core(s)");
                }
                rt->runtime->setDLACore(dla_core);
            }
            t_last_error.clear();
            engine->engine.reset(rt->runtime->deserializeCudaEngine(data, len));
        }
        if (!engine->engine) {
            return fail(err, err_len, VTRT_E_LOAD, with_trt_reason("TensorRT could not deserialize the engine"));
        }
        *out = engine.release();
        return VTRT_OK;
    });
}

void vtrt_engine_destroy(vtrt_engine* engine) { delete engine; }

int32_t vtrt_engine_num_io(const vtrt_engine* engine) {
    if (engine == nullptr || !engine->engine) {
        return 0;
    }
    return engine->engine->getNbIOTensors();
}

int32_t vtrt_engine_io(const vtrt_engine* engine, int32_t index, vtrt_tensor_desc* out, char* err,
                       size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (engine == nullptr || out == nullptr) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_engine_io: NULL argument");
        }
        ICudaEngine const& e = *engine->engine;
        if (index < 0 || index >= e.getNbIOTensors()) {
            return fail(err, err_len, VTRT_E_NOT_FOUND, "I/O tensor index " + std::to_string(index) + " out of range");
        }
        char const* name = e.getIOTensorName(index);
        if (name == nullptr) {
            return fail(err, err_len, VTRT_E_NOT_FOUND, "I/O tensor " + std::to_string(index) + " has no name");
        }
        Dims const dims = e.getTensorShape(name);
        if (dims.nbDims < 0 || dims.nbDims > VTRT_MAX_DIMS) {
            return fail(err, err_len, VTRT_E_INVALID,
                        std::string("tensor `") + name + "` has " + std::to_string(dims.nbDims) + " dimensions");
        }
        std::memset(out, 0, sizeof(*out));
        out->name = name;
        out->is_input = e.getTensorIOMode(name) == TensorIOMode::kINPUT ? 1 : 0;
        out->dtype = to_vtrt_dtype(e.getTensorDataType(name));
        out->nb_dims = dims.nbDims;
        out->vectorized_dim = e.getTensorVectorizedDim(name);
        for (int32_t i = 0; i < dims.nbDims; ++i) {
            out->dims[i] = static_cast<int64_t>(dims.d[i]);
        }
        return VTRT_OK;
    });
}

int32_t vtrt_context_create(vtrt_engine* engine, vtrt_context** out, char* err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (engine == nullptr || out == nullptr) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_context_create: NULL argument");
        }
        *out = nullptr;
        cudaError_t e = cudaSetDevice(engine->device);
        if (e != cudaSuccess) {
            return cuda_fail(err, err_len, "cudaSetDevice", e);
        }
        auto ctx = std::make_unique<vtrt_context>();
        ctx->device = engine->device;
        t_last_error.clear();
        ctx->context.reset(engine->engine->createExecutionContext());
        if (!ctx->context) {
            return fail(err, err_len, VTRT_E_CUDA,
                        with_trt_reason("createExecutionContext failed (out of GPU memory?)"));
        }
        *out = ctx.release();
        return VTRT_OK;
    });
}

void vtrt_context_destroy(vtrt_context* ctx) { delete ctx; }

int32_t vtrt_context_set_tensor_address(vtrt_context* ctx, const char* name, void* device_ptr,
                                        size_t bytes, char* err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (ctx == nullptr || name == nullptr || device_ptr == nullptr) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_context_set_tensor_address: NULL argument");
        }
        IExecutionContext& c = *ctx->context;
        ICudaEngine const& e = c.getEngine();
        if (e.getTensorIOMode(name) == TensorIOMode::kNONE) {
            return fail(err, err_len, VTRT_E_NOT_FOUND, std::string("the engine has no I/O tensor named `") + name + "`");
        }
        if (e.getTensorVectorizedDim(name) != -1) {
            return fail(err, err_len, VTRT_E_UNSUPPORTED,
                        std::string("tensor `") + name + "` uses a vectorized layout; Vigil binds linear buffers only");
        }
        int32_t const dtype = to_vtrt_dtype(e.getTensorDataType(name));
        uint64_t const bits = dtype_bits(dtype);
        if (bits == 0) {
            return fail(err, err_len, VTRT_E_DTYPE, std::string("tensor `") + name + "` has a data type this shim cannot size");
        }
        Dims const dims = c.getTensorShape(name);
        uint64_t volume = 1;
        for (int32_t i = 0; i < dims.nbDims; ++i) {
            if (dims.d[i] < 0) {
                return fail(err, err_len, VTRT_E_SIZE,
                            std::string("tensor `") + name + "` has dynamic shape " + dims_text(dims) +
                                "; Vigil's engines are static");
            }
            volume *= static_cast<uint64_t>(dims.d[i]);
        }
        uint64_t const needed = (volume * bits + 7) / 8;
        if (needed != bytes) {
            return fail(err, err_len, VTRT_E_SIZE,
                        std::string("tensor `") + name + "` of shape " + dims_text(dims) + " needs " +
                            std::to_string(needed) + " bytes, the buffer has " + std::to_string(bytes));
        }
        t_last_error.clear();
        if (!c.setTensorAddress(name, device_ptr)) {
            return fail(err, err_len, VTRT_E_INVALID,
                        with_trt_reason(std::string("setTensorAddress(`") + name + "`) was refused"));
        }
        return VTRT_OK;
    });
}

int32_t vtrt_context_enqueue(vtrt_context* ctx, vtrt_stream* stream, char* err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (ctx == nullptr || stream == nullptr) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_context_enqueue: NULL argument");
        }
        IExecutionContext& c = *ctx->context;
        ICudaEngine const& e = c.getEngine();
        // enqueueV3 with an unset address fails with a log line only; naming the tensor here
        // turns a wiring bug into a precise error.
        for (int32_t i = 0; i < e.getNbIOTensors(); ++i) {
            char const* name = e.getIOTensorName(i);
            if (c.getTensorAddress(name) == nullptr) {
                return fail(err, err_len, VTRT_E_UNBOUND, std::string("I/O tensor `") + name + "` has no address bound");
            }
        }
        cudaError_t ce = cudaSetDevice(stream->device);
        if (ce != cudaSuccess) {
            return cuda_fail(err, err_len, "cudaSetDevice", ce);
        }
        t_last_error.clear();
        if (!c.enqueueV3(stream->stream)) {
            return fail(err, err_len, VTRT_E_ENQUEUE, with_trt_reason("enqueueV3 failed"));
        }
        return VTRT_OK;
    });
}

int32_t vtrt_stream_create(vtrt_runtime* rt, vtrt_stream** out, char* err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (rt == nullptr || out == nullptr) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_stream_create: NULL argument");
        }
        *out = nullptr;
        cudaError_t e = cudaSetDevice(rt->device);
        if (e != cudaSuccess) {
            return cuda_fail(err, err_len, "cudaSetDevice", e);
        }
        auto s = std::make_unique<vtrt_stream>();
        s->device = rt->device;
        // Non-blocking: a camera's stream must not serialise with the legacy default stream that
        // other libraries in the process may use.
        if ((e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking)) != cudaSuccess) {
            return cuda_fail(err, err_len, "cudaStreamCreateWithFlags", e);
        }
        *out = s.release();
        return VTRT_OK;
    });
}

void vtrt_stream_destroy(vtrt_stream* stream) {
    if (stream != nullptr) {
        if (stream->stream != nullptr) {
            cudaSetDevice(stream->device);
            cudaStreamDestroy(stream->stream);
        }
        delete stream;
    }
}

int32_t vtrt_stream_sync(vtrt_stream* stream, char* err, size_t err_len) {
    if (stream == nullptr) {
        return fail(err, err_len, VTRT_E_INVALID, "vtrt_stream_sync: NULL stream");
    }
    cudaError_t e = cudaStreamSynchronize(stream->stream);
    if (e != cudaSuccess) {
        return guarded(err, err_len, [&]() { return cuda_fail(err, err_len, "cudaStreamSynchronize", e); });
    }
    return VTRT_OK;
}

int32_t vtrt_host_alloc(vtrt_runtime* rt, size_t bytes, void** out, char* err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (rt == nullptr || out == nullptr || bytes == 0) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_host_alloc: NULL argument or zero size");
        }
        *out = nullptr;
        cudaError_t e = cudaSetDevice(rt->device);
        if (e == cudaSuccess) {
            e = cudaHostAlloc(out, bytes, cudaHostAllocDefault);
        }
        if (e != cudaSuccess) {
            *out = nullptr;
            return cuda_fail(err, err_len, "cudaHostAlloc", e);
        }
        return VTRT_OK;
    });
}

void vtrt_host_free(void* ptr) {
    if (ptr != nullptr) {
        cudaFreeHost(ptr);
    }
}

int32_t vtrt_device_alloc(vtrt_runtime* rt, size_t bytes, void** out, char* err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (rt == nullptr || out == nullptr || bytes == 0) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_device_alloc: NULL argument or zero size");
        }
        *out = nullptr;
        cudaError_t e = cudaSetDevice(rt->device);
        if (e == cudaSuccess) {
            e = cudaMalloc(out, bytes);
        }
        if (e != cudaSuccess) {
            *out = nullptr;
            return cuda_fail(err, err_len, "cudaMalloc", e);
        }
        return VTRT_OK;
    });
}

void vtrt_device_free(void* ptr) {
    if (ptr != nullptr) {
        cudaFree(ptr);
    }
}

int32_t vtrt_memcpy_h2d_async(void* dst_device, const void* src_host, size_t bytes, vtrt_stream* stream,
                              char* err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (dst_device == nullptr || src_host == nullptr || stream == nullptr) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_memcpy_h2d_async: NULL argument");
        }
        cudaError_t e = cudaMemcpyAsync(dst_device, src_host, bytes, cudaMemcpyHostToDevice, stream->stream);
        return e == cudaSuccess ? VTRT_OK : cuda_fail(err, err_len, "cudaMemcpyAsync(host to device)", e);
    });
}

int32_t vtrt_memcpy_d2h_async(void* dst_host, const void* src_device, size_t bytes, vtrt_stream* stream,
                              char* err, size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (dst_host == nullptr || src_device == nullptr || stream == nullptr) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_memcpy_d2h_async: NULL argument");
        }
        cudaError_t e = cudaMemcpyAsync(dst_host, src_device, bytes, cudaMemcpyDeviceToHost, stream->stream);
        return e == cudaSuccess ? VTRT_OK : cuda_fail(err, err_len, "cudaMemcpyAsync(device to host)", e);
    });
}

#ifndef VTRT_RUNTIME_ONLY
int32_t vtrt_build(vtrt_runtime* rt, const vtrt_build_options* opts, vtrt_progress_fn progress,
                   void* progress_user, vtrt_blob** engine_out, vtrt_blob** timing_cache_out, char* err,
                   size_t err_len) {
    return guarded(err, err_len, [&]() -> int32_t {
        if (rt == nullptr || opts == nullptr || opts->onnx_path == nullptr || engine_out == nullptr) {
            return fail(err, err_len, VTRT_E_INVALID, "vtrt_build: NULL argument");
        }
        *engine_out = nullptr;
        if (timing_cache_out != nullptr) {
            *timing_cache_out = nullptr;
        }
        if (opts->int8 && (opts->calib_cache == nullptr || opts->calib_cache_len == 0)) {
            return fail(err, err_len, VTRT_E_INVALID,
                        "INT8 needs a calibration cache (vigil calib int8 writes calib.cache into the package)");
        }
        if (opts->dla_core >= 0 && opts->dla_core >= rt->info.dla_cores) {
            return fail(err, err_len, VTRT_E_UNSUPPORTED,
                        "DLA core " + std::to_string(opts->dla_core) + " requested, this device has " +
                            std::to_string(rt->info.dla_cores) + " DLA core(s)");
        }
        cudaError_t ce = cudaSetDevice(rt->device);
        if (ce != cudaSuccess) {
            return cuda_fail(err, err_len, "cudaSetDevice", ce);
        }
        Progress prog{progress, progress_user, false};
        auto cancelled = [&]() { return fail(err, err_len, VTRT_E_CANCELLED, "engine build cancelled"); };

        // Objects the builder config points at are declared first so they outlive it.
        std::unique_ptr<CacheCalibrator> calibrator;
        std::unique_ptr<ITimingCache> timing;
#if NV_TENSORRT_MAJOR >= 10
        std::unique_ptr<ProgressMonitor> monitor;
#endif
        t_last_error.clear();
        std::unique_ptr<IBuilder> builder(createInferBuilder(logger()));
        if (!builder) {
            return fail(err, err_len, VTRT_E_BUILD, with_trt_reason("createInferBuilder failed"));
        }
        if (!prog.start("parse")) {
            return cancelled();
        }
#if NV_TENSORRT_MAJOR >= 10
        // Explicit batch is the only mode in TensorRT 10; the flag is deprecated there.
        NetworkDefinitionCreationFlags const flags = 0;
#else
        NetworkDefinitionCreationFlags const flags =
            1U << static_cast<uint32_t>(NetworkDefinitionCreationFlag::kEXPLICIT_BATCH);
#endif
        std::unique_ptr<INetworkDefinition> network(builder->createNetworkV2(flags));
        if (!network) {
            return fail(err, err_len, VTRT_E_BUILD, with_trt_reason("createNetworkV2 failed"));
        }
        std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger()));
        if (!parser) {
            return fail(err, err_len, VTRT_E_BUILD, with_trt_reason("nvonnxparser::createParser failed"));
        }
        if (!parser->parseFromFile(opts->onnx_path, static_cast<int32_t>(ILogger::Severity::kWARNING))) {
            std::string msg = std::string("the TensorRT ONNX parser rejected ") + opts->onnx_path;
            for (int32_t i = 0; i < parser->getNbErrors(); ++i) {
                msg += "; ";
                msg += parser->getError(i)->desc();
            }
            return fail(err, err_len, VTRT_E_PARSE, msg);
        }
        if (!prog.end("parse")) {
            return cancelled();
        }

        std::unique_ptr<IBuilderConfig> config(builder->createBuilderConfig());
        if (!config) {
            return fail(err, err_len, VTRT_E_BUILD, with_trt_reason("createBuilderConfig failed"));
        }
        if (opts->workspace_bytes > 0) {
            config->setMemoryPoolLimit(MemoryPoolType::kWORKSPACE, static_cast<size_t>(opts->workspace_bytes));
        }
        if (opts->fp16) {
            config->setFlag(BuilderFlag::kFP16);
        }
        if (opts->int8) {
            config->setFlag(BuilderFlag::kINT8);
            calibrator = std::make_unique<CacheCalibrator>(opts->calib_cache, opts->calib_cache_len);
            config->setInt8Calibrator(calibrator.get());
        }
        if (opts->dla_core >= 0) {
            config->setDefaultDeviceType(DeviceType::kDLA);
            config->setDLACore(opts->dla_core);
            if (opts->gpu_fallback) {
                config->setFlag(BuilderFlag::kGPU_FALLBACK);
            }
        }
        // A persisted timing cache turns a rebuild (new ONNX, other precision) from minutes into
        // seconds for the layers it has already timed. A cache TensorRT cannot use (other version
        // or device, damaged) is dropped with a warning rather than failing the build.
        if (opts->timing_cache != nullptr && opts->timing_cache_len > 0) {
            timing.reset(config->createTimingCache(opts->timing_cache, opts->timing_cache_len));
            if (!timing || !config->setTimingCache(*timing, false)) {
                emit(VTRT_LOG_WARNING, "the persisted timing cache does not fit this TensorRT/device; starting a new one");
                timing.reset();
            }
        }
        if (!timing) {
            timing.reset(config->createTimingCache(nullptr, 0));
            if (!timing || !config->setTimingCache(*timing, false)) {
                return fail(err, err_len, VTRT_E_BUILD, with_trt_reason("could not create a timing cache"));
            }
        }
#if NV_TENSORRT_MAJOR >= 10
        if (progress != nullptr) {
            monitor = std::make_unique<ProgressMonitor>(prog);
            config->setProgressMonitor(monitor.get());
        }
#endif
        if (!prog.start("build")) {
            return cancelled();
        }
        t_last_error.clear();
        std::unique_ptr<IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
        if (!plan || plan->size() == 0) {
            if (prog.cancelled) {
                return cancelled();
            }
            return fail(err, err_len, VTRT_E_BUILD, with_trt_reason("TensorRT could not build the engine"));
        }
        if (!prog.end("build")) {
            return cancelled();
        }
        if (timing_cache_out != nullptr) {
            ITimingCache const* used = config->getTimingCache();
            if (used != nullptr) {
                std::unique_ptr<IHostMemory> serialized(used->serialize());
                if (serialized && serialized->size() > 0) {
                    *timing_cache_out = new vtrt_blob{std::move(serialized)};
                }
            }
        }
        *engine_out = new vtrt_blob{std::move(plan)};
        return VTRT_OK;
    });
}
#else
// Built against TensorRT's lean runtime (libnvinfer_lean), which deserialises and runs engines
// but has no builder and no ONNX parser.
int32_t vtrt_build(vtrt_runtime*, const vtrt_build_options*, vtrt_progress_fn, void*, vtrt_blob** engine_out,
                   vtrt_blob** timing_cache_out, char* err, size_t err_len) {
    if (engine_out != nullptr) *engine_out = nullptr;
    if (timing_cache_out != nullptr) *timing_cache_out = nullptr;
    return fail(err, err_len, VTRT_E_UNSUPPORTED,
                "this vigil is linked against TensorRT's lean runtime, which runs engines but cannot build them: "
                "build the engine where the full TensorRT is installed (vigil engine build) and copy it");
}
#endif

const uint8_t* vtrt_blob_data(const vtrt_blob* blob) {
    return (blob != nullptr && blob->memory) ? static_cast<const uint8_t*>(blob->memory->data()) : nullptr;
}

size_t vtrt_blob_size(const vtrt_blob* blob) {
    return (blob != nullptr && blob->memory) ? blob->memory->size() : 0;
}

void vtrt_blob_destroy(vtrt_blob* blob) { delete blob; }

} // extern "C"
