//! The scoring settings used when a camera's config names none. `vigil run`, `vigil eval` and
//! `vigil bench` all take them from here, so what is evaluated is what is deployed.

use super::{EventConfig, NormalizerConfig};

/// Window of the rolling min-max normaliser: 60 s at 10 fps, long enough that one anomaly does
/// not become the scene's new normal, short enough to follow light changes. (The default
/// baseline's is `normalizer::DEFAULT_BASELINE_WINDOW`.)
pub const DEFAULT_WINDOW: usize = 600;

/// What a package's calibration says about the raw score on normal footage
/// (`ModelPackage::normal_scores`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalScores {
    /// p50 of the raw score on normal training frames.
    pub median: f32,
    /// p99.9 - p50: the scale of a scene's noise.
    pub spread: f32,
}

/// The default normaliser: a warm baseline ([`super::normalizer::Baseline`]) that starts at
/// the calibrated normal median and puts 0.5 (the default `on` threshold) one calibrated spread
/// above the baseline, the level one normal training frame in a thousand exceeds. Nothing in it
/// was tuned on test videos: both numbers are the package's statistics of training frames.
/// Uncalibrated packages fall back to z-scores of 0/1.
pub fn default_normalizer(normal: Option<NormalScores>) -> NormalizerConfig {
    match normal {
        Some(n) => NormalizerConfig::Baseline {
            median: n.median,
            spread: n.spread.max(1e-6),
            window: super::normalizer::DEFAULT_BASELINE_WINDOW,
            gate: 1.0,
            relearn: super::normalizer::DEFAULT_RELEARN,
        },
        None => NormalizerConfig::ZScore {
            mean: 0.0,
            std: 1.0,
        },
    }
}

/// The rolling min-max normaliser vigil used before the baseline (kept for configurations that
/// name it): the calibrated spread as the range floor, so a quiet scene's noise is not
/// stretched to [0, 1].
pub fn minmax_normalizer(normal: NormalScores) -> NormalizerConfig {
    NormalizerConfig::MinMax {
        window: DEFAULT_WINDOW,
        floor: normal.spread.max(1e-6),
    }
}

/// The default hysteresis (docs/models.md, "From score to events").
pub fn default_events() -> EventConfig {
    EventConfig {
        on: 0.5,
        off: 0.35,
        min_frames_on: 3,
        min_frames_off: 5,
        cooldown_frames: 10,
        update_every_frames: 10,
    }
}
