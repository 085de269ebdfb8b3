//! Dense optical flow at model resolution, computed by the engine itself.
//!
//! Two of the five papers (MAAM-Net, the two-stream memory AE) and HF2-VAD need flow at run
//! time. The papers used FlowNet2, whose correlation layers export neither to ONNX nor to
//! TensorRT, so Vigil computes flow with Farnebäck's polynomial-expansion method (G. Farnebäck,
//! "Two-frame motion estimation based on polynomial expansion", SCIA 2003), numerically the
//! variant OpenCV's `calcOpticalFlowFarneback` implements (flags = 0: box-filtered normal
//! equations). `engine/tests/flow_opencv.rs` checks it against OpenCV on real Ped2 frames, and
//! `vigil dataset export --flow` writes the training flows with this same code, so training and
//! serving see identical flow.
//!
//! Per frame pair nothing is allocated: [`Farneback`] owns every buffer, sized at construction.
//! A frame's polynomial expansion is computed once ([`Expansion`]) and reused when that frame
//! becomes the "previous" frame of the next pair, which halves the cost in a stream.

mod farneback;
pub(crate) mod imgproc;

pub use farneback::{Expansion, Farneback};

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum FlowError {
    #[error("[flow] {key}: {reason}")]
    Param { key: &'static str, reason: String },
    #[error(
        "flow input is {got} values, the estimator was built for {width}x{height} = {expected}"
    )]
    InputLen {
        got: usize,
        expected: usize,
        width: usize,
        height: usize,
    },
    #[error("flow image {width}x{height} is too small (at least 8x8)")]
    TooSmall { width: usize, height: usize },
}

/// Parameters of [`Farneback`], named and defaulted as OpenCV's `calcOpticalFlowFarneback`
/// arguments (the defaults are the values OpenCV's documentation and most anomaly-detection
/// code use: 0.5, 3, 15, 3, 5, 1.2).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FarnebackParams {
    /// Scale between pyramid levels, in (0, 1).
    pub pyr_scale: f32,
    /// Pyramid levels above the full resolution (fewer are used when a level would be smaller
    /// than 32 pixels, as OpenCV does).
    pub levels: u32,
    /// Side of the box filter over the normal equations (odd, >= 3).
    pub winsize: u32,
    /// Iterations per level.
    pub iterations: u32,
    /// Neighbourhood of the polynomial expansion: 5 or 7.
    pub poly_n: u32,
    /// Gaussian applicability of the expansion (1.1 for poly_n 5, 1.5 for 7 in OpenCV's docs).
    pub poly_sigma: f32,
}

impl Default for FarnebackParams {
    fn default() -> Self {
        Self {
            pyr_scale: 0.5,
            levels: 3,
            winsize: 15,
            iterations: 3,
            poly_n: 5,
            poly_sigma: 1.2,
        }
    }
}

impl FarnebackParams {
    pub fn validate(&self) -> Result<(), FlowError> {
        let bad = |key, reason: &str| {
            Err(FlowError::Param {
                key,
                reason: reason.to_owned(),
            })
        };
        if !(self.pyr_scale > 0.0 && self.pyr_scale < 1.0) {
            return bad("pyr_scale", "must be in (0, 1), e.g. 0.5");
        }
        if self.levels > 10 {
            return bad("levels", "must be at most 10");
        }
        if self.winsize < 3 || self.winsize & 1 == 0 || self.winsize > 101 {
            return bad("winsize", "must be odd and in 3..=101, e.g. 15");
        }
        if self.iterations == 0 || self.iterations > 50 {
            return bad("iterations", "must be in 1..=50, e.g. 3");
        }
        if self.poly_n != 5 && self.poly_n != 7 {
            return bad("poly_n", "must be 5 or 7");
        }
        if !(self.poly_sigma > 0.1 && self.poly_sigma < 10.0) {
            return bad("poly_sigma", "must be in (0.1, 10), e.g. 1.2 for poly_n 5");
        }
        Ok(())
    }
}

/// The luma of a model-input plane (CHW): the plane itself for one channel, BT.601 weights for
/// RGB. Flow is estimated on luma whatever the network sees.
pub fn luma_into(plane: &[f32], channels: usize, out: &mut [f32]) {
    let n = out.len();
    if channels == 3 && plane.len() >= 3 * n {
        let (r, rest) = plane.split_at(n);
        let (g, b) = rest.split_at(n);
        for (((o, r), g), b) in out.iter_mut().zip(r).zip(g).zip(b) {
            *o = 0.299 * r + 0.587 * g + 0.114 * b;
        }
    } else {
        out.copy_from_slice(&plane[..n]);
    }
}

/// A dense flow field, planar: `dx` for every pixel, then `dy` (the `[2, H, W]` layout networks
/// take). Displacements are in pixels of the image the flow was computed on; flow at (x, y)
/// maps the first frame's pixel to `(x + dx, y + dy)` in the second.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowField {
    width: usize,
    height: usize,
    data: Vec<f32>,
}

impl FlowField {
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0.0; 2 * width * height],
        }
    }
    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    /// `[dx plane, dy plane]`.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
    pub fn dx(&self) -> &[f32] {
        &self.data[..self.width * self.height]
    }
    pub fn dy(&self) -> &[f32] {
        &self.data[self.width * self.height..]
    }
    pub(crate) fn planes_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        let n = self.width * self.height;
        self.data.split_at_mut(n)
    }
}
