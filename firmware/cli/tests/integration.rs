//! The `vigil` binary, run as a user runs it.
//!
//! One test binary for the crate's integration tests (`autotests = false` in Cargo.toml): one
//! link instead of one per file, and one ~100 MB executable on disk instead of several.

mod collect;
mod commands;
mod int8;
mod onnxruntime;
mod watchdog;
