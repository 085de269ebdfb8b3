//! [`vigil_engine::backend::Backend`] on a TensorRT execution context.

use crate::context::ExecutionContext;
use crate::engine::Engine;
use crate::error::TrtError;
use vigil_engine::backend::{Backend, BackendError, TensorSpec};
use vigil_engine::tensor::Tensor;

/// Runs one engine for one camera. Tensors are matched to the engine by name, so the caller's
/// order (a model package's manifest) need not be the engine's.
pub struct TensorRtBackend {
    ctx: ExecutionContext,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// `in_idx[i]` = position in the engine's tensors of `inputs[i]`.
    in_idx: Vec<usize>,
    out_idx: Vec<usize>,
}

impl std::fmt::Debug for TensorRtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorRtBackend")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

impl TensorRtBackend {
    /// A backend with its own execution context. `inputs`/`outputs` name every engine I/O tensor
    /// exactly once with the shape the caller will pass; a missing name, an extra tensor, a shape
    /// or a type the engine does not have is an error here, not at the first frame.
    pub fn new(
        engine: &Engine,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
    ) -> Result<Self, TrtError> {
        let ctx = engine.create_context()?;
        let in_idx = match_specs(engine, inputs, true)?;
        let out_idx = match_specs(engine, outputs, false)?;
        Ok(Self {
            ctx,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            in_idx,
            out_idx,
        })
    }

    /// A backend whose tensor order is the engine's.
    pub fn from_engine(engine: &Engine) -> Result<Self, TrtError> {
        let inputs = engine
            .inputs()
            .map(|t| t.spec())
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = engine
            .outputs()
            .map(|t| t.spec())
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(engine, &inputs, &outputs)
    }

    pub fn context(&self) -> &ExecutionContext {
        &self.ctx
    }

    /// Same as [`Backend::run`] with the typed error.
    pub fn run_typed(&mut self, inputs: &[Tensor], outputs: &mut [Tensor]) -> Result<(), TrtError> {
        // Everything is checked before the first copy, so a bad call never runs half a frame.
        check(&self.inputs, inputs.iter().map(|t| t.shape()), "inputs")?;
        check(&self.outputs, outputs.iter().map(|t| t.shape()), "outputs")?;
        for (t, &i) in inputs.iter().zip(&self.in_idx) {
            self.ctx.host_mut(i).copy_from_slice(t.data());
        }
        self.ctx.run()?;
        for (t, &i) in outputs.iter_mut().zip(&self.out_idx) {
            t.data_mut().copy_from_slice(self.ctx.host(i));
        }
        Ok(())
    }
}

fn match_specs(
    engine: &Engine,
    specs: &[TensorSpec],
    inputs: bool,
) -> Result<Vec<usize>, TrtError> {
    let what = if inputs { "inputs" } else { "outputs" };
    let engine_count = engine
        .tensors()
        .iter()
        .filter(|t| t.is_input() == inputs)
        .count();
    if engine_count != specs.len() {
        return Err(TrtError::Arity {
            what,
            expected: engine_count,
            got: specs.len(),
        });
    }
    let mut idx = Vec::with_capacity(specs.len());
    for spec in specs {
        let i = engine
            .tensors()
            .iter()
            .position(|t| t.name == spec.name && t.is_input() == inputs)
            .ok_or_else(|| TrtError::MissingTensor {
                name: spec.name.clone(),
                available: engine.tensor_names(),
            })?;
        if idx.contains(&i) {
            return Err(TrtError::Arity {
                what,
                expected: engine_count,
                got: specs.len(),
            });
        }
        let shape = engine.tensors()[i].spec()?.shape;
        if shape != spec.shape {
            return Err(TrtError::ShapeMismatch {
                name: spec.name.clone(),
                expected: shape,
                got: spec.shape.clone(),
            });
        }
        idx.push(i);
    }
    Ok(idx)
}

fn check<'a>(
    specs: &[TensorSpec],
    shapes: impl ExactSizeIterator<Item = &'a [usize]>,
    what: &'static str,
) -> Result<(), TrtError> {
    if shapes.len() != specs.len() {
        return Err(TrtError::Arity {
            what,
            expected: specs.len(),
            got: shapes.len(),
        });
    }
    for (s, shape) in specs.iter().zip(shapes) {
        if s.shape != shape {
            return Err(TrtError::ShapeMismatch {
                name: s.name.clone(),
                expected: s.shape.clone(),
                got: shape.to_vec(),
            });
        }
    }
    Ok(())
}

impl Backend for TensorRtBackend {
    fn name(&self) -> &'static str {
        "tensorrt"
    }
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn run(&mut self, inputs: &[Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        self.run_typed(inputs, outputs).map_err(BackendError::from)
    }
}
