//! Foreground objects for object-centric recipes (HF2-VAD): boxes around what moves, and the
//! spatio-temporal cubes cropped around them.
//!
//! HF2-VAD's official pipeline takes boxes from a COCO detector plus "motion boxes" found by
//! frame differencing. Vigil's built-in extractor needs no weights: the difference of t and
//! t-1 finds what moves, a background model learned away from motion fills in the bodies of the
//! movers and drops where they were at t-1 (differencing alone sees both, and only their edges),
//! and connected components of the mask near motion,
//! filtered by area and aspect ratio, padded and de-duplicated, become the boxes
//! ([`MotionExtractor`]). A package may add a detector ONNX (`[detector]`, [`Detector`]):
//! its boxes come first and motion boxes fill in what it missed ([`ObjectFinder`]). The same code crops the cubes at run time and in
//! `vigil dataset export --objects`, so a model is trained on exactly the crops it is served.

mod cube;
pub mod detector;
mod extractor;
mod finder;

pub use cube::{crop_cube_into, crop_resize_into};
pub use detector::{Detection, Detector, DetectorLayout, DetectorSpec};
pub use extractor::MotionExtractor;
pub use finder::ObjectFinder;

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ObjectError {
    #[error("[objects] {key}: {reason}")]
    Param { key: &'static str, reason: String },
    #[error(
        "object extractor input is {got} values, it was built for {width}x{height} = {expected}"
    )]
    InputLen {
        got: usize,
        expected: usize,
        width: usize,
        height: usize,
    },
    #[error("object extractor needs at least 3 frames (t-2, t-1, t), got {got}")]
    History { got: usize },
    #[error("[detector] {path}: {reason}")]
    Detector { path: String, reason: String },
}

/// A box in model-resolution pixels, `x0 <= x < x1`, `y0 <= y < y1`; never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BoundingBox {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl BoundingBox {
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }
    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }
    pub fn area(&self) -> u32 {
        self.width() * self.height()
    }
    pub fn intersection(&self, o: &BoundingBox) -> u32 {
        let w = self.x1.min(o.x1).saturating_sub(self.x0.max(o.x0));
        let h = self.y1.min(o.y1).saturating_sub(self.y0.max(o.y0));
        w * h
    }
    /// Whether the box reaches the edge of a `width x height` frame.
    pub fn touches_border(&self, width: u32, height: u32) -> bool {
        self.x0 == 0 || self.y0 == 0 || self.x1 >= width || self.y1 >= height
    }
    pub fn iou(&self, o: &BoundingBox) -> f32 {
        let i = self.intersection(o) as f32;
        i / ((self.area() + o.area()) as f32 - i)
    }
}

/// `[objects]` of a model package (method = "motion"): the extractor's parameters, at model
/// resolution, intensities in 0..255 units whatever the model's pixel range, and the cube
/// geometry the network takes. The defaults suit Ped2 at 128x192 (people about 11x21 pixels);
/// `min_area` is the per-dataset knob.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectParams {
    /// Side of the square crops (HF2-VAD: 32).
    pub cube: u32,
    /// Most objects per frame (the network's batch); the largest boxes are kept.
    pub slots: u32,
    /// Gaussian sigma applied to every frame before differencing (sensor noise, JPEG blocks).
    pub blur_sigma: f32,
    /// A pixel moves when it differs from both t-1 and t-2 by more than this.
    pub diff_threshold: f32,
    /// A pixel is foreground when it differs from the background by more than this and lies
    /// within `grow` pixels of motion.
    pub bg_threshold: f32,
    /// Background learning rate per frame, applied away from motion (an object that stops is
    /// absorbed; one that moves is not).
    pub bg_rate: f32,
    /// How far (pixels) background differences may extend a moving region.
    pub grow: u32,
    /// Radius of the morphological closing that joins the parts of one object.
    pub close: u32,
    /// Smallest box kept, in pixels (width x height).
    pub min_area: u32,
    /// Largest side ratio kept (either orientation).
    pub max_aspect: f32,
    /// Padding added on each side, as a fraction of the box side (at least one pixel).
    pub pad: f32,
    /// A box is dropped when this fraction of it lies inside a larger kept box.
    pub overlap: f32,
    /// Drop boxes that reach the frame border (after padding): an object partly out of view
    /// makes a cube unlike the whole objects a model is trained on (docs/models.md, hf2vad).
    pub drop_border: bool,
}

impl Default for ObjectParams {
    fn default() -> Self {
        Self {
            cube: 32,
            slots: 16,
            blur_sigma: 1.0,
            diff_threshold: 10.0,
            bg_threshold: 18.0,
            bg_rate: 0.05,
            grow: 2,
            close: 1,
            min_area: 40,
            max_aspect: 5.0,
            pad: 0.1,
            overlap: 0.6,
            drop_border: false,
        }
    }
}

impl ObjectParams {
    pub fn validate(&self) -> Result<(), ObjectError> {
        let bad = |key, reason: &str| {
            Err(ObjectError::Param {
                key,
                reason: reason.to_owned(),
            })
        };
        if !(4..=256).contains(&self.cube) {
            return bad("cube", "must be in 4..=256 pixels, e.g. 32");
        }
        if !(1..=256).contains(&self.slots) {
            return bad("slots", "must be in 1..=256, e.g. 16");
        }
        if !(self.blur_sigma >= 0.0 && self.blur_sigma <= 5.0) {
            return bad("blur_sigma", "must be in [0, 5] (0 = no blur), e.g. 1.0");
        }
        if !(self.diff_threshold > 0.0 && self.diff_threshold < 255.0) {
            return bad(
                "diff_threshold",
                "must be in (0, 255) intensity levels, e.g. 10",
            );
        }
        if !(self.bg_threshold > 0.0 && self.bg_threshold < 255.0) {
            return bad(
                "bg_threshold",
                "must be in (0, 255) intensity levels, e.g. 18",
            );
        }
        if !(self.bg_rate > 0.0 && self.bg_rate <= 1.0) {
            return bad("bg_rate", "must be in (0, 1], e.g. 0.05");
        }
        if self.grow > 32 || self.close > 16 {
            return bad(
                "grow",
                "grow must be at most 32 and close at most 16 pixels",
            );
        }
        if self.min_area == 0 {
            return bad("min_area", "must be at least 1 pixel, e.g. 40");
        }
        if !(self.max_aspect >= 1.0 && self.max_aspect <= 100.0) {
            return bad("max_aspect", "must be in [1, 100], e.g. 5");
        }
        if !(self.pad >= 0.0 && self.pad <= 1.0) {
            return bad("pad", "must be in [0, 1], e.g. 0.1");
        }
        if !(self.overlap > 0.0 && self.overlap <= 1.0) {
            return bad("overlap", "must be in (0, 1], e.g. 0.6");
        }
        Ok(())
    }
}
