//! INT8 calibration against the independent numpy reference in `fixtures/int8/` (regenerate
//! with `gen_fixtures.py`; the test itself needs no Python), plus properties of the scales.

use serde::Deserialize;
use vigil_calib::int8::{HISTOGRAM_BINS, INT8_LEVELS};
use vigil_calib::{
    calibrate, AbsHistogram, CacheVersion, CalibrationCache, CalibrationMethod, Outcome,
    Percentile, RangePass, ScaleMethod,
};

#[derive(Deserialize)]
struct Fixture {
    bins: usize,
    levels: usize,
    epsilon: f64,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    range_bits: u32,
    /// Histogram cases: the 2048 counts.
    counts: Option<Vec<u64>>,
    /// Raw cases: the values, as f32 bits or as integers on a 2^log2_step grid ...
    f32_bits: Option<Vec<u32>>,
    grid: Option<Grid>,
    /// ... and the histogram numpy built from them, as (bin, count) of the non-zero bins.
    histogram_sparse: Option<Vec<(usize, u64)>>,
    expected: Expected,
}

#[derive(Deserialize)]
struct Grid {
    log2_step: i32,
    ints: Vec<i64>,
}

#[derive(Deserialize)]
struct Expected {
    degenerate: bool,
    scale: Option<f32>,
    minmax: Option<MinMax>,
    entropy: Option<Entropy>,
    percentile: Option<Vec<PercentileExpected>>,
}

#[derive(Deserialize)]
struct MinMax {
    scale: f32,
}

#[derive(Deserialize)]
struct Entropy {
    bins_kept: usize,
    divergence: f64,
    scale: f32,
}

#[derive(Deserialize)]
struct PercentileExpected {
    p: f64,
    bin: usize,
    scale: f32,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/int8/int8.json");
    let text = std::fs::read_to_string(path).expect("fixture file");
    serde_json::from_str(&text).expect("fixture JSON")
}

impl Case {
    fn values(&self) -> Option<Vec<f32>> {
        if let Some(bits) = &self.f32_bits {
            return Some(bits.iter().map(|&b| f32::from_bits(b)).collect());
        }
        let g = self.grid.as_ref()?;
        let step = 2f64.powi(g.log2_step);
        Some(g.ints.iter().map(|&i| (i as f64 * step) as f32).collect())
    }

    /// The histogram to calibrate from: the stored counts, or one built from the raw values
    /// through both passes (in uneven batches, as a real calibration run would feed them).
    fn histogram(&self) -> AbsHistogram {
        let range = f32::from_bits(self.range_bits);
        if let Some(counts) = &self.counts {
            return AbsHistogram::from_counts(range, counts.clone()).unwrap();
        }
        let values = self.values().expect("a case has counts or values");
        let mut pass1 = RangePass::new();
        for batch in values.chunks(257) {
            pass1.observe(&self.name, batch).unwrap();
        }
        assert_eq!(
            pass1.get(&self.name).unwrap().amax.to_bits(),
            self.range_bits,
            "{}: max |x|",
            self.name
        );
        let mut pass2 = pass1.into_histogram_pass();
        for batch in values.chunks(1000) {
            pass2.observe(&self.name, batch).unwrap();
        }
        let h = pass2.get(&self.name).unwrap().clone();
        let mut expected = vec![0u64; HISTOGRAM_BINS];
        for &(b, c) in self
            .histogram_sparse
            .as_ref()
            .expect("raw cases carry numpy's histogram")
        {
            expected[b] = c;
        }
        assert_eq!(h.counts(), &expected[..], "{}: histogram", self.name);
        h
    }
}

fn assert_scale(case: &str, what: &str, got: f32, want: f32) {
    let rel = ((got as f64 - want as f64) / want as f64).abs();
    assert!(
        rel <= 1e-6,
        "{case}: {what} scale {got} vs numpy {want} (rel {rel:e})"
    );
}

#[test]
fn fixture_constants_match_the_crate() {
    let f = fixture();
    assert_eq!(f.bins, HISTOGRAM_BINS);
    assert_eq!(f.levels, INT8_LEVELS);
    assert_eq!(f.epsilon, vigil_calib::int8::EPSILON);
    assert!(f.cases.len() >= 8);
}

