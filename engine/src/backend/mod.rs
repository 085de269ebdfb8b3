//! Inference backends. A backend runs one network with fixed input/output shapes; it knows
//! nothing about frames or recipes.
//!
//! - [`tract::TractBackend`]: pure Rust, any CPU (development, CI, CPU-only boxes).
//! - [`probe::ProbeBackend`]: the same network with a hook on every activation (INT8
//!   calibration, simulated INT8); offline only.
//! - TensorRT (Jetson): crate `vigil-tensorrt`, behind the `tensorrt` cargo feature.
//! - ONNX Runtime, loaded at run time from a `libonnxruntime` the box provides: crate
//!   `vigil-onnxruntime`.

pub mod onnx;
pub mod probe;
pub mod tract;

use crate::tensor::Tensor;
use std::path::Path;
use thiserror::Error;

/// Name and static shape of one network input or output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("cannot load network {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("network input `{name}` expects shape {expected:?}, got {got:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("network was given {got} inputs/outputs, it has {expected}")]
    Arity { expected: usize, got: usize },
    #[error("inference failed: {0}")]
    Run(String),
}

pub trait Backend: Send {
    /// Short name for logs and benchmarks ("tract", "onnxruntime", "tensorrt").
    fn name(&self) -> &'static str;
    fn inputs(&self) -> &[TensorSpec];
    fn outputs(&self) -> &[TensorSpec];
    /// Runs the network: `inputs` in the order of [`Backend::inputs`], results written into
    /// `outputs` (preallocated, in the order of [`Backend::outputs`]).
    fn run(&mut self, inputs: &[Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError>;

    /// Fresh output tensors of the right shapes, for callers that preallocate.
    fn alloc_outputs(&self) -> Vec<Tensor> {
        self.outputs()
            .iter()
            .map(|s| Tensor::zeros(&s.shape))
            .collect()
    }
    fn alloc_inputs(&self) -> Vec<Tensor> {
        self.inputs()
            .iter()
            .map(|s| Tensor::zeros(&s.shape))
            .collect()
    }
}

/// Checks that tensors match specs one to one (count and shapes).
pub fn check_shapes(specs: &[TensorSpec], tensors: &[Tensor]) -> Result<(), BackendError> {
    if specs.len() != tensors.len() {
        return Err(BackendError::Arity {
            expected: specs.len(),
            got: tensors.len(),
        });
    }
    for (s, t) in specs.iter().zip(tensors) {
        if s.shape != t.shape() {
            return Err(BackendError::Shape {
                name: s.name.clone(),
                expected: s.shape.clone(),
                got: t.shape().to_vec(),
            });
        }
    }
    Ok(())
}

/// A load error naming the network file.
pub fn load_err(path: &Path, reason: impl std::fmt::Display) -> BackendError {
    BackendError::Load {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// For each graph tensor, the position of the same-named spec (backends take the caller's order,
/// which need not be the graph's).
pub fn permutation(
    graph: &[TensorSpec],
    specs: &[TensorSpec],
    path: &Path,
) -> Result<Vec<usize>, BackendError> {
    if graph.len() != specs.len() {
        return Err(BackendError::Arity {
            expected: graph.len(),
            got: specs.len(),
        });
    }
    graph
        .iter()
        .map(|g| {
            specs.iter().position(|s| s.name == g.name).ok_or_else(|| {
                load_err(
                    path,
                    format!(
                        "the network has no tensor named `{}` where one was expected",
                        g.name
                    ),
                )
            })
        })
        .collect()
}
