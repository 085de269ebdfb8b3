//! Causal score normalisers: raw recipe scores to a comparable scale, one frame at a time.
//!
//! The papers min-max normalise each test video as a whole, which needs the future. A camera
//! only has the past: `baseline` (the default for calibrated packages) starts from the
//! package's statistics of normal footage and follows slow drift with a gated rolling median,
//! `minmax` runs over a rolling window, and `zscore` uses statistics fixed at calibration time.
//!
//! Non-finite input: every `push` rejects NaN and infinity with [`ScoringError::NonFinite`] and
//! leaves the state untouched, so one broken frame cannot poison the window for the next
//! `window` frames. The caller decides whether to skip the frame or stop.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{invalid, Result, ScoringError};

/// Longest rolling window accepted: about 9.7 hours at 30 fps, 32 MiB of deques. A larger
/// value is a configuration mistake, and must not abort the process on allocation.
pub const MAX_WINDOW: usize = 1 << 20;

/// A rolling window's length: at least one frame, at most [`MAX_WINDOW`].
fn check_window(what: &'static str, window: usize) -> Result<()> {
    if window == 0 || window > MAX_WINDOW {
        return Err(invalid(
            what,
            format!("must be between 1 and {MAX_WINDOW} frames, got {window}"),
        ));
    }
    Ok(())
}

/// Min-max over the last `window` values (the current one included), O(1) amortised per push.
///
/// Two monotonic deques hold the candidates for the window's minimum and maximum; each value
/// enters and leaves each deque at most once. Both deques are allocated with `window` capacity
/// up front and can never hold more, so `push` does not allocate.
#[derive(Debug, Clone)]
pub struct RollingMinMax {
    window: usize,
    floor: f32,
    /// Index the next pushed value gets. u64 does not wrap at 30 fps in any plausible uptime.
    next: u64,
    /// (index, value), values strictly increasing front to back: front is the minimum.
    mins: VecDeque<(u64, f32)>,
    /// (index, value), values strictly decreasing front to back: front is the maximum.
    maxs: VecDeque<(u64, f32)>,
}

impl RollingMinMax {
    /// `window >= 1` values; `floor >= 0` is the smallest range divided by, so that a quiet
    /// scene whose scores vary by 1e-4 is not stretched to fill [0, 1]. Take it from
    /// calibration (e.g. the typical range of normal footage).
    pub fn new(window: usize, floor: f32) -> Result<Self> {
        check_window("minmax normalizer window", window)?;
        if !(floor.is_finite() && floor >= 0.0) {
            return Err(invalid(
                "minmax normalizer floor",
                format!("must be a finite value >= 0, got {floor}"),
            ));
        }
        Ok(Self {
            window,
            floor,
            next: 0,
            mins: VecDeque::with_capacity(window),
            maxs: VecDeque::with_capacity(window),
        })
    }

    /// Adds `x` and returns `(x - min) / max(max - min, floor)` over the window, in [0, 1].
    /// When both the range and the floor are zero (a constant signal with `floor = 0`) the
    /// result is 0: nothing stands out.
    pub fn push(&mut self, x: f32) -> Result<f32> {
        if !x.is_finite() {
            return Err(ScoringError::NonFinite {
                what: "minmax normalizer input",
            });
        }
        let i = self.next;
        self.next += 1;
        // Values with index <= i - window have left the window.
        if let Some(oldest) = (i + 1).checked_sub(self.window as u64) {
            while self.mins.front().is_some_and(|&(j, _)| j < oldest) {
                self.mins.pop_front();
            }
            while self.maxs.front().is_some_and(|&(j, _)| j < oldest) {
                self.maxs.pop_front();
            }
        }
        while self.mins.back().is_some_and(|&(_, v)| v >= x) {
            self.mins.pop_back();
        }
        while self.maxs.back().is_some_and(|&(_, v)| v <= x) {
            self.maxs.pop_back();
        }
        self.mins.push_back((i, x));
        self.maxs.push_back((i, x));
        let (min, max) = (self.mins[0].1, self.maxs[0].1);
        let range = (max - min).max(self.floor);
        if range <= 0.0 {
            return Ok(0.0);
        }
        Ok(((x - min) / range).clamp(0.0, 1.0))
    }

