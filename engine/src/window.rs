//! The window of recent preprocessed frames a recipe needs (BDFI: t-1, t, t+1; others up to 9).
//!
//! Planes are preallocated and rotated, so pushing a frame costs one preprocessing pass and no
//! allocation. A gap in the stream (frames dropped under load, a camera reconnect) resets the
//! window: a recipe must never be fed frames seconds apart as if they were neighbours.
//!
//! With a flow stage ([`FrameWindow::with_flow`]) the window also holds the optical flow between
//! each pair of neighbouring frames, computed once when the newer frame arrives (each frame is
//! expanded once and reused for both pairs it belongs to).

use crate::flow::{luma_into, Expansion, Farneback, FlowField};
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
    flow: Option<FlowState>,
}

/// Flow buffers, one per slot: `fields[s]` is the flow from the frame in slot `s` to the frame
/// after it.
struct FlowState {
    estimator: Farneback,
    expansions: Vec<Expansion>,
    fields: Vec<FlowField>,
    luma: Vec<f32>,
    channels: usize,
    range: [f32; 2],
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
            flow: None,
        }
    }

    /// A window that also computes the flow between neighbouring frames. `estimator` must be
    /// sized for the planes' width and height; `channels` and `range` describe the planes.
    pub fn with_flow(
        capacity: usize,
        plane_len: usize,
        max_gap: u64,
        estimator: Farneback,
        channels: usize,
        range: [f32; 2],
    ) -> Self {
        assert_eq!(
            plane_len,
            channels * estimator.width() * estimator.height(),
            "flow estimator sized for the window's planes"
        );
        let mut w = Self::new(capacity, plane_len, max_gap);
        w.flow = Some(FlowState {
            expansions: (0..capacity).map(|_| estimator.new_expansion()).collect(),
            fields: (0..capacity).map(|_| estimator.new_field()).collect(),
            luma: vec![0.0; estimator.width() * estimator.height()],
            estimator,
            channels,
            range,
        });
        w
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
        // the newest frame before this one, located before the ring advances
        let prev = self.newest_slot();
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
        if let Some(fs) = self.flow.as_mut() {
            luma_into(&self.planes[slot], fs.channels, &mut fs.luma);
            fs.estimator
                .expand(&fs.luma, fs.range, &mut fs.expansions[slot])
                .expect("the estimator was sized for this window's planes");
            if let Some(p) = prev.filter(|&p| p != slot) {
                // p != slot: the window holds at least two frames here
                let (a, b) = if p < slot {
                    let (lo, hi) = fs.expansions.split_at(slot);
                    (&lo[p], &hi[0])
                } else {
                    let (lo, hi) = fs.expansions.split_at(p);
                    (&hi[0], &lo[slot])
                };
                fs.estimator.flow(a, b, &mut fs.fields[p]);
            }
        }
        Ok(gap)
    }

    /// Flow from frame `i` to frame `i + 1` (0 = oldest). Panics if `i + 1 >= len` or the
    /// window has no flow stage (recipes that read flow are only built with one).
    pub fn flow(&self, i: usize) -> &FlowField {
        assert!(i + 1 < self.len, "flow {i} needs frames {i} and {}", i + 1);
        let fs = self.flow.as_ref().expect("window built with_flow");
        &fs.fields[self.slot(i)]
    }

    fn newest_slot(&self) -> Option<usize> {
        (self.len > 0).then(|| self.slot(self.len - 1))
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
    fn flow_window_holds_the_flow_between_neighbours() {
        use crate::flow::{Farneback, FarnebackParams};
        let (w, h) = (64usize, 48usize);
        let geo = InputGeometry {
            width: w as u32,
            height: h as u32,
            channels: 1,
            pixel_range: [0.0, 255.0],
            resize: ResizeFilter::Bilinear,
        };
        let mut pre = Preprocessor::new(geo);
        let est = Farneback::new(FarnebackParams::default(), w, h).unwrap();
        let mut win = FrameWindow::with_flow(2, w * h, 1, est, 1, [0.0, 255.0]);
        // a texture moving right by one pixel per frame
        let frame = |i: u64| {
            let data: Vec<u8> = (0..w * h)
                .map(|p| {
                    let (x, y) = ((p % w) as f32 - i as f32, (p / w) as f32);
                    (128.0 + 60.0 * (x * 0.4).sin() * (y * 0.3).cos()) as u8
                })
                .collect();
            Frame::new(
                Geometry::new(w as u32, h as u32, PixelLayout::Gray8).unwrap(),
                data,
                i,
            )
            .unwrap()
        };
        for i in 0..3u64 {
            let mut f = frame(i);
            f.index = i;
            win.push(&f, &mut pre).unwrap();
        }
        let fl = win.flow(0);
        let mean_dx: f32 = (12..h - 12)
            .flat_map(|y| (12..w - 12).map(move |x| y * w + x))
            .map(|i| fl.dx()[i])
            .sum::<f32>()
            / ((h - 24) * (w - 24)) as f32;
        assert!((mean_dx - 1.0).abs() < 0.1, "mean dx {mean_dx}");
        // after a gap the window holds one frame and no flow
        let mut f = frame(3);
        f.index = 9;
        assert!(win.push(&f, &mut pre).unwrap());
        assert_eq!(win.len(), 1);
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
