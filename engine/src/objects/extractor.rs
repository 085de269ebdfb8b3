//! The built-in motion/foreground extractor (no weights).

use super::{BoundingBox, ObjectError, ObjectParams};
use crate::flow::imgproc::{gaussian_blur, gaussian_kernel};
use crate::flow::luma_into;

/// Most frames the background is seeded from.
const SEED_FRAMES: usize = 5;

/// Finds moving objects frame by frame. Owns every buffer, sized at construction, so
/// [`MotionExtractor::detect`] allocates nothing.
///
/// The background model is seeded from the frames handed in (per-pixel median) whenever the stream starts or
/// breaks (the frame index does not follow the previous call's), so a replay of the same frames
/// always yields the same boxes, at run time and in `vigil dataset export --objects`.
pub struct MotionExtractor {
    params: ObjectParams,
    width: usize,
    height: usize,
    channels: usize,
    range: [f32; 2],
    kernel: Vec<f32>,
    luma: Vec<f32>,
    tmp: Vec<f32>,
    /// Blurred frames in 0..255 units: `[seed scratch, t-1, t]`.
    blurred: [Vec<f32>; 3],
    bg: Vec<f32>,
    /// Per pixel, the seed frames' values (`SEED_FRAMES` per pixel).
    seed: Vec<f32>,
    motion: Vec<u8>,
    near_motion: Vec<u8>,
    mask: Vec<u8>,
    scratch: Vec<u8>,
    seen: Vec<u8>,
    stack: Vec<u32>,
    candidates: Vec<BoundingBox>,
    boxes: Vec<BoundingBox>,
    last_index: Option<u64>,
}

impl MotionExtractor {
    /// `channels` and `range` describe the model-input planes that [`Self::detect`] receives.
    pub fn new(
        params: ObjectParams,
        width: usize,
        height: usize,
        channels: usize,
        range: [f32; 2],
    ) -> Result<Self, ObjectError> {
        params.validate()?;
        let n = width * height;
        if width < 4 || height < 4 {
            return Err(ObjectError::Param {
                key: "cube",
                reason: format!("model resolution {width}x{height} is too small for objects"),
            });
        }
        let kernel = if params.blur_sigma > 0.0 {
            let k = 2 * (3.0 * params.blur_sigma).ceil() as usize + 1;
            gaussian_kernel(k, params.blur_sigma as f64)
        } else {
            vec![1.0]
        };
        Ok(Self {
            params,
            width,
            height,
            channels,
            range,
            kernel,
            luma: vec![0.0; n],
            tmp: vec![0.0; n],
            blurred: [vec![0.0; n], vec![0.0; n], vec![0.0; n]],
            bg: vec![0.0; n],
            seed: vec![0.0; n * SEED_FRAMES],
            motion: vec![0; n],
            near_motion: vec![0; n],
            mask: vec![0; n],
            scratch: vec![0; n],
            seen: vec![0; n],
            stack: Vec::with_capacity(n),
            candidates: Vec::with_capacity(n / 4 + 1),
            boxes: Vec::with_capacity(params.slots as usize),
            last_index: None,
        })
    }

    /// `(width, height)` of the frames it takes.
    pub fn frame_size(&self) -> (u32, u32) {
        (self.width as u32, self.height as u32)
    }

    pub fn params(&self) -> &ObjectParams {
        &self.params
    }

    /// Forgets the background; the next call seeds it again.
    pub fn reset(&mut self) {
        self.last_index = None;
    }

