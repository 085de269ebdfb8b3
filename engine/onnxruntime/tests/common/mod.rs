//! The repository and the ONNX Runtime library the tests load.

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// ORT_DYLIB_PATH, else the library of the virtualenv's `onnxruntime` wheel. Missing, the test
/// fails: a parity test that skips proves nothing.
pub fn library() -> PathBuf {
    let venv = repo().join(".venv");
    vigil_onnxruntime::library::from_env_or_python_env(&venv).unwrap_or_else(|| {
        panic!(
            "no ONNX Runtime library: {} has no onnxruntime wheel; run `bash tests/bootstrap.sh test` \
             or set ORT_DYLIB_PATH to a libonnxruntime.so",
            venv.display()
        )
    })
}
