//! The `vigil` firmware: everything between a camera and an MQTT broker that is not the model
//! itself (that lives in `vigil-engine`): frame sources, configuration, the pipeline threads,
//! MQTT publishing with a durable outbox, and the CLI's commands.
pub mod backoff;
pub mod bench;
pub mod broker;
pub mod calibrate;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod detector;
pub mod eval;
pub mod fuzzing;
pub mod int8;
pub mod logging;
pub mod mqtt;
pub mod pipeline;
pub mod source;
pub mod systemd;
pub mod tensorrt;
