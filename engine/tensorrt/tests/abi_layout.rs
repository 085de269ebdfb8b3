//! Checks `shim/vigil_trt.h` against `src/ffi.rs` with the system C and C++ compilers: struct
//! sizes and field offsets, every constant, and every function's type. The C++ shim includes the
//! same header, so a mismatch here is a mismatch with the shim. Skipped (with a message) where
//! no compiler is installed.

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;
use vigil_tensorrt::ffi::*;

fn compiler(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|c| (*c).to_owned())
}

fn source() -> String {
    let mut s = String::from(
        "#include \"vigil_trt.h\"\n#include <stddef.h>\n\
         #ifdef __cplusplus\n#define SA(c, m) static_assert(c, m)\n#else\n#define SA(c, m) _Static_assert(c, m)\n#endif\n",
    );
    let mut sa =
        |cond: String| s.push_str(&format!("SA({cond}, \"{}\");\n", cond.replace('"', "'")));
    macro_rules! layout {
        ($ty:ident { $($f:ident),* $(,)? }) => {
            sa(format!("sizeof({}) == {}", stringify!($ty), size_of::<$ty>()));
            $( sa(format!("offsetof({}, {}) == {}", stringify!($ty), stringify!($f), offset_of!($ty, $f))); )*
        };
    }
    layout!(vtrt_device_info {
        trt_major,
        trt_minor,
        trt_patch,
        header_major,
        header_minor,
        header_patch,
        cuda_device,
        sm_major,
        sm_minor,
        dla_cores,
        integrated,
        cuda_runtime_version,
        device_name,
    });
    layout!(vtrt_tensor_desc {
        name,
        is_input,
        dtype,
        nb_dims,
        vectorized_dim,
        dims
    });
    layout!(vtrt_build_options {
        onnx_path,
        fp16,
        int8,
        calib_cache,
        calib_cache_len,
        timing_cache,
        timing_cache_len,
        dla_core,
        gpu_fallback,
        workspace_bytes,
    });
    macro_rules! constants {
        ($($c:ident),* $(,)?) => { $( sa(format!("{} == {}", stringify!($c), $c)); )* };
    }
    constants!(
        VTRT_ABI_VERSION,
        VTRT_MAX_DIMS,
        VTRT_NAME_LEN,
        VTRT_OK,
        VTRT_E_INVALID,
        VTRT_E_CUDA,
        VTRT_E_LOAD,
        VTRT_E_NOT_FOUND,
        VTRT_E_SIZE,
        VTRT_E_DTYPE,
        VTRT_E_UNBOUND,
        VTRT_E_ENQUEUE,
        VTRT_E_PARSE,
        VTRT_E_BUILD,
        VTRT_E_UNSUPPORTED,
        VTRT_E_CANCELLED,
        VTRT_E_INTERNAL,
        VTRT_DTYPE_FLOAT,
        VTRT_DTYPE_HALF,
        VTRT_DTYPE_INT8,
        VTRT_DTYPE_INT32,
        VTRT_DTYPE_BOOL,
        VTRT_DTYPE_UINT8,
        VTRT_DTYPE_FP8,
        VTRT_DTYPE_BF16,
        VTRT_DTYPE_INT64,
        VTRT_DTYPE_INT4,
        VTRT_DTYPE_OTHER,
        VTRT_LOG_INTERNAL_ERROR,
        VTRT_LOG_ERROR,
        VTRT_LOG_WARNING,
        VTRT_LOG_INFO,
        VTRT_LOG_VERBOSE,
        VTRT_PHASE_START,
        VTRT_PHASE_STEP,
        VTRT_PHASE_END,
    );
    // Function types, transcribed from the extern block in src/ffi.rs: an incompatible pointer
    // assignment is an error under -Werror (C) and always (C++).
    s.push_str(
        r#"
typedef int32_t (*progress_t)(void*, int32_t, const char*, const char*, int32_t, int32_t);
SA(sizeof(progress_t) == sizeof(vtrt_progress_fn), "progress fn");
void check_functions(void) {
    uint32_t (*abi)(void) = vtrt_abi_version;
    void (*set_logger)(void (*)(int32_t, const char*)) = vtrt_set_logger;
    int32_t (*rt_create)(int32_t, vtrt_runtime**, char*, size_t) = vtrt_runtime_create;
    void (*rt_destroy)(vtrt_runtime*) = vtrt_runtime_destroy;
    int32_t (*rt_info)(vtrt_runtime*, vtrt_device_info*, char*, size_t) = vtrt_runtime_info;
    int32_t (*deser)(vtrt_runtime*, const void*, size_t, int32_t, vtrt_engine**, char*, size_t) = vtrt_engine_deserialize;
    void (*e_destroy)(vtrt_engine*) = vtrt_engine_destroy;
    int32_t (*num_io)(const vtrt_engine*) = vtrt_engine_num_io;
    int32_t (*io)(const vtrt_engine*, int32_t, vtrt_tensor_desc*, char*, size_t) = vtrt_engine_io;
    int32_t (*c_create)(vtrt_engine*, vtrt_context**, char*, size_t) = vtrt_context_create;
    void (*c_destroy)(vtrt_context*) = vtrt_context_destroy;
    int32_t (*set_addr)(vtrt_context*, const char*, void*, size_t, char*, size_t) = vtrt_context_set_tensor_address;
    int32_t (*enqueue)(vtrt_context*, vtrt_stream*, char*, size_t) = vtrt_context_enqueue;
    int32_t (*s_create)(vtrt_runtime*, vtrt_stream**, char*, size_t) = vtrt_stream_create;
    void (*s_destroy)(vtrt_stream*) = vtrt_stream_destroy;
    int32_t (*s_sync)(vtrt_stream*, char*, size_t) = vtrt_stream_sync;
    int32_t (*h_alloc)(vtrt_runtime*, size_t, void**, char*, size_t) = vtrt_host_alloc;
    void (*h_free)(void*) = vtrt_host_free;
    int32_t (*d_alloc)(vtrt_runtime*, size_t, void**, char*, size_t) = vtrt_device_alloc;
    void (*d_free)(void*) = vtrt_device_free;
    int32_t (*h2d)(void*, const void*, size_t, vtrt_stream*, char*, size_t) = vtrt_memcpy_h2d_async;
    int32_t (*d2h)(void*, const void*, size_t, vtrt_stream*, char*, size_t) = vtrt_memcpy_d2h_async;
    int32_t (*build)(vtrt_runtime*, const vtrt_build_options*, progress_t, void*, vtrt_blob**, vtrt_blob**, char*, size_t) = vtrt_build;
    const uint8_t* (*b_data)(const vtrt_blob*) = vtrt_blob_data;
    size_t (*b_size)(const vtrt_blob*) = vtrt_blob_size;
    void (*b_destroy)(vtrt_blob*) = vtrt_blob_destroy;
    (void)abi; (void)set_logger; (void)rt_create; (void)rt_destroy; (void)rt_info; (void)deser;
    (void)e_destroy; (void)num_io; (void)io; (void)c_create; (void)c_destroy; (void)set_addr;
    (void)enqueue; (void)s_create; (void)s_destroy; (void)s_sync; (void)h_alloc; (void)h_free;
    (void)d_alloc; (void)d_free; (void)h2d; (void)d2h; (void)build; (void)b_data; (void)b_size;
    (void)b_destroy;
}
"#,
    );
    s
}

