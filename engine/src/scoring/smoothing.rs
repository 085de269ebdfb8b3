//! Temporal smoothing of frame scores: offline (evaluation) and streaming (run time).

use super::{invalid, Result, ScoringError};

/// Widest median accepted. Both medians cost O(width) per value; far wider than any paper
/// uses (17), and small enough that a typo cannot trigger a huge allocation.
pub const MAX_MEDIAN_WIDTH: usize = 1 << 16;

/// Median filter over a whole score sequence, identical to `scipy.signal.medfilt(x, width)`:
/// each output is the median of the `width` values centred on it, with zeros standing in for
/// values beyond either end. `width` must be odd. HF2-VAD's evaluation uses width 17.
///
/// Offline only (allocates its output); the streaming counterpart is [`CausalMedian`].
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

/// Streaming median of the last `width` values (fewer while the first values arrive).
///
/// Causal, so it lags a centred median by `width / 2` frames; with an even count the mean of
/// the two middle values is returned. O(width) per push with no allocation: a ring buffer in
/// arrival order plus the same values kept sorted.
#[derive(Debug, Clone)]
pub struct CausalMedian {
    width: usize,
    ring: Vec<f32>,
    head: usize,
    sorted: Vec<f32>,
}

impl CausalMedian {
    pub fn new(width: usize) -> Result<Self> {
        if width == 0 || width > MAX_MEDIAN_WIDTH {
            return Err(invalid(
                "causal median width",
                format!("must be between 1 and {MAX_MEDIAN_WIDTH}, got {width}"),
            ));
        }
        Ok(Self {
            width,
            ring: Vec::with_capacity(width),
            head: 0,
            sorted: Vec::with_capacity(width),
        })
    }

    /// Adds `x` and returns the current median. Non-finite values are rejected and leave the
    /// state unchanged.
    pub fn push(&mut self, x: f32) -> Result<f32> {
        if !x.is_finite() {
            return Err(ScoringError::NonFinite {
                what: "causal median input",
            });
        }
        if self.ring.len() < self.width {
            self.ring.push(x);
        } else {
            let old = std::mem::replace(&mut self.ring[self.head], x);
            self.head = (self.head + 1) % self.width;
            // The value is present, so the search finds it; any equal copy is as good.
            if let Ok(pos) = self.sorted.binary_search_by(|v| v.total_cmp(&old)) {
                self.sorted.remove(pos);
            }
        }
        let pos = self
            .sorted
            .partition_point(|v| v.total_cmp(&x) == std::cmp::Ordering::Less);
        self.sorted.insert(pos, x);
        let n = self.sorted.len();
        Ok(if n % 2 == 1 {
            self.sorted[n / 2]
        } else {
            (self.sorted[n / 2 - 1] + self.sorted[n / 2]) * 0.5
        })
    }

    pub fn reset(&mut self) {
        self.ring.clear();
        self.sorted.clear();
        self.head = 0;
    }
}

/// Exponential moving average `y = alpha * x + (1 - alpha) * y_prev`, started at the first
/// value (so there is no bias towards zero at start-up).
#[derive(Debug, Clone, Copy)]
pub struct Ema {
    alpha: f32,
    state: Option<f32>,
}

impl Ema {
    /// `alpha` in (0, 1]; 1 disables smoothing.
    pub fn new(alpha: f32) -> Result<Self> {
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(invalid(
                "EMA alpha",
                format!("must be in (0, 1], got {alpha}"),
            ));
        }
        Ok(Self { alpha, state: None })
    }

    /// Adds `x` and returns the smoothed value. Non-finite values are rejected and leave the
    /// state unchanged.
    pub fn push(&mut self, x: f32) -> Result<f32> {
        if !x.is_finite() {
            return Err(ScoringError::NonFinite { what: "EMA input" });
        }
        let y = match self.state {
            None => x,
            Some(prev) => self.alpha * x + (1.0 - self.alpha) * prev,
        };
        self.state = Some(y);
        Ok(y)
    }

    pub fn reset(&mut self) {
        self.state = None;
    }
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

    #[test]
    fn causal_median_tracks_the_window() {
        let mut m = CausalMedian::new(3).unwrap();
        let got: Vec<f32> = [1.0, 5.0, 3.0, 9.0, 9.0, 0.0, 2.0]
            .iter()
            .map(|&x| m.push(x).unwrap())
            .collect();
        // windows: [1] [1,5] [1,5,3] [5,3,9] [3,9,9] [9,9,0] [9,0,2]
        assert_eq!(got, vec![1.0, 3.0, 3.0, 5.0, 9.0, 9.0, 2.0]);
        let cap = m.sorted.capacity();
        assert!(m.push(f32::NAN).is_err());
        assert_eq!(m.push(4.0).unwrap(), 2.0); // [0,2,4]
        assert_eq!(m.sorted.capacity(), cap);
        m.reset();
        assert_eq!(m.push(7.0).unwrap(), 7.0);
        assert!(CausalMedian::new(0).is_err());
        assert!(CausalMedian::new(usize::MAX).is_err());
    }

    #[test]
    fn ema_smooths() {
        let mut e = Ema::new(0.5).unwrap();
        assert_eq!(e.push(2.0).unwrap(), 2.0);
        assert_eq!(e.push(4.0).unwrap(), 3.0);
        assert!(e.push(f32::INFINITY).is_err());
        assert_eq!(e.push(3.0).unwrap(), 3.0);
        e.reset();
        assert_eq!(e.push(10.0).unwrap(), 10.0);
        assert!(Ema::new(0.0).is_err());
        assert!(Ema::new(1.5).is_err());
        assert!(Ema::new(f32::NAN).is_err());
    }
}
