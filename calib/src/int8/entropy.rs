//! The EntropyCalibration2 threshold search (rules in the module docs of [`crate::int8`]).

use super::histogram::AbsHistogram;

/// Levels of |x| an INT8 tensor can hold: 0..=127 (the sign is the other half of the range).
pub const INT8_LEVELS: usize = 128;

/// Probability given to a bin where the quantised distribution is zero but the reference is
/// not, before renormalising; see "Epsilon" in the module docs.
pub const EPSILON: f64 = 1e-4;

/// The winning candidate of the search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntropyChoice {
    /// Histogram bins kept, in `128..=2048`; the threshold is the right edge of bin
    /// `bins_kept - 1`.
    pub bins_kept: usize,
    /// KL(P || Q) of that candidate, in nats.
    pub divergence: f64,
    /// `bins_kept * range / 2048`, in f64.
    pub threshold: f64,
}

/// The entropy-minimising saturation threshold of `hist`, or `None` for an empty histogram
/// or one with a zero range (nothing to search over).
pub fn entropy_threshold(hist: &AbsHistogram) -> Option<EntropyChoice> {
    if hist.range() == 0.0 {
        return None;
    }
    let (bins_kept, divergence) = search(hist.counts())?;
    Some(EntropyChoice {
        bins_kept,
        divergence,
        threshold: bins_kept as f64 * f64::from(hist.range()) / hist.counts().len() as f64,
    })
}

/// `(bins_kept, divergence)` over candidates `INT8_LEVELS..=counts.len()`.
///
/// Cost: O(bins^2 / 2) simple operations (about 2 M for 2048 bins), no allocation; the level
/// tables live on the stack.
fn search(counts: &[u64]) -> Option<(usize, f64)> {
    let n = counts.len();
    // u128 so that no histogram, however it was built, can overflow the sums.
    let total: u128 = counts.iter().map(|&c| u128::from(c)).sum();
    if n < INT8_LEVELS || total == 0 {
        return None;
    }
    let total_f = total as f64;
    let mut level_count = [0u128; INT8_LEVELS];
    let mut level_nonzero = [0u32; INT8_LEVELS];
    // Probability of each bin of a level in the normalised, smoothed Q.
    let mut level_q = [0f64; INT8_LEVELS];
    let mut kept: u128 = counts[..INT8_LEVELS - 1]
        .iter()
        .map(|&c| u128::from(c))
        .sum();
    let mut best: Option<(usize, f64)> = None;

    for k in INT8_LEVELS..=n {
        kept += u128::from(counts[k - 1]);
        if kept == 0 {
            continue;
        }
        let outliers = total - kept;
        let kept_counts = &counts[..k];
        let level = |b: usize| b * INT8_LEVELS / k;
        // Reference count of bin b: its own count, plus the saturated values in the last one.
        let reference = |b: usize, c: u64| u128::from(c) + if b == k - 1 { outliers } else { 0 };

        level_count.fill(0);
        level_nonzero.fill(0);
        for (b, &c) in kept_counts.iter().enumerate() {
            let l = level(b);
            level_count[l] += u128::from(c);
            if reference(b, c) > 0 {
                level_nonzero[l] += 1;
            }
        }
        // Bins where the reference has mass but the quantised distribution has none.
        let unrepresented: u32 = level_count
            .iter()
            .zip(&level_nonzero)
            .filter(|(&c, _)| c == 0)
            .map(|(_, &nz)| nz)
            .sum();
        let renormalise = 1.0 + EPSILON * f64::from(unrepresented);
        let kept_f = kept as f64;
        for ((q, &c), &nz) in level_q.iter_mut().zip(&level_count).zip(&level_nonzero) {
            *q = if c > 0 {
                c as f64 / f64::from(nz) / kept_f
            } else {
                EPSILON
            } / renormalise;
        }

        let mut divergence = 0.0f64;
        for (b, &c) in kept_counts.iter().enumerate() {
            let r = reference(b, c);
            if r == 0 {
                continue;
            }
            let p = r as f64 / total_f;
            divergence += p * (p / level_q[level(b)]).ln();
        }
        // Strictly smaller: an exact tie keeps the smaller k.
        let better = match best {
            None => true,
            Some((_, d)) => divergence < d,
        };
        if better {
            best = Some((k, divergence));
        }
    }
    if let Some((k, d)) = best {
        log::trace!("entropy calibration: {k} of {n} bins kept, KL {d:.6e}");
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int8::HISTOGRAM_BINS;

    fn hist(range: f32, nonzero: &[(usize, u64)]) -> AbsHistogram {
        let mut c = vec![0u64; HISTOGRAM_BINS];
        for &(b, n) in nonzero {
            c[b] = n;
        }
        AbsHistogram::from_counts(range, c).unwrap()
    }

    #[test]
    fn empty_and_zero_range_have_no_threshold() {
        assert_eq!(entropy_threshold(&hist(1.0, &[])), None);
        assert_eq!(entropy_threshold(&hist(0.0, &[(0, 10)])), None);
    }

    #[test]
    fn values_alone_in_their_levels_keep_the_whole_range() {
        // Eleven distinct values, each alone in its 16-bin level at k = 2048: Q equals P there, divergence 0.
        let mut bins: Vec<(usize, u64)> = (0..10).map(|i| (i * 204 + 3, 100 + i as u64)).collect();
        bins.push((2047, 7));
        let c = entropy_threshold(&hist(10.0, &bins)).unwrap();
        assert_eq!(c.bins_kept, 2048);
        assert_eq!(c.divergence, 0.0);
        assert_eq!(c.threshold, 10.0);
    }

    #[test]
    fn a_constant_tensor_is_not_clipped() {
        // All mass in the last bin: every k < 2048 keeps nothing and is skipped.
        let c = entropy_threshold(&hist(3.0, &[(2047, 1000)])).unwrap();
        assert_eq!(c.bins_kept, 2048);
        assert_eq!(c.threshold, 3.0);
    }

    #[test]
    fn a_few_far_outliers_are_clipped() {
        // A dense bulk in the first 100 bins and 3 values at the top: smoothing lets the
        // search saturate them instead of spending 94% of the levels on empty space.
        let mut bins: Vec<(usize, u64)> = (0..100).map(|b| (b, 10_000 - 90 * b as u64)).collect();
        bins.push((2047, 3));
        let c = entropy_threshold(&hist(20.48, &bins)).unwrap();
        assert!(c.bins_kept < 400, "{c:?}");
        assert!(c.threshold < 4.0);
    }

    #[test]
    fn much_saturated_mass_is_not_clipped() {
        // Half the values at the top: clipping them costs ~0.5 ln(0.5 / 1e-4) nats.
        let mut bins: Vec<(usize, u64)> = (0..100).map(|b| (b, 100)).collect();
        bins.push((2047, 10_000));
        let c = entropy_threshold(&hist(1.0, &bins)).unwrap();
        assert!(c.bins_kept > 2000, "{c:?}");
    }
}
