//! Farnebäck's two-frame motion estimation (SCIA 2003) with OpenCV's numerical choices.
//!
//! Per pyramid level each frame is expanded into local quadratic polynomials
//! `f(p) ~ p^T A p + b^T p + c` (weighted least squares under a Gaussian applicability). If the
//! second frame is the first shifted by `d`, then `A d = -(b2 - b1) / 2`; averaging the normal
//! equations of that relation over a box window and solving per pixel gives `d`, which is
//! refined by re-sampling the second expansion at `p + d` and solving again. Coarse levels
//! initialise the finer ones.
//!
//! OpenCV conventions reproduced on purpose (each moves the result measurably):
//! the applicability spans `[-poly_n, poly_n]` (not `poly_n / 2`); every level is smoothed from
//! the full-resolution image then resized (the finest one by the fixed 3-tap binomial); pixels
//! within 5 of the border have their equations down-weighted by the factors
//! `0.14, 0.14, 0.4472, 0.4472, 0.4472` (per axis, multiplied); a `1e-3` regulariser is added to
//! the determinant; and intensities are on the 0..255 scale that regulariser assumes.

use super::imgproc::{gaussian_blur, gaussian_kernel, resize_linear};
use super::{FarnebackParams, FlowError, FlowField};

/// Levels smaller than this (either side) are not used, as in OpenCV.
const MIN_LEVEL_SIZE: f64 = 32.0;
const BORDER: [f32; 5] = [0.14, 0.14, 0.4472, 0.4472, 0.4472];
/// Coefficients per pixel: b_x, b_y, a_xx, a_yy, a_xy.
const NC: usize = 5;

#[derive(Debug, Clone)]
struct Level {
    w: usize,
    h: usize,
    /// Smoothing applied to the full-resolution image before resizing to this level.
    smooth: Vec<f32>,
}

/// Polynomial expansion filter: the applicability `g`, its first and second moments per tap,
/// and the entries of the inverse normal matrix the coefficients need.
#[derive(Debug, Clone)]
struct PolyFilter {
    n: usize,
    g: Vec<f32>,
    xg: Vec<f32>,
    xxg: Vec<f32>,
    /// 1 / sum(g x^2): linear terms.
    ig_lin: f64,
    /// Inverse normal matrix entries coupling the constant and the squares (ig03) and the
    /// squares with themselves (ig33); the squares do not couple with each other (ig34 = 0).
    ig03: f64,
    ig33: f64,
    /// 1 / (sum g x^2)^2: the cross term.
    ig_xy: f64,
}

impl PolyFilter {
    fn new(n: usize, sigma: f64) -> Self {
        let taps: Vec<f64> = (-(n as i64)..=n as i64)
            .map(|x| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp())
            .collect();
        let s: f64 = taps.iter().sum();
        let g: Vec<f64> = taps.iter().map(|v| v / s).collect();
        let x = |i: usize| i as f64 - n as f64;
        let m2: f64 = g.iter().enumerate().map(|(i, v)| v * x(i) * x(i)).sum();
        let m4: f64 = g.iter().enumerate().map(|(i, v)| v * x(i).powi(4)).sum();
        // Normal matrix of the basis {1, x^2, y^2} under the separable applicability:
        // [[1, m2, m2], [m2, m4, m2^2], [m2, m2^2, m4]]. Its inverse's (0,1) and (1,1) entries.
        let (a, b, c) = (m4, m2 * m2, m2);
        // det of the 3x3 = 1*(a^2 - b^2) - c*(c*a - b*c) + c*(c*b - a*c)
        let det = (a * a - b * b) - c * (c * a - b * c) + c * (c * b - a * c);
        let ig03 = -(c * a - c * b) / det;
        let ig33 = (a - c * c) / det;
        Self {
            n,
            g: g.iter().map(|v| *v as f32).collect(),
            xg: g
                .iter()
                .enumerate()
                .map(|(i, v)| (v * x(i)) as f32)
                .collect(),
            xxg: g
                .iter()
                .enumerate()
                .map(|(i, v)| (v * x(i) * x(i)) as f32)
                .collect(),
            ig_lin: 1.0 / m2,
            ig03,
            ig33,
            ig_xy: 1.0 / (m2 * m2),
        }
    }
}