fn compile(cmd: &str, std: &str, lang: &str, file: &Path) {
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("shim");
    let out = Command::new(cmd)
        .args([
            std,
            "-fsyntax-only",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-x",
            lang,
        ])
        .arg("-I")
        .arg(&shim)
        .arg(file)
        .output()
        .expect("run compiler");
    assert!(
        out.status.success(),
        "{cmd} {lang}: vigil_trt.h disagrees with src/ffi.rs:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_matches_the_rust_declarations() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("abi_check.c");
    std::fs::write(&file, source()).unwrap();
    let mut checked = 0;
    if let Some(cc) = compiler(&["cc", "gcc", "clang"]) {
        compile(&cc, "-std=c11", "c", &file);
        checked += 1;
    }
    if let Some(cxx) = compiler(&["c++", "g++", "clang++"]) {
        compile(&cxx, "-std=c++17", "c++", &file);
        checked += 1;
    }
    if checked == 0 {
        eprintln!("no C or C++ compiler found: vigil_trt.h layout check skipped");
    }
}

/// Compiles `shim/vigil_trt.cpp` against `tests/trt_stub/` (hand-written declarations of the
/// TensorRT/CUDA subset it uses) for TensorRT 10.3, 8.6 and 8.5: catches syntax and type errors
/// in the shim on machines without TensorRT. It does not prove agreement with the real headers;
/// only a build on a device does (docs/tensorrt.md).
#[test]
fn shim_compiles_against_the_api_stub() {
    let Some(cxx) = compiler(&["c++", "g++", "clang++"]) else {
        eprintln!("no C++ compiler found: shim syntax check skipped");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (major, minor) in [(10, 3), (8, 6), (8, 5)] {
        let out = Command::new(&cxx)
            .args(["-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror"])
            .arg(format!("-DNV_TENSORRT_MAJOR={major}"))
            .arg(format!("-DNV_TENSORRT_MINOR={minor}"))
            .arg("-DNV_TENSORRT_PATCH=0")
            .arg("-I")
            .arg(root.join("tests/trt_stub"))
            .arg("-I")
            .arg(root.join("shim"))
            .arg(root.join("shim/vigil_trt.cpp"))
            .output()
            .expect("run C++ compiler");
        assert!(
            out.status.success(),
            "vigil_trt.cpp does not compile for TensorRT {major}.{minor} (stub headers):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