#[test]
fn scales_match_the_numpy_reference() {
    let f = fixture();
    for case in &f.cases {
        let h = case.histogram();
        let e = &case.expected;
        let entropy = calibrate(&h, ScaleMethod::Entropy);
        let minmax = calibrate(&h, ScaleMethod::MinMax);

        if e.degenerate {
            let want = e.scale.unwrap();
            for c in [entropy, minmax] {
                assert_eq!(c.outcome, Outcome::Degenerate, "{}", case.name);
                assert_scale(&case.name, "fallback", c.scale.get(), want);
            }
            continue;
        }

        let want = e.minmax.as_ref().unwrap();
        assert_eq!(minmax.outcome, Outcome::MinMax);
        assert_scale(&case.name, "minmax", minmax.scale.get(), want.scale);

        let want = e.entropy.as_ref().unwrap();
        match entropy.outcome {
            Outcome::Entropy {
                bins_kept,
                divergence,
            } => {
                assert_eq!(
                    bins_kept, want.bins_kept,
                    "{}: entropy bins kept",
                    case.name
                );
                let tol = 1e-9 * want.divergence.abs().max(1e-12);
                assert!(
                    (divergence - want.divergence).abs() <= tol,
                    "{}: divergence {divergence:e} vs numpy {:e}",
                    case.name,
                    want.divergence
                );
            }
            other => panic!("{}: entropy outcome {other:?}", case.name),
        }
        assert_scale(&case.name, "entropy", entropy.scale.get(), want.scale);

        for want in e.percentile.as_ref().unwrap() {
            let c = calibrate(
                &h,
                ScaleMethod::Percentile(Percentile::new(want.p).unwrap()),
            );
            assert_eq!(
                c.outcome,
                Outcome::Percentile { bin: want.bin },
                "{}: percentile {}",
                case.name,
                want.p
            );
            assert_scale(
                &case.name,
                &format!("p{}", want.p),
                c.scale.get(),
                want.scale,
            );
        }
    }
}

#[test]
fn thresholds_are_ordered_and_bounded() {
    let f = fixture();
    for case in f.cases.iter().filter(|c| !c.expected.degenerate) {
        let h = case.histogram();
        let amax = f64::from(h.amax());
        let minmax = calibrate(&h, ScaleMethod::MinMax);
        let entropy = calibrate(&h, ScaleMethod::Entropy);
        assert_eq!(minmax.threshold, amax, "{}", case.name);
        assert!(entropy.threshold <= amax, "{}", case.name);
        // Never finer than 128 bins: 128 levels cannot resolve less than one bin each.
        assert!(entropy.threshold >= amax * 128.0 / 2048.0, "{}", case.name);
        assert!(entropy.scale <= minmax.scale, "{}", case.name);

        let mut last = 0.0;
        for p in [50.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0] {
            let c = calibrate(&h, ScaleMethod::Percentile(Percentile::new(p).unwrap()));
            assert!(
                c.threshold >= last,
                "{}: percentile {p} not monotone",
                case.name
            );
            assert!(
                c.threshold <= amax,
                "{}: percentile {p} beyond amax",
                case.name
            );
            last = c.threshold;
        }
        // 100% keeps the last non-empty bin, whose right edge is amax in a real histogram.
        assert_eq!(last, amax, "{}", case.name);

        // The scale is the threshold over 127, rounded once.
        for c in [minmax, entropy] {
            let rel = (f64::from(c.scale.dynamic_range()) - c.threshold).abs() / c.threshold;
            assert!(rel < 1e-6, "{}: dynamic range vs threshold", case.name);
        }
    }
}

#[test]
fn entropy_clips_outliers_and_keeps_a_flat_distribution() {
    let f = fixture();
    let by_name = |n: &str| f.cases.iter().find(|c| c.name == n).unwrap().histogram();
    // Five values up to 400 on top of a unit gaussian: the threshold lands near the bulk.
    let outliers = calibrate(&by_name("outliers"), ScaleMethod::Entropy);
    assert!(outliers.threshold < 30.0, "{outliers:?}");
    // Nothing to gain from clipping a uniform distribution.
    let uniform = by_name("uniform");
    let c = calibrate(&uniform, ScaleMethod::Entropy);
    assert_eq!(c.threshold, f64::from(uniform.amax()));
    // A unit gaussian saturates a few sigma out, as NVIDIA's talk shows for real layers.
    let gaussian = calibrate(&by_name("gaussian"), ScaleMethod::Entropy);
    assert!((3.0..5.2).contains(&gaussian.threshold), "{gaussian:?}");
}

#[test]
fn calibration_goes_into_a_cache_that_reads_back() {
    let f = fixture();
    let mut pass1 = RangePass::new();
    let raw: Vec<_> = f.cases.iter().filter(|c| c.counts.is_none()).collect();
    for c in &raw {
        pass1.observe(&c.name, &c.values().unwrap()).unwrap();
    }
    let mut pass2 = pass1.into_histogram_pass();
    for c in &raw {
        pass2.observe(&c.name, &c.values().unwrap()).unwrap();
    }
    let scales = pass2.calibrate(ScaleMethod::Entropy);
    assert_eq!(scales.len(), raw.len());
    let cache = CalibrationCache::from_calibrations(
        CacheVersion::TRT_10_3_0,
        CalibrationMethod::EntropyCalibration2,
        &scales,
    )
    .unwrap();
    let text = cache.to_string();
    assert!(text.starts_with("TRT-100300-EntropyCalibration2\n"));
    let back = CalibrationCache::parse(&text).unwrap();
    assert_eq!(back, cache);
    for (name, c) in &scales {
        assert_eq!(back.get(name), Some(c.scale));
    }
}
