//! The per-camera inference chain: frame -> preprocessing -> window -> network -> recipe score.
//!
//! `vigil run`, `vigil eval`, `vigil calib scores` and `vigil bench` all drive this one type, so
//! the numbers the evaluation reports are the numbers the daemon produces.

use crate::backend::{tract::TractBackend, Backend, BackendError};
use crate::flow::Farneback;
use crate::frame::Frame;
use crate::package::ModelPackage;
use crate::preprocess::{PreprocessError, Preprocessor};
use crate::recipe::{self, Recipe, RecipeError, Scored};
use crate::scoring::errormap::ErrorMap;
use crate::tensor::Tensor;
use crate::window::FrameWindow;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AnalyzerError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
}

/// Time spent in each stage of the last `push`, for `vigil bench` and health reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub preprocess: Duration,
    pub network: Duration,
    pub score: Duration,
}

pub struct Analyzer {
    pre: Preprocessor,
    window: FrameWindow,
    backend: Box<dyn Backend>,
    recipe: Box<dyn Recipe>,
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
    times: StageTimes,
}

impl Analyzer {
    /// Builds the CPU (tract) analyzer for a package.
    pub fn cpu(pkg: &ModelPackage, max_gap: u64) -> Result<Self, AnalyzerError> {
        let m = &pkg.manifest;
        let backend = TractBackend::load(&pkg.onnx_path(), &m.onnx.inputs, &m.onnx.outputs)?;
        Self::with_backend(pkg, Box::new(backend), max_gap)
    }

    /// Builds an analyzer around any backend (TensorRT on Jetson, a double in tests).
    pub fn with_backend(
        pkg: &ModelPackage,
        backend: Box<dyn Backend>,
        max_gap: u64,
    ) -> Result<Self, AnalyzerError> {
        let recipe = recipe::build(pkg)?;
        let geo = pkg.manifest.input;
        let window = match pkg.manifest.flow {
            Some(f) => {
                let est = Farneback::new(f.farneback(), geo.width as usize, geo.height as usize)
                    .map_err(|e| RecipeError::Package {
                        package: pkg.manifest.name.clone(),
                        reason: e.to_string(),
                    })?;
                FrameWindow::with_flow(
                    recipe.window_len(),
                    geo.plane_len(),
                    max_gap,
                    est,
                    geo.channels as usize,
                    geo.pixel_range,
                )
            }
            None => FrameWindow::new(recipe.window_len(), geo.plane_len(), max_gap),
        };
        Ok(Self {
            pre: Preprocessor::new(geo),
            window,
            inputs: backend.alloc_inputs(),
            outputs: backend.alloc_outputs(),
            backend,
            recipe,
            times: StageTimes::default(),
        })
    }

    /// Adds a frame; returns the score of the recipe's target frame once the window is full.
    pub fn push(&mut self, frame: &Frame) -> Result<Option<Scored>, AnalyzerError> {
        let t0 = Instant::now();
        self.window.push(frame, &mut self.pre)?;
        let t1 = Instant::now();
        self.times.preprocess = t1 - t0;
        if !self.window.is_full() {
            return Ok(None);
        }
        self.recipe.prepare(&self.window, &mut self.inputs)?;
        self.backend.run(&self.inputs, &mut self.outputs)?;
        let t2 = Instant::now();
        let scored = self.recipe.score(&self.window, &self.outputs)?;
        self.times.network = t2 - t1;
        self.times.score = t2.elapsed();
        Ok(Some(scored))
    }

    /// Forgets the window (camera reconnect, end of a video).
    pub fn reset(&mut self) {
        self.window.reset();
    }

    pub fn recipe(&self) -> &dyn Recipe {
        self.recipe.as_ref()
    }
    pub fn error_map(&self) -> &ErrorMap {
        self.recipe.error_map()
    }
    pub fn times(&self) -> StageTimes {
        self.times
    }
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }
    /// The last network outputs (parity tests compare them with PyTorch).
    pub fn outputs(&self) -> &[Tensor] {
        &self.outputs
    }
    pub fn inputs(&self) -> &[Tensor] {
        &self.inputs
    }
}
