//! CPU backend on `tract-onnx`: pure Rust, no system libraries, same binary on x86-64 and
//! aarch64.

use super::{
    check_shapes, load_err, onnx::read_interface, permutation, Backend, BackendError, TensorSpec,
};
use crate::tensor::Tensor;
use std::path::Path;
use tract_onnx::prelude::*;

pub struct TractBackend {
    /// One state kept across runs: tract reuses its scratch buffers between calls.
    state: TypedSimpleState,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// `graph_in[i]` = position in `inputs` of the graph's i-th input.
    graph_in: Vec<usize>,
    /// `graph_out[i]` = position in `outputs` of the graph's i-th output.
    graph_out: Vec<usize>,
}

impl TractBackend {
    /// Loads and optimises `path`. `inputs`/`outputs` name the tensors (in the caller's order,
    /// which need not be the graph's) and pin them to static shapes.
    pub fn load(
        path: &Path,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
    ) -> Result<Self, BackendError> {
        let (model, graph_in, graph_out) = load_pinned(path, inputs, outputs)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| load_err(path, format!("{e:#}")))?;
        let state = plan.spawn().map_err(|e| load_err(path, format!("{e:#}")))?;
        Ok(Self {
            state,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            graph_in,
            graph_out,
        })
    }
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        check_shapes(&self.inputs, inputs)?;
        check_shapes(&self.outputs, outputs)?;
        let tv = graph_inputs(&self.graph_in, inputs)?;
        let result = self
            .state
            .run(tv)
            .map_err(|e| BackendError::Run(format!("{e:#}")))?;
        copy_outputs(&result, &self.graph_out, &self.outputs, outputs)
    }
}

/// The ONNX graph with its inputs pinned to the specs' static shapes, and the positions of the
/// graph's inputs and outputs among the caller's specs.
pub(super) fn load_pinned(
    path: &Path,
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
) -> Result<(InferenceModel, Vec<usize>, Vec<usize>), BackendError> {
    let iface = read_interface(path).map_err(|e| load_err(path, e))?;
    let graph_in = permutation(&iface.inputs, inputs, path)?;
    let graph_out = permutation(&iface.outputs, outputs, path)?;
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .map_err(|e| load_err(path, format!("{e:#}")))?;
    for (i, &spec_i) in graph_in.iter().enumerate() {
        model
            .set_input_fact(i, f32::fact(inputs[spec_i].shape.clone()).into())
            .map_err(|e| load_err(path, format!("{e:#}")))?;
    }
    Ok((model, graph_in, graph_out))
}

/// The caller's inputs as tract values, in the graph's order.
pub(super) fn graph_inputs(
    graph_in: &[usize],
    inputs: &[Tensor],
) -> Result<TVec<TValue>, BackendError> {
    graph_in
        .iter()
        .map(|&i| {
            let t = &inputs[i];
            tract_onnx::prelude::Tensor::from_shape(t.shape(), t.data())
                .map(|t| t.into_tvalue())
                .map_err(|e| BackendError::Run(format!("{e:#}")))
        })
        .collect()
}

/// Copies the graph's results into the caller's preallocated outputs, checking each shape.
pub(super) fn copy_outputs(
    result: &[TValue],
    graph_out: &[usize],
    specs: &[TensorSpec],
    outputs: &mut [Tensor],
) -> Result<(), BackendError> {
    if result.len() != outputs.len() {
        return Err(BackendError::Arity {
            expected: outputs.len(),
            got: result.len(),
        });
    }
    for (value, &oi) in result.iter().zip(graph_out) {
        let spec = &specs[oi];
        let view = value
            .to_plain_array_view::<f32>()
            .map_err(|e| BackendError::Run(format!("output `{}`: {e:#}", spec.name)))?;
        if view.shape() != spec.shape.as_slice() {
            return Err(BackendError::Shape {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
                got: view.shape().to_vec(),
            });
        }
        // Iterate in logical order so a non-contiguous result is still copied right.
        for (o, v) in outputs[oi].data_mut().iter_mut().zip(view.iter()) {
            *o = *v;
        }
    }
    Ok(())
}
