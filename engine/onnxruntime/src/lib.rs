//! `vigil-onnxruntime`: the engine's [`Backend`](vigil_engine::backend::Backend) on ONNX Runtime.
//!
//! tract stays the CPU backend that needs nothing; this one runs the same `model.onnx` through
//! ONNX Runtime's kernels (2-5x faster on one core, docs/benchmarks.md). The library is
//! not linked: it is loaded at run time from a file the box provides (a distribution package,
//! the `onnxruntime` Python wheel's `onnxruntime/capi/libonnxruntime.so.1.*`, or JetPack's
//! build), so a vigil without ONNX Runtime on the box still starts, and refuses only the cameras
//! that ask for it, saying which file to point it at.
//!
//! - [`library`]: finding and loading `libonnxruntime` once per process.
//! - [`OrtBackend`]: one ONNX Runtime session per camera.

mod backend;
pub mod library;

pub use backend::{OrtBackend, OrtOptions, Provider};
pub use library::{LoadedLibrary, OrtLibrary};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum OrtError {
    #[error(
        "cannot load the ONNX Runtime library: {tried}. Install ONNX Runtime (a distribution \
         package, JetPack's onnxruntime build, or `pip install onnxruntime`, whose wheel carries \
         onnxruntime/capi/libonnxruntime.so.1.*) and give its path as the camera's \
         `backend.library` (`--onnxruntime-lib` on the command line, or ORT_DYLIB_PATH), or use \
         the tract backend (`kind = \"cpu\"`)"
    )]
    NotFound { tried: String },
    #[error(
        "ONNX Runtime is already loaded from {loaded} in this process, and a camera asks for \
         {requested}: one process loads one library; give every camera the same `backend.library`"
    )]
    Conflict { loaded: String, requested: String },
    #[error("ONNX Runtime environment: {0}")]
    Environment(String),
}
