//! `vigil-tensorrt`: Vigil's own thin binding to TensorRT 10 (and 8.6), the engine cache and
//! the TensorRT [`Backend`](vigil_engine::backend::Backend).
//!
//! Layers, bottom up:
//!
//! - `shim/vigil_trt.h`: a small C ABI over TensorRT and the CUDA runtime, implemented by
//!   `shim/vigil_trt.cpp` (feature `native`) or by the Rust test double [`double`] (default, and
//!   whenever `VIGIL_TRT_DOUBLE=1` is set at build time). [`NATIVE`] says which one is linked.
//! - [`TrtRuntime`], [`Engine`], [`ExecutionContext`]: safe owners of the shim's handles. Rust
//!   owns every lifetime (each handle is destroyed in `Drop`, in the order TensorRT requires),
//!   every buffer (pinned host and device memory allocated through the shim) and every error
//!   ([`TrtError`]).
//! - [`TensorRtBackend`]: one execution context per camera behind the engine's `Backend` trait.
//! - [`EngineCache`], [`EngineKey`], [`load_or_build`]: engines cached under
//!   (ONNX sha256, precision, calibration sha256, TensorRT version, SM / DLA core).
//! - [`trtexec_command`]: the equivalent `trtexec` invocation of a build.
//!
//! See `docs/tensorrt.md` for building with TensorRT on a Jetson and for what was verified where.

mod backend;
mod builder;
mod cache;
mod context;
mod engine;
mod error;
pub mod ffi;
pub mod onnx_support;
mod runtime;

#[cfg(vigil_trt_double)]
pub mod double;

pub use backend::TensorRtBackend;
pub use builder::{shell_join, trtexec_command, BuildEvent, BuildOptions, BuildOutput, Precision};
pub use cache::{
    load_or_build, sha256_file, write_file_synced, CachedEngine, Device, EngineCache, EngineKey,
    PreparedEngine,
};
pub use context::ExecutionContext;
pub use engine::{Engine, IoMode, TensorDesc};
pub use error::TrtError;
pub use runtime::{library_version, Blob, DataType, RuntimeInfo, TrtRuntime, TrtVersion};

/// True when the real TensorRT shim is linked, false when the test double stands in for it.
/// A product build that finds `false` here must not pretend to run engines on a GPU.
pub const NATIVE: bool = cfg!(not(vigil_trt_double));
