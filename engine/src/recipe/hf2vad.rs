//! `hf2vad`: hybrid flow reconstruction and flow-guided frame prediction (HF2-VAD, Liu et al.,
//! ICCV 2021), object-centric.
//!
//! Each frame t, the engine's object stage (`[objects]`, plus `[detector]` when the package has
//! one) boxes the moving objects; for each box the recipe crops a cube of frames t-4..t and the
//! four flows between them (the window's flow stage, `[flow]`), resized to `cube x cube`. The
//! network (static batch of `slots` cubes; unused slots are zeros and ignored) reconstructs the
//! flows through ML-MemAE-SC (`flow_recon`) and predicts frame t from frames t-4..t-1
//! conditioned on the reconstructed flows (`pred`).
//!
//! Score, as the official evaluation computes it: per object the sums of squared errors S_r
//! (flow reconstruction) and S_p (frame prediction), each z-scored with the mean and std over
//! the training objects (`[params] sr_mean, sr_std, sp_mean, sp_std`), fused
//! `w_r z(S_r) + w_p z(S_p)` (Ped2: 1.0 and 0.1); the frame takes its largest object, a frame
//! without objects the score of zero errors. Paper protocol: a centred median filter of width
//! `median` (17) over each video. Streaming: the frame score z-scored with the package's
//! calibration, then the shared event chain (its own causal smoothing); no look-ahead, so no
//! latency. The localisation map paints each object's score over its box.

use super::{
    calibrated, io_index, param_f32, require_flow, Recipe, RecipeError, Scored, MAX_COMPONENTS,
};
use crate::objects::{crop_cube_into, crop_resize_into, BoundingBox, ObjectFinder};
use crate::package::ModelPackage;
use crate::scoring::errormap::ErrorMap;
use crate::scoring::smoothing::median_filter;
use crate::tensor::Tensor;
use crate::window::FrameWindow;

/// Frames before the predicted one, and flows in a cube.
const PAST: usize = 4;

/// `score` is the frame score; `flow_err` and `frame_err` are S_r and S_p of the object that
/// set it; `objects` is how many were scored (diagnostics).
pub const COMPONENTS: &[&str] = &["score", "flow_err", "frame_err", "objects"];

pub struct Hf2Vad {
    w_r: f32,
    w_p: f32,
    median: usize,
    /// (mean, std) of S_r and S_p over the training objects.
    sr: (f32, f32),
    sp: (f32, f32),
    in_frames: usize,
    in_flows: usize,
    out_recon: usize,
    out_pred: usize,
    width: usize,
    height: usize,
    side: usize,
    channels: usize,
    objects: ObjectFinder,
    boxes: Vec<BoundingBox>,
    /// The cubes' flows and target frames, kept for scoring (the network only sees copies).
    flows: Vec<f32>,
    targets: Vec<f32>,
    err: ErrorMap,
    /// (mean, std) of `score` on normal training frames, when calibrated.
    stats: Option<(f32, f32)>,
}

fn required(pkg: &ModelPackage, key: &str, positive: bool) -> Result<f32, RecipeError> {
    if !pkg.manifest.params.contains_key(key) {
        return Err(RecipeError::Param {
            package: pkg.manifest.name.clone(),
            key: key.to_owned(),
            reason: "missing: the training objects' error statistics are written by `vigil-zoo export --model hf2vad`".into(),
        });
    }
    let lo = if positive { f32::MIN_POSITIVE } else { -1e30 };
    param_f32(pkg, key, 0.0, (lo, 1e30))
}

impl Hf2Vad {
    pub fn new(pkg: &ModelPackage) -> Result<Self, RecipeError> {
        let m = &pkg.manifest;
        let pkg_err = |reason: String| RecipeError::Package {
            package: m.name.clone(),
            reason,
        };
        require_flow(pkg, "hf2vad")?;
        let objects = m
            .objects
            .ok_or_else(|| {
                pkg_err(
                    "recipe hf2vad needs an [objects] table (the extractor its training cubes came from), e.g. method = \"motion\"".into(),
                )
            })?
            .params();
        let w_r = param_f32(pkg, "w_r", 1.0, (0.0, 1e6))?;
        let w_p = param_f32(pkg, "w_p", 0.1, (0.0, 1e6))?;
        let median = param_f32(pkg, "median", 17.0, (1.0, 1001.0))?;
        if median.fract() != 0.0 || median as usize & 1 == 0 {
            return Err(RecipeError::Param {
                package: m.name.clone(),
                key: "median".into(),
                reason: format!("{median} must be an odd whole number of frames, e.g. 17"),
            });
        }
        let sr = (
            required(pkg, "sr_mean", false)?,
            required(pkg, "sr_std", true)?,
        );
        let sp = (
            required(pkg, "sp_mean", false)?,
            required(pkg, "sp_std", true)?,
        );
        let (w, h) = (m.input.width as usize, m.input.height as usize);
        let c = m.input.channels as usize;
        let (k, s) = (objects.slots as usize, objects.cube as usize);
        let in_frames = io_index(pkg, false, "frames")?;
        let in_flows = io_index(pkg, false, "flows")?;
        let out_recon = io_index(pkg, true, "flow_recon")?;
        let out_pred = io_index(pkg, true, "pred")?;
        for (spec, want) in [
            (&m.onnx.inputs[in_frames], [k, PAST * c, s, s]),
            (&m.onnx.inputs[in_flows], [k, 2 * PAST, s, s]),
            (&m.onnx.outputs[out_recon], [k, 2 * PAST, s, s]),
            (&m.onnx.outputs[out_pred], [k, c, s, s]),
        ] {
            if spec.shape != want {
                return Err(pkg_err(format!(
                    "`{}` must be {want:?} ([objects] slots = {k}, cube = {s}), is {:?}",
                    spec.name, spec.shape
                )));
            }
        }
        let finder = ObjectFinder::build(
            objects,
            &m.input,
            m.detector.as_ref().map(|d| (d, pkg.dir.as_path())),
        )
        .map_err(|e| pkg_err(e.to_string()))?;
        Ok(Self {
            w_r,
            w_p,
            median: median as usize,
            sr,
            sp,
            in_frames,
            in_flows,
            out_recon,
            out_pred,
            width: w,
            height: h,
            side: s,
            channels: c,
            objects: finder,
            boxes: Vec::with_capacity(k),
            flows: vec![0.0; k * 2 * PAST * s * s],
            targets: vec![0.0; k * c * s * s],
            err: ErrorMap::new(w, h).map_err(|e| pkg_err(e.to_string()))?,
            stats: calibrated(pkg, "score")?,
        })
    }

