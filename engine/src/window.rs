//! The window of recent preprocessed frames a recipe needs (BDFI: t-1, t, t+1; others up to 9).
//!
//! Planes are preallocated and rotated, so pushing a frame costs one preprocessing pass and no
//! allocation. A gap in the stream (frames dropped under load, a camera reconnect) resets the
//! window: a recipe must never be fed frames seconds apart as if they were neighbours.

use crate::frame::Frame;
use crate::preprocess::{PreprocessError, Preprocessor};
use std::time::Duration;

pub struct FrameWindow {
    planes: Vec<Vec<f32>>,
    indices: Vec<u64>,
    stamps: Vec<Duration>,
    /// Slot of the oldest frame.
    head: usize,
    len: usize,
    /// Largest allowed difference between consecutive frame indices (1 = strictly consecutive).
    max_gap: u64,
    resets: u64,
}

impl FrameWindow {
    pub fn new(capacity: usize, plane_len: usize, max_gap: u64) -> Self {
        assert!(capacity > 0, "a window holds at least one frame");
        Self {
            planes: (0..capacity).map(|_| vec![0.0; plane_len]).collect(),
            indices: vec![0; capacity],
            stamps: vec![Duration::ZERO; capacity],
            head: 0,
            len: 0,
            max_gap: max_gap.max(1),
            resets: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.planes.len()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn is_full(&self) -> bool {
        self.len == self.planes.len()
    }
    /// Number of times a gap emptied the window.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    pub fn reset(&mut self) {
        self.len = 0;
        self.head = 0;
    }

    /// Preprocesses `frame` into the newest slot. Returns `true` if a gap reset the window first.
    pub fn push(&mut self, frame: &Frame, pre: &mut Preprocessor) -> Result<bool, PreprocessError> {
        let mut gap = false;
        if let Some(last) = self.newest_index() {
            if frame.index <= last || frame.index - last > self.max_gap {
                gap = true;
                self.resets += 1;
                log::debug!("window reset: frame {} after {}", frame.index, last);
                self.reset();
            }
        }
        let cap = self.planes.len();
        let slot = if self.len < cap {
            (self.head + self.len) % cap
        } else {
            let s = self.head;
            self.head = (self.head + 1) % cap;
            s
        };
        // Preprocess before committing the slot so a failed frame leaves the window unchanged.
        pre.run(frame, &mut self.planes[slot])?;
        self.indices[slot] = frame.index;
        self.stamps[slot] = frame.timestamp;
        if self.len < cap {
            self.len += 1;
        }
        Ok(gap)
    }

    fn slot(&self, i: usize) -> usize {
        (self.head + i) % self.planes.len()
    }

    /// Plane `i`, 0 = oldest. Panics if `i >= len` (recipes only read full windows).
    pub fn plane(&self, i: usize) -> &[f32] {
        assert!(i < self.len, "window index {i} out of {} frames", self.len);
        &self.planes[self.slot(i)]
    }
    pub fn index(&self, i: usize) -> u64 {
        assert!(i < self.len);
        self.indices[self.slot(i)]
    }
    pub fn timestamp(&self, i: usize) -> Duration {
        assert!(i < self.len);
        self.stamps[self.slot(i)]
    }
    pub fn newest_index(&self) -> Option<u64> {
        (self.len > 0).then(|| self.index(self.len - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Geometry, PixelLayout};
    use crate::preprocess::{InputGeometry, ResizeFilter};

    fn setup() -> (Preprocessor, Frame) {
        let geo = InputGeometry {
            width: 2,
            height: 1,
            channels: 1,
            pixel_range: [0.0, 255.0],
            resize: ResizeFilter::Bilinear,
        };
        let f = Frame::new(
            Geometry::new(2, 1, PixelLayout::Gray8).unwrap(),
            vec![0, 0],
            0,
        )
        .unwrap();
        (Preprocessor::new(geo), f)
    }

    #[test]
    fn keeps_the_newest_frames_in_order() {
        let (mut pre, mut f) = setup();
        let mut w = FrameWindow::new(3, 2, 1);
        for i in 0..5u64 {
            f.index = i;
            f.data_mut().fill(i as u8);
            assert!(!w.push(&f, &mut pre).unwrap());
        }
        assert!(w.is_full());
        assert_eq!(
            (0..3).map(|i| w.index(i)).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert_eq!(w.plane(0), &[2.0, 2.0]);
        assert_eq!(w.plane(2), &[4.0, 4.0]);
    }

    #[test]
    fn a_gap_resets_the_window() {
        let (mut pre, mut f) = setup();
        let mut w = FrameWindow::new(3, 2, 1);
        for i in [0u64, 1, 2, 5] {
            f.index = i;
            let gap = w.push(&f, &mut pre).unwrap();
            assert_eq!(gap, i == 5);
        }
        assert_eq!(w.len(), 1);
        assert_eq!(w.resets(), 1);
        // a repeated or backwards index (source restarted) is a gap too
        f.index = 5;
        assert!(w.push(&f, &mut pre).unwrap());
    }

    #[test]
    fn tolerated_gap() {
        let (mut pre, mut f) = setup();
        let mut w = FrameWindow::new(3, 2, 3);
        for i in [0u64, 3, 5] {
            f.index = i;
            assert!(!w.push(&f, &mut pre).unwrap());
        }
        assert!(w.is_full());
    }
}
