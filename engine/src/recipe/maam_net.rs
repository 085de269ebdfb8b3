//! `maam-net`: Memory-Augmented Appearance-Motion Network (Pattern Recognition 2023).
//!
//! The network sees frame t alone; through a sparse memory of normal prototypes it reconstructs
//! the frame and predicts the optical flow from t to t+1. At run time the engine computes that
//! flow itself (the window's Farnebäck stage, `[flow]` in the manifest) as the target.
//!
//! Score: PSCD (patch-level score with a sum of squared/absolute differences), as the authors'
//! evaluation computes it: the squared error map of the frame (summed over channels) and the L1
//! error map of the flow (summed over dx, dy) are each summed over patches by an all-ones kernel
//! (`[scoring] patch` / `stride`, 'valid' placement), fused per patch as
//! `(hp_flow * flow + hp_img * img) / (hp_flow + hp_img)` (Ped2: hp_flow = 1, hp_img = 10), and
//! the frame's raw score is the largest fused patch. Patch sums are linear, so the fused map is
//! formed per pixel first and summed once; the arg-max patch is the event region. The paper
//! protocol min-max normalises the per-video series; streaming z-scores it with the package's
//! training statistics.
//!
//! Latency: frame t is scored once t+1 has arrived (its flow target needs it).

use super::{
    calibrated, io_index, param_f32, require_flow, Recipe, RecipeError, Scored, MAX_COMPONENTS,
};
use crate::package::ModelPackage;
use crate::scoring::errormap::{fuse_into, squared_error_into, ErrorMap};
use crate::scoring::metrics::minmax_normalize;
use crate::scoring::patch::{PatchConfig, PatchDetector, PatchReduce};
use crate::tensor::Tensor;
use crate::window::FrameWindow;

/// `pscd` is the score; `img` and `flow` are the largest patch sums of each term alone
/// (diagnostics and ablations; they do not enter the score).
pub const COMPONENTS: &[&str] = &["pscd", "img", "flow"];

pub struct MaamNet {
    hp_img: f32,
    hp_flow: f32,
    input: usize,
    out_recon: usize,
    out_flow: usize,
    channels: usize,
    img: ErrorMap,
    flow: ErrorMap,
    fused: ErrorMap,
    patches: PatchDetector,
    /// (mean, std) of `pscd` on normal training frames, when calibrated.
    stats: Option<(f32, f32)>,
}

impl MaamNet {
    pub fn new(pkg: &ModelPackage) -> Result<Self, RecipeError> {
        let m = &pkg.manifest;
        let pkg_err = |reason: String| RecipeError::Package {
            package: m.name.clone(),
            reason,
        };
        require_flow(pkg, "maam-net")?;
        let hp_img = param_f32(pkg, "hp_img", 10.0, (0.0, 1e6))?;
        let hp_flow = param_f32(pkg, "hp_flow", 1.0, (0.0, 1e6))?;
        if hp_img + hp_flow <= 0.0 {
            return Err(RecipeError::Param {
                package: m.name.clone(),
                key: "hp_img".into(),
                reason: "hp_img + hp_flow must be > 0".into(),
            });
        }
        let (w, h) = (m.input.width as usize, m.input.height as usize);
        let channels = m.input.channels as usize;
        let input = io_index(pkg, false, "frame")?;
        let out_recon = io_index(pkg, true, "recon")?;
        let out_flow = io_index(pkg, true, "flow")?;
        let expect = |idx: usize, name: &str, want: [usize; 4]| {
            let shape = &m.onnx.outputs[idx].shape;
            if shape != &want {
                return Err(pkg_err(format!(
                    "output `{name}` must be {want:?}, is {shape:?}"
                )));
            }
            Ok(())
        };
        expect(out_recon, "recon", [1, channels, h, w])?;
        expect(out_flow, "flow", [1, 2, h, w])?;
        let map = || ErrorMap::new(w, h).map_err(|e| pkg_err(e.to_string()));
        let patches = PatchDetector::new(
            PatchConfig {
                height: m.scoring.patch[0],
                width: m.scoring.patch[1],
                stride_y: m.scoring.stride[0],
                stride_x: m.scoring.stride[1],
            },
            PatchReduce::Sum,
            w,
            h,
        )
        .map_err(|e| pkg_err(format!("[scoring]: {e}")))?;
        let stats = calibrated(pkg, "pscd")?;
        Ok(Self {
            hp_img,
            hp_flow,
            input,
            out_recon,
            out_flow,
            channels,
            img: map()?,
            flow: map()?,
            fused: map()?,
            patches,
            stats,
        })
    }
}

