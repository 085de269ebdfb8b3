//! Patch detector: the strongest local error and where it is.
//!
//! Patch scores are the sums (or means) of the error map over `height x width` windows placed
//! on a stride grid, exactly like a "valid" convolution with an all-ones kernel
//! (`F.conv2d(err, ones(1, 1, ph, pw), stride=(sy, sx))` in MAAM-Net's PSCD). An integral image
//! makes each window O(1), so a large patch costs no more than a small one.

use serde::{Deserialize, Serialize};

use super::{invalid, ErrorMap, Result, ScoringError};

/// Most regions reported per frame. A fixed bound keeps [`PatchResult`] allocation-free and
/// MQTT payloads small; a frame with more than 16 separate anomalies is reported by its 16
/// strongest.
pub const MAX_REGIONS: usize = 16;

/// A patch overlapping an already kept, higher-scoring patch by more than this IoU is dropped.
/// Compared as `10 * intersection > 3 * union` in integers so that the cut is exact.
const NMS_IOU_NUM: u64 = 3;
const NMS_IOU_DEN: u64 = 10;

/// Regions of one frame, strongest first.
pub type Regions = heapless::Vec<Region, MAX_REGIONS>;

/// Patch geometry in pixels of the error map (`height`/`stride_y` along rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchConfig {
    pub height: usize,
    pub width: usize,
    pub stride_y: usize,
    pub stride_x: usize,
}

impl PatchConfig {
    /// Checks that every value is non-zero and that one patch fits in a `map_width x map_height`
    /// map.
    pub fn validate(&self, map_width: usize, map_height: usize) -> Result<()> {
        for (name, v) in [
            ("height", self.height),
            ("width", self.width),
            ("stride_y", self.stride_y),
            ("stride_x", self.stride_x),
        ] {
            if v == 0 {
                return Err(invalid(
                    "patch config",
                    format!("{name} must be at least 1, got 0"),
                ));
            }
        }
        if self.height > map_height || self.width > map_width {
            return Err(invalid(
                "patch config",
                format!(
                    "a {}x{} (HxW) patch does not fit in a {}x{} (HxW) error map",
                    self.height, self.width, map_height, map_width
                ),
            ));
        }
        Ok(())
    }
}

/// How a patch's pixels are reduced to its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PatchReduce {
    /// Sum of the errors (MAAM-Net's PSCD).
    #[default]
    Sum,
    /// Sum divided by the patch area, so scores do not depend on the patch size.
    Mean,
}

/// A rectangle in normalised image coordinates (`x`, `w` as fractions of the width, `y`, `h` of
/// the height; the top-left corner is (0, 0)) with its patch score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Region {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub score: f32,
}

/// What [`PatchDetector::detect`] found in one map.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchResult {
    /// The highest patch score: the frame's raw score for patch-based recipes.
    pub max: f32,
    /// The patch that has it (the first in row-major grid order on ties).
    pub argmax: Region,
    /// Non-overlapping patches at or above the threshold, strongest first.
    pub regions: Regions,
}

/// Patch scorer with its buffers preallocated for one map geometry.
#[derive(Debug, Clone)]
pub struct PatchDetector {
    cfg: PatchConfig,
    reduce: PatchReduce,
    map_w: usize,
    map_h: usize,
    grid_x: usize,
    grid_y: usize,
    /// `(map_h + 1) x (map_w + 1)` summed-area table with a zero first row and column. f64
    /// because an f32 running sum over ~10^5 pixels loses the small differences that patch
    /// sums are made of.
    integral: Vec<f64>,
    /// Candidate patches for suppression: (score, grid index). Capacity = number of patches.
    candidates: Vec<(f32, u32)>,
}

impl PatchDetector {
    /// A detector for `map_width x map_height` maps. Fails if the configuration is invalid for
    /// that geometry.
    pub fn new(
        cfg: PatchConfig,
        reduce: PatchReduce,
        map_width: usize,
        map_height: usize,
    ) -> Result<Self> {
        // Same size limits as ErrorMap, so any map this accepts can exist and vice versa.
        super::errormap::checked_len(map_width, map_height)?;
        cfg.validate(map_width, map_height)?;
        let grid_y = (map_height - cfg.height) / cfg.stride_y + 1;
        let grid_x = (map_width - cfg.width) / cfg.stride_x + 1;
        let patches = grid_x * grid_y;
        if u32::try_from(patches).is_err() {
            return Err(invalid("patch config", "too many patches for one map"));
        }
        Ok(Self {
            cfg,
            reduce,
            map_w: map_width,
            map_h: map_height,
            grid_x,
            grid_y,
            integral: vec![0.0; (map_width + 1) * (map_height + 1)],
            candidates: Vec::with_capacity(patches),
        })
    }

