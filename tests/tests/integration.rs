//! Cross-crate tests: the real binary, a real mosquitto, replayed Ped2 video.
//!
//! One test binary for the crate's integration tests (`autotests = false` in Cargo.toml): one
//! link instead of one per file, and one ~100 MB executable on disk instead of several.

mod faults;
mod mqtt_outbox;
mod mqtt_tls;
mod own_scene;
mod run_ped2;
mod systemd_units;
