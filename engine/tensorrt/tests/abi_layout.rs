//! Checks `shim/vigil_trt.h` against `src/ffi.rs` with the system C and C++ compilers: struct
//! sizes and field offsets, every constant, and every function's type. The C++ shim includes the
//! same header, so a mismatch here is a mismatch with the shim. Then compiles the shim itself
//! against the real TensorRT headers of every JetPack (`../shared/third_party/tensorrt`) and the
//! real CUDA runtime headers (PyPI wheels in `.venv`, installed by `tests/bootstrap.sh test`).
//! A machine without a C/C++ compiler or those headers fails here, saying what to install.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_tensorrt::ffi::*;

pub(crate) fn compiler(candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|c| (*c).to_owned())
        .unwrap_or_else(|| {
            panic!(
                "none of {candidates:?} runs: the shim checks need a C and a C++ compiler \
                 (Debian: apt install build-essential)"
            )
        })
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
    compile(&compiler(&["cc", "gcc", "clang"]), "-std=c11", "c", &file);
    compile(
        &compiler(&["c++", "g++", "clang++"]),
        "-std=c++17",
        "c++",
        &file,
    );
}

/// The TensorRT releases JetPack ships (8.5.2 on JetPack 5.1, 8.6.2 on 6.0, 10.3.0 on 6.1/6.2)
/// by the header sets that stand for them, and the current release.
const HEADER_SETS: [&str; 4] = ["8.5.3", "8.6.1", "10.3.0", "10.16.0"];

pub(crate) fn tensorrt_headers(version: &str) -> PathBuf {
    let dir = crate::third_party_tensorrt().join(version).join("include");
    assert!(
        dir.join("NvInfer.h").is_file(),
        "{} has no NvInfer.h: the TensorRT headers come with ../shared (third_party/tensorrt)",
        dir.display()
    );
    dir
}

/// The `site-packages` of the repository's `.venv` (made by `tests/bootstrap.sh test`), where
/// the wheels of `engine/tensorrt/requirements.txt` are.
pub(crate) fn site_packages() -> Option<PathBuf> {
    let venv_lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    std::fs::read_dir(venv_lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("site-packages")))
        .find(|p| p.is_dir())
}

/// `cuda_runtime_api.h` (nvidia-cuda-runtime-cu12) and `crt/host_defines.h`, which it includes
/// (nvidia-cuda-nvcc-cu12), from the wheels in the repository's `.venv`.
pub(crate) fn cuda_headers() -> Vec<PathBuf> {
    let venv_lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    let site = site_packages()
        .map(|s| s.join("nvidia"))
        .filter(|p| p.is_dir());
    let dirs: Vec<PathBuf> = site
        .map(|nv| {
            vec![
                nv.join("cuda_runtime/include"),
                nv.join("cuda_nvcc/include"),
            ]
        })
        .unwrap_or_default();
    assert!(
        dirs.len() == 2
            && dirs[0].join("cuda_runtime_api.h").is_file()
            && dirs[1].join("crt/host_defines.h").is_file(),
        "the CUDA runtime headers are not in {}: run `bash tests/bootstrap.sh test`, which \
         installs engine/tensorrt/requirements.txt (nvidia-cuda-runtime-cu12, nvidia-cuda-nvcc-cu12)",
        venv_lib.display()
    );
    dirs
}

/// `g++ -fsyntax-only -Wall -Wextra -Werror` of the shim, with TensorRT and CUDA as system
/// headers (as build.rs passes them), so only the shim's own code is held to the warnings.
fn compile_shim(trt_include: &Path) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(compiler(&["c++", "g++", "clang++"]));
    cmd.args(["-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(root.join("shim"))
        .arg("-isystem")
        .arg(trt_include);
    for d in cuda_headers() {
        cmd.arg("-isystem").arg(d);
    }
    cmd.arg(root.join("shim/vigil_trt.cpp"))
        .output()
        .expect("run the C++ compiler")
}

#[test]
fn shim_compiles_against_the_real_headers_of_every_jetpack() {
    for version in HEADER_SETS {
        let out = compile_shim(&tensorrt_headers(version));
        assert!(
            out.status.success(),
            "vigil_trt.cpp does not compile against the TensorRT {version} headers:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A copy of a header set whose `NvInferVersion.h` claims another version.
fn headers_claiming(base: &str, from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tensorrt_headers(base)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let version = dir.path().join("NvInferVersion.h");
    let text = std::fs::read_to_string(&version).unwrap();
    assert!(
        text.contains(from),
        "{base}: no `{from}` in NvInferVersion.h"
    );
    std::fs::write(&version, text.replace(from, to)).unwrap();
    dir
}

#[test]
fn versions_outside_the_supported_range_are_refused_by_name() {
    for (base, from, to, says) in [
        (
            "10.3.0",
            "#define NV_TENSORRT_MAJOR 10 ",
            "#define NV_TENSORRT_MAJOR 11 ",
            "targets TensorRT 8.5, 8.6 and 10.x",
        ),
        (
            "8.5.3",
            "#define NV_TENSORRT_MINOR 5 ",
            "#define NV_TENSORRT_MINOR 4 ",
            "needs TensorRT >= 8.5",
        ),
    ] {
        let dir = headers_claiming(base, from, to);
        let out = compile_shim(dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "headers of {base} edited to `{to}`: expected a refusal saying `{says}`, got {}:\n{err}",
            out.status
        );
    }
}
