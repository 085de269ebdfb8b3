//! The TensorRT binding: the C header against the Rust declarations, the shim against the real
//! TensorRT headers, and the safe layer against the test double.
//!
//! One test binary for the crate's integration tests (`autotests = false` in Cargo.toml): one
//! link instead of one per file, and one ~100 MB executable on disk instead of several.

mod abi_layout;
mod lean_runtime;
mod onnx_support;
// These drive the test double (`vigil_tensorrt::double`), which a `native` build does not link;
// on a device, `vigil engine selftest` takes their place.
#[cfg(vigil_trt_double)]
mod build_cache;
#[cfg(vigil_trt_double)]
mod common;
#[cfg(vigil_trt_double)]
mod runtime_backend;

/// `../shared/third_party/tensorrt`: NVIDIA's public headers of each JetPack's TensorRT and the
/// ONNX parser's operator tables (its README says where each comes from).
fn third_party_tensorrt() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/third_party/tensorrt")
}