    /// Current (min, max) of the window, or `None` before the first push.
    pub fn min_max(&self) -> Option<(f32, f32)> {
        Some((self.mins.front()?.1, self.maxs.front()?.1))
    }

    /// Forgets all history (e.g. after the camera was moved); keeps the allocation.
    pub fn reset(&mut self) {
        self.next = 0;
        self.mins.clear();
        self.maxs.clear();
    }
}

/// `(x - mean) / std` with statistics from training or calibration footage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZScore {
    mean: f32,
    std: f32,
}

impl ZScore {
    /// `mean` finite, `std` finite and > 0.
    pub fn new(mean: f32, std: f32) -> Result<Self> {
        if !mean.is_finite() {
            return Err(invalid(
                "zscore mean",
                format!("must be finite, got {mean}"),
            ));
        }
        if !(std.is_finite() && std > 0.0) {
            return Err(invalid(
                "zscore std",
                format!("must be a finite value > 0, got {std}"),
            ));
        }
        Ok(Self { mean, std })
    }

    pub fn apply(&self, x: f32) -> f32 {
        (x - self.mean) / self.std
    }

    pub fn mean(&self) -> f32 {
        self.mean
    }

    pub fn std(&self) -> f32 {
        self.std
    }
}

/// Where [`Baseline`] puts 0.5: this many spreads above the baseline. With the calibrated
/// spread (p99.9 - p50 of normal training frames) and a baseline at the normal median, 0.5 is
/// the level only one normal training frame in a thousand exceeds.
const BASELINE_MIDPOINT_SPREADS: f32 = 1.0;

/// Slope of the logistic in spreads: the baseline maps to 0.12, one spread above it to 0.5,
/// two spreads to 0.88. A logistic rather than a clamp keeps every frame's rank (no ties at 0
/// or 1), so AUCs of the normalised score equal those of `raw - baseline`.
const BASELINE_SLOPE: f32 = 2.0;

/// Default [`Baseline`] window: twice `relearn` (10 minutes at 10 fps). The median moves only
/// once half the window is new, so an anomaly too weak for the gate (admitted while below it)
/// is kept from becoming the scene for as long as a strong one is by `relearn`. Light and
/// season drift over tens of minutes; the median follows with a lag of half the window.
pub const DEFAULT_BASELINE_WINDOW: usize = 2 * DEFAULT_RELEARN;

fn default_baseline_window() -> usize {
    DEFAULT_BASELINE_WINDOW
}

/// Default [`Baseline`] gate: frames more than one spread above the baseline (beyond the
/// normal p99.9) do not teach it.
fn default_baseline_gate() -> f32 {
    1.0
}

/// Default [`Baseline`] relearn: 5 minutes at 10 fps. A product choice, not a fitted one: an
/// anomaly that lasts longer (a car left in a pedestrian zone) is by then the scene, and a
/// moved camera stops alarming within about 5.5 minutes.
pub const DEFAULT_RELEARN: usize = 3000;

fn default_baseline_relearn() -> usize {
    DEFAULT_RELEARN
}

