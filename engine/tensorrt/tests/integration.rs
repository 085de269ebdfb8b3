//! The TensorRT binding against its test double (and the real library where present).
//!
//! One test binary for the crate's integration tests (`autotests = false` in Cargo.toml): one
//! link instead of one per file, and one ~100 MB executable on disk instead of several.

mod abi_layout;
mod build_cache;
mod common;
mod runtime_backend;
