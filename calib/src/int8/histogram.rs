//! Per-tensor activation statistics, collected batch by batch in two passes.

use std::collections::BTreeMap;

use super::{check_tensor_name, Int8Error};

/// Bins of an |x| histogram. TensorRT's calibrators and NVIDIA's description of them use 2048.
pub const HISTOGRAM_BINS: usize = 2048;

/// Histogram of |x| over `[0, range]` in [`HISTOGRAM_BINS`] equal bins (binning rule in the
/// module docs of [`crate::int8`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AbsHistogram {
    range: f32,
    counts: Vec<u64>,
    total: u64,
    above_range: u64,
    non_finite: u64,
    observed_max: f32,
}

impl AbsHistogram {
    /// An empty histogram over `[0, range]`; `range` is normally the tensor's max |x| from the
    /// range pass. A range of 0 (a tensor that was all zeros) is allowed: every value then
    /// lands in bin 0, or counts as above the range.
    pub fn new(range: f32) -> Result<Self, Int8Error> {
        if !(range.is_finite() && range >= 0.0) {
            return Err(Int8Error::InvalidRange(range));
        }
        Ok(Self::empty(range))
    }

    /// `range` must be finite and >= 0.
    fn empty(range: f32) -> Self {
        debug_assert!(range.is_finite() && range >= 0.0);
        Self {
            range,
            counts: vec![0; HISTOGRAM_BINS],
            total: 0,
            above_range: 0,
            non_finite: 0,
            observed_max: 0.0,
        }
    }

    /// A histogram built elsewhere (for instance by another process or a reference
    /// implementation): `counts` must have [`HISTOGRAM_BINS`] entries over `[0, range]`.
    pub fn from_counts(range: f32, counts: Vec<u64>) -> Result<Self, Int8Error> {
        let mut h = Self::new(range)?;
        if counts.len() != HISTOGRAM_BINS {
            return Err(Int8Error::BinCount {
                expected: HISTOGRAM_BINS,
                got: counts.len(),
            });
        }
        h.total = counts
            .iter()
            .try_fold(0u64, |acc, &c| acc.checked_add(c))
            .ok_or(Int8Error::CountOverflow)?;
        if h.total > 0 {
            h.observed_max = range;
        }
        h.counts = counts;
        Ok(h)
    }

    /// Counts one batch of activations (any layout; only the values matter).
    pub fn add(&mut self, values: &[f32]) {
        for &v in values {
            if !v.is_finite() {
                self.non_finite += 1;
                continue;
            }
            let a = v.abs();
            let bin = if a > self.range {
                self.above_range += 1;
                HISTOGRAM_BINS - 1
            } else {
                self.bin_of(a)
            };
            self.counts[bin] += 1;
            self.total += 1;
            self.observed_max = self.observed_max.max(a);
        }
    }

    /// Adds another histogram over the same range (one per worker thread, say).
    pub fn merge(&mut self, other: &AbsHistogram) -> Result<(), Int8Error> {
        if self.range.to_bits() != other.range.to_bits() {
            return Err(Int8Error::RangeMismatch(self.range, other.range));
        }
        let add = |a: u64, b: u64| a.checked_add(b).ok_or(Int8Error::CountOverflow);
        let total = add(self.total, other.total)?;
        for (c, &o) in self.counts.iter_mut().zip(&other.counts) {
            *c = add(*c, o)?;
        }
        self.total = total;
        self.above_range = self.above_range.saturating_add(other.above_range);
        self.non_finite = self.non_finite.saturating_add(other.non_finite);
        self.observed_max = self.observed_max.max(other.observed_max);
        Ok(())
    }

    /// The bin of an absolute value `a` with `0 <= a <= range`. The multiplication by 2048 is
    /// exact and the division is one correctly rounded f64 operation, so any implementation
    /// following the written rule agrees on values that sit exactly on a bin edge.
    fn bin_of(&self, a: f32) -> usize {
        if self.range == 0.0 {
            return 0;
        }
        let x = f64::from(a) * HISTOGRAM_BINS as f64 / f64::from(self.range);
        // `as` saturates, and x <= 2048 here, so this cannot wrap.
        (x.floor() as usize).min(HISTOGRAM_BINS - 1)
    }