/// A warm, gated baseline: `logistic(slope * ((x - level) / spread - 1))`, where `level` is the
/// median of the last `window` frames that looked normal, and `spread` is fixed.
///
/// * **Warm**: the window starts full of the calibrated normal median, so the first frame of a
///   camera session is scored against months of normal footage, not against itself. A session
///   that starts inside an anomaly scores it high; a cold min-max would call it the scene.
/// * **Cannot be taught an anomaly**: a frame enters the window only when it is at most `gate`
///   spreads above the level and the caller says it may (the daemon and `vigil eval` hold it
///   while an event is open). The median ignores the rest of the tail.
/// * **Follows drift**: light and season move the level slowly; the median follows with a lag
///   of half a window. A change larger than the gate (a moved camera) shuts every frame out; after
///   `relearn` consecutive frames shut out (gated or held), the level is taken to have changed
///   for good and frames are admitted until one passes the gate again (the median gets there
///   in half a window).
///
/// The spread stays the calibrated one: a scale learnt online from gated frames could only
/// ratchet up through the gate. Allocation happens in [`Baseline::new`] only.
#[derive(Debug, Clone)]
pub struct Baseline {
    window: usize,
    seed: f32,
    spread: f32,
    gate: f32,
    relearn: usize,
    /// Admitted values in arrival order, oldest first; always `window` long.
    recent: VecDeque<f32>,
    /// The same values, ascending.
    sorted: Vec<f32>,
    /// Consecutive frames kept out of the window.
    shut_out: usize,
}

impl Baseline {
    /// `median` and `spread` describe normal footage (the package's calibration: p50 and
    /// p99.9 - p50 of the raw score); `window` in 1..=[`MAX_WINDOW`]; `gate > 0` in spreads;
    /// `relearn >= 1` frames.
    pub fn new(median: f32, spread: f32, window: usize, gate: f32, relearn: usize) -> Result<Self> {
        if !median.is_finite() {
            return Err(invalid(
                "baseline normalizer median",
                format!("must be finite, got {median}"),
            ));
        }
        if !(spread.is_finite() && spread > 0.0) {
            return Err(invalid(
                "baseline normalizer spread",
                format!("must be a finite value > 0, got {spread}"),
            ));
        }
        check_window("baseline normalizer window", window)?;
        if !(gate.is_finite() && gate > 0.0) {
            return Err(invalid(
                "baseline normalizer gate",
                format!("must be a finite number of spreads > 0, got {gate}"),
            ));
        }
        if relearn == 0 {
            return Err(invalid(
                "baseline normalizer relearn",
                "must be at least 1 frame".to_owned(),
            ));
        }
        let mut b = Self {
            window,
            seed: median,
            spread,
            gate,
            relearn,
            recent: VecDeque::with_capacity(window),
            sorted: Vec::with_capacity(window),
            shut_out: 0,
        };
        b.reset();
        Ok(b)
    }

    /// The baseline the next frame is scored against: the window's median.
    pub fn level(&self) -> f32 {
        let n = self.sorted.len();
        if n % 2 == 1 {
            self.sorted[n / 2]
        } else {
            0.5 * (self.sorted[n / 2 - 1] + self.sorted[n / 2])
        }
    }

    /// Scores `x` against the current level, then lets it into the window if it looks normal
    /// and `learn` is true (the caller passes false while an event is open).
    pub fn push(&mut self, x: f32, learn: bool) -> Result<f32> {
        if !x.is_finite() {
            return Err(ScoringError::NonFinite {
                what: "baseline normalizer input",
            });
        }
        let z = (x - self.level()) / self.spread;
        let y = 1.0 / (1.0 + (-BASELINE_SLOPE * (z - BASELINE_MIDPOINT_SPREADS)).exp());
        if learn && z <= self.gate {
            self.shut_out = 0;
            self.admit(x);
        } else if self.shut_out >= self.relearn {
            self.admit(x);
        } else {
            self.shut_out += 1;
            if self.shut_out == self.relearn {
                log::info!(
                    "the score has stayed more than {} spreads above its baseline {} (or inside an event) for {} frames: taking the new level as normal",
                    self.gate,
                    self.level(),
                    self.relearn
                );
            }
        }
        Ok(y)
    }

    fn admit(&mut self, x: f32) {
        if let Some(old) = self.recent.pop_front() {
            // `old` is in `sorted` (every admitted value goes into both), so the position found
            // holds it.
            let i = self.sorted.partition_point(|&v| v < old);
            self.sorted.remove(i);
        }
        let j = self.sorted.partition_point(|&v| v < x);
        self.sorted.insert(j, x);
        self.recent.push_back(x);
    }