impl Recipe for MaamNet {
    fn name(&self) -> &'static str {
        "maam-net"
    }
    fn window_len(&self) -> usize {
        2
    }
    fn latency_frames(&self) -> u32 {
        1
    }
    fn component_names(&self) -> &'static [&'static str] {
        COMPONENTS
    }

    fn prepare(&mut self, window: &FrameWindow, inputs: &mut [Tensor]) -> Result<(), RecipeError> {
        if !window.is_full() || window.len() < 2 {
            return Err(RecipeError::Window {
                needed: 2,
                have: window.len(),
            });
        }
        inputs[self.input]
            .data_mut()
            .copy_from_slice(window.plane(0));
        Ok(())
    }

    fn score(&mut self, window: &FrameWindow, outputs: &[Tensor]) -> Result<Scored, RecipeError> {
        let recon = outputs[self.out_recon].data();
        let pred = outputs[self.out_flow].data();
        for (name, data) in [("recon", recon), ("flow", pred)] {
            if !data.iter().all(|v| v.is_finite()) {
                return Err(RecipeError::NonFinite { name: name.into() });
            }
        }
        let target = window.plane(0);
        let hw = self.img.len();
        squared_error_into(&recon[..hw], &target[..hw], &mut self.img)?;
        for c in 1..self.channels {
            let (p, t) = (&recon[c * hw..(c + 1) * hw], &target[c * hw..(c + 1) * hw]);
            for ((e, a), b) in self.img.as_mut_slice().iter_mut().zip(p).zip(t) {
                *e += (a - b) * (a - b);
            }
        }
        let truth = window.flow(0);
        let (pdx, pdy) = pred.split_at(hw);
        for ((((e, a), b), c), d) in self
            .flow
            .as_mut_slice()
            .iter_mut()
            .zip(pdx)
            .zip(truth.dx())
            .zip(pdy)
            .zip(truth.dy())
        {
            *e = (a - b).abs() + (c - d).abs();
        }
        // patch sums are linear: fusing per pixel then summing once is PSCD's per-patch fusion
        fuse_into(
            &[(&self.flow, self.hp_flow), (&self.img, self.hp_img)],
            &mut self.fused,
        )?;
        let mut components = [0.0; MAX_COMPONENTS];
        components[0] = self.patches.detect(&self.fused, None)?.max;
        components[1] = self.patches.detect(&self.img, None)?.max;
        components[2] = self.patches.detect(&self.flow, None)?.max;
        Ok(Scored {
            frame_index: window.index(0),
            timestamp: window.timestamp(0),
            raw: self.fuse(&components),
            components,
        })
    }

    fn error_map(&self) -> &ErrorMap {
        &self.fused
    }

    fn fuse(&self, c: &[f32; MAX_COMPONENTS]) -> f32 {
        match self.stats {
            Some((mean, std)) => (c[0] - mean) / std,
            None => c[0],
        }
    }

    fn paper_scores(&self, components: &[Vec<f32>]) -> Vec<f32> {
        let mut s = components.first().cloned().unwrap_or_default();
        // constant or empty series normalise to zeros; non-finite input was rejected in `score`
        let _ = minmax_normalize(&mut s);
        s
    }
}