    pub fn range(&self) -> f32 {
        self.range
    }

    pub fn bin_width(&self) -> f64 {
        f64::from(self.range) / HISTOGRAM_BINS as f64
    }

    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Finite values counted (including those above the range).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Finite values larger than the range, counted in the last bin.
    pub fn above_range(&self) -> u64 {
        self.above_range
    }

    /// NaN and infinite values seen and skipped.
    pub fn non_finite(&self) -> u64 {
        self.non_finite
    }

    /// Largest |x| represented: the range, or a larger value seen above it.
    pub fn amax(&self) -> f32 {
        self.range.max(self.observed_max)
    }
}

/// Pass-1 statistics of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RangeStats {
    /// Largest finite |x| seen (0 if none).
    pub amax: f32,
    /// Finite values seen.
    pub finite: u64,
    /// NaN and infinite values seen and skipped.
    pub non_finite: u64,
}

impl RangeStats {
    pub fn add(&mut self, values: &[f32]) {
        let mut amax = self.amax;
        let mut finite = 0u64;
        for &v in values {
            if v.is_finite() {
                amax = amax.max(v.abs());
                finite += 1;
            }
        }
        self.amax = amax;
        self.finite += finite;
        self.non_finite += values.len() as u64 - finite;
    }
}

/// Pass 1: max |x| of every tensor. Feed every calibration batch of every tensor, then call
/// [`RangePass::into_histogram_pass`] and feed the same batches again.
#[derive(Debug, Clone, Default)]
pub struct RangePass {
    tensors: BTreeMap<String, RangeStats>,
}

impl RangePass {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one batch of `tensor`. Fails only for a name a calibration cache cannot hold,
    /// so that the mistake shows up at the first batch rather than after the whole dataset.
    pub fn observe(&mut self, tensor: &str, batch: &[f32]) -> Result<(), Int8Error> {
        if let Some(stats) = self.tensors.get_mut(tensor) {
            stats.add(batch);
            return Ok(());
        }
        check_tensor_name(tensor).map_err(|reason| Int8Error::InvalidTensorName {
            name: tensor.to_owned(),
            reason,
        })?;
        let mut stats = RangeStats::default();
        stats.add(batch);
        self.tensors.insert(tensor.to_owned(), stats);
        Ok(())
    }

    pub fn get(&self, tensor: &str) -> Option<&RangeStats> {
        self.tensors.get(tensor)
    }

    /// Tensors in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RangeStats)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Pass 2, with one histogram per tensor over `[0, amax]` of that tensor.
    pub fn into_histogram_pass(self) -> HistogramPass {
        let mut tensors = BTreeMap::new();
        for (name, stats) in self.tensors {
            if stats.non_finite > 0 {
                log::warn!(
                    "int8 calibration: tensor `{name}`: {} of {} values were NaN or infinite \
                     and were skipped",
                    stats.non_finite,
                    stats.non_finite + stats.finite
                );
            }
            // amax is a max of finite absolute values (or 0), so it is a valid range.
            tensors.insert(name, AbsHistogram::empty(stats.amax));
        }
        HistogramPass { tensors }
    }
}

/// Pass 2: a fixed-range |x| histogram per tensor seen in pass 1.
#[derive(Debug, Clone)]
pub struct HistogramPass {
    tensors: BTreeMap<String, AbsHistogram>,
}

impl HistogramPass {
    pub fn observe(&mut self, tensor: &str, batch: &[f32]) -> Result<(), Int8Error> {
        let h = self
            .tensors
            .get_mut(tensor)
            .ok_or_else(|| Int8Error::UnknownTensor(tensor.to_owned()))?;
        h.add(batch);
        Ok(())
    }

    pub fn get(&self, tensor: &str) -> Option<&AbsHistogram> {
        self.tensors.get(tensor)
    }

