//! The two image operations the flow pyramid needs, with OpenCV's border and sampling
//! conventions (a different convention moves the flow near borders by tenths of a pixel):
//! Gaussian smoothing with a reflect-101 border and bilinear resizing with half-pixel centres
//! and a replicated border. fast_image_resize is not used here because its bilinear filter
//! widens with the scale factor (anti-aliasing) while OpenCV's INTER_LINEAR always reads 2 taps.

/// Gaussian kernel as OpenCV's `getGaussianKernel(ksize, sigma)` builds it for float images:
/// the fixed binomial tables for small kernels with `sigma <= 0`, sampled and normalised
/// otherwise.
pub fn gaussian_kernel(ksize: usize, sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        match ksize {
            1 => return vec![1.0],
            3 => return vec![0.25, 0.5, 0.25],
            5 => return vec![0.0625, 0.25, 0.375, 0.25, 0.0625],
            7 => {
                return vec![
                    0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
                ]
            }
            _ => {}
        }
    }
    let sigma = if sigma > 0.0 {
        sigma
    } else {
        ((ksize as f64 - 1.0) * 0.5 - 1.0) * 0.3 + 0.8
    };
    let c = (ksize as f64 - 1.0) * 0.5;
    let w: Vec<f64> = (0..ksize)
        .map(|i| {
            let x = i as f64 - c;
            (-(x * x) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|v| (v / s) as f32).collect()
}

/// Reflect-101 index (`dcb|abcd|cba`), valid for `-n < i < 2n - 1`.
#[inline]
fn reflect101(i: isize, n: usize) -> usize {
    let n = n as isize;
    let r = if i < 0 {
        -i
    } else if i >= n {
        2 * n - 2 - i
    } else {
        i
    };
    r.clamp(0, n - 1) as usize
}

/// Separable Gaussian blur of `src` (w x h) into `dst`, `tmp` as scratch (all w*h).
pub fn gaussian_blur(src: &[f32], dst: &mut [f32], tmp: &mut [f32], w: usize, h: usize, k: &[f32]) {
    let r = (k.len() / 2) as isize;
    // rows first, as OpenCV's separable filter does
    let ru = r as usize;
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        let out = &mut tmp[y * w..(y + 1) * w];
        let tap = |x: usize| -> f32 {
            k.iter()
                .enumerate()
                .map(|(j, kv)| kv * row[reflect101(x as isize + j as isize - r, w)])
                .sum()
        };
        if w <= 2 * ru {
            for (x, o) in out.iter_mut().enumerate() {
                *o = tap(x);
            }
            continue;
        }
        for x in 0..ru {
            out[x] = tap(x);
            out[w - 1 - x] = tap(w - 1 - x);
        }
        // interior: no border arithmetic
        for (x, o) in out.iter_mut().enumerate().take(w - ru).skip(ru) {
            let src = &row[x - ru..x + ru + 1];
            let mut s = 0.0f32;
            for (kv, v) in k.iter().zip(src) {
                s += kv * v;
            }
            *o = s;
        }
    }
    for y in 0..h {
        let out = &mut dst[y * w..(y + 1) * w];
        out.fill(0.0);
        for (j, kv) in k.iter().enumerate() {
            let sy = reflect101(y as isize + j as isize - r, h);
            let row = &tmp[sy * w..(sy + 1) * w];
            for (o, v) in out.iter_mut().zip(row) {
                *o += kv * v;
            }
        }
    }
}

/// Source tap and weight of the next tap for destination index `d` (OpenCV INTER_LINEAR:
/// half-pixel centres, replicated border).
#[inline]
fn linear_tap(d: usize, scale: f64, n: usize) -> (usize, usize, f32) {
    let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
    let s = f.floor();
    let mut frac = f - s;
    let s = s as isize;
    if s < 0 {
        return (0, 0, 0.0);
    }
    let s = s as usize;
    if s >= n - 1 {
        frac = 0.0;
        return (n - 1, n - 1, frac);
    }
    (s, s + 1, frac)
}

/// Bilinear resize of a `channels`-interleaved image.
pub fn resize_linear(
    src: &[f32],
    sw: usize,
    sh: usize,
    dst: &mut [f32],
    dw: usize,
    dh: usize,
    channels: usize,
) {
    let (sx, sy) = (sw as f64 / dw as f64, sh as f64 / dh as f64);
    for y in 0..dh {
        let (y0, y1, fy) = linear_tap(y, sy, sh);
        let (r0, r1) = (&src[y0 * sw * channels..], &src[y1 * sw * channels..]);
        let out = &mut dst[y * dw * channels..(y + 1) * dw * channels];
        for x in 0..dw {
            let (x0, x1, fx) = linear_tap(x, sx, sw);
            for c in 0..channels {
                let a = r0[x0 * channels + c] * (1.0 - fx) + r0[x1 * channels + c] * fx;
                let b = r1[x0 * channels + c] * (1.0 - fx) + r1[x1 * channels + c] * fx;
                out[x * channels + c] = a * (1.0 - fy) + b * fy;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_normalised_and_symmetric() {
        for (k, s) in [(3, 0.0), (3, 0.5), (9, 1.5), (5, 0.0)] {
            let g = gaussian_kernel(k, s);
            assert_eq!(g.len(), k);
            assert!((g.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            for i in 0..k / 2 {
                assert!((g[i] - g[k - 1 - i]).abs() < 1e-7);
            }
        }
    }

    #[test]
    fn blur_keeps_a_constant_image() {
        let (w, h) = (9, 7);
        let src = vec![3.5f32; w * h];
        let (mut dst, mut tmp) = (vec![0.0; w * h], vec![0.0; w * h]);
        gaussian_blur(&src, &mut dst, &mut tmp, w, h, &gaussian_kernel(9, 1.5));
        assert!(dst.iter().all(|v| (v - 3.5).abs() < 1e-5));
    }

    #[test]
    fn halving_a_ramp_samples_between_pixel_pairs() {
        // x ramp 0..8: 2x down with half-pixel centres reads the mean of pixels 2i and 2i+1
        let src: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let mut dst = vec![0.0; 4];
        resize_linear(&src, 8, 1, &mut dst, 4, 1, 1);
        assert_eq!(dst, vec![0.5, 2.5, 4.5, 6.5]);
        // 2x up: the border pixels replicate
        let mut up = vec![0.0; 8];
        resize_linear(&dst, 4, 1, &mut up, 8, 1, 1);
        assert_eq!(up[0], 0.5);
        assert_eq!(up[7], 6.5);
        assert_eq!(up[1], 0.5 * 0.75 + 2.5 * 0.25);
    }
}
