//! What runs on the box: everything between a camera and an MQTT broker that is not the model
//! itself (that lives in `vigil-engine`). Configuration, the backend a camera's model runs on,
//! frame sources, the camera pipeline and its statistics, the event stage, MQTT publishing with a
//! durable outbox, systemd integration and logging.
//!
//! The `vigil` binary (firmware/cli) dispatches its subcommands to this library; nothing here
//! knows about a command line, so the library cannot import a command (docs/architecture.md).
pub mod backend;
pub mod backoff;
pub mod config;
pub mod events;
pub mod fuzzing;
pub mod logging;
pub mod mqtt;
pub mod pipeline;
pub mod service;
pub mod source;
pub mod stats;
pub mod systemd;
pub mod thresholds;

pub use service::{install_signal_handlers, preflight, run, run_with_observer, Preflight, Purpose};
