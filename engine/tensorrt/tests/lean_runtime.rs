//! The shim linked against a real TensorRT library and run: TensorRT's lean runtime
//! (`libnvinfer_lean.so.10` from the PyPI wheel `tensorrt-lean-cu12-libs`, 10.16.1) and the real
//! CUDA runtime (`libcudart.so.12`, `nvidia-cuda-runtime-cu12`), on a machine with no GPU and no
//! CUDA driver. The shim is compiled with `VTRT_RUNTIME_ONLY` (the lean library has no builder
//! and no ONNX parser), a small C program calls its C ABI, and the test reads what it printed.
//!
//! What this proves: the shim's runtime half links against a real libnvinfer's symbols
//! (`getInferLibVersion`, `createInferRuntime_INTERNAL`, the CUDA runtime's), the version is
//! read and decoded from the real library, and without a driver `vtrt_runtime_create` fails
//! with a CUDA error that says so, returning no handle. That matters because the lean runtime,
//! asked for a runtime without a driver, logs the failure and returns a non-null pointer that
//! crashes when used; the shim never gets that far, because it asks the CUDA runtime for a
//! device first. What it cannot prove: engine builds (the full builder library and a GPU),
//! inference, numerical results; `tests/jetson_check.sh` does those on a device.

use std::path::{Path, PathBuf};
use std::process::Command;

const LEAN_VERSION: &str = "10.16.1";

fn wheel_dir(site: &Path, dir: &str, file: &str) -> PathBuf {
    let d = site.join(dir);
    assert!(
        d.join(file).is_file(),
        "{} not found: run `bash tests/bootstrap.sh test`, which installs \
         engine/tensorrt/requirements.txt (tensorrt-lean-cu12-libs, nvidia-cuda-runtime-cu12)",
        d.join(file).display()
    );
    d
}

const DRIVER: &str = r#"
#include "vigil_trt.h"
#include <stdio.h>
int main(void) {
    int32_t major = -1, minor = -1, patch = -1;
    vtrt_library_version(&major, &minor, &patch);
    printf("abi %u\n", vtrt_abi_version());
    printf("library %d.%d.%d\n", major, minor, patch);
    vtrt_runtime* rt = (vtrt_runtime*)1; /* must come back NULL on failure */
    char err[512] = {0};
    int32_t rc = vtrt_runtime_create(0, &rt, err, sizeof err);
    printf("create %d %s\n", rc, rt == NULL ? "null" : "handle");
    printf("error %s\n", err);
    vtrt_blob* blob = (vtrt_blob*)1;
    vtrt_build_options opts = {0};
    rc = vtrt_build(NULL, &opts, NULL, NULL, &blob, NULL, err, sizeof err);
    printf("build %d %s\n", rc, blob == NULL ? "null" : "blob");
    printf("build-error %s\n", err);
    if (rt != NULL) vtrt_runtime_destroy(rt);
    return 0;
}
"#;

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_shim_links_and_runs_against_the_real_lean_runtime_without_a_gpu() {
    let site = crate::abi_layout::site_packages()
        .expect("no .venv: run `bash tests/bootstrap.sh test` (it installs the TensorRT wheels)");
    let lean = wheel_dir(&site, "tensorrt_lean_libs", "libnvinfer_lean.so.10");
    let cudart = wheel_dir(&site, "nvidia/cuda_runtime/lib", "libcudart.so.12");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let (shim_o, driver_c, driver_o, exe) = (
        dir.path().join("shim.o"),
        dir.path().join("driver.c"),
        dir.path().join("driver.o"),
        dir.path().join("driver"),
    );
    std::fs::write(&driver_c, DRIVER).unwrap();
    let cxx = crate::abi_layout::compiler(&["c++", "g++", "clang++"]);
    let cc = crate::abi_layout::compiler(&["cc", "gcc", "clang"]);
    let mut shim = Command::new(&cxx);
    shim.args([
        "-std=c++17",
        "-DVTRT_RUNTIME_ONLY",
        "-fPIC",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-c",
    ])
    .arg("-I")
    .arg(root.join("shim"))
    .arg("-isystem")
    .arg(crate::abi_layout::tensorrt_headers("10.16.0"));
    for d in crate::abi_layout::cuda_headers() {
        shim.arg("-isystem").arg(d);
    }
    shim.arg(root.join("shim/vigil_trt.cpp"))
        .arg("-o")
        .arg(&shim_o);
    run(&mut shim, "compiling the shim (VTRT_RUNTIME_ONLY)");
    run(
        Command::new(&cc)
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-c", "-I"])
            .arg(root.join("shim"))
            .arg(&driver_c)
            .arg("-o")
            .arg(&driver_o),
        "compiling the C driver",
    );
    let rpath = format!("-Wl,-rpath,{}:{}", lean.display(), cudart.display());
    run(
        Command::new(&cxx)
            .arg(&driver_o)
            .arg(&shim_o)
            .arg(format!("-L{}", lean.display()))
            .arg("-l:libnvinfer_lean.so.10")
            .arg(format!("-L{}", cudart.display()))
            .arg("-l:libcudart.so.12")
            .arg(&rpath)
            .arg("-o")
            .arg(&exe),
        "linking against libnvinfer_lean.so.10 and libcudart.so.12",
    );
    let out = run(&mut Command::new(&exe), "running the driver");
    println!("{out}");
    let line = |key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(key).map(|r| r.trim().to_owned()))
            .unwrap_or_else(|| panic!("no `{key}` line in:\n{out}"))
    };
    assert_eq!(
        line("abi "),
        vigil_tensorrt::ffi::VTRT_ABI_VERSION.to_string()
    );
    // Decoded from the real getInferLibVersion() (10.x encoding: 101601).
    assert_eq!(line("library "), LEAN_VERSION);
    // No driver: a CUDA error naming the call, and no handle.
    let code = vigil_tensorrt::ffi::VTRT_E_CUDA;
    assert_eq!(line("create "), format!("{code} null"));
    let err = line("error ");
    assert!(err.starts_with("cudaGetDeviceCount failed: cuda"), "{err}");
    assert!(
        err.to_lowercase().contains("driver") || err.to_lowercase().contains("device"),
        "{err}"
    );
    // The lean library has no builder: refused by name, no blob.
    let unsupported = vigil_tensorrt::ffi::VTRT_E_UNSUPPORTED;
    assert_eq!(line("build "), format!("{unsupported} null"));
    assert!(line("build-error ").contains("lean runtime"), "{out}");
}
