//! Scoring: from a recipe's error maps to normalised scores, regions and events.
//!
//! The per-frame path is `ErrorMap` (filled by the `*_into` functions) -> [`PatchDetector`]
//! -> [`Normalizer`] -> [`EventDetector`] (the last two coupled in [`ScoreStream`]). Every type on
//! that path preallocates in its constructor so that steady state allocates nothing per frame;
//! the offline helpers used by `vigil eval` ([`metrics`], [`median_filter`]) may allocate.
//!
//! Bad input (mismatched shapes, non-finite values, invalid configuration) is reported as a
//! [`ScoringError`], never as a panic: a broken model output must not take down a camera.

pub mod defaults;
pub mod episodes;
pub mod errormap;
pub mod event;
pub mod metrics;
pub mod normalizer;
pub mod patch;
pub mod smoothing;
pub mod stream;

pub use defaults::{default_events, default_normalizer, NormalScores};
pub use episodes::{event_metrics, EventMetrics, StreamEvents};
pub use errormap::{
    abs_error_into, fuse_into, l2_norm_channels_into, mean, mse, psnr, squared_error_into,
    upsample_nearest_into, ErrorMap, MSE_FLOOR,
};
pub use event::{EventConfig, EventDetector, EventInfo, Transition};
pub use metrics::{eer, minmax_normalize, roc_auc, roc_curve, RocCurve};
pub use normalizer::{Baseline, Normalizer, NormalizerConfig, RollingMinMax, ZScore, MAX_WINDOW};
pub use patch::{
    PatchConfig, PatchDetector, PatchReduce, PatchResult, Region, Regions, MAX_REGIONS,
};
pub use smoothing::{median_filter, MAX_MEDIAN_WIDTH};
pub use stream::{EventSpan, ScoreStream};

use thiserror::Error;

/// Everything that can go wrong in scoring. Messages name the offending value so that a
/// misconfigured `model.toml` or a broken model output can be fixed from the log line alone.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ScoringError {
    /// A map or buffer size that cannot describe an image.
    #[error("invalid map size {width}x{height}: both sides must be at least 1 and width*height must fit in memory")]
    InvalidSize { width: usize, height: usize },
    /// Two buffers that must have the same length do not.
    #[error("{what}: expected {expected} values, got {got}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// Two maps that must have the same geometry do not.
    #[error("{what}: expected a {expected_w}x{expected_h} map, got {got_w}x{got_h}")]
    ShapeMismatch {
        what: &'static str,
        expected_w: usize,
        expected_h: usize,
        got_w: usize,
        got_h: usize,
    },
    /// A configuration value outside its valid range.
    #[error("invalid {what}: {reason}")]
    InvalidConfig { what: &'static str, reason: String },
    /// NaN or infinity where a real number is required.
    #[error(
        "{what} is not finite (NaN or infinite); the value was rejected and no state was changed"
    )]
    NonFinite { what: &'static str },
    /// An operation that needs at least one value got none.
    #[error("{what} needs at least one value")]
    Empty { what: &'static str },
    /// Frame indices given to the event detector must increase strictly.
    #[error("frame index {got} does not follow {previous}: frame indices must increase strictly (call finish() or reset() before starting a new stream)")]
    OutOfOrder { previous: u64, got: u64 },
    /// ROC metrics are undefined when only positives or only negatives are present.
    #[error("ROC metrics need both classes, but all {count} labels are {class}")]
    OneClass { count: usize, class: &'static str },
}

/// Result alias for this module.
pub type Result<T, E = ScoringError> = std::result::Result<T, E>;

pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> ScoringError {
    ScoringError::InvalidConfig {
        what,
        reason: reason.into(),
    }
}
