//! vigil-onnxruntime against the real ONNX Runtime library, the shipped packages and real Ped2
//! frames.
//!
//! One test binary for the crate's integration tests (`autotests = false` in Cargo.toml). The
//! library comes from ORT_DYLIB_PATH or the project's virtualenv (`.venv/`, whose `onnxruntime`
//! wheel `tests/bootstrap.sh test` installs); missing, the tests fail and say so.

mod common;
mod errors;
mod parity;
