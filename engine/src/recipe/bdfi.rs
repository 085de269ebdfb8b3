//! `bdfi`: Bi-directional Frame Interpolation (Deng, Zhang, Zou, Li; WACV 2023).
//!
//! The network sees frames t-1 and t+1 and synthesises frame t; it also reports, per feature
//! position, the distance between the query feature and what the dynamic top-K memory returned.
//! Anomaly score (paper, Sec. "Anomaly score"): `alpha * minmax(S_int) + (1 - alpha) *
//! minmax(S_con)`, alpha = 0.3, where S_int is the L2 interpolation error of frame t and S_con the
//! mean memory addressing error `||v_ij - q_ij||`. Min-max is per test video in the paper, which
//! is not causal; streaming replaces it by z-scores from the package's training statistics
//! (`[calibration]`), with the same alpha.
//!
//! Not in the paper: with `[params] flow_weight = w > 0` and a network output `flow` (magnitude
//! of the flows the model estimated), a third component S_flow (mean flow magnitude of the worst
//! patch) joins: `(1 - w) * (alpha * S_int + (1 - alpha) * S_con) + w * S_flow`, each term
//! normalised as above. `w = 0` (the default) is the paper's score. docs/models.md gives the
//! measured reason for the shipped Ped2 package's weights.
//!
//! Latency: frame t is scored once t+1 has arrived, one frame behind the camera.

use super::{io_index, param_f32, param_str, Recipe, RecipeError, Scored, MAX_COMPONENTS};
use crate::package::ModelPackage;
use crate::scoring::errormap::{squared_error_into, ErrorMap};
use crate::scoring::metrics::minmax_normalize;
use crate::scoring::patch::PatchDetector;
use crate::tensor::Tensor;
use crate::window::FrameWindow;

/// The paper's weight of S_int against S_con.
const PAPER_ALPHA: f32 = 0.3;

/// How the interpolation error map becomes S_int.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntReduce {
    /// Mean squared error over the frame (the paper's L2 interpolation error).
    Mean,
    /// Mean squared error of the worst patch (`[scoring] patch/stride`): a small anomaly in a
    /// wide view is not averaged away. See docs/models.md for why and the measured effect.
    PatchMax,
}

pub struct Bdfi {
    alpha: f32,
    reduce: IntReduce,
    in_prev: usize,
    in_next: usize,
    out_frame: usize,
    out_mem: usize,
    /// Output `flow` and its weight, when the flow component is in use.
    flow: Option<(usize, f32)>,
    channels: usize,
    err: ErrorMap,
    /// The `flow` output copied into a map the patch detector reads (preallocated).
    flow_map: ErrorMap,
    patches: PatchDetector,
    /// (mean, std) of each component on normal training frames, when calibrated.
    stats: Option<[(f32, f32); 3]>,
}

/// Components of the paper's score.
pub const COMPONENTS: &[&str] = &["int", "con"];
/// Components when the flow term is in use.
pub const COMPONENTS_WITH_FLOW: &[&str] = &["int", "con", "flow"];

impl Bdfi {
    pub fn new(pkg: &ModelPackage) -> Result<Self, RecipeError> {
        let m = &pkg.manifest;
        let alpha = param_f32(pkg, "alpha", PAPER_ALPHA, (0.0, 1.0))?;
        let reduce = match param_str(pkg, "int_reduce", "mean", &["mean", "patch_max"])? {
            "patch_max" => IntReduce::PatchMax,
            _ => IntReduce::Mean,
        };
        let (w, h) = (m.input.width as usize, m.input.height as usize);
        let pkg_err = |reason: String| RecipeError::Package {
            package: m.name.clone(),
            reason,
        };
        let in_prev = io_index(pkg, false, "prev")?;
        let in_next = io_index(pkg, false, "next")?;
        let out_frame = io_index(pkg, true, "frame")?;
        let out_mem = io_index(pkg, true, "mem_err")?;
        let flow_weight = param_f32(pkg, "flow_weight", 0.0, (0.0, 1.0))?;
        let flow = if flow_weight > 0.0 {
            let idx = io_index(pkg, true, "flow").map_err(|_| RecipeError::Param {
                package: m.name.clone(),
                key: "flow_weight".into(),
                reason:
                    "is > 0 but the network has no output `flow`; set it to 0 or export the model with a `flow` output"
                        .into(),
            })?;
            let shape = &m.onnx.outputs[idx].shape;
            if shape != &[1, 1, h, w] {
                return Err(pkg_err(format!(
                    "output `flow` must be [1, 1, {h}, {w}], is {shape:?}"
                )));
            }
            Some((idx, flow_weight))
        } else {
            None
        };
        let channels = m.input.channels as usize;
        let frame_shape = &m.onnx.outputs[out_frame].shape;
        if frame_shape != &[1, channels, h, w] {
            return Err(pkg_err(format!(
                "output `frame` must be [1, {channels}, {h}, {w}], is {frame_shape:?}"
            )));
        }
        let patches = pkg
            .patch_detector()
            .map_err(|e| pkg_err(format!("[scoring]: {e}")))?;
        let names = if flow.is_some() {
            COMPONENTS_WITH_FLOW
        } else {
            COMPONENTS
        };
        let stats = m
            .calibration
            .as_ref()
            .map(|c| {
                let mut st = [(0.0, 1.0); 3];
                for (slot, name) in st.iter_mut().zip(names) {
                    let s = c.components.get(*name).ok_or_else(|| {
                        pkg_err(format!(
                            "[calibration] lacks component `{name}` (needs {}); re-run `vigil calib scores`",
                            names.join(", ")
                        ))
                    })?;
                    // std > 0 was checked when the package loaded
                    *slot = (s.mean, s.std);
                }
                Ok::<_, RecipeError>(st)
            })
            .transpose()?;
        Ok(Self {
            alpha,
            reduce,
            in_prev,
            in_next,
            out_frame,
            out_mem,
            flow,
            channels,
            err: ErrorMap::new(w, h).map_err(|e| pkg_err(e.to_string()))?,
            flow_map: ErrorMap::new(w, h).map_err(|e| pkg_err(e.to_string()))?,
            patches,
            stats,
        })
    }
}

