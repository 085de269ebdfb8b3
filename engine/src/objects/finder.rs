//! The object stage a recipe and the dataset exporter share: motion boxes, and a detector's
//! when the package has one.

use super::{
    detector::merge_boxes, BoundingBox, Detector, DetectorSpec, MotionExtractor, ObjectError,
    ObjectParams,
};
use crate::preprocess::InputGeometry;
use std::path::Path;

/// Boxes of frame t: the motion extractor's alone, or (with a detector) every detection plus
/// the motion boxes no detection covers, as HF2-VAD's pipeline joins them. The motion
/// extractor runs every frame either way: its background model must follow the scene.
pub struct ObjectFinder {
    motion: MotionExtractor,
    detector: Option<Detector>,
    boxes: Vec<BoundingBox>,
}

impl ObjectFinder {
    pub fn new(motion: MotionExtractor, detector: Option<Detector>) -> Self {
        let slots = motion.params().slots as usize;
        Self {
            motion,
            detector,
            boxes: Vec::with_capacity(slots),
        }
    }

    /// The stage for model-input frames of `geo`: the motion extractor with `params`, and the
    /// detector `spec` (its file relative to `dir`, a package directory) when there is one.
    pub fn build(
        params: ObjectParams,
        geo: &InputGeometry,
        detector: Option<(&DetectorSpec, &Path)>,
    ) -> Result<Self, ObjectError> {
        let (w, h, c) = (
            geo.width as usize,
            geo.height as usize,
            geo.channels as usize,
        );
        let motion = MotionExtractor::new(params, w, h, c, geo.pixel_range)?;
        let detector = detector
            .map(|(spec, dir)| {
                Detector::load(spec, dir, geo, params.slots as usize, params.min_area)
            })
            .transpose()?;
        Ok(Self::new(motion, detector))
    }

    pub fn params(&self) -> &ObjectParams {
        self.motion.params()
    }

    pub fn motion(&self) -> &MotionExtractor {
        &self.motion
    }

    pub fn detector(&self) -> Option<&Detector> {
        self.detector.as_ref()
    }

    /// Forgets the background model (a new stream).
    pub fn reset(&mut self) {
        self.motion.reset();
    }

    /// Boxes of the newest of `frames` (model-input planes, oldest first, at least 3); see
    /// [`MotionExtractor::detect`] for `index`.
    pub fn find(&mut self, index: u64, frames: &[&[f32]]) -> Result<&[BoundingBox], ObjectError> {
        let p = *self.motion.params();
        let motion = self.motion.detect(index, frames)?;
        match self.detector.as_mut() {
            None => {
                self.boxes.clear();
                self.boxes.extend_from_slice(motion);
            }
            Some(d) => {
                let cover = d.spec().cover;
                let newest = frames.last().ok_or(ObjectError::History { got: 0 })?;
                let found = d.detect(newest)?;
                merge_boxes(found, motion, cover, p.slots as usize, &mut self.boxes);
                // The motion boxes were filtered by the extractor; detections are filtered here.
                if p.drop_border {
                    let (w, h) = self.motion.frame_size();
                    self.boxes.retain(|b| !b.touches_border(w, h));
                }
            }
        }
        Ok(&self.boxes)
    }
}
