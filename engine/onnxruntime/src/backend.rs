//! One ONNX Runtime session per camera behind the engine's `Backend` trait.

use crate::library;
use ort::ep;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use vigil_engine::backend::{
    check_shapes, load_err, permutation, Backend, BackendError, TensorSpec,
};
use vigil_engine::tensor::Tensor;

/// An execution provider placed before ONNX Runtime's CPU provider. Only a GPU build of ONNX
/// Runtime has them (on a Jetson: JetPack's onnxruntime-gpu); a CPU-only library refuses them when
/// the session is created, and that refusal is an error, not a silent fall back to the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// CUDA kernels on GPU 0.
    Cuda,
    /// ONNX Runtime's TensorRT provider on GPU 0, FP16 allowed, engines cached in
    /// [`OrtOptions::engine_cache`] when set.
    Tensorrt,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cuda => "cuda",
            Provider::Tensorrt => "tensorrt",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtOptions {
    /// Intra-op threads. 1 runs every kernel on the caller's thread (no pool), which is what a box
    /// with one camera per core wants; more split each layer across a pool that does not spin
    /// between frames, so idle threads leave the cores to the other cameras.
    pub threads: usize,
    /// The library file; `None` tries ORT_DYLIB_PATH, then the loader's search path.
    pub library: Option<PathBuf>,
    pub providers: Vec<Provider>,
    /// Where the TensorRT provider caches its engines.
    pub engine_cache: Option<PathBuf>,
}

impl Default for OrtOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            library: None,
            providers: Vec::new(),
            engine_cache: None,
        }
    }
}

pub struct OrtBackend {
    session: Session,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// `graph_in[i]` = position in `inputs` of the session's i-th input.
    graph_in: Vec<usize>,
    /// `graph_out[i]` = position in `outputs` of the session's i-th output.
    graph_out: Vec<usize>,
}

impl OrtBackend {
    /// Loads ONNX Runtime (once per process) and creates a session for `path`. `inputs`/`outputs`
    /// name the tensors in the caller's order and fix their shapes; a graph whose static
    /// dimensions disagree is refused here, not at the first frame.
    pub fn load(
        path: &Path,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
        opts: &OrtOptions,
    ) -> Result<Self, BackendError> {
        if opts.threads == 0 {
            return Err(load_err(
                path,
                "ONNX Runtime threads must be at least 1 (`threads = 1` runs on the camera's own thread)",
            ));
        }
        let lib = library::load(opts.library.as_deref()).map_err(|e| load_err(path, e))?;
        let err = |e: ort::Error<ort::session::builder::SessionBuilder>| load_err(path, e);
        let mut builder = Session::builder(&lib.env)
            .map_err(|e| load_err(path, e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(err)?
            .with_intra_threads(opts.threads)
            .map_err(err)?
            .with_inter_threads(1)
            .map_err(err)?
            .with_intra_op_spinning(false)
            .map_err(err)?;
        if !opts.providers.is_empty() {
            let eps: Vec<_> = opts
                .providers
                .iter()
                .map(|p| match p {
                    Provider::Cuda => ep::CUDA::default()
                        .with_device_id(0)
                        .build()
                        .error_on_failure(),
                    Provider::Tensorrt => {
                        let mut trt = ep::TensorRT::default().with_device_id(0).with_fp16(true);
                        if let Some(dir) = &opts.engine_cache {
                            trt = trt
                                .with_engine_cache(true)
                                .with_engine_cache_path(dir.display());
                        }
                        trt.build().error_on_failure()
                    }
                })
                .collect();
            builder = builder.with_execution_providers(eps).map_err(|e| {
                load_err(
                    path,
                    format!(
                        "execution providers {:?}: {e} (a CPU-only ONNX Runtime has none: use a GPU build, or drop `providers`)",
                        opts.providers.iter().map(|p| p.to_string()).collect::<Vec<_>>()
                    ),
                )
            })?;
        }
        let session = builder
            .commit_from_file(path)
            .map_err(|e| load_err(path, e))?;
        let graph_inputs = interface(session.inputs(), path)?;
        let graph_outputs = interface(session.outputs(), path)?;
        let graph_in = permutation(&graph_inputs, inputs, path)?;
        let graph_out = permutation(&graph_outputs, outputs, path)?;
        for (g, &k) in graph_inputs.iter().zip(&graph_in) {
            check_static(g, &inputs[k], path)?;
        }
        for (g, &k) in graph_outputs.iter().zip(&graph_out) {
            check_static(g, &outputs[k], path)?;
        }
        Ok(Self {
            session,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            graph_in,
            graph_out,
        })
    }
}

/// The graph's tensors with ONNX Runtime's shapes (a dynamic dimension as 0); only float tensors
/// are accepted, as everywhere in the engine.
fn interface(outlets: &[ort::value::Outlet], path: &Path) -> Result<Vec<TensorSpec>, BackendError> {
    outlets
        .iter()
        .map(|o| {
            let ty = o.dtype();
            match (ty.tensor_type(), ty.tensor_shape()) {
                (Some(ort::value::TensorElementType::Float32), Some(shape)) => Ok(TensorSpec {
                    name: o.name().to_string(),
                    shape: shape
                        .iter()
                        .map(|&d| usize::try_from(d).unwrap_or(0))
                        .collect(),
                }),
                _ => Err(load_err(
                    path,
                    format!(
                        "tensor `{}` is {ty:?}; the engine feeds and reads float32 tensors",
                        o.name()
                    ),
                )),
            }
        })
        .collect()
}

/// The graph's static dimensions must match the package's; dynamic ones (0 here) take the
/// package's.
fn check_static(graph: &TensorSpec, spec: &TensorSpec, path: &Path) -> Result<(), BackendError> {
    let fits = graph.shape.len() == spec.shape.len()
        && graph
            .shape
            .iter()
            .zip(&spec.shape)
            .all(|(&g, &s)| g == 0 || g == s);
    if fits {
        Ok(())
    } else {
        Err(load_err(
            path,
            format!(
                "tensor `{}` has shape {:?} in the network and {:?} in the package manifest",
                spec.name, graph.shape, spec.shape
            ),
        ))
    }
}

fn run_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Run(format!("ONNX Runtime: {e}"))
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        "onnxruntime"
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
        // Views over the caller's buffers: ONNX Runtime reads the frames where they are.
        let values = self
            .graph_in
            .iter()
            .map(|&k| {
                TensorRef::from_array_view((self.inputs[k].shape.as_slice(), inputs[k].data()))
                    .map(SessionInputValue::from)
                    .map_err(run_err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let result = self.session.run(values.as_slice()).map_err(run_err)?;
        for (j, &k) in self.graph_out.iter().enumerate() {
            let (_, data) = result[j].try_extract_tensor::<f32>().map_err(run_err)?;
            let dst = outputs[k].data_mut();
            if data.len() != dst.len() {
                return Err(BackendError::Run(format!(
                    "ONNX Runtime returned {} values for `{}`, which holds {}",
                    data.len(),
                    self.outputs[k].name,
                    dst.len()
                )));
            }
            dst.copy_from_slice(data);
        }
        Ok(())
    }
}
