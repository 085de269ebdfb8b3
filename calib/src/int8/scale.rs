//! Scales and the three ways of choosing them.

use std::collections::BTreeMap;
use std::fmt;

use super::cache::CalibrationMethod;
use super::entropy::entropy_threshold;
use super::histogram::{AbsHistogram, HistogramPass, RangeStats, HISTOGRAM_BINS};
use super::Int8Error;

/// An INT8 quantisation scale: `x ≈ scale * q`, `q` in -127..=127. Always finite and > 0,
/// because TensorRT divides by it and a cache entry of 0 or NaN would silently break the
/// engine.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Scale(f32);

impl Scale {
    /// The scale given to tensors with nothing to calibrate (all zeros, or no finite value):
    /// dynamic range 1.0. See "Conventions" in the module docs.
    pub const FALLBACK: Scale = Scale(1.0 / 127.0);

    pub fn new(scale: f32) -> Result<Self, Int8Error> {
        if scale.is_finite() && scale > 0.0 {
            Ok(Self(scale))
        } else {
            Err(Int8Error::InvalidScale(scale))
        }
    }

    /// The scale that saturates at `threshold` (TensorRT's "dynamic range"): `threshold / 127`,
    /// divided in f64 and rounded once to f32.
    pub fn from_threshold(threshold: f64) -> Result<Self, Int8Error> {
        Self::new((threshold / 127.0) as f32)
    }

    /// The scale whose IEEE-754 bits are `bits`, as a calibration cache stores it.
    pub fn from_bits(bits: u32) -> Result<Self, Int8Error> {
        Self::new(f32::from_bits(bits))
    }

    pub fn get(self) -> f32 {
        self.0
    }

    pub fn to_bits(self) -> u32 {
        self.0.to_bits()
    }