    /// Back to the calibrated start; keeps the allocation.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.sorted.clear();
        self.recent
            .extend(std::iter::repeat_n(self.seed, self.window));
        self.sorted
            .extend(std::iter::repeat_n(self.seed, self.window));
        self.shut_out = 0;
    }
}

/// Normaliser settings as written in `model.toml` / the daemon config, e.g.
/// `{ mode = "baseline", median = -0.14, spread = 2.95 }`,
/// `{ mode = "minmax", window = 300, floor = 0.05 }` or `{ mode = "zscore", mean = 1.2, std = 0.3 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum NormalizerConfig {
    /// Warm, gated rolling median of normal-looking frames (see [`Baseline`]).
    Baseline {
        median: f32,
        spread: f32,
        #[serde(default = "default_baseline_window")]
        window: usize,
        #[serde(default = "default_baseline_gate")]
        gate: f32,
        #[serde(default = "default_baseline_relearn")]
        relearn: usize,
    },
    /// Rolling min-max over `window` frames with a range floor.
    MinMax { window: usize, floor: f32 },
    /// Fixed statistics.
    ZScore { mean: f32, std: f32 },
}

impl NormalizerConfig {
    /// The raw score a normalised `score` corresponds to before the normaliser has learnt
    /// anything (the calibrated level for `baseline`), or `None` where it depends on the
    /// stream (`minmax`) or `score` is out of the normaliser's range. What `vigil check` prints
    /// beside the event thresholds.
    pub fn raw_at(&self, score: f32) -> Option<f32> {
        match *self {
            NormalizerConfig::Baseline { median, spread, .. } => {
                if !(score > 0.0 && score < 1.0) {
                    return None;
                }
                let z = BASELINE_MIDPOINT_SPREADS + (score / (1.0 - score)).ln() / BASELINE_SLOPE;
                Some(median + spread * z)
            }
            NormalizerConfig::MinMax { .. } => None,
            NormalizerConfig::ZScore { mean, std } => Some(mean + std * score),
        }
    }
}

/// A configured normaliser.
#[derive(Debug, Clone)]
pub enum Normalizer {
    Baseline(Baseline),
    MinMax(RollingMinMax),
    ZScore(ZScore),
}

impl Normalizer {
    /// Builds and validates a normaliser; all allocation happens here.
    pub fn from_config(cfg: &NormalizerConfig) -> Result<Self> {
        Ok(match *cfg {
            NormalizerConfig::Baseline {
                median,
                spread,
                window,
                gate,
                relearn,
            } => Normalizer::Baseline(Baseline::new(median, spread, window, gate, relearn)?),
            NormalizerConfig::MinMax { window, floor } => {
                Normalizer::MinMax(RollingMinMax::new(window, floor)?)
            }
            NormalizerConfig::ZScore { mean, std } => Normalizer::ZScore(ZScore::new(mean, std)?),
        })
    }

    /// Normalises one raw score, which may teach the normaliser. Non-finite input is rejected
    /// without changing any state.
    pub fn push(&mut self, x: f32) -> Result<f32> {
        self.push_learning(x, true)
    }

    /// [`Normalizer::push`], saying whether the frame may teach the normaliser what normal is:
    /// callers pass `false` while an event is open. Only `baseline` listens; `minmax` keeps
    /// its documented window of every frame.
    pub fn push_learning(&mut self, x: f32, learn: bool) -> Result<f32> {
        match self {
            Normalizer::Baseline(b) => b.push(x, learn),
            Normalizer::MinMax(m) => m.push(x),
            Normalizer::ZScore(z) => {
                if !x.is_finite() {
                    return Err(ScoringError::NonFinite {
                        what: "zscore normalizer input",
                    });
                }
                Ok(z.apply(x))
            }
        }
    }

