//! `vigil-calib`: calibration of what a model produces.
//!
//! Score calibration (this crate today): statistics of a recipe's score components on normal
//! training frames, which turn raw errors into comparable z-scores for streaming fusion, and
//! quantiles of the fused score, which set the normaliser's range floor and alarm thresholds for
//! a target false-alarm rate.
//!
//! INT8 activation calibration ([`int8`]): per-tensor activation histograms collected in two
//! passes, EntropyCalibration2 / MinMax / percentile scales, and TensorRT's calibration cache
//! format (writer and parser).

pub mod int8;

pub use int8::{
    calibrate, AbsHistogram, CacheParseError, CacheVersion, CalibrationCache, CalibrationMethod,
    HistogramPass, Int8Error, Outcome, Percentile, RangePass, RangeStats, Scale, ScaleMethod,
    TensorCalibration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum CalibError {
    #[error("calibration needs at least {needed} finite samples, got {got}")]
    TooFew { needed: usize, got: usize },
    #[error("false-alarm rate {0} must be in (0, 1)")]
    Rate(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    pub mean: f32,
    pub std: f32,
}

/// Mean and (population) standard deviation of the finite samples, accumulated in f64.
/// A constant series gets a tiny positive std so that z-scores stay finite.
pub fn mean_std(samples: &[f32]) -> Result<MeanStd, CalibError> {
    let finite: Vec<f64> = samples
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| v as f64)
        .collect();
    if finite.len() < 2 {
        return Err(CalibError::TooFew {
            needed: 2,
            got: finite.len(),
        });
    }
    let n = finite.len() as f64;
    let mean = finite.iter().sum::<f64>() / n;
    let var = finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    Ok(MeanStd {
        mean: mean as f32,
        std: (var.sqrt() as f32).max(f32::EPSILON * mean.abs().max(1.0) as f32),
    })
}

/// Quantile with linear interpolation between order statistics (numpy's default "linear").
pub fn quantile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = (pos - lo as f64) as f32;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub mean: f32,
    pub std: f32,
    pub p50: f32,
    pub p99: f32,
    pub p999: f32,
    pub max: f32,
}

pub fn quantiles(samples: &[f32]) -> Result<Quantiles, CalibError> {
    let ms = mean_std(samples)?;
    let mut s: Vec<f32> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    Ok(Quantiles {
        mean: ms.mean,
        std: ms.std,
        p50: quantile(&s, 0.5),
        p99: quantile(&s, 0.99),
        p999: quantile(&s, 0.999),
        max: *s.last().unwrap_or(&f32::NAN),
    })
}

/// The score above which at most `rate` of the normal samples lie: the threshold that gives
/// that false-alarm rate per frame on data like the calibration set.
pub fn threshold_for_false_alarm_rate(samples: &[f32], rate: f64) -> Result<f32, CalibError> {
    if !(rate > 0.0 && rate < 1.0) {
        return Err(CalibError::Rate(rate));
    }
    let mut s: Vec<f32> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if s.len() < 2 {
        return Err(CalibError::TooFew {
            needed: 2,
            got: s.len(),
        });
    }
    s.sort_by(|a, b| a.total_cmp(b));
    Ok(quantile(&s, 1.0 - rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from numpy: np.mean, np.std (ddof=0), np.quantile(method="linear").
    #[test]
    fn matches_numpy() {
        let x = [3.0f32, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let ms = mean_std(&x).unwrap();
        assert!((ms.mean - 3.875).abs() < 1e-6);
        assert!((ms.std - 2.5708705).abs() < 1e-5);
        let q = quantiles(&x).unwrap();
        assert!((q.p50 - 3.5).abs() < 1e-6);
        assert!((q.p99 - 8.79).abs() < 1e-4);
        assert_eq!(q.max, 9.0);
    }

    #[test]
    fn threshold_for_rate() {
        let x: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        assert!((threshold_for_false_alarm_rate(&x, 0.1).unwrap() - 90.0).abs() < 1e-5);
        assert!(threshold_for_false_alarm_rate(&x, 1.5).is_err());
    }

    #[test]
    fn rejects_too_few_and_ignores_nan() {
        assert!(mean_std(&[1.0]).is_err());
        assert!(mean_std(&[f32::NAN, 1.0]).is_err());
        let ms = mean_std(&[f32::NAN, 1.0, 3.0]).unwrap();
        assert_eq!(ms.mean, 2.0);
    }
}
