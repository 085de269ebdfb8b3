//! INT8 calibration caches against fixtures made by TensorRT's own format.
//!
//! One test binary for the crate's integration tests (`autotests = false` in Cargo.toml): one
//! link instead of one per file, and one ~100 MB executable on disk instead of several.

mod int8_cache;
mod int8_fixtures;