    /// The fused score of an object with errors `s_r`, `s_p` (z-scores against training).
    fn object_score(&self, s_r: f32, s_p: f32) -> f32 {
        self.w_r * (s_r - self.sr.0) / self.sr.1 + self.w_p * (s_p - self.sp.0) / self.sp.1
    }

    /// The boxes scored for the last frame, model pixels.
    pub fn boxes(&self) -> &[BoundingBox] {
        &self.boxes
    }
}

fn sum_sq(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

impl Recipe for Hf2Vad {
    fn name(&self) -> &'static str {
        "hf2vad"
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
        if window.len() < PAST + 1 {
            return Err(RecipeError::Window {
                needed: PAST + 1,
                have: window.len(),
            });
        }
        let planes: [&[f32]; PAST + 1] = std::array::from_fn(|i| window.plane(i));
        let flows: [&[f32]; PAST] = std::array::from_fn(|i| window.flow(i).as_slice());
        let found = self
            .objects
            .find(window.index(PAST), &planes)
            .map_err(|e| RecipeError::Package {
                package: "hf2vad objects".into(),
                reason: e.to_string(),
            })?;
        self.boxes.clear();
        self.boxes.extend_from_slice(found);
        let (w, h, s, c) = (self.width, self.height, self.side, self.channels);
        let (fs, ls, ts) = (PAST * c * s * s, 2 * PAST * s * s, c * s * s);
        let [a, b] = if self.in_frames < self.in_flows {
            let (lo, hi) = inputs.split_at_mut(self.in_flows);
            [&mut lo[self.in_frames], &mut hi[0]]
        } else {
            let (lo, hi) = inputs.split_at_mut(self.in_frames);
            [&mut hi[0], &mut lo[self.in_flows]]
        };
        let (frames_in, flows_in) = (a.data_mut(), b.data_mut());
        frames_in.fill(0.0);
        flows_in.fill(0.0);
        for (k, bx) in self.boxes.iter().enumerate() {
            let (fo, lo) = (
                &mut frames_in[k * fs..(k + 1) * fs],
                &mut flows_in[k * ls..(k + 1) * ls],
            );
            crop_cube_into(&planes[..PAST], &flows, w, h, *bx, s, fo, lo);
            self.flows[k * ls..(k + 1) * ls].copy_from_slice(lo);
            crop_resize_into(
                planes[PAST],
                w,
                h,
                *bx,
                s,
                &mut self.targets[k * ts..(k + 1) * ts],
            );
        }
        Ok(())
    }

    fn score(&mut self, window: &FrameWindow, outputs: &[Tensor]) -> Result<Scored, RecipeError> {
        let (recon, pred) = (
            outputs[self.out_recon].data(),
            outputs[self.out_pred].data(),
        );
        let n = self.boxes.len();
        let s = self.side;
        let (ls, ts) = (2 * PAST * s * s, self.channels * s * s);
        for (name, data) in [("flow_recon", &recon[..n * ls]), ("pred", &pred[..n * ts])] {
            if !data.iter().all(|v| v.is_finite()) {
                return Err(RecipeError::NonFinite { name: name.into() });
            }
        }
        let zero = self.object_score(0.0, 0.0);
        let mut components = [0.0; MAX_COMPONENTS];
        components[0] = zero;
        components[3] = n as f32;
        self.err.fill(0.0);
        let w = self.width;
        for k in 0..n {
            let s_r = sum_sq(
                &recon[k * ls..(k + 1) * ls],
                &self.flows[k * ls..(k + 1) * ls],
            );
            let s_p = sum_sq(
                &pred[k * ts..(k + 1) * ts],
                &self.targets[k * ts..(k + 1) * ts],
            );
            let score = self.object_score(s_r, s_p);
            if k == 0 || score > components[0] {
                components[..3].copy_from_slice(&[score, s_r, s_p]);
            }
            let b = self.boxes[k];
            let v = score - zero;
            let map = self.err.as_mut_slice();
            for y in b.y0 as usize..b.y1 as usize {
                for px in &mut map[y * w + b.x0 as usize..y * w + b.x1 as usize] {
                    *px = px.max(v);
                }
            }
        }
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
        match self.stats {
            Some((mean, std)) => (c[0] - mean) / std,
            None => c[0],
        }
    }

    fn paper_scores(&self, components: &[Vec<f32>]) -> Vec<f32> {
        let s = components.first().cloned().unwrap_or_default();
        // the width was validated odd and bounded at load; non-finite scores were refused
        median_filter(&s, self.median).unwrap_or(s)
    }
}
