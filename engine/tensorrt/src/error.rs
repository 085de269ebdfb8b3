//! Typed errors. Every status code the shim can return maps to a variant here; nothing that comes
//! back from the shim is unwrapped.

use crate::ffi;
use crate::runtime::{DataType, TrtVersion};
use std::path::PathBuf;
use thiserror::Error;
use vigil_engine::backend::BackendError;

#[derive(Debug, Error)]
pub enum TrtError {
    #[error("the TensorRT shim speaks C ABI {shim}, this vigil expects {expected}: the binary was linked against a stale shim; rebuild vigil")]
    Abi { shim: u32, expected: u32 },
    #[error("libnvinfer {loaded} is loaded but vigil was compiled against TensorRT {compiled} headers; install TensorRT {compiled} (or newer of the same major) or rebuild vigil on this device")]
    LibraryVersion {
        loaded: TrtVersion,
        compiled: TrtVersion,
    },
    #[error("cannot load TensorRT engine {what}: {reason}")]
    Load { what: String, reason: String },
    #[error("the TensorRT engine has no tensor named `{name}` (its I/O tensors are {available})")]
    MissingTensor { name: String, available: String },
    #[error("tensor `{name}`: the engine's shape is {expected:?}, the caller's is {got:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("tensor `{name}` has dynamic shape {dims:?}; Vigil builds and runs static-shape engines only (re-export the ONNX with fixed shapes)")]
    DynamicShape { name: String, dims: Vec<i64> },
    #[error("tensor `{name}` is {got}; Vigil's TensorRT backend supports f32 I/O only (build the engine with the default FP32 I/O formats)")]
    DType { name: String, got: DataType },
    #[error("the network was given {got} {what}, the engine has {expected}")]
    Arity {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("buffer size rejected: {message}")]
    BufferSize { message: String },
    #[error("enqueue refused, a tensor has no buffer: {message}")]
    Unbound { message: String },
    #[error("TensorRT inference failed to enqueue: {message}")]
    Enqueue { message: String },
    #[error("CUDA error during {op}: {message}")]
    Cuda { op: &'static str, message: String },
    #[error("TensorRT could not parse the ONNX model: {message}")]
    Parse { message: String },
    #[error("TensorRT engine build failed: {message}")]
    Build { message: String },
    #[error("TensorRT engine build cancelled")]
    Cancelled,
    #[error("not supported: {message}")]
    Unsupported { message: String },
    #[error("invalid engine build options: {reason}")]
    Config { reason: String },
    #[error("TensorRT engine cache directory {dir} {reason}. Create it and make it writable by the user vigil runs as (`install -d -o vigil -g vigil {dir}`); under systemd the unit needs it in StateDirectory= or ReadWritePaths= (systemd/vigil.service uses /var/lib/vigil). Vigil refuses to start rather than rebuild engines (minutes) on every boot")]
    CacheDir { dir: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TensorRT shim call {op} failed (code {code}): {message}")]
    Shim {
        op: &'static str,
        code: i32,
        message: String,
    },
}

impl TrtError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Maps a shim status to an error. `op` names the call for messages.
    pub(crate) fn from_status(code: i32, message: String, op: &'static str) -> Self {
        match code {
            ffi::VTRT_E_CUDA => Self::Cuda { op, message },
            ffi::VTRT_E_LOAD => Self::Load {
                what: "from memory".to_owned(),
                reason: message,
            },
            ffi::VTRT_E_SIZE => Self::BufferSize { message },
            ffi::VTRT_E_UNBOUND => Self::Unbound { message },
            ffi::VTRT_E_ENQUEUE => Self::Enqueue { message },
            ffi::VTRT_E_PARSE => Self::Parse { message },
            ffi::VTRT_E_BUILD => Self::Build { message },
            ffi::VTRT_E_CANCELLED => Self::Cancelled,
            ffi::VTRT_E_UNSUPPORTED | ffi::VTRT_E_DTYPE => Self::Unsupported { message },
            _ => Self::Shim { op, code, message },
        }
    }
}

/// Calls a fallible shim function with a fresh error buffer.
pub(crate) fn call(
    op: &'static str,
    f: impl FnOnce(*mut std::ffi::c_char, usize) -> i32,
) -> Result<(), TrtError> {
    let mut err = ffi::ErrBuf::new();
    let code = f(err.ptr(), err.len());
    if code == ffi::VTRT_OK {
        Ok(())
    } else {
        Err(TrtError::from_status(code, err.message(), op))
    }
}

impl From<TrtError> for BackendError {
    fn from(e: TrtError) -> Self {
        match e {
            TrtError::ShapeMismatch {
                name,
                expected,
                got,
            } => BackendError::Shape {
                name,
                expected,
                got,
            },
            TrtError::Arity { expected, got, .. } => BackendError::Arity { expected, got },
            TrtError::Load { what, reason } => BackendError::Load { path: what, reason },
            other => BackendError::Run(other.to_string()),
        }
    }
}
