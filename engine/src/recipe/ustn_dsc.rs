//! `ustn-dsc`: video event restoration from keyframes (USTN-DSC, Yang et al., CVPR 2023).
//!
//! Of a clip of `clip` = T = 9 frames the network sees only the keyframes 1, (T-1)/2+1 and T
//! (frames t-8, t-4, t) and restores all T frames; an event the normal-trained network cannot
//! restore between the keyframes is an anomaly.
//!
//! Score (paper): the PSNR (pixels on [0, 1]) of the restored frame with the largest MSE is the
//! clip's score; `1 - minmax(PSNR)` per video. The paper scores non-overlapping clips and gives
//! every frame its clip's score; the paper protocol here does the same (frames 9j..9j+8 take the
//! clip ending at 9j+8). Streaming scores the clip ending at each new frame t (sliding, causal:
//! no latency), `-PSNR` z-scored with the package's training statistics. The localisation map
//! is the squared error of the worst restored frame.

use super::{
    calibrated, fuse_psnr, inverted_minmax, io_index, param_f32, Recipe, RecipeError, Scored,
    MAX_COMPONENTS,
};
use crate::package::ModelPackage;
use crate::scoring::errormap::{mse, psnr, squared_error_into, ErrorMap};
use crate::tensor::Tensor;
use crate::window::FrameWindow;

/// `psnr` is the clip score; `worst` the position (0 = t-8) of the frame that set it.
pub const COMPONENTS: &[&str] = &["psnr", "worst"];

pub struct UstnDsc {
    clip: usize,
    input: usize,
    output: usize,
    plane: usize,
    range: f32,
    err: ErrorMap,
    stats: Option<(f32, f32)>,
}

impl UstnDsc {
    pub fn new(pkg: &ModelPackage) -> Result<Self, RecipeError> {
        let m = &pkg.manifest;
        let pkg_err = |reason: String| RecipeError::Package {
            package: m.name.clone(),
            reason,
        };
        let clip = param_f32(pkg, "clip", 9.0, (3.0, 65.0))?;
        if clip.fract() != 0.0 || clip as usize & 1 == 0 {
            return Err(RecipeError::Param {
                package: m.name.clone(),
                key: "clip".into(),
                reason: format!("{clip} must be an odd whole number of frames (keyframes 1, (T-1)/2+1, T), e.g. 9"),
            });
        }
        let clip = clip as usize;
        let (w, h, c) = (
            m.input.width as usize,
            m.input.height as usize,
            m.input.channels as usize,
        );
        let input = io_index(pkg, false, "keyframes")?;
        let output = io_index(pkg, true, "clip")?;
        for (spec, want) in [
            (&m.onnx.inputs[input], [1, 3 * c, h, w]),
            (&m.onnx.outputs[output], [1, clip * c, h, w]),
        ] {
            if spec.shape != want {
                return Err(pkg_err(format!(
                    "`{}` must be {want:?} (clip = {clip}), is {:?}",
                    spec.name, spec.shape
                )));
            }
        }
        Ok(Self {
            clip,
            input,
            output,
            plane: c * w * h,
            range: m.input.pixel_range[1] - m.input.pixel_range[0],
            err: ErrorMap::new(w, h).map_err(|e| pkg_err(e.to_string()))?,
            stats: calibrated(pkg, "psnr")?,
        })
    }

    fn keyframes(&self) -> [usize; 3] {
        [0, (self.clip - 1) / 2, self.clip - 1]
    }
}

impl Recipe for UstnDsc {
    fn name(&self) -> &'static str {
        "ustn-dsc"
    }
    fn window_len(&self) -> usize {
        self.clip
    }
    fn latency_frames(&self) -> u32 {
        0
    }
    fn component_names(&self) -> &'static [&'static str] {
        COMPONENTS
    }

    fn prepare(&mut self, window: &FrameWindow, inputs: &mut [Tensor]) -> Result<(), RecipeError> {
        if window.len() < self.clip {
            return Err(RecipeError::Window {
                needed: self.clip,
                have: window.len(),
            });
        }
        let p = self.plane;
        let data = inputs[self.input].data_mut();
        for (k, i) in self.keyframes().into_iter().enumerate() {
            data[k * p..(k + 1) * p].copy_from_slice(window.plane(i));
        }
        Ok(())
    }

    fn score(&mut self, window: &FrameWindow, outputs: &[Tensor]) -> Result<Scored, RecipeError> {
        let out = outputs[self.output].data();
        if !out.iter().all(|v| v.is_finite()) {
            return Err(RecipeError::NonFinite {
                name: "clip".into(),
            });
        }
        let p = self.plane;
        let mut worst = (0, f32::MIN);
        for i in 0..self.clip {
            let e = mse(&out[i * p..(i + 1) * p], window.plane(i))?;
            if e > worst.1 {
                worst = (i, e);
            }
        }
        let i = worst.0;
        squared_error_into(&out[i * p..(i + 1) * p], window.plane(i), &mut self.err)?;
        let mut components = [0.0; MAX_COMPONENTS];
        components[0] = psnr(worst.1, self.range)?;
        components[1] = i as f32;
        let t = self.clip - 1;
        Ok(Scored {
            frame_index: window.index(t),
            timestamp: window.timestamp(t),
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
        let sliding = components.first().cloned().unwrap_or_default();
        let n = sliding.len();
        // non-overlapping clips: frame i takes the clip that ends at 9 * (i / 9) + 8
        let s: Vec<f32> = (0..n)
            .map(|i| sliding[(self.clip * (i / self.clip) + self.clip - 1).min(n - 1)])
            .collect();
        inverted_minmax(s)
    }
}
