//! Cropping a box out of model-resolution planes and resizing it to the network's cube side.

use super::BoundingBox;

/// Bilinear crop-and-resize of every `w x h` plane stacked in `src` (frames: their channels;
/// flows: dx then dy) inside `b` into `side x side` planes in `out`, in the same order. Sample
/// centres are spread over the box with half-pixel alignment (as OpenCV's `resize` of the crop
/// would place them) and clamped to the box's edge pixels; flow values are copied, not
/// rescaled, so they stay in model-resolution pixels whatever the box size.
///
/// `src.len()` must be a multiple of `w * h`, `out.len()` the same multiple of `side²`, and `b`
/// inside the plane; the callers size everything from the same package, so a mismatch is a bug.
pub fn crop_resize_into(
    src: &[f32],
    w: usize,
    h: usize,
    b: BoundingBox,
    side: usize,
    out: &mut [f32],
) {
    resize_box_into(src, w, h, b, side, side, out);
}

/// [`crop_resize_into`] to an `out_w x out_h` rectangle (the detector's letterbox).
pub(crate) fn resize_box_into(
    src: &[f32],
    w: usize,
    h: usize,
    b: BoundingBox,
    out_w: usize,
    out_h: usize,
    out: &mut [f32],
) {
    let hw = w * h;
    let os = out_w * out_h;
    debug_assert!(hw > 0 && src.len() / hw * hw == src.len() && out.len() == src.len() / hw * os);
    debug_assert!(b.x1 as usize <= w && b.y1 as usize <= h && b.x0 < b.x1 && b.y0 < b.y1);
    let taps = |lo: u32, hi: u32, n: usize, i: usize| -> (usize, usize, f32) {
        let scale = (hi - lo) as f32 / n as f32;
        let c = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, (hi - lo - 1) as f32);
        let i0 = c.floor() as usize;
        let i1 = (i0 + 1).min((hi - lo - 1) as usize);
        (lo as usize + i0, lo as usize + i1, c - i0 as f32)
    };
    for (plane, dst) in src.chunks_exact(hw).zip(out.chunks_exact_mut(os)) {
        for oy in 0..out_h {
            let (y0, y1, fy) = taps(b.y0, b.y1, out_h, oy);
            let (r0, r1) = (&plane[y0 * w..(y0 + 1) * w], &plane[y1 * w..(y1 + 1) * w]);
            for ox in 0..out_w {
                let (x0, x1, fx) = taps(b.x0, b.x1, out_w, ox);
                let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
                dst[oy * out_w + ox] = top + (bottom - top) * fy;
            }
        }
    }
}

/// One object's cube: each of `frames` (model-input planes, oldest first) and each of `flows`
/// (`[dx, dy]` fields) cropped inside `b` and resized into `frames_out` / `flows_out`, in order.
/// The one function both the runtime recipe and `vigil dataset export --objects` call.
#[allow(clippy::too_many_arguments)]
pub fn crop_cube_into(
    frames: &[&[f32]],
    flows: &[&[f32]],
    w: usize,
    h: usize,
    b: BoundingBox,
    side: usize,
    frames_out: &mut [f32],
    flows_out: &mut [f32],
) {
    for (src, out) in [(frames, frames_out), (flows, flows_out)] {
        let per = if src.is_empty() {
            0
        } else {
            out.len() / src.len()
        };
        for (plane, dst) in src.iter().zip(out.chunks_exact_mut(per.max(1))) {
            crop_resize_into(plane, w, h, b, side, dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_crop_copies_the_box_and_keeps_plane_order() {
        let (w, h) = (6, 5);
        // two planes: value = 100 * plane + 10 * y + x
        let src: Vec<f32> = (0..2 * w * h)
            .map(|i| (100 * (i / (w * h)) + 10 * ((i % (w * h)) / w) + i % w) as f32)
            .collect();
        let b = BoundingBox {
            x0: 2,
            y0: 1,
            x1: 5,
            y1: 4,
        };
        let mut out = vec![0.0; 2 * 9];
        crop_resize_into(&src, w, h, b, 3, &mut out);
        assert_eq!(&out[..3], &[12.0, 13.0, 14.0]);
        assert_eq!(&out[6..9], &[32.0, 33.0, 34.0]);
        assert_eq!(out[9], 112.0);
    }

    #[test]
    fn upsampling_interpolates_linearly_and_clamps_at_the_box_edge() {
        let (w, h) = (4, 1);
        let src = [0.0, 10.0, 20.0, 30.0];
        let b = BoundingBox {
            x0: 1,
            y0: 0,
            x1: 3,
            y1: 1,
        };
        let mut out = vec![0.0; 16];
        crop_resize_into(&src, w, h, b, 4, &mut out);
        // centres at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped) of the 2-pixel box
        assert_eq!(&out[..4], &[10.0, 12.5, 17.5, 20.0]);
        // one source row: every output row is the same
        assert_eq!(&out[12..], &out[..4]);
    }
}