    pub fn config(&self) -> PatchConfig {
        self.cfg
    }

    /// Number of patch positions as (rows, columns).
    pub fn grid(&self) -> (usize, usize) {
        (self.grid_y, self.grid_x)
    }

    /// Scores every patch of `map`.
    ///
    /// With `Some(threshold)`, `regions` holds patches scoring `>= threshold`; with `None`,
    /// the strongest patches regardless of score (localisation without a calibrated threshold).
    /// Either way, greedy non-maximum suppression keeps a patch only if its IoU with every
    /// stronger kept patch is at most 0.3, up to [`MAX_REGIONS`].
    ///
    /// Fails if the map's geometry differs from the detector's or it holds NaN or infinity
    /// (a non-finite score would silently win or lose every comparison downstream).
    pub fn detect(&mut self, map: &ErrorMap, threshold: Option<f32>) -> Result<PatchResult> {
        if map.width() != self.map_w || map.height() != self.map_h {
            return Err(ScoringError::ShapeMismatch {
                what: "PatchDetector::detect map",
                expected_w: self.map_w,
                expected_h: self.map_h,
                got_w: map.width(),
                got_h: map.height(),
            });
        }
        if threshold.is_some_and(|t| t.is_nan()) {
            return Err(ScoringError::NonFinite {
                what: "patch threshold",
            });
        }
        self.build_integral(map);
        // Finite f32 values cannot overflow an f64 sum of this size, so a non-finite total
        // means some pixel was NaN or infinite; one check replaces a scan of the map.
        if !self.integral[self.integral.len() - 1].is_finite() {
            return Err(ScoringError::NonFinite {
                what: "error map pixel",
            });
        }

        let area = (self.cfg.height * self.cfg.width) as f64;
        let mut best = (f32::NEG_INFINITY, 0u32);
        self.candidates.clear();
        for gy in 0..self.grid_y {
            for gx in 0..self.grid_x {
                let s = self.patch_sum(gy, gx);
                let s = match self.reduce {
                    PatchReduce::Sum => s,
                    PatchReduce::Mean => s / area,
                } as f32;
                let idx = (gy * self.grid_x + gx) as u32;
                if s > best.0 {
                    best = (s, idx);
                }
                if threshold.is_none_or(|t| s >= t) {
                    // Capacity is the patch count, so this never reallocates.
                    self.candidates.push((s, idx));
                }
            }
        }

        // Strongest first; grid order breaks ties so results are reproducible.
        self.candidates
            .sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut kept: heapless::Vec<u32, MAX_REGIONS> = heapless::Vec::new();
        let mut regions = Regions::new();
        for &(score, idx) in &self.candidates {
            if kept.is_full() {
                break;
            }
            if kept.iter().all(|&k| !self.overlaps(k, idx)) {
                // Cannot fail: both vectors were checked to have room above.
                let _ = kept.push(idx);
                let _ = regions.push(self.region(idx, score));
            }
        }

        Ok(PatchResult {
            max: best.0,
            argmax: self.region(best.1, best.0),
            regions,
        })
    }

    fn build_integral(&mut self, map: &ErrorMap) {
        let stride = self.map_w + 1;
        let data = map.as_slice();
        // Row 0 and column 0 stay zero from construction.
        for y in 0..self.map_h {
            let mut row_sum = 0.0f64;
            let src = &data[y * self.map_w..(y + 1) * self.map_w];
            let (above, below) = self.integral.split_at_mut((y + 1) * stride);
            let prev = &above[y * stride..];
            let cur = &mut below[..stride];
            for x in 0..self.map_w {
                row_sum += f64::from(src[x]);
                cur[x + 1] = prev[x + 1] + row_sum;
            }
        }
    }

    fn patch_sum(&self, gy: usize, gx: usize) -> f64 {
        let stride = self.map_w + 1;
        let (y0, x0) = (gy * self.cfg.stride_y, gx * self.cfg.stride_x);
        let (y1, x1) = (y0 + self.cfg.height, x0 + self.cfg.width);
        let i = &self.integral;
        i[y1 * stride + x1] - i[y0 * stride + x1] - i[y1 * stride + x0] + i[y0 * stride + x0]
    }

