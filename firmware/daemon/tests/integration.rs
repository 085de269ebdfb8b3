//! The daemon library: configuration reference, fuzz corpus.
//!
//! One test binary for the crate's integration tests (`autotests = false` in Cargo.toml): one
//! link instead of one per file, and one ~100 MB executable on disk instead of several.

mod config_reference;
mod fuzz_corpus;
mod module_graph;
