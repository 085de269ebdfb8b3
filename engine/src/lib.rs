//! `vigil-engine`: everything between a decoded frame and an anomaly score.
//!
//! Frames and tensors, image files, the inference backends (tract on the CPU, and the probe
//! backend for INT8 calibration; TensorRT is the `vigil-tensorrt` crate), model packages, the recipes that implement each paper's input window and scoring,
//! and the scoring stages (error maps, patch detector, normalisers, smoothing, event detector).
//! No network and no camera code lives here.
pub mod analyzer;
pub mod backend;
pub mod dataset;
pub mod flow;
pub mod frame;
pub mod imageio;
pub mod objects;
pub mod package;
pub mod preprocess;
pub mod recipe;
pub mod scoring;
pub mod tensor;
pub mod window;