    /// Tensors in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AbsHistogram)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_follow_the_written_rule() {
        let mut h = AbsHistogram::new(2.0).unwrap();
        // 2048 bins over [0, 2]: width 1/1024. Edges belong to the bin above them; the range
        // itself to the last bin.
        h.add(&[0.0, -0.0, 1.0 / 1024.0, -0.5, 1.999, 2.0, -2.0]);
        let c = h.counts();
        assert_eq!(c[0], 2);
        assert_eq!(c[1], 1);
        assert_eq!(c[512], 1);
        assert_eq!(c[2046], 1);
        assert_eq!(c[2047], 2);
        assert_eq!(h.total(), 7);
        assert_eq!(h.above_range(), 0);
    }

    #[test]
    fn skips_non_finite_and_counts_values_above_range() {
        let mut h = AbsHistogram::new(1.0).unwrap();
        h.add(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5, 3.0]);
        assert_eq!(h.non_finite(), 3);
        assert_eq!(h.total(), 2);
        assert_eq!(h.above_range(), 1);
        assert_eq!(h.counts()[2047], 1);
        assert_eq!(h.amax(), 3.0);
    }

    #[test]
    fn zero_range_puts_zeros_in_bin_zero() {
        let mut h = AbsHistogram::new(0.0).unwrap();
        h.add(&[0.0, -0.0, 0.0]);
        assert_eq!(h.counts()[0], 3);
        assert_eq!(h.amax(), 0.0);
    }

    #[test]
    fn rejects_bad_ranges_and_bin_counts() {
        assert_eq!(AbsHistogram::new(-1.0), Err(Int8Error::InvalidRange(-1.0)));
        assert!(AbsHistogram::new(f32::NAN).is_err());
        assert!(AbsHistogram::new(f32::INFINITY).is_err());
        assert_eq!(
            AbsHistogram::from_counts(1.0, vec![0; 10]),
            Err(Int8Error::BinCount {
                expected: 2048,
                got: 10
            })
        );
        let mut huge = vec![0; HISTOGRAM_BINS];
        huge[0] = u64::MAX;
        huge[1] = 1;
        assert_eq!(
            AbsHistogram::from_counts(1.0, huge),
            Err(Int8Error::CountOverflow)
        );
    }

    #[test]
    fn batch_split_and_merge_do_not_change_the_histogram() {
        let values: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 1000) as f32 - 500.0)
            .collect();
        let mut range = RangePass::new();
        for chunk in values.chunks(333) {
            range.observe("t", chunk).unwrap();
        }
        assert_eq!(range.get("t").unwrap().amax, 500.0);
        let mut pass = range.into_histogram_pass();
        for chunk in values.chunks(1000) {
            pass.observe("t", chunk).unwrap();
        }
        let mut whole = AbsHistogram::new(500.0).unwrap();
        whole.add(&values);
        assert_eq!(pass.get("t").unwrap(), &whole);

        let (a, b) = values.split_at(1234);
        let mut ha = AbsHistogram::new(500.0).unwrap();
        let mut hb = AbsHistogram::new(500.0).unwrap();
        ha.add(a);
        hb.add(b);
        ha.merge(&hb).unwrap();
        assert_eq!(ha, whole);
        assert!(ha.merge(&AbsHistogram::new(1.0).unwrap()).is_err());
    }

    #[test]
    fn passes_report_unknown_and_unwritable_tensors() {
        let mut range = RangePass::new();
        assert!(matches!(
            range.observe("bad\nname", &[1.0]),
            Err(Int8Error::InvalidTensorName { .. })
        ));
        range.observe("input_1:0", &[1.0, f32::NAN]).unwrap();
        assert_eq!(range.get("input_1:0").unwrap().non_finite, 1);
        let mut pass = range.into_histogram_pass();
        assert_eq!(
            pass.observe("other", &[1.0]),
            Err(Int8Error::UnknownTensor("other".into()))
        );
        assert_eq!(pass.len(), 1);
    }
}
