//! vigil-engine against real Ped2 frames, the shipped packages and OpenCV fixtures.
//!
//! One test binary for the crate's integration tests (`autotests = false` in Cargo.toml): one
//! link instead of one per file, and one ~100 MB executable on disk instead of several.

mod common;
mod detector_ped2;
mod flow_opencv;
mod int8_caches;
mod objects_ped2;
mod package_recipe;
mod parity;
mod probe;
mod scoring_fixtures;
