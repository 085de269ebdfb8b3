//! Chooses what provides the C ABI of `shim/vigil_trt.h`:
//!
//! - feature `native`: compiles `shim/vigil_trt.cpp` (C++17) and links TensorRT (`nvinfer`,
//!   `nvonnxparser`) and the CUDA runtime (`cudart`), found through `TENSORRT_ROOT` (default
//!   `/usr`, JetPack's layout) and `CUDA_ROOT` (default `/usr/local/cuda`);
//! - otherwise, or with `VIGIL_TRT_DOUBLE=1` in the environment (so `--all-features` and CI can
//!   compile the `native` code path's Rust side on machines without TensorRT): the Rust test
//!   double in `src/double.rs`, signalled to the crate by `cfg(vigil_trt_double)`.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vigil_trt_double)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=VIGIL_TRT_DOUBLE");
    let native = env::var_os("CARGO_FEATURE_NATIVE").is_some();
    let forced_double = env::var("VIGIL_TRT_DOUBLE").is_ok_and(|v| v == "1");
    if !native || forced_double {
        if native {
            println!(
                "cargo::warning=VIGIL_TRT_DOUBLE=1: feature `native` is on but the TensorRT test double is linked; this binary cannot run real engines"
            );
        }
        println!("cargo::rustc-cfg=vigil_trt_double");
    } else {
        #[cfg(feature = "native")]
        native::build();
    }
}

#[cfg(feature = "native")]
mod native {
    use super::*;
    use std::path::{Path, PathBuf};

    /// Debian multiarch directory name of the target (JetPack installs TensorRT there).
    fn multiarch() -> String {
        let target = env::var("TARGET").unwrap_or_default();
        let arch = target.split('-').next().unwrap_or("x86_64");
        format!("{arch}-linux-gnu")
    }

    fn first_with(dirs: &[PathBuf], file: &str) -> Option<PathBuf> {
        dirs.iter().find(|d| d.join(file).is_file()).cloned()
    }

    fn root(var: &str, default: &str) -> PathBuf {
        println!("cargo::rerun-if-env-changed={var}");
        env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default))
    }

    pub fn build() {
        let trt = root("TENSORRT_ROOT", "/usr");
        let cuda = root("CUDA_ROOT", "/usr/local/cuda");
        let ma = multiarch();
        let arch = ma.split('-').next().unwrap_or("x86_64").to_owned();

        let trt_inc = [trt.join("include").join(&ma), trt.join("include")];
        let cuda_inc = [
            cuda.join("include"),
            cuda.join("targets")
                .join(format!("{arch}-linux"))
                .join("include"),
        ];
        let trt_lib = [
            trt.join("lib").join(&ma),
            trt.join("lib64"),
            trt.join("lib"),
        ];
        let cuda_lib = [
            cuda.join("lib64"),
            cuda.join("lib"),
            cuda.join("targets")
                .join(format!("{arch}-linux"))
                .join("lib"),
        ];

        let missing = |what: &str, file: &str, dirs: &[PathBuf], var: &str| -> ! {
            let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            panic!(
                "feature `native`: {what} not found ({file} is in none of {}). Install it \
                 (JetPack: `sudo apt install nvidia-jetpack`, or libnvinfer-dev, libnvonnxparsers-dev \
                 and the CUDA toolkit) or point {var} at it; \
                 to compile without TensorRT use the test double (no `native`, or VIGIL_TRT_DOUBLE=1).",
                list.join(", ")
            )
        };
        let trt_inc = first_with(&trt_inc, "NvInfer.h")
            .unwrap_or_else(|| missing("TensorRT headers", "NvInfer.h", &trt_inc, "TENSORRT_ROOT"));
        let cuda_inc = first_with(&cuda_inc, "cuda_runtime_api.h").unwrap_or_else(|| {
            missing("CUDA headers", "cuda_runtime_api.h", &cuda_inc, "CUDA_ROOT")
        });
        let trt_lib = first_with(&trt_lib, "libnvinfer.so")
            .unwrap_or_else(|| missing("libnvinfer", "libnvinfer.so", &trt_lib, "TENSORRT_ROOT"));
        let cuda_lib = first_with(&cuda_lib, "libcudart.so")
            .unwrap_or_else(|| missing("libcudart", "libcudart.so", &cuda_lib, "CUDA_ROOT"));

        let shim = Path::new("shim");
        println!("cargo::rerun-if-changed=shim/vigil_trt.h");
        println!("cargo::rerun-if-changed=shim/vigil_trt.cpp");
        // TensorRT and CUDA as system headers: their own warnings (~330 lines from NVIDIA's
        // headers) are not ours to fix, and would bury the shim's.
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .file(shim.join("vigil_trt.cpp"))
            .include(shim)
            .flag("-isystem")
            .flag(trt_inc.as_os_str())
            .flag("-isystem")
            .flag(cuda_inc.as_os_str())
            .warnings(true)
            .compile("vigil_trt");

        println!("cargo::rustc-link-search=native={}", trt_lib.display());
        println!("cargo::rustc-link-search=native={}", cuda_lib.display());
        println!("cargo::rustc-link-lib=dylib=nvinfer");
        println!("cargo::rustc-link-lib=dylib=nvonnxparser");
        println!("cargo::rustc-link-lib=dylib=cudart");
    }
}