    /// Forgets history: `minmax` starts empty, `baseline` from its calibrated level; a no-op
    /// for z-scores, whose statistics are fixed.
    pub fn reset(&mut self) {
        match self {
            Normalizer::Baseline(b) => b.reset(),
            Normalizer::MinMax(m) => m.reset(),
            Normalizer::ZScore(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// O(window) reference.
    fn naive(xs: &[f32], window: usize, floor: f32) -> Vec<f32> {
        (0..xs.len())
            .map(|i| {
                let w = &xs[(i + 1).saturating_sub(window)..=i];
                let lo = w.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let r = (hi - lo).max(floor);
                if r <= 0.0 {
                    0.0
                } else {
                    ((xs[i] - lo) / r).clamp(0.0, 1.0)
                }
            })
            .collect()
    }

    #[test]
    fn matches_naive_window_including_ties() {
        let xs: Vec<f32> = (0..200u32)
            .map(|i| ((i * 37 % 11) as f32) * 0.5 + if i % 13 == 0 { 3.0 } else { 0.0 })
            .collect();
        for window in [1, 2, 5, 16, 300] {
            let mut m = RollingMinMax::new(window, 0.1).unwrap();
            let got: Vec<f32> = xs.iter().map(|&x| m.push(x).unwrap()).collect();
            assert_eq!(got, naive(&xs, window, 0.1), "window {window}");
            assert!(m.mins.len() <= window && m.maxs.len() <= window);
        }
    }

    #[test]
    fn no_allocation_after_construction() {
        let mut m = RollingMinMax::new(8, 0.0).unwrap();
        let caps = (m.mins.capacity(), m.maxs.capacity());
        // Monotonic input is the worst case for deque length.
        for i in 0..100 {
            m.push(i as f32).unwrap();
        }
        for i in 0..100 {
            m.push(-(i as f32)).unwrap();
        }
        assert_eq!((m.mins.capacity(), m.maxs.capacity()), caps);
    }

    #[test]
    fn floor_keeps_quiet_scenes_quiet() {
        let mut no_floor = RollingMinMax::new(10, 0.0).unwrap();
        let mut floored = RollingMinMax::new(10, 0.5).unwrap();
        let mut last = (0.0, 0.0);
        for x in [1.000, 1.001, 1.000, 1.002] {
            last = (no_floor.push(x).unwrap(), floored.push(x).unwrap());
        }
        assert_eq!(last.0, 1.0, "without a floor a 0.002 bump is maximal");
        assert!(
            (last.1 - 0.004).abs() < 1e-4,
            "with a floor it is small: {}",
            last.1
        );
        // A constant signal gives 0, not NaN, even with no floor.
        let mut c = RollingMinMax::new(3, 0.0).unwrap();
        for _ in 0..5 {
            assert_eq!(c.push(2.0).unwrap(), 0.0);
        }
    }

    #[test]
    fn nan_is_rejected_without_poisoning() {
        let mut m = RollingMinMax::new(4, 0.0).unwrap();
        m.push(0.0).unwrap();
        m.push(10.0).unwrap();
        assert!(matches!(
            m.push(f32::NAN),
            Err(ScoringError::NonFinite { .. })
        ));
        assert!(m.push(f32::INFINITY).is_err());
        assert_eq!(m.min_max(), Some((0.0, 10.0)));
        assert_eq!(m.push(5.0).unwrap(), 0.5);
        m.reset();
        assert_eq!(m.min_max(), None);
        assert_eq!(m.push(7.0).unwrap(), 0.0);
    }

    #[test]
    fn baseline_starts_warm_where_a_cold_minmax_learns_the_anomaly() {
        // A session that starts inside an anomaly: 5 spreads above the normal median.
        let mut warm = Baseline::new(0.0, 1.0, 50, 1.0, 100).unwrap();
        let mut cold = RollingMinMax::new(50, 1.0).unwrap();
        for i in 0..40 {
            let x = 5.0 + 0.1 * (i % 3) as f32;
            let (w, c) = (warm.push(x, true).unwrap(), cold.push(x).unwrap());
            assert!(w > 0.99, "frame {i}: warm baseline gives {w}");
            assert!(c < 0.25, "frame {i}: cold min-max gives {c}");
        }
        assert_eq!(warm.level(), 0.0, "gated frames must not move the level");
        // Back to normal: the median and one spread above it land where documented.
        assert!((warm.push(0.0, true).unwrap() - 0.1192).abs() < 1e-3);
        assert!((warm.push(1.0, true).unwrap() - 0.5).abs() < 1e-6);
        assert!((warm.push(2.0, true).unwrap() - 0.8808).abs() < 1e-3);
    }

    #[test]
    fn raw_at_inverts_the_fresh_normaliser() {
        let cfg = NormalizerConfig::Baseline {
            median: -0.2,
            spread: 3.0,
            window: 10,
            gate: 1.0,
            relearn: 100,
        };
        for y in [0.05f32, 0.35, 0.5, 0.9] {
            let raw = cfg.raw_at(y).unwrap();
            let got = Normalizer::from_config(&cfg).unwrap().push(raw).unwrap();
            assert!((got - y).abs() < 1e-5, "{y}: raw {raw} gives {got}");
        }
        assert!(
            (cfg.raw_at(0.5).unwrap() - 2.8).abs() < 1e-6,
            "0.5 is one spread up"
        );
        assert_eq!(cfg.raw_at(1.0), None);
        let z = NormalizerConfig::ZScore {
            mean: 1.0,
            std: 2.0,
        };
        assert_eq!(z.raw_at(0.5), Some(2.0));
        let m = NormalizerConfig::MinMax {
            window: 3,
            floor: 1.0,
        };
        assert_eq!(m.raw_at(0.5), None);
    }

    #[test]
    fn baseline_is_monotone_in_the_raw_score() {
        let b = Baseline::new(0.3, 0.5, 9, 1.0, 100).unwrap();
        let mut last = 0.0;
        for i in -200..400 {
            let y = b.clone().push(i as f32 * 0.01, false).unwrap();
            assert!(
                y >= last && (0.0..=1.0).contains(&y),
                "x {} gives {y}",
                i as f32 * 0.01
            );
            last = y;
        }
        assert!(last > 0.99 && b.clone().push(-2.0, false).unwrap() < 0.01);
    }

    #[test]
    fn baseline_follows_slow_drift_and_holds_while_told() {
        let mut b = Baseline::new(0.0, 1.0, 101, 1.0, 1000).unwrap();
        // Normal noise around a level that climbs 2 spreads over 3000 frames.
        for i in 0..3000 {
            let x = 2.0 * i as f32 / 3000.0 + 0.3 * ((i * 7 % 11) as f32 / 10.0 - 0.5);
            b.push(x, true).unwrap();
        }
        assert!((b.level() - 2.0).abs() < 0.15, "level {}", b.level());
        // While an event is open nothing is learnt, even normal-looking frames.
        let before = b.level();
        for _ in 0..60 {
            b.push(before - 0.5, false).unwrap();
        }
        assert_eq!(b.level(), before);
    }

    #[test]
    fn baseline_takes_a_lasting_step_as_the_new_normal_after_relearn_frames() {
        let (w, relearn) = (40, 100);
        let mut b = Baseline::new(0.0, 1.0, w, 1.0, relearn).unwrap();
        let mut ys = Vec::new();
        for _ in 0..relearn + w {
            ys.push(b.push(6.0, true).unwrap());
        }
        // `relearn` frames are shut out (high scores: an event would be open), then the level
        // moves to the step within half a window and the score returns to normal.
        assert!(ys[..relearn + w / 2].iter().all(|&y| y > 0.99));
        assert!((b.level() - 6.0).abs() < 1e-6, "level {}", b.level());
        assert!((ys[relearn + w - 1] - 0.1192).abs() < 1e-3);
        // Normal again: the next gated frame goes back to being shut out, not admitted.
        b.push(20.0, true).unwrap();
        assert!((b.level() - 6.0).abs() < 1e-6);
    }

    #[test]
    fn baseline_never_allocates_after_construction_and_resets_to_its_seed() {
        let mut b = Baseline::new(1.0, 0.5, 16, 1.0, 40).unwrap();
        let caps = (b.recent.capacity(), b.sorted.capacity());
        for i in 0..500 {
            b.push((i % 13) as f32 * 0.07 + 0.8, i % 5 != 0).unwrap();
        }
        assert_eq!((b.recent.capacity(), b.sorted.capacity()), caps);
        assert!(b.sorted.windows(2).all(|p| p[0] <= p[1]));
        assert!(b.push(f32::NAN, true).is_err());
        b.reset();
        assert_eq!(b.level(), 1.0);
    }

    #[test]
    fn invalid_parameters() {
        assert!(Baseline::new(f32::NAN, 1.0, 3, 1.0, 10).is_err());
        let e = Baseline::new(0.0, 0.0, 3, 1.0, 10).unwrap_err();
        assert!(e.to_string().contains("baseline normalizer spread"), "{e}");
        assert!(Baseline::new(0.0, 1.0, 0, 1.0, 10).is_err());
        assert!(Baseline::new(0.0, 1.0, 3, -1.0, 10).is_err());
        assert!(Baseline::new(0.0, 1.0, 3, 1.0, 0).is_err());
        let e = RollingMinMax::new(0, 0.1).unwrap_err();
        assert!(e.to_string().contains("window: must be between 1"), "{e}");
        assert!(RollingMinMax::new(usize::MAX, 0.1).is_err());
        assert!(RollingMinMax::new(3, -1.0).is_err());
        assert!(RollingMinMax::new(3, f32::NAN).is_err());
        let e = ZScore::new(0.0, 0.0).unwrap_err();
        assert!(e.to_string().contains("zscore std"), "{e}");
        assert!(ZScore::new(f32::NAN, 1.0).is_err());
    }

    #[test]
    fn zscore_applies_statistics() {
        let mut n = Normalizer::from_config(&NormalizerConfig::ZScore {
            mean: 2.0,
            std: 0.5,
        })
        .unwrap();
        assert_eq!(n.push(3.0).unwrap(), 2.0);
        assert_eq!(n.push(1.0).unwrap(), -2.0);
        assert!(n.push(f32::NAN).is_err());
    }

    #[test]
    fn config_parses_from_toml_and_rejects_typos() {
        let c: NormalizerConfig =
            toml::from_str("mode = \"minmax\"\nwindow = 300\nfloor = 0.05").unwrap();
        assert_eq!(
            c,
            NormalizerConfig::MinMax {
                window: 300,
                floor: 0.05
            }
        );
        let c: NormalizerConfig =
            toml::from_str("mode = \"baseline\"\nmedian = -0.1\nspread = 2.5").unwrap();
        assert_eq!(
            c,
            NormalizerConfig::Baseline {
                median: -0.1,
                spread: 2.5,
                window: 6000,
                gate: 1.0,
                relearn: 3000
            }
        );
        assert!(toml::from_str::<NormalizerConfig>("mode = \"baseline\"\nmedian = 0.0").is_err());
        let c: NormalizerConfig =
            toml::from_str("mode = \"zscore\"\nmean = 1.0\nstd = 2.0").unwrap();
        assert!(matches!(c, NormalizerConfig::ZScore { .. }));
        assert!(toml::from_str::<NormalizerConfig>(
            "mode = \"minmax\"\nwindow = 3\nfloor = 0.1\nflor = 1"
        )
        .is_err());
        assert!(toml::from_str::<NormalizerConfig>("mode = \"median\"\nwindow = 3").is_err());
        let bad = NormalizerConfig::MinMax {
            window: 0,
            floor: 0.0,
        };
        assert!(Normalizer::from_config(&bad).is_err());
        let mut n = Normalizer::from_config(&NormalizerConfig::MinMax {
            window: 2,
            floor: 0.0,
        })
        .unwrap();
        n.push(0.0).unwrap();
        assert_eq!(n.push(4.0).unwrap(), 1.0);
        n.reset();
        assert_eq!(n.push(4.0).unwrap(), 0.0);
    }
}