    /// The largest |x| representable without saturation: `scale * 127`.
    pub fn dynamic_range(self) -> f32 {
        self.0 * 127.0
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A percentile in (0, 100].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percentile(f64);

impl Percentile {
    pub fn new(p: f64) -> Result<Self, Int8Error> {
        if p > 0.0 && p <= 100.0 {
            Ok(Self(p))
        } else {
            Err(Int8Error::InvalidPercentile(p))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// How a tensor's saturation threshold is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScaleMethod {
    /// KL-divergence search, TensorRT's EntropyCalibration2.
    Entropy,
    /// The largest |x| seen: nothing saturates.
    MinMax,
    /// The given percentile of |x|.
    Percentile(Percentile),
}

impl ScaleMethod {
    /// The TensorRT calibrator that computes thresholds this way, for a cache header. A
    /// percentile has none: TensorRT reads a cache only through a calibrator whose algorithm
    /// matches the header, so the caller must say which one the engine builder will use.
    pub fn trt_algorithm(self) -> Option<CalibrationMethod> {
        match self {
            ScaleMethod::Entropy => Some(CalibrationMethod::EntropyCalibration2),
            ScaleMethod::MinMax => Some(CalibrationMethod::MinMaxCalibration),
            ScaleMethod::Percentile(_) => None,
        }
    }
}

/// How a tensor's threshold came about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Threshold = largest |x|.
    MinMax,
    /// Threshold = right edge of bin `bins_kept - 1`.
    Entropy { bins_kept: usize, divergence: f64 },
    /// Threshold = right edge of bin `bin`.
    Percentile { bin: usize },
    /// No finite non-zero value: [`Scale::FALLBACK`].
    Degenerate,
}

/// The calibration of one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorCalibration {
    pub scale: Scale,
    /// Saturation threshold in f64, before rounding `threshold / 127` to the f32 scale.
    pub threshold: f64,
    pub outcome: Outcome,
}

impl TensorCalibration {
    const DEGENERATE: TensorCalibration = TensorCalibration {
        scale: Scale::FALLBACK,
        threshold: 1.0,
        outcome: Outcome::Degenerate,
    };

    fn from_threshold(threshold: f64, outcome: Outcome) -> Self {
        match Scale::from_threshold(threshold) {
            Ok(scale) => Self {
                scale,
                threshold,
                outcome,
            },
            // A threshold so close to zero that threshold / 127 underflows f32.
            Err(_) => {
                log::warn!(
                    "int8 calibration: threshold {threshold:e} is too small for an f32 scale; \
                     using the fallback scale"
                );
                Self::DEGENERATE
            }
        }
    }
}

/// Calibrates one tensor from its histogram. Never fails: a tensor with nothing to measure
/// gets [`Outcome::Degenerate`], and anything unusual is logged.
pub fn calibrate(hist: &AbsHistogram, method: ScaleMethod) -> TensorCalibration {
    if hist.above_range() > 0 {
        log::warn!(
            "int8 calibration: {} values exceeded the histogram range {} (largest {}); they \
             were counted in the last bin. Were both passes fed the same data?",
            hist.above_range(),
            hist.range(),
            hist.amax()
        );
    }
    let amax = hist.amax();
    if hist.total() == 0 || amax == 0.0 {
        return TensorCalibration::DEGENERATE;
    }
    let minmax = || TensorCalibration::from_threshold(f64::from(amax), Outcome::MinMax);
    if hist.range() == 0.0 && method != ScaleMethod::MinMax {
        log::warn!(
            "int8 calibration: the range pass saw only zeros but the histogram pass saw values \
             up to {amax}; using that maximum"
        );
        return minmax();
    }
    match method {
        ScaleMethod::MinMax => minmax(),
        ScaleMethod::Entropy => match entropy_threshold(hist) {
            Some(c) => TensorCalibration::from_threshold(
                c.threshold,
                Outcome::Entropy {
                    bins_kept: c.bins_kept,
                    divergence: c.divergence,
                },
            ),
            // Unreachable with total > 0 and range > 0, but a max is always a safe answer.
            None => minmax(),
        },
        ScaleMethod::Percentile(p) => {
            let bin = percentile_bin(hist.counts(), hist.total(), p);
            let threshold = (bin + 1) as f64 * f64::from(hist.range()) / HISTOGRAM_BINS as f64;
            TensorCalibration::from_threshold(threshold, Outcome::Percentile { bin })
        }
    }
}

/// The smallest bin whose cumulative count reaches `p / 100 * total`.
fn percentile_bin(counts: &[u64], total: u64, p: Percentile) -> usize {
    let target = p.get() / 100.0 * total as f64;
    let mut cumulative = 0u64;
    for (bin, &c) in counts.iter().enumerate() {
        cumulative = cumulative.saturating_add(c);
        if cumulative as f64 >= target {
            return bin;
        }
    }
    counts.len().saturating_sub(1)
}

impl RangeStats {
    /// MinMax calibration straight from pass 1, for when no histogram pass is run.
    pub fn minmax(&self) -> TensorCalibration {
        if self.finite == 0 || self.amax == 0.0 {
            return TensorCalibration::DEGENERATE;
        }
        TensorCalibration::from_threshold(f64::from(self.amax), Outcome::MinMax)
    }
}

impl HistogramPass {
    /// Calibrates every tensor, in name order.
    pub fn calibrate(&self, method: ScaleMethod) -> BTreeMap<String, TensorCalibration> {
        self.iter()
            .map(|(name, hist)| {
                let c = calibrate(hist, method);
                if c.outcome == Outcome::Degenerate {
                    log::warn!(
                        "int8 calibration: tensor `{name}` had no finite non-zero value; \
                         it gets the fallback scale {}",
                        Scale::FALLBACK
                    );
                }
                if hist.non_finite() > 0 {
                    log::warn!(
                        "int8 calibration: tensor `{name}`: {} NaN or infinite values skipped",
                        hist.non_finite()
                    );
                }
                (name.to_owned(), c)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_finite_and_positive() {
        assert!(Scale::new(0.0).is_err());
        assert!(Scale::new(-1.0).is_err());
        assert!(Scale::new(f32::NAN).is_err());
        assert!(Scale::new(f32::INFINITY).is_err());
        assert!(Scale::from_threshold(1e-50).is_err());
        let s = Scale::from_threshold(127.0).unwrap();
        assert_eq!(s.get(), 1.0);
        assert_eq!(s.dynamic_range(), 127.0);
        assert_eq!(Scale::from_bits(0x3c01_0204).unwrap(), Scale::FALLBACK);
    }

    #[test]
    fn percentile_bounds() {
        assert!(Percentile::new(0.0).is_err());
        assert!(Percentile::new(100.000_1).is_err());
        assert!(Percentile::new(f64::NAN).is_err());
        assert!(Percentile::new(100.0).is_ok());
    }

    #[test]
    fn percentile_uses_the_right_edge_of_the_reaching_bin() {
        let mut c = vec![0u64; HISTOGRAM_BINS];
        c[9] = 99;
        c[2047] = 1;
        let h = AbsHistogram::from_counts(2048.0, c).unwrap();
        let p = |x| calibrate(&h, ScaleMethod::Percentile(Percentile::new(x).unwrap()));
        assert_eq!(p(99.0).outcome, Outcome::Percentile { bin: 9 });
        assert_eq!(p(99.0).threshold, 10.0);
        assert_eq!(p(99.5).outcome, Outcome::Percentile { bin: 2047 });
        assert_eq!(p(100.0).threshold, 2048.0);
    }

    #[test]
    fn degenerate_tensors_get_the_fallback() {
        let mut zeros = AbsHistogram::new(0.0).unwrap();
        zeros.add(&[0.0; 16]);
        for m in [ScaleMethod::Entropy, ScaleMethod::MinMax] {
            assert_eq!(calibrate(&zeros, m).outcome, Outcome::Degenerate);
            assert_eq!(calibrate(&zeros, m).scale, Scale::FALLBACK);
        }
        let nothing = AbsHistogram::new(1.0).unwrap();
        assert_eq!(
            calibrate(&nothing, ScaleMethod::Entropy).outcome,
            Outcome::Degenerate
        );
        assert_eq!(RangeStats::default().minmax().outcome, Outcome::Degenerate);
    }

    #[test]
    fn values_beyond_a_zero_range_fall_back_to_their_max() {
        let mut h = AbsHistogram::new(0.0).unwrap();
        h.add(&[0.0, 2.54]);
        let c = calibrate(&h, ScaleMethod::Entropy);
        assert_eq!(c.outcome, Outcome::MinMax);
        assert!((c.scale.get() - 0.02).abs() < 1e-7);
    }
}
