//! A tract backend that shows every intermediate activation to a hook, which may read it
//! (INT8 calibration records its range and histogram) or rewrite it in place (simulated INT8:
//! quantise-dequantise at the calibrated scale, so the rest of the network sees what an INT8
//! engine would compute).
//!
//! It runs the *decluttered* graph, not the optimised one: optimisation fuses operators into
//! kernels whose intermediate tensors no longer exist, while the decluttered graph keeps one
//! node per ONNX operator, each output labelled with its ONNX tensor name, which is the name
//! TensorRT's calibration cache uses. It is several times slower than [`super::tract`]; it is
//! for offline calibration and evaluation, never for `vigil run`.

use super::tract::{copy_outputs, graph_inputs, load_pinned};
use super::{check_shapes, load_err, Backend, BackendError, TensorSpec};
use crate::tensor::Tensor;
use std::path::Path;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::OpState;
use tract_onnx::tract_core::plan::{eval as tract_eval, EvalContext};

/// One activation tensor as the hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The ONNX tensor name (what TensorRT's calibration cache calls it).
    pub name: String,
    /// Whether an INT8 engine would read this tensor in INT8: it is an input of a layer
    /// TensorRT runs in INT8 (convolution, deconvolution, matrix product, pooling). A layer's
    /// output is requantised only where the next layer reads INT8, which this same rule covers
    /// from the consumer's side; a network output or a tensor that feeds element-wise maths,
    /// index computations or gathers stays float (TensorRT picks an INT8-in, float-out kernel).
    /// Quantising those here would simulate a loss no engine has: the BDFI export computes warp
    /// indices from the flow in float, and rounding them moves whole pixels.
    pub int8: bool,
}

/// Sees each float activation of a run: the network inputs and every operator output that has
/// an ONNX name, in execution order. Weights and other constants are not activations.
pub trait ActivationHook: Send {
    fn visit(&mut self, activation: &Activation, data: &mut [f32]);
}

/// No-op hook: the probe then computes exactly what [`super::tract::TractBackend`] computes.
pub struct NoHook;
impl ActivationHook for NoHook {
    fn visit(&mut self, _: &Activation, _: &mut [f32]) {}
}

/// Operators TensorRT implements in INT8 (by tract's name for them after decluttering).
fn runs_in_int8(op: &str) -> bool {
    matches!(
        op,
        "Conv" | "Deconv" | "EinSum" | "MatMul" | "MaxPool" | "SumPool"
    )
}

pub struct ProbeBackend<H> {
    state: TypedSimpleState,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    graph_in: Vec<usize>,
    graph_out: Vec<usize>,
    /// Each node output as an activation (`labels[node][slot]`), `None` where the node is a
    /// constant, is not f32, or has no name.
    labels: Vec<Vec<Option<Activation>>>,
    hook: H,
}

impl<H: ActivationHook> ProbeBackend<H> {
    pub fn load(
        path: &Path,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
        hook: H,
    ) -> Result<Self, BackendError> {
        let (model, graph_in, graph_out) = load_pinned(path, inputs, outputs)?;
        let typed = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .map_err(|e| load_err(path, format!("{e:#}")))?;
        let labels = typed
            .nodes()
            .iter()
            .map(|n| {
                (0..n.outputs.len())
                    .map(|slot| {
                        let is_f32 = n.outputs[slot].fact.datum_type == f32::datum_type();
                        if n.op_is::<Const>() || !is_f32 {
                            return None;
                        }
                        let name = typed
                            .outlet_label(OutletId::new(n.id, slot))
                            .map(str::to_owned)
                            .or_else(|| (n.outputs.len() == 1).then(|| n.name.clone()))?;
                        let int8 = n.outputs[slot]
                            .successors
                            .iter()
                            .any(|s| runs_in_int8(&typed.node(s.node).op().name()));
                        Some(Activation { name, int8 })
                    })
                    .collect()
            })
            .collect();
        let plan = typed
            .into_runnable()
            .map_err(|e| load_err(path, format!("{e:#}")))?;
        let state = plan.spawn().map_err(|e| load_err(path, format!("{e:#}")))?;
        Ok(Self {
            state,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            graph_in,
            graph_out,
            labels,
            hook,
        })
    }

    /// The activations the hook will see, in execution order.
    pub fn activations(&self) -> Vec<Activation> {
        self.state
            .plan()
            .order_without_consts()
            .iter()
            .flat_map(|&n| self.labels[n].iter().flatten().cloned())
            .collect()
    }

    pub fn hook(&self) -> &H {
        &self.hook
    }
    pub fn hook_mut(&mut self) -> &mut H {
        &mut self.hook
    }
    pub fn into_hook(self) -> H {
        self.hook
    }
}

impl<H: ActivationHook> Backend for ProbeBackend<H> {
    fn name(&self) -> &'static str {
        "tract-probe"
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
        let labels = &self.labels;
        let hook = &mut self.hook;
        let eval = |ctx: &EvalContext,
                    state: Option<&mut (dyn OpState + 'static)>,
                    node: &TypedNode,
                    input: TVec<TValue>|
         -> TractResult<TVec<TValue>> {
            let mut out = tract_eval(ctx, state, node, input)?;
            for (slot, value) in out.iter_mut().enumerate() {
                let Some(act) = labels[node.id].get(slot).and_then(Option::as_ref) else {
                    continue;
                };
                let mut t =
                    std::mem::replace(value, tract_onnx::prelude::Tensor::default().into_tvalue())
                        .into_tensor();
                {
                    // Element order does not matter to the hooks (statistics, element-wise
                    // quantisation), so the storage is handed over as it lies.
                    let mut view = t.try_as_plain_ram_mut()?;
                    hook.visit(act, view.as_slice_mut::<f32>()?);
                }
                *value = t.into_tvalue();
            }
            Ok(out)
        };
        let result = self
            .state
            .run_plan_with_eval(tv, eval)
            .map_err(|e| BackendError::Run(format!("{e:#}")))?;
        copy_outputs(&result, &self.graph_out, &self.outputs, outputs)
    }
}

/// Symmetric INT8 quantise-dequantise, as TensorRT applies it to a tensor with dynamic range
/// `127 * scale`: `scale * clamp(round(x / scale), -127, 127)`. Round half away from zero, like
/// `f32::round` (TensorRT documents round-to-nearest-even for QuantizeLayer; the two differ only
/// on exact .5 multiples of the scale, which real activations practically never hit).
pub fn fake_quantize(data: &mut [f32], scale: f32) {
    let inv = 1.0 / scale;
    for v in data {
        *v = (*v * inv).round().clamp(-127.0, 127.0) * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_quantize_rounds_to_the_grid_and_saturates() {
        let mut d = [0.0, 0.26, -0.26, 1.0, 12.7, 100.0, -100.0];
        fake_quantize(&mut d, 0.1);
        let want = [0.0, 0.3, -0.3, 1.0, 12.7, 12.7, -12.7];
        for (g, w) in d.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{d:?}");
        }
    }
}