impl Bdfi {
    /// The score from normalised components `[int, con, flow]`.
    fn weigh(&self, [int, con, flow]: [f32; 3]) -> f32 {
        let paper = self.alpha * int + (1.0 - self.alpha) * con;
        match self.flow {
            Some((_, w)) => (1.0 - w) * paper + w * flow,
            None => paper,
        }
    }

    /// Per-video min-max of the first `n` component series, then `f` of each frame's values.
    fn per_video(components: &[Vec<f32>], n: usize, f: impl Fn([f32; 3]) -> f32) -> Vec<f32> {
        let mut series: Vec<Vec<f32>> = components.iter().take(n).cloned().collect();
        for s in &mut series {
            // A constant series (e.g. a one-frame video) normalises to zeros; that cannot fail
            // here except for non-finite input, which `score` already rejected.
            let _ = minmax_normalize(s);
        }
        (0..series.first().map_or(0, Vec::len))
            .map(|t| {
                let mut v = [0.0; 3];
                for (v, s) in v.iter_mut().zip(&series) {
                    *v = s[t];
                }
                f(v)
            })
            .collect()
    }
}

impl Recipe for Bdfi {
    fn name(&self) -> &'static str {
        "bdfi"
    }
    fn window_len(&self) -> usize {
        3
    }
    fn latency_frames(&self) -> u32 {
        1
    }
    fn component_names(&self) -> &'static [&'static str] {
        if self.flow.is_some() {
            COMPONENTS_WITH_FLOW
        } else {
            COMPONENTS
        }
    }

    fn prepare(&mut self, window: &FrameWindow, inputs: &mut [Tensor]) -> Result<(), RecipeError> {
        if !window.is_full() || window.len() < 3 {
            return Err(RecipeError::Window {
                needed: 3,
                have: window.len(),
            });
        }
        inputs[self.in_prev]
            .data_mut()
            .copy_from_slice(window.plane(0));
        inputs[self.in_next]
            .data_mut()
            .copy_from_slice(window.plane(2));
        Ok(())
    }

    fn score(&mut self, window: &FrameWindow, outputs: &[Tensor]) -> Result<Scored, RecipeError> {
        let pred = outputs[self.out_frame].data();
        let mem = outputs[self.out_mem].data();
        if !pred.iter().all(|v| v.is_finite()) {
            return Err(RecipeError::NonFinite {
                name: "frame".into(),
            });
        }
        if !mem.iter().all(|v| v.is_finite()) {
            return Err(RecipeError::NonFinite {
                name: "mem_err".into(),
            });
        }
        let target = window.plane(1);
        let hw = self.err.len();
        // Per-pixel squared error summed over channels: one localisation map for gray and RGB.
        squared_error_into(&pred[..hw], &target[..hw], &mut self.err)?;
        for c in 1..self.channels {
            let (p, t) = (&pred[c * hw..(c + 1) * hw], &target[c * hw..(c + 1) * hw]);
            for ((e, a), b) in self.err.as_mut_slice().iter_mut().zip(p).zip(t) {
                *e += (a - b) * (a - b);
            }
        }
        let s_int = match self.reduce {
            IntReduce::Mean => crate::scoring::errormap::mean(&self.err),
            IntReduce::PatchMax => self.patches.detect(&self.err, None)?.max,
        };
        let s_con = mem.iter().sum::<f32>() / mem.len().max(1) as f32;
        let mut components = [0.0; MAX_COMPONENTS];
        components[0] = s_int;
        components[1] = s_con;
        if let Some((idx, _)) = self.flow {
            let flow = outputs[idx].data();
            if !flow.iter().all(|v| v.is_finite()) {
                return Err(RecipeError::NonFinite {
                    name: "flow".into(),
                });
            }
            self.flow_map.as_mut_slice().copy_from_slice(&flow[..hw]);
            components[2] = self.patches.detect(&self.flow_map, None)?.max;
        }
        Ok(Scored {
            frame_index: window.index(1),
            timestamp: window.timestamp(1),
            raw: self.fuse(&components),
            components,
        })
    }

    fn error_map(&self) -> &ErrorMap {
        &self.err
    }

    fn fuse(&self, c: &[f32; MAX_COMPONENTS]) -> f32 {
        let mut n = [c[0], c[1], c[2]];
        if let Some(stats) = self.stats {
            for (v, (mean, std)) in n.iter_mut().zip(stats) {
                *v = (*v - mean) / std;
            }
        }
        self.weigh(n)
    }

    fn paper_scores(&self, components: &[Vec<f32>]) -> Vec<f32> {
        Self::per_video(components, self.component_names().len(), |v| self.weigh(v))
    }

    fn paper_formula_scores(&self, components: &[Vec<f32>]) -> Option<Vec<f32>> {
        if self.flow.is_none() && self.alpha == PAPER_ALPHA {
            return None;
        }
        Some(Self::per_video(components, 2, |[int, con, _]| {
            PAPER_ALPHA * int + (1.0 - PAPER_ALPHA) * con
        }))
    }
}
