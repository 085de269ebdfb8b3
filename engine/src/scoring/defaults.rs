//! The scoring settings used when a camera's config names none. `vigil run`, `vigil eval` and
//! `vigil bench` all take them from here, so what is evaluated is what is deployed.

use super::{EventConfig, NormalizerConfig};

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