    /// Boxes of the moving objects in the newest of `frames` (model-input planes, oldest first,
    /// at least t-2, t-1, t), largest first, at most `slots`. `index` is the newest frame's
    /// index in its stream.
    pub fn detect(&mut self, index: u64, frames: &[&[f32]]) -> Result<&[BoundingBox], ObjectError> {
        let n = self.width * self.height;
        if frames.len() < 3 {
            return Err(ObjectError::History { got: frames.len() });
        }
        if let Some(bad) = frames.iter().find(|f| f.len() != n * self.channels) {
            return Err(ObjectError::InputLen {
                got: bad.len(),
                expected: n * self.channels,
                width: self.width,
                height: self.height,
            });
        }
        let fresh = !matches!(self.last_index, Some(l) if index == l.wrapping_add(1));
        self.last_index = Some(index);
        if fresh {
            self.seed_background(frames);
        }
        // only t-1 and t are differenced; slot 0 is the seed's scratch
        let k = frames.len();
        for (slot, f) in frames[k - 2..].iter().enumerate() {
            self.blur_into(f, slot + 1);
        }
        let p = self.params;
        let [_, b1, b0] = &self.blurred;
        // What changed since t-1 (the object now and where it was), grown a little: the only
        // places a background difference may count, so ghosts and lighting drift far from motion
        // never become boxes.
        for i in 0..n {
            self.motion[i] = u8::from((b0[i] - b1[i]).abs() > p.diff_threshold);
        }
        dilate(
            &self.motion,
            &mut self.near_motion,
            &mut self.scratch,
            self.width,
            self.height,
            p.grow as usize,
        );
        // Differs from the background: the object now, not where it was at t-1 (that is
        // background again), and its whole body, not only the edges differencing sees.
        let cells = self
            .mask
            .iter_mut()
            .zip(&self.near_motion)
            .zip(&mut self.bg)
            .zip(b0);
        for (((m, &near), bg), &v) in cells {
            let fg = near == 1 && (v - *bg).abs() > p.bg_threshold;
            *m = u8::from(fg);
            // learn only away from motion: a slow walker's uniform body changes little from
            // frame to frame and would otherwise fade into the background; a ghost (something
            // that was there when the model was seeded) does not move and fades at `bg_rate`
            if near == 0 {
                *bg += p.bg_rate * (v - *bg);
            }
        }
        // closing: dilate into near_motion (free now), erode back into mask
        let r = p.close as usize;
        dilate(
            &self.mask,
            &mut self.near_motion,
            &mut self.scratch,
            self.width,
            self.height,
            r,
        );
        erode(
            &self.near_motion,
            &mut self.mask,
            &mut self.scratch,
            self.width,
            self.height,
            r,
        );
        self.components();
        self.select();
        Ok(&self.boxes)
    }

    /// Per-pixel median of the (at most [`SEED_FRAMES`] newest) blurred frames: an object that
    /// moves covers any one pixel in only a few of them, so it leaves no ghost in the seed.
    fn seed_background(&mut self, frames: &[&[f32]]) {
        let frames = &frames[frames.len().saturating_sub(SEED_FRAMES)..];
        let m = frames.len();
        for (j, f) in frames.iter().enumerate() {
            self.blur_into(f, 0);
            for (i, v) in self.blurred[0].iter().enumerate() {
                self.seed[i * SEED_FRAMES + j] = *v;
            }
        }
        for (i, bg) in self.bg.iter_mut().enumerate() {
            let v = &mut self.seed[i * SEED_FRAMES..i * SEED_FRAMES + m];
            v.sort_unstable_by(f32::total_cmp);
            *bg = v[m / 2];
        }
    }

    /// The boxes of the last [`Self::detect`].
    pub fn boxes(&self) -> &[BoundingBox] {
        &self.boxes
    }

    fn blur_into(&mut self, plane: &[f32], slot: usize) {
        luma_into(plane, self.channels, &mut self.luma);
        let [lo, hi] = self.range;
        let s = 255.0 / (hi - lo);
        self.luma.iter_mut().for_each(|v| *v = (*v - lo) * s);
        gaussian_blur(
            &self.luma,
            &mut self.blurred[slot],
            &mut self.tmp,
            self.width,
            self.height,
            &self.kernel,
        );
    }

    /// Bounding boxes of the 8-connected components of `mask` into `candidates`.
    fn components(&mut self) {
        let (w, h) = (self.width, self.height);
        self.seen.fill(0);
        self.candidates.clear();
        for start in 0..w * h {
            if self.mask[start] == 0 || self.seen[start] == 1 {
                continue;
            }
            self.seen[start] = 1;
            self.stack.clear();
            self.stack.push(start as u32);
            let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
            while let Some(i) = self.stack.pop() {
                let (x, y) = (i as usize % w, i as usize / w);
                x0 = x0.min(x);
                x1 = x1.max(x + 1);
                y0 = y0.min(y);
                y1 = y1.max(y + 1);
                for ny in y.saturating_sub(1)..(y + 2).min(h) {
                    for nx in x.saturating_sub(1)..(x + 2).min(w) {
                        let j = ny * w + nx;
                        if self.mask[j] == 1 && self.seen[j] == 0 {
                            self.seen[j] = 1;
                            // every pixel is pushed at most once: capacity w*h suffices
                            self.stack.push(j as u32);
                        }
                    }
                }
            }
            self.candidates.push(BoundingBox {
                x0: x0 as u32,
                y0: y0 as u32,
                x1: x1 as u32,
                y1: y1 as u32,
            });
        }
    }

