//! `stm-ae`: two-stream autoencoder with spatial and temporal memories (appearance stream over
//! frames, motion stream over optical flow; Liu et al., ICME 2022).
//!
//! The network sees frames t-4..t-1 and the three flows between them (computed by the window's
//! flow stage, `[flow]` in the manifest, the estimator the training flows came from) and
//! predicts frame t. The flow t-1 -> t is deliberately not an input: it would carry the answer.
//!
//! Score (paper): PSNR of the prediction against frame t, with pixels on [0, 1]; anomaly score
//! `1 - minmax(PSNR)` per video (paper protocol). Streaming: `-PSNR` z-scored with the package's
//! training statistics (`[calibration]`), which is monotone in the paper's score within a video.
//! The localisation map is the per-pixel squared prediction error.
//!
//! Latency: none; frame t is scored as soon as it arrives.

use super::{
    calibrated, fuse_psnr, inverted_minmax, io_index, require_flow, Recipe, RecipeError, Scored,
    MAX_COMPONENTS,
};
use crate::package::ModelPackage;
use crate::scoring::errormap::{mse, psnr, squared_error_into, ErrorMap};
use crate::tensor::Tensor;
use crate::window::FrameWindow;

/// Frames before the predicted one.
const PAST: usize = 4;

pub const COMPONENTS: &[&str] = &["psnr"];

pub struct StmAe {
    in_frames: usize,
    in_flows: usize,
    out_pred: usize,
    /// Dynamic range of the model's pixels (PSNR is taken on [0, 1]).
    range: f32,
    err: ErrorMap,
    /// (mean, std) of `psnr` on normal training frames, when calibrated.
    stats: Option<(f32, f32)>,
}

impl StmAe {
    pub fn new(pkg: &ModelPackage) -> Result<Self, RecipeError> {
        let m = &pkg.manifest;
        let pkg_err = |reason: String| RecipeError::Package {
            package: m.name.clone(),
            reason,
        };
        require_flow(pkg, "stm-ae")?;
        if m.input.channels != 1 {
            return Err(pkg_err(format!(
                "recipe stm-ae takes gray frames ([input] channels = 1), the manifest says {}",
                m.input.channels
            )));
        }
        let (w, h) = (m.input.width as usize, m.input.height as usize);
        let in_frames = io_index(pkg, false, "frames")?;
        let in_flows = io_index(pkg, false, "flows")?;
        let out_pred = io_index(pkg, true, "pred")?;
        for (spec, want) in [
            (&m.onnx.inputs[in_frames], [1, PAST, h, w]),
            (&m.onnx.inputs[in_flows], [1, 2 * (PAST - 1), h, w]),
            (&m.onnx.outputs[out_pred], [1, 1, h, w]),
        ] {
            if spec.shape != want {
                return Err(pkg_err(format!(
                    "`{}` must be {want:?}, is {:?}",
                    spec.name, spec.shape
                )));
            }
        }
        let stats = calibrated(pkg, "psnr")?;
        Ok(Self {
            in_frames,
            in_flows,
            out_pred,
            range: m.input.pixel_range[1] - m.input.pixel_range[0],
            err: ErrorMap::new(w, h).map_err(|e| pkg_err(e.to_string()))?,
            stats,
        })
    }
}

impl Recipe for StmAe {
    fn name(&self) -> &'static str {
        "stm-ae"
    }
    fn window_len(&self) -> usize {
        PAST + 1
    }
    fn latency_frames(&self) -> u32 {
        0
    }
    fn component_names(&self) -> &'static [&'static str] {
        COMPONENTS
    }

    fn prepare(&mut self, window: &FrameWindow, inputs: &mut [Tensor]) -> Result<(), RecipeError> {
        if !window.is_full() || window.len() < PAST + 1 {
            return Err(RecipeError::Window {
                needed: PAST + 1,
                have: window.len(),
            });
        }
        let hw = self.err.len();
        let frames = inputs[self.in_frames].data_mut();
        for i in 0..PAST {
            frames[i * hw..(i + 1) * hw].copy_from_slice(window.plane(i));
        }
        let flows = inputs[self.in_flows].data_mut();
        for i in 0..PAST - 1 {
            flows[2 * i * hw..2 * (i + 1) * hw].copy_from_slice(window.flow(i).as_slice());
        }
        Ok(())
    }

    fn score(&mut self, window: &FrameWindow, outputs: &[Tensor]) -> Result<Scored, RecipeError> {
        let pred = outputs[self.out_pred].data();
        if !pred.iter().all(|v| v.is_finite()) {
            return Err(RecipeError::NonFinite {
                name: "pred".into(),
            });
        }
        let target = window.plane(PAST);
        squared_error_into(pred, target, &mut self.err)?;
        // PSNR on [0, 1] pixels: the model's range maps to 1
        let p = psnr(mse(pred, target)?, self.range)?;
        let mut components = [0.0; MAX_COMPONENTS];
        components[0] = p;
        Ok(Scored {
            frame_index: window.index(PAST),
            timestamp: window.timestamp(PAST),
            raw: self.fuse(&components),
            components,
        })
    }

    fn error_map(&self) -> &ErrorMap {
        &self.err
    }

    fn fuse(&self, c: &[f32; MAX_COMPONENTS]) -> f32 {
        fuse_psnr(self.stats, c[0])
    }

    fn paper_scores(&self, components: &[Vec<f32>]) -> Vec<f32> {
        inverted_minmax(components.first().cloned().unwrap_or_default())
    }
}