/// A frame's polynomial expansion at every pyramid level (from [`Farneback::expand`]). Keep the
/// newest one to serve as the previous frame of the next pair.
#[derive(Debug, Clone)]
pub struct Expansion {
    levels: Vec<Vec<f32>>,
    valid: bool,
}

/// Dense flow estimator for one image size; owns every buffer it needs.
#[derive(Debug, Clone)]
pub struct Farneback {
    params: FarnebackParams,
    width: usize,
    height: usize,
    /// Index k = pyramid level k (0 = full resolution).
    levels: Vec<Level>,
    poly: PolyFilter,
    // scratch, sized for the full resolution
    full: Vec<f32>,
    smoothed: Vec<f32>,
    tmp: Vec<f32>,
    level_img: Vec<f32>,
    row: Vec<f32>,
    vsum: Vec<f64>,
    m: Vec<f32>,
    /// Interleaved (dx, dy) per level.
    flows: Vec<Vec<f32>>,
    /// Expansions for [`Farneback::compute`].
    pair: Option<Box<(Expansion, Expansion)>>,
}

impl Farneback {
    pub fn new(params: FarnebackParams, width: usize, height: usize) -> Result<Self, FlowError> {
        params.validate()?;
        if width < 8 || height < 8 {
            return Err(FlowError::TooSmall { width, height });
        }
        let ps = params.pyr_scale as f64;
        let mut top = 0usize;
        let mut scale = 1.0f64;
        while top < params.levels as usize {
            scale *= ps;
            if width as f64 * scale < MIN_LEVEL_SIZE || height as f64 * scale < MIN_LEVEL_SIZE {
                break;
            }
            top += 1;
        }
        let levels: Vec<Level> = (0..=top)
            .map(|k| {
                let scale = (0..k).fold(1.0f64, |s, _| s * ps);
                let sigma = (1.0 / scale - 1.0) * 0.5;
                let ksize = (((sigma * 5.0).round_ties_even() as usize) | 1).max(3);
                Level {
                    w: (width as f64 * scale).round_ties_even() as usize,
                    h: (height as f64 * scale).round_ties_even() as usize,
                    smooth: gaussian_kernel(ksize, sigma),
                }
            })
            .collect();
        let n = params.poly_n as usize;
        let px = width * height;
        let m = params.winsize as usize / 2;
        Ok(Self {
            params,
            width,
            height,
            flows: levels.iter().map(|l| vec![0.0; 2 * l.w * l.h]).collect(),
            levels,
            poly: PolyFilter::new(n, params.poly_sigma as f64),
            full: vec![0.0; px],
            smoothed: vec![0.0; px],
            tmp: vec![0.0; px],
            level_img: vec![0.0; px],
            row: vec![0.0; (width + 2 * n) * 3],
            vsum: vec![0.0; (width + 2 * m + 2) * NC],
            m: vec![0.0; px * NC],
            pair: None,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    /// Pyramid levels in use (1 = full resolution only).
    pub fn pyramid_levels(&self) -> usize {
        self.levels.len()
    }

    /// An empty expansion sized for this estimator (allocate once, reuse).
    pub fn new_expansion(&self) -> Expansion {
        Expansion {
            levels: self
                .levels
                .iter()
                .map(|l| vec![0.0; NC * l.w * l.h])
                .collect(),
            valid: false,
        }
    }

    /// A flow field sized for this estimator.
    pub fn new_field(&self) -> FlowField {
        FlowField::new(self.width, self.height)
    }

    /// Expands one frame. `plane` holds `width * height` values in `range` (the model's pixel
    /// range); they are mapped to 0..255, the scale OpenCV's 8-bit frames have, because the
    /// solver's regulariser is absolute.
    pub fn expand(
        &mut self,
        plane: &[f32],
        range: [f32; 2],
        out: &mut Expansion,
    ) -> Result<(), FlowError> {
        let px = self.width * self.height;
        if plane.len() != px {
            return Err(FlowError::InputLen {
                got: plane.len(),
                expected: px,
                width: self.width,
                height: self.height,
            });
        }
        let span = range[1] - range[0];
        let k = if span.abs() > f32::EPSILON {
            255.0 / span
        } else {
            1.0
        };
        for (d, s) in self.full.iter_mut().zip(plane) {
            *d = (s - range[0]) * k;
        }
        for (lvl, r) in self.levels.iter().zip(out.levels.iter_mut()) {
            gaussian_blur(
                &self.full,
                &mut self.smoothed,
                &mut self.tmp,
                self.width,
                self.height,
                &lvl.smooth,
            );
            let img = &mut self.level_img[..lvl.w * lvl.h];
            resize_linear(
                &self.smoothed,
                self.width,
                self.height,
                img,
                lvl.w,
                lvl.h,
                1,
            );
            poly_expand(&self.poly, img, lvl.w, lvl.h, &mut self.row, r);
        }
        out.valid = true;
        Ok(())
    }

    /// Flow from the frame expanded into `prev` to the one in `next`.
    pub fn flow(&mut self, prev: &Expansion, next: &Expansion, out: &mut FlowField) {
        debug_assert!(prev.valid && next.valid, "expand both frames first");
        let top = self.levels.len() - 1;
        let inv_scale = 1.0 / self.params.pyr_scale;
        for k in (0..=top).rev() {
            let (w, h) = (self.levels[k].w, self.levels[k].h);
            if k == top {
                self.flows[k].fill(0.0);
            } else {
                let (lo, hi) = self.flows.split_at_mut(k + 1);
                let (cw, ch) = (self.levels[k + 1].w, self.levels[k + 1].h);
                resize_linear(&hi[0], cw, ch, &mut lo[k], w, h, 2);
                for v in lo[k].iter_mut() {
                    *v *= inv_scale;
                }
            }
            let (r0, r1) = (&prev.levels[k], &next.levels[k]);
            let m = &mut self.m[..NC * w * h];
            let flow = &mut self.flows[k];
            update_matrices(r0, r1, flow, m, w, h);
            for it in 0..self.params.iterations {
                blur_and_solve(m, flow, w, h, self.params.winsize as usize, &mut self.vsum);
                if it + 1 < self.params.iterations {
                    update_matrices(r0, r1, flow, m, w, h);
                }
            }
        }
        let (dx, dy) = out.planes_mut();
        for (i, d) in self.flows[0].chunks_exact(2).enumerate() {
            dx[i] = d[0];
            dy[i] = d[1];
        }
    }

    /// Flow between two frames (expands both; in a stream prefer [`Farneback::expand`] once per
    /// frame and [`Farneback::flow`] per pair).
    pub fn compute(
        &mut self,
        prev: &[f32],
        next: &[f32],
        range: [f32; 2],
        out: &mut FlowField,
    ) -> Result<(), FlowError> {
        let mut pair = self
            .pair
            .take()
            .unwrap_or_else(|| Box::new((self.new_expansion(), self.new_expansion())));
        let res = self
            .expand(prev, range, &mut pair.0)
            .and_then(|_| self.expand(next, range, &mut pair.1));
        if res.is_ok() {
            self.flow(&pair.0, &pair.1, out);
        }
        self.pair = Some(pair);
        res
    }
}

/// Polynomial expansion of `img` (w x h) into `r` (NC per pixel), replicated borders.
fn poly_expand(p: &PolyFilter, img: &[f32], w: usize, h: usize, row: &mut [f32], r: &mut [f32]) {
    let n = p.n;
    let row = &mut row[..(w + 2 * n) * 3];
    for y in 0..h {
        // vertical moments (sum g, sum y g, sum y^2 g) per column, stored from index n
        {
            let mid = &mut row[n * 3..(n + w) * 3];
            let src = &img[y * w..(y + 1) * w];
            for (c, v) in mid.chunks_exact_mut(3).zip(src) {
                c[0] = v * p.g[n];
                c[1] = 0.0;
                c[2] = 0.0;
            }
            for k in 1..=n {
                let up = &img[y.saturating_sub(k) * w..][..w];
                let dn = &img[(y + k).min(h - 1) * w..][..w];
                let (g, xg, xxg) = (p.g[n + k], p.xg[n + k], p.xxg[n + k]);
                for ((c, a), b) in mid.chunks_exact_mut(3).zip(up).zip(dn) {
                    let s = a + b;
                    c[0] += g * s;
                    c[1] += xg * (b - a);
                    c[2] += xxg * s;
                }
            }
        }
        for i in 0..n {
            for c in 0..3 {
                row[i * 3 + c] = row[n * 3 + c];
                row[(n + w + i) * 3 + c] = row[(n + w - 1) * 3 + c];
            }
        }
        let out = &mut r[y * w * NC..(y + 1) * w * NC];
        for x in 0..w {
            // this pixel's horizontal neighbourhood: 2n+1 columns of (v0, v1, v2)
            let win = &row[x * 3..(x + 2 * n + 1) * 3];
            let at = |dx: usize, c: usize| win[dx * 3 + c] as f64;
            let g0 = p.g[n] as f64;
            let (mut c0, mut cx, mut cxx) = (at(n, 0) * g0, 0.0f64, 0.0f64);
            let (mut cy, mut cxy, mut cyy) = (at(n, 1) * g0, 0.0f64, at(n, 2) * g0);
            for k in 1..=n {
                let (g, xg, xxg) = (p.g[n + k] as f64, p.xg[n + k] as f64, p.xxg[n + k] as f64);
                let (l, rr) = (n - k, n + k);
                let s0 = at(rr, 0) + at(l, 0);
                c0 += g * s0;
                cxx += xxg * s0;
                cx += xg * (at(rr, 0) - at(l, 0));
                cy += g * (at(rr, 1) + at(l, 1));
                cxy += xg * (at(rr, 1) - at(l, 1));
                cyy += g * (at(rr, 2) + at(l, 2));
            }
            let o = &mut out[x * NC..(x + 1) * NC];
            o[0] = (cx * p.ig_lin) as f32;
            o[1] = (cy * p.ig_lin) as f32;
            o[2] = (c0 * p.ig03 + cxx * p.ig33) as f32;
            o[3] = (c0 * p.ig03 + cyy * p.ig33) as f32;
            o[4] = (cxy * p.ig_xy) as f32;
        }
    }
}

#[inline]
fn border_weight(i: usize, n: usize) -> f32 {
    let d = i.min(n - 1 - i);
    if d < BORDER.len() {
        BORDER[d]
    } else {
        1.0
    }
}

/// Per pixel, the normal equations `G d = h` of `A d = -(b1 - b0)/2 + A d_current`, with the
/// second expansion sampled at the displaced position: `[Gxx, Gxy, Gyy, hx, hy]` into `m`.
fn update_matrices(r0: &[f32], r1: &[f32], flow: &[f32], m: &mut [f32], w: usize, h: usize) {
    for y in 0..h {
        let wy = border_weight(y, h);
        for x in 0..w {
            let i = y * w + x;
            let (dx, dy) = (flow[2 * i], flow[2 * i + 1]);
            let a = &r0[i * NC..(i + 1) * NC];
            let (fx, fy) = (x as f32 + dx, y as f32 + dy);
            let (x1, y1) = (fx.floor(), fy.floor());
            let (mut axx, mut ayy, mut c, mut hx, mut hy);
            if x1 >= 0.0 && y1 >= 0.0 && (x1 as usize) < w - 1 && (y1 as usize) < h - 1 {
                let (tx, ty) = (fx - x1, fy - y1);
                let j = y1 as usize * w + x1 as usize;
                let (w00, w01, w10, w11) = (
                    (1.0 - tx) * (1.0 - ty),
                    tx * (1.0 - ty),
                    (1.0 - tx) * ty,
                    tx * ty,
                );
                // the 2x2 neighbourhood as two fixed-size row slices (no per-tap bounds checks)
                let (t0, t1) = (
                    &r1[j * NC..(j + 2) * NC],
                    &r1[(j + w) * NC..(j + w + 2) * NC],
                );
                let s =
                    |ch: usize| w00 * t0[ch] + w01 * t0[NC + ch] + w10 * t1[ch] + w11 * t1[NC + ch];
                axx = (a[2] + s(2)) * 0.5;
                ayy = (a[3] + s(3)) * 0.5;
                // half the averaged cross coefficient: the off-diagonal of A
                c = (a[4] + s(4)) * 0.25;
                hx = (a[0] - s(0)) * 0.5;
                hy = (a[1] - s(1)) * 0.5;
            } else {
                // displaced outside the image: keep this frame's A, treat b1 as 0
                axx = a[2];
                ayy = a[3];
                c = a[4] * 0.5;
                hx = a[0] * 0.5;
                hy = a[1] * 0.5;
            }
            hx += axx * dx + c * dy;
            hy += c * dx + ayy * dy;
            let s = wy * border_weight(x, w);
            if s != 1.0 {
                axx *= s;
                ayy *= s;
                c *= s;
                hx *= s;
                hy *= s;
            }
            let o = &mut m[i * NC..(i + 1) * NC];
            o[0] = axx * axx + c * c;
            o[1] = (axx + ayy) * c;
            o[2] = ayy * ayy + c * c;
            o[3] = axx * hx + c * hy;
            o[4] = c * hx + ayy * hy;
        }
    }
}

/// Box-filters the normal equations over `win x win` (replicated borders, f64 running sums)
/// and solves each pixel's 2x2 system into `flow`.
fn blur_and_solve(m: &[f32], flow: &mut [f32], w: usize, h: usize, win: usize, vsum: &mut [f64]) {
    let r = win / 2;
    // column sums with r replicated columns on each side, so the horizontal pass needs no clamps
    let vs = &mut vsum[..(w + 2 * r) * NC];
    let row = |y: isize| -> &[f32] {
        let y = y.clamp(0, h as isize - 1) as usize;
        &m[y * w * NC..(y + 1) * w * NC]
    };
    {
        let mid = &mut vs[r * NC..(r + w) * NC];
        mid.fill(0.0);
        for dy in -(r as isize)..=r as isize {
            for (s, v) in mid.iter_mut().zip(row(dy)) {
                *s += *v as f64;
            }
        }
    }
    let norm = 1.0 / (win * win) as f64;
    for y in 0..h {
        if y > 0 {
            let (add, sub) = (
                row(y as isize + r as isize),
                row(y as isize - r as isize - 1),
            );
            let mid = &mut vs[r * NC..(r + w) * NC];
            for ((s, a), b) in mid.iter_mut().zip(add).zip(sub) {
                *s += *a as f64 - *b as f64;
            }
        }
        for i in 0..r {
            for c in 0..NC {
                vs[i * NC + c] = vs[r * NC + c];
                vs[(r + w + i) * NC + c] = vs[(r + w - 1) * NC + c];
            }
        }
        let mut acc = [0.0f64; NC];
        for px in vs[..win * NC].chunks_exact(NC) {
            for (a, v) in acc.iter_mut().zip(px) {
                *a += v;
            }
        }
        for x in 0..w {
            if x > 0 {
                // window of padded columns x .. x + 2r
                let (add, sub) = ((x + 2 * r) * NC, (x - 1) * NC);
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += vs[add + c] - vs[sub + c];
                }
            }
            let [gxx, gxy, gyy, hx, hy] = acc.map(|v| v * norm);
            let idet = 1.0 / (gxx * gyy - gxy * gxy + 1e-3);
            let i = y * w + x;
            flow[2 * i] = ((gyy * hx - gxy * hy) * idet) as f32;
            flow[2 * i + 1] = ((gxx * hy - gxy * hx) * idet) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth textured image shifted by (sx, sy) pixels.
    fn texture(w: usize, h: usize, sx: f32, sy: f32) -> Vec<f32> {
        let mut v = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 - sx, y as f32 - sy);
                let t = (fx * 0.31).sin() * (fy * 0.23).cos() + 0.5 * ((fx + fy) * 0.11).sin();
                v.push(t);
            }
        }
        v
    }

    #[test]
    fn recovers_a_global_translation() {
        let (w, h) = (96, 64);
        let mut fb = Farneback::new(FarnebackParams::default(), w, h).unwrap();
        let a = texture(w, h, 0.0, 0.0);
        let b = texture(w, h, 1.5, -0.75);
        let mut f = fb.new_field();
        fb.compute(&a, &b, [-2.0, 2.0], &mut f).unwrap();
        // interior only: borders are down-weighted by design
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for y in 12..h - 12 {
            for x in 12..w - 12 {
                sx += f.dx()[y * w + x];
                sy += f.dy()[y * w + x];
                n += 1.0;
            }
        }
        let (mx, my) = (sx / n, sy / n);
        assert!((mx - 1.5).abs() < 0.05, "dx {mx}");
        assert!((my + 0.75).abs() < 0.05, "dy {my}");
    }

    #[test]
    fn identical_frames_have_zero_flow() {
        let (w, h) = (64, 48);
        let mut fb = Farneback::new(FarnebackParams::default(), w, h).unwrap();
        let a = texture(w, h, 0.0, 0.0);
        let mut f = fb.new_field();
        fb.compute(&a, &a, [-2.0, 2.0], &mut f).unwrap();
        // Away from the border. On the last row and column OpenCV's (and so our) sampling
        // test treats the second frame as outside the image, which leaves a small residue there.
        for y in 8..h - 8 {
            for x in 8..w - 8 {
                let i = y * w + x;
                assert!(
                    f.dx()[i].abs() < 1e-4 && f.dy()[i].abs() < 1e-4,
                    "({x},{y})"
                );
            }
        }
    }

    #[test]
    fn pyramid_depth_follows_opencv_min_size() {
        // 128x192 at 0.5: 64x96 and 32x48 are kept, 16x24 is not
        let fb = Farneback::new(FarnebackParams::default(), 192, 128).unwrap();
        assert_eq!(fb.pyramid_levels(), 3);
        let fb = Farneback::new(FarnebackParams::default(), 40, 40).unwrap();
        assert_eq!(fb.pyramid_levels(), 1);
    }

    #[test]
    fn bad_parameters_and_sizes_are_errors() {
        let p = FarnebackParams {
            poly_n: 6,
            ..Default::default()
        };
        assert!(matches!(
            Farneback::new(p, 64, 64),
            Err(FlowError::Param { key: "poly_n", .. })
        ));
        let p = FarnebackParams {
            winsize: 14,
            ..Default::default()
        };
        assert!(Farneback::new(p, 64, 64).is_err());
        let mut fb = Farneback::new(FarnebackParams::default(), 64, 64).unwrap();
        let mut f = fb.new_field();
        let e = fb
            .compute(&[0.0; 10], &[0.0; 10], [0.0, 1.0], &mut f)
            .unwrap_err();
        assert!(e.to_string().contains("64x64"), "{e}");
    }
}