    /// Size and shape filter, padding, the border filter, overlap suppression and the slot
    /// limit.
    fn select(&mut self) {
        let p = self.params;
        let (w, h) = (self.width as u32, self.height as u32);
        self.candidates.retain(|b| {
            let (bw, bh) = (b.width() as f32, b.height() as f32);
            b.area() >= p.min_area && bw.max(bh) <= p.max_aspect * bw.min(bh)
        });
        for b in self.candidates.iter_mut() {
            let px = ((p.pad * b.width() as f32).round() as u32).max(1);
            let py = ((p.pad * b.height() as f32).round() as u32).max(1);
            *b = BoundingBox {
                x0: b.x0.saturating_sub(px),
                y0: b.y0.saturating_sub(py),
                x1: (b.x1 + px).min(w),
                y1: (b.y1 + py).min(h),
            };
        }
        if p.drop_border {
            self.candidates.retain(|b| !b.touches_border(w, h));
        }
        // largest first; ties broken by position so the order never depends on the sort
        self.candidates
            .sort_unstable_by_key(|b| (std::cmp::Reverse(b.area()), b.y0, b.x0));
        self.boxes.clear();
        for b in &self.candidates {
            if self.boxes.len() == p.slots as usize {
                log::trace!(
                    "more moving objects than {} slots; smallest dropped",
                    p.slots
                );
                break;
            }
            let covered = self
                .boxes
                .iter()
                .any(|k| k.intersection(b) as f32 >= p.overlap * b.area() as f32);
            if !covered {
                self.boxes.push(*b);
            }
        }
    }
}

/// Square max filter of radius `r` (separable: rows into `tmp`, then columns).
fn dilate(src: &[u8], dst: &mut [u8], tmp: &mut [u8], w: usize, h: usize, r: usize) {
    morph(src, dst, tmp, w, h, r, |a, b| a.max(b));
}

/// Square min filter of radius `r`; the window is clipped at the border (outside never counts as
/// background), so objects touching the border are not eaten from that side.
fn erode(src: &[u8], dst: &mut [u8], tmp: &mut [u8], w: usize, h: usize, r: usize) {
    morph(src, dst, tmp, w, h, r, |a, b| a.min(b));
}

