//! INT8 activation calibration: per-tensor scales for TensorRT, written as a calibration cache.
//!
//! # Why EntropyCalibration2
//!
//! TensorRT quantises an activation tensor symmetrically: `q = clamp(round(x / scale), -127, 127)`
//! with one scale per tensor, so the only choice calibration makes is the threshold `T` beyond
//! which values saturate (`scale = T / 127`). Taking `T = max|x|` (MinMax) wastes most of the
//! 256 levels on a handful of rare large activations; a threshold that clips them keeps
//! resolution where the mass is. EntropyCalibration2 chooses the threshold whose quantised
//! distribution loses the least information (smallest KL divergence from the original one). It
//! is TensorRT's recommended INT8 calibrator for CNNs, which all five Vigil models are; MinMax
//! and percentile thresholds are here for comparison and for tensors where clipping is wrong.
//!
//! # Conventions (the exact contract; `tests/fixtures/int8/gen_fixtures.py` implements the same)
//!
//! * **Histogram.** Absolute values of the finite activations, [`HISTOGRAM_BINS`] (2048) equal
//!   bins over `[0, amax]`, `amax` = the largest |x| seen in the range pass. A value goes to
//!   bin `min(floor(f64(|x|) * 2048 / f64(amax)), 2047)`; `|x| == amax` lands in the last bin.
//!   Non-finite values are skipped and counted. Values above `amax` (possible only when the
//!   histogram pass sees data the range pass did not) are counted in the last bin and reported.
//! * **Two passes, not one.** Pass 1 ([`RangePass`]) records max |x| per tensor, pass 2
//!   ([`HistogramPass`]) fills histograms with that fixed range. A single pass that re-bins when
//!   the max grows would make the histogram (and so the scale) depend on batch order and would
//!   not put the bins over `[0, amax]`; calibration is offline, so one more pass over the data
//!   is the cheaper price. Neither pass allocates per batch (histograms are allocated when pass
//!   2 starts, a tensor's name once when it is first seen).
//! * **Entropy search** (NVIDIA, Szymon Migacz, "8-bit Inference with TensorRT", GTC 2017). For
//!   every `k` in `128..=2048` bins kept: `P = bins[..k]` with the count of all bins `>= k` (the
//!   values that would saturate) added to `P[k-1]`; `Q` merges `bins[..k]` (outliers not
//!   included) into 128 levels, bin `b` belonging to level `floor(b * 128 / k)`, and spreads
//!   each level's count evenly over the bins of that level where `P` is non-zero (bins where
//!   `P` is zero stay zero in `Q`). Both are normalised and `KL(P || Q) = sum p ln(p / q)` over
//!   `p > 0`. The smallest divergence wins; an exact tie goes to the smaller `k` (finer steps).
//!   **Threshold = `k * amax / 2048`, the right edge of the last kept bin**: that is exactly the
//!   range `P` describes, and it matches NVIDIA's pytorch-quantization. (The GTC slides write
//!   `(m + 0.5) * bin_width`, half a bin further; TensorRT's own choice is not published.)
//! * **Epsilon.** `Q` is zero where `P` is not only at `P[k-1]`, when the last level of `Q` is
//!   entirely empty but saturated values are folded into it. KL is then infinite, which would
//!   forbid clipping a few huge outliers that sit far from the bulk (the case this method exists
//!   for). Instead such bins get `q = EPSILON` (1e-4) and `Q` is renormalised
//!   (`q' = (q + EPSILON * mask) / (1 + EPSILON * count)`): clipping is charged about
//!   `p ln(p / EPSILON)`, small for a few outliers, large when much mass would saturate. A
//!   candidate that keeps no mass at all (`bins[..k]` all zero) is skipped: there `Q` is
//!   undefined and smoothing would score it as perfect.
//! * **Few occupied bins** (tiny or discrete-valued tensors) need no special case: the search is
//!   defined for any non-empty histogram; `k = 2048` always has `Q` defined, so there is always
//!   a winner, and a tensor whose values each sit alone in a level gets divergence 0 there.
//! * **Percentile `p`**: the smallest bin `j` whose cumulative count reaches `p / 100 * total`;
//!   threshold = `(j + 1) * amax / 2048` (right edge again). **MinMax**: threshold = `amax`.
//! * **Scale** = `f32(threshold / 127)` computed in f64. A tensor with no finite value or only
//!   zeros gets [`Scale::FALLBACK`] = 1/127 (dynamic range 1.0): any scale represents zeros
//!   exactly, and a unit range keeps requantisation ratios in fused layers ordinary.
//!
//! # What was checked against what
//!
//! `tests/int8_fixtures.rs` compares this code with an independent numpy implementation of the
//! rules above (`tests/fixtures/int8/gen_fixtures.py`, vectorised, written from this description,
//! not from the Rust) on gaussian, laplacian, ReLU, uniform, discrete, outlier, all-zero and
//! tiny tensors: the chosen bin exactly, scales within 1e-6 relative, histograms built from
//! raw values bin for bin (one set puts 143 values exactly on bin edges). The generator refuses cases whose best and second-best divergences
//! are so close that rounding could swap them. Not checked: TensorRT's own calibrator output
//! (its implementation is closed; no GPU calibration run was part of this work).

mod cache;
mod entropy;
mod histogram;
mod scale;

pub use cache::{CacheParseError, CacheVersion, CalibrationCache, CalibrationMethod};
pub use entropy::{entropy_threshold, EntropyChoice, EPSILON, INT8_LEVELS};
pub use histogram::{AbsHistogram, HistogramPass, RangePass, RangeStats, HISTOGRAM_BINS};
pub use scale::{calibrate, Outcome, Percentile, Scale, ScaleMethod, TensorCalibration};

use thiserror::Error;

/// What can go wrong building INT8 statistics, scales or caches (parsing has its own error,
/// [`CacheParseError`], because it reports line numbers).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Int8Error {
    #[error("scale {0} is not a finite number > 0")]
    InvalidScale(f32),
    #[error("histogram range {0} is not a finite number >= 0")]
    InvalidRange(f32),
    #[error("a histogram has {expected} bins, got {got}")]
    BinCount { expected: usize, got: usize },
    #[error("histogram counts overflow u64")]
    CountOverflow,
    #[error("histograms over different ranges ({0} and {1}) cannot be merged")]
    RangeMismatch(f32, f32),
    #[error("percentile {0} is not in (0, 100]")]
    InvalidPercentile(f64),
    #[error("tensor `{0}` was not seen in the range pass, so it has no histogram range")]
    UnknownTensor(String),
    #[error("tensor name {name:?} cannot go into a calibration cache: {reason}")]
    InvalidTensorName { name: String, reason: &'static str },
    #[error("tensor `{0}` is already in the calibration cache")]
    DuplicateTensor(String),
    #[error("TensorRT version {major}.{minor}.{patch} has no integer encoding: {reason}")]
    InvalidVersion {
        major: u32,
        minor: u32,
        patch: u32,
        reason: &'static str,
    },
}

/// A name TensorRT's cache format can carry: one line, with the scale after the *last* colon
/// (names like `input_1:0` or `(Unnamed Layer* 3) [Shuffle]_output` are common, so colons and
/// inner spaces are fine), and no surrounding whitespace, which a reader could not tell apart
/// from the separator.
pub(crate) fn check_tensor_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.chars().any(char::is_control) {
        Err("it contains a control character (a line break would split the entry)")
    } else if name.trim() != name {
        Err("it starts or ends with whitespace")
    } else {
        Ok(())
    }
}
