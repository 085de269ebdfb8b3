//! Temporal smoothing of frame scores, offline: the median filter of HF2-VAD's evaluation.

use super::{invalid, Result, ScoringError};

/// Widest median accepted. The median costs O(width) per value; far wider than any paper
/// uses (17), and small enough that a typo cannot trigger a huge allocation.
pub const MAX_MEDIAN_WIDTH: usize = 1 << 16;

/// Median filter over a whole score sequence, identical to `scipy.signal.medfilt(x, width)`:
/// each output is the median of the `width` values centred on it, with zeros standing in for
/// values beyond either end. `width` must be odd. HF2-VAD's evaluation uses width 17.
///
/// Offline only (allocates its output).
pub fn median_filter(x: &[f32], width: usize) -> Result<Vec<f32>> {
    if width == 0 || width.is_multiple_of(2) || width > MAX_MEDIAN_WIDTH {
        return Err(invalid(
            "median filter width",
            format!("must be odd and between 1 and {MAX_MEDIAN_WIDTH}, got {width}"),
        ));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(ScoringError::NonFinite {
            what: "median filter input",
        });
    }
    let half = width / 2;
    let n = x.len();
    let mut buf = Vec::with_capacity(width);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        buf.clear();
        for k in 0..width {
            // Position i - half + k, zero outside [0, n).
            let j = (i + k).checked_sub(half).filter(|&j| j < n);
            buf.push(j.map_or(0.0, |j| x[j]));
        }
        let (_, m, _) = buf.select_nth_unstable_by(half, f32::total_cmp);
        out.push(*m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medfilt_zero_pads_like_scipy() {
        // scipy.signal.medfilt([5, 1, 4, 2, 3], 3) == [1, 4, 2, 3, 2]
        let y = median_filter(&[5.0, 1.0, 4.0, 2.0, 3.0], 3).unwrap();
        assert_eq!(y, vec![1.0, 4.0, 2.0, 3.0, 2.0]);
        // A kernel longer than the signal sees mostly zeros.
        assert_eq!(median_filter(&[1.0, 2.0], 5).unwrap(), vec![0.0, 0.0]);
        assert_eq!(median_filter(&[3.0, 1.0], 1).unwrap(), vec![3.0, 1.0]);
        assert!(median_filter(&[], 17).unwrap().is_empty());
    }

    #[test]
    fn medfilt_rejects_bad_input() {
        let e = median_filter(&[1.0], 4).unwrap_err();
        assert!(e.to_string().contains("must be odd"), "{e}");
        assert!(median_filter(&[1.0], 0).is_err());
        assert!(median_filter(&[1.0], MAX_MEDIAN_WIDTH + 2).is_err());
        assert!(median_filter(&[1.0, f32::NAN], 3).is_err());
    }
}