fn morph(
    src: &[u8],
    dst: &mut [u8],
    tmp: &mut [u8],
    w: usize,
    h: usize,
    r: usize,
    op: fn(u8, u8) -> u8,
) {
    if r == 0 {
        dst.copy_from_slice(src);
        return;
    }
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let (a, b) = (x.saturating_sub(r), (x + r + 1).min(w));
            tmp[y * w + x] = row[a..b].iter().copied().fold(row[x], op);
        }
    }
    for y in 0..h {
        let (a, b) = (y.saturating_sub(r), (y + r + 1).min(h));
        for x in 0..w {
            let mut v = tmp[y * w + x];
            for yy in a..b {
                v = op(v, tmp[yy * w + x]);
            }
            dst[y * w + x] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(w: usize, h: usize, objects: &[(usize, usize, usize, usize)]) -> Vec<f32> {
        // gray background at 0.5 on [0, 1], bright rectangles (x, y, w, h)
        let mut p = vec![0.5; w * h];
        for &(x, y, ow, oh) in objects {
            for yy in y..y + oh {
                for xx in x..x + ow {
                    p[yy * w + xx] = 0.95;
                }
            }
        }
        p
    }

    fn extractor(w: usize, h: usize) -> MotionExtractor {
        MotionExtractor::new(ObjectParams::default(), w, h, 1, [0.0, 1.0]).unwrap()
    }

    #[test]
    fn a_moving_block_is_boxed_where_it_is_now() {
        let (w, h) = (96, 64);
        let frames: Vec<Vec<f32>> = (0..5)
            .map(|t| scene(w, h, &[(6 + 10 * t, 20, 8, 16)]))
            .collect();
        let refs: Vec<&[f32]> = frames.iter().map(|f| f.as_slice()).collect();
        let mut ex = extractor(w, h);
        let boxes = ex.detect(4, &refs).unwrap().to_vec();
        assert_eq!(boxes.len(), 1, "{boxes:?}");
        let now = BoundingBox {
            x0: 46,
            y0: 20,
            x1: 54,
            y1: 36,
        };
        assert!(
            boxes[0].intersection(&now) == now.area() && boxes[0].iou(&now) > 0.4,
            "{:?} vs {now:?}",
            boxes[0]
        );
    }

    #[test]
    fn a_still_scene_yields_no_box_and_small_or_thin_things_are_dropped() {
        let (w, h) = (96, 64);
        let still = scene(w, h, &[(10, 20, 8, 16)]);
        let mut ex = extractor(w, h);
        assert!(ex
            .detect(4, &[&still, &still, &still, &still, &still])
            .unwrap()
            .is_empty());
        // a 3x3 speck and a 40x2 line move: both below min_area or beyond max_aspect
        let frames: Vec<Vec<f32>> = (0..5)
            .map(|t| scene(w, h, &[(5 + 3 * t, 5, 3, 3), (20, 40 + 3 * t, 40, 2)]))
            .collect();
        let refs: Vec<&[f32]> = frames.iter().map(|f| f.as_slice()).collect();
        let mut ex = extractor(w, h);
        assert!(ex.detect(4, &refs).unwrap().is_empty());
    }

    #[test]
    fn slots_keep_the_largest_objects_and_bad_input_is_an_error() {
        let (w, h) = (128, 64);
        let frames: Vec<Vec<f32>> = (0..3)
            .map(|t| {
                scene(
                    w,
                    h,
                    &[
                        (2 + 9 * t, 5, 8, 10),
                        (40 + 11 * t, 5, 10, 14),
                        (70 + 13 * t, 30, 12, 20),
                    ],
                )
            })
            .collect();
        let refs: Vec<&[f32]> = frames.iter().map(|f| f.as_slice()).collect();
        let p = ObjectParams {
            slots: 2,
            ..ObjectParams::default()
        };
        let mut ex = MotionExtractor::new(p, w, h, 1, [0.0, 1.0]).unwrap();
        let boxes = ex.detect(2, &refs).unwrap().to_vec();
        assert_eq!(boxes.len(), 2);
        assert!(boxes[0].area() >= boxes[1].area());
        assert!(
            boxes.iter().all(|b| b.y1 - b.y0 > 14),
            "the smallest object is the one dropped: {boxes:?}"
        );
        assert_eq!(
            ex.detect(3, &refs[..2]).unwrap_err(),
            ObjectError::History { got: 2 }
        );
        let short = vec![0.0; 10];
        assert!(matches!(
            ex.detect(3, &[&short, &short, &short]),
            Err(ObjectError::InputLen { got: 10, .. })
        ));
    }

    #[test]
    fn drop_border_removes_objects_that_reach_the_frame_edge() {
        let (w, h) = (96, 64);
        // one block sliding down the left edge, one moving inside the frame
        let frames: Vec<Vec<f32>> = (0..5)
            .map(|t| scene(w, h, &[(0, 4 + 4 * t, 10, 16), (40 + 3 * t, 30, 8, 16)]))
            .collect();
        let refs: Vec<&[f32]> = frames.iter().map(|f| f.as_slice()).collect();
        let all = extractor(w, h).detect(4, &refs).unwrap().to_vec();
        assert!(all.iter().any(|b| b.x0 == 0), "{all:?}");
        assert!(all.iter().any(|b| b.x0 > 30), "{all:?}");
        let p = ObjectParams {
            drop_border: true,
            ..ObjectParams::default()
        };
        let mut ex = MotionExtractor::new(p, w, h, 1, [0.0, 1.0]).unwrap();
        let inner = ex.detect(4, &refs).unwrap();
        assert_eq!(inner.len(), 1, "{inner:?}");
        assert!(!inner[0].touches_border(w as u32, h as u32));
    }
}