    fn origin(&self, idx: u32) -> (usize, usize) {
        let idx = idx as usize;
        (
            (idx / self.grid_x) * self.cfg.stride_y,
            (idx % self.grid_x) * self.cfg.stride_x,
        )
    }

    fn overlaps(&self, a: u32, b: u32) -> bool {
        let (ay, ax) = self.origin(a);
        let (by, bx) = self.origin(b);
        let (h, w) = (self.cfg.height, self.cfg.width);
        let iy = (ay + h).min(by + h).saturating_sub(ay.max(by));
        let ix = (ax + w).min(bx + w).saturating_sub(ax.max(bx));
        let inter = (iy * ix) as u64;
        let union = 2 * (h * w) as u64 - inter;
        NMS_IOU_DEN * inter > NMS_IOU_NUM * union
    }

    fn region(&self, idx: u32, score: f32) -> Region {
        let (y, x) = self.origin(idx);
        let (fw, fh) = (self.map_w as f32, self.map_h as f32);
        Region {
            x: x as f32 / fw,
            y: y as f32 / fh,
            w: self.cfg.width as f32 / fw,
            h: self.cfg.height as f32 / fh,
            score,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(h: usize, w: usize, sy: usize, sx: usize) -> PatchConfig {
        PatchConfig {
            height: h,
            width: w,
            stride_y: sy,
            stride_x: sx,
        }
    }

    /// Reference by explicit loops, independent of the integral image.
    fn brute_max(map: &ErrorMap, c: PatchConfig) -> f32 {
        let mut best = f64::NEG_INFINITY;
        let mut y = 0;
        while y + c.height <= map.height() {
            let mut x = 0;
            while x + c.width <= map.width() {
                let mut s = 0.0f64;
                for yy in y..y + c.height {
                    for xx in x..x + c.width {
                        s += f64::from(map.get(xx, yy).unwrap());
                    }
                }
                best = best.max(s);
                x += c.stride_x;
            }
            y += c.stride_y;
        }
        best as f32
    }

    #[test]
    fn invalid_configs_are_explained() {
        let e = PatchDetector::new(cfg(0, 2, 1, 1), PatchReduce::Sum, 8, 8).unwrap_err();
        assert!(e.to_string().contains("height must be at least 1"), "{e}");
        let e = PatchDetector::new(cfg(2, 2, 1, 0), PatchReduce::Sum, 8, 8).unwrap_err();
        assert!(e.to_string().contains("stride_x must be at least 1"), "{e}");
        let e = PatchDetector::new(cfg(30, 20, 8, 5), PatchReduce::Sum, 24, 16).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        assert!(PatchDetector::new(cfg(1, 1, 1, 1), PatchReduce::Sum, 0, 4).is_err());
    }

    #[test]
    fn grid_matches_valid_convolution() {
        // (240 - 30) / 8 + 1 = 27 rows, (360 - 20) / 5 + 1 = 69 columns.
        let d = PatchDetector::new(cfg(30, 20, 8, 5), PatchReduce::Sum, 360, 240).unwrap();
        assert_eq!(d.grid(), (27, 69));
        // Non-divisible: the last partial window is not scored.
        let d = PatchDetector::new(cfg(3, 2, 2, 3), PatchReduce::Sum, 7, 6).unwrap();
        assert_eq!(d.grid(), (2, 2));
    }

    #[test]
    fn max_and_argmax_of_a_hot_spot() {
        let mut map = ErrorMap::new(12, 10).unwrap();
        for (i, v) in map.as_mut_slice().iter_mut().enumerate() {
            *v = (i % 7) as f32 * 0.01;
        }
        // A 2x2 hot block at rows 6-7, columns 8-9.
        for (x, y) in [(8, 6), (9, 6), (8, 7), (9, 7)] {
            map.as_mut_slice()[y * 12 + x] = 5.0;
        }
        let c = cfg(4, 4, 2, 2);
        let mut d = PatchDetector::new(c, PatchReduce::Sum, 12, 10).unwrap();
        let r = d.detect(&map, None).unwrap();
        assert!((r.max - brute_max(&map, c)).abs() < 1e-5);
        assert!(r.max > 20.0);
        // The hot block lies inside patches at x in {6, 8}, y in {4, 6}; ties break in grid
        // order, so the winner is the first of them with the largest background.
        assert!(r.argmax.x * 12.0 >= 6.0 - 1e-6 && r.argmax.y * 10.0 >= 4.0 - 1e-6);
        assert_eq!(r.argmax.w, 4.0 / 12.0);
        assert_eq!(r.argmax.h, 0.4);
        assert_eq!(r.regions[0], r.argmax);

        let mut m = PatchDetector::new(c, PatchReduce::Mean, 12, 10).unwrap();
        let rm = m.detect(&map, None).unwrap();
        assert!((rm.max - r.max / 16.0).abs() < 1e-5);
    }

    #[test]
    fn ties_resolve_in_grid_order() {
        // A flat map: every patch ties, so the first one wins and NMS keeps a regular tiling.
        let map = ErrorMap::from_vec(6, 4, vec![0.5; 24]).unwrap();
        let mut d = PatchDetector::new(cfg(2, 2, 1, 1), PatchReduce::Sum, 6, 4).unwrap();
        let r = d.detect(&map, Some(2.0)).unwrap();
        assert_eq!((r.argmax.x, r.argmax.y, r.max), (0.0, 0.0, 2.0));
        let origins: Vec<(f32, f32)> = r.regions.iter().map(|g| (g.x * 6.0, g.y * 4.0)).collect();
        // IoU of a one-pixel straight shift is 2/6 > 0.3 (dropped), of a diagonal one 1/7
        // (kept), so the kept patches form a checkerboard-like tiling.
        assert_eq!(
            origins,
            vec![
                (0.0, 0.0),
                (2.0, 0.0),
                (4.0, 0.0),
                (1.0, 1.0),
                (3.0, 1.0),
                (0.0, 2.0),
                (2.0, 2.0),
                (4.0, 2.0)
            ]
        );
    }

    #[test]
    fn threshold_and_suppression() {
        let mut map = ErrorMap::new(20, 20).unwrap();
        // Two separated hot pixels: each produces overlapping high patches that NMS must merge.
        map.as_mut_slice()[2 * 20 + 2] = 1.0;
        map.as_mut_slice()[15 * 20 + 15] = 2.0;
        let mut d = PatchDetector::new(cfg(4, 4, 1, 1), PatchReduce::Sum, 20, 20).unwrap();
        let r = d.detect(&map, Some(0.5)).unwrap();
        assert_eq!(r.max, 2.0);
        // Every patch containing a hot pixel scores >= 0.5, but after suppression the kept
        // patches must pairwise overlap by IoU <= 0.3.
        assert!(r.regions.len() >= 2);
        assert_eq!(r.regions[0].score, 2.0);
        for (i, a) in r.regions.iter().enumerate() {
            assert!(a.score >= 0.5);
            for b in r.regions.iter().skip(i + 1) {
                let ix = ((a.x + a.w).min(b.x + b.w) - a.x.max(b.x)).max(0.0);
                let iy = ((a.y + a.h).min(b.y + b.h) - a.y.max(b.y)).max(0.0);
                let inter = ix * iy;
                let iou = inter / (2.0 * a.w * a.h - inter);
                assert!(iou <= 0.3 + 1e-6, "iou {iou}");
            }
        }
        let none = d.detect(&map, Some(3.0)).unwrap();
        assert!(none.regions.is_empty());
        assert_eq!(none.max, 2.0);
        // Without a threshold, the map is tiled by the strongest non-overlapping patches.
        let all = d.detect(&map, None).unwrap();
        assert_eq!(all.regions.len(), MAX_REGIONS);
    }

    #[test]
    fn bad_maps_are_rejected() {
        let mut d = PatchDetector::new(cfg(2, 2, 1, 1), PatchReduce::Sum, 4, 4).unwrap();
        let wrong = ErrorMap::new(4, 5).unwrap();
        assert!(matches!(
            d.detect(&wrong, None),
            Err(ScoringError::ShapeMismatch { got_h: 5, .. })
        ));
        let mut nan = ErrorMap::new(4, 4).unwrap();
        nan.as_mut_slice()[5] = f32::NAN;
        assert!(matches!(
            d.detect(&nan, None),
            Err(ScoringError::NonFinite { .. })
        ));
        let mut inf = ErrorMap::new(4, 4).unwrap();
        inf.as_mut_slice()[0] = f32::INFINITY;
        assert!(d.detect(&inf, None).is_err());
        // A bad frame must not leave the detector broken for the next one.
        let ok = ErrorMap::new(4, 4).unwrap();
        assert_eq!(d.detect(&ok, None).unwrap().max, 0.0);
        assert!(d.detect(&ok, Some(f32::NAN)).is_err());
    }
}
