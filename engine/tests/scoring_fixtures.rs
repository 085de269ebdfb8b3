//! Checks `vigil_engine::scoring` against values computed independently by numpy, scipy and
//! scikit-learn (engine/tests/fixtures/scoring/gen_fixtures.py; regenerate with it, never by
//! hand). Test names start with `scoring_` so that `cargo test -p vigil-engine scoring` runs
//! them together with the unit tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use vigil_engine::scoring::{
    abs_error_into, eer, fuse_into, l2_norm_channels_into, mean, median_filter, minmax_normalize,
    mse, psnr, roc_auc, roc_curve, squared_error_into, upsample_nearest_into, ErrorMap,
    EventConfig, EventDetector, Normalizer, NormalizerConfig, PatchConfig, PatchDetector,
    PatchReduce, RollingMinMax, Transition,
};

/// Counts heap allocations per thread, so the steady-state test below can prove that the
/// per-frame path does not allocate while other tests run in parallel threads.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    // try_with: the allocator also runs while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Relative tolerance for values Rust computes in f32 and the references in f64.
const REL: f64 = 1e-5;
/// Absolute slack for values that are legitimately (near) zero.
const ABS: f64 = 1e-6;

fn load(name: &str) -> Value {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "scoring",
        name,
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture field {key} is not an array"))
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn usize_of(v: &Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("fixture field {key} is not an integer")) as usize
}

#[track_caller]
fn assert_close(got: f64, want: f64, ctx: &str) {
    assert!(
        (got - want).abs() <= REL * want.abs() + ABS,
        "{ctx}: got {got}, expected {want}"
    );
}

#[track_caller]
fn assert_all_close(got: &[f32], want: &[f64], ctx: &str) {
    assert_eq!(got.len(), want.len(), "{ctx}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert_close(f64::from(g), w, &format!("{ctx}[{i}]"));
    }
}

/// splitmix64 mapped to k / 2^24, the generator the fixture script describes large maps with.
fn splitmix_unit(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u32 << 24) as f32
        })
        .collect()
}

fn gen_map(spec: &Value) -> ErrorMap {
    let (w, h) = (usize_of(spec, "width"), usize_of(spec, "height"));
    let mut data = splitmix_unit(spec["seed"].as_u64().expect("seed"), w * h);
    if let Some(hot) = spec.get("hot").and_then(Value::as_array) {
        for r in hot {
            let r: Vec<usize> = r
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            for y in r[1]..r[1] + r[3] {
                for x in r[0]..r[0] + r[2] {
                    data[y * w + x] *= 8.0;
                }
            }
        }
    }
    ErrorMap::from_vec(w, h, data).unwrap()
}

/// The map the Rust generator made sums to the fixture's checksum: both sides start from the
/// same values.
fn check_generated(map: &ErrorMap, checksum: &Value, ctx: &str) {
    let sum: f64 = map.as_slice().iter().map(|&v| f64::from(v)).sum();
    let want = checksum.as_f64().unwrap();
    assert!(
        (sum - want).abs() <= 1e-9 * want.abs(),
        "{ctx}: the Rust and Python generators disagree"
    );
}

fn patch_config(p: &Value) -> PatchConfig {
    PatchConfig {
        height: usize_of(p, "height"),
        width: usize_of(p, "width"),
        stride_y: usize_of(p, "stride_y"),
        stride_x: usize_of(p, "stride_x"),
    }
}

#[test]
fn scoring_elementwise_errors_mse_and_psnr() {
    let fx = load("errormap.json");
    let cases = arr(&fx, "elementwise");
    assert!(!cases.is_empty());
    for (n, c) in cases.iter().enumerate() {
        let (w, h) = (usize_of(c, "width"), usize_of(c, "height"));
        let (pred, target) = (f32s(&c["pred"]), f32s(&c["target"]));
        let mut out = ErrorMap::new(w, h).unwrap();
        squared_error_into(&pred, &target, &mut out).unwrap();
        assert_all_close(
            out.as_slice(),
            &f64s(&c["squared"]),
            &format!("case {n} squared"),
        );
        assert_close(
            f64::from(mean(&out)),
            c["mean_squared"].as_f64().unwrap(),
            "mean",
        );
        abs_error_into(&pred, &target, &mut out).unwrap();
        assert_all_close(out.as_slice(), &f64s(&c["abs"]), &format!("case {n} abs"));

        let m = mse(&pred, &target).unwrap();
        assert_close(f64::from(m), c["mse"].as_f64().unwrap(), "mse");
        assert_close(
            f64::from(psnr(m, 1.0).unwrap()),
            c["psnr_peak1"].as_f64().unwrap(),
            "psnr peak 1",
        );
        assert_close(
            f64::from(psnr(m, 2.0).unwrap()),
            c["psnr_peak2"].as_f64().unwrap(),
            "psnr peak 2",
        );
    }
}

#[test]
fn scoring_l2_norm_across_channels() {
    let fx = load("errormap.json");
    let cases = arr(&fx, "l2_channels");
    assert!(!cases.is_empty());
    for c in cases {
        let mut out = ErrorMap::new(usize_of(c, "width"), usize_of(c, "height")).unwrap();
        l2_norm_channels_into(
            &f32s(&c["a"]),
            &f32s(&c["b"]),
            usize_of(c, "channels"),
            &mut out,
        )
        .unwrap();
        assert_all_close(out.as_slice(), &f64s(&c["expected"]), "l2 norm");
    }
}

#[test]
fn scoring_weighted_fusion() {
    let fx = load("errormap.json");
    let cases = arr(&fx, "fuse");
    assert!(!cases.is_empty());
    for c in cases {
        let (w, h) = (usize_of(c, "width"), usize_of(c, "height"));
        let maps: Vec<ErrorMap> = arr(c, "maps")
            .iter()
            .map(|m| ErrorMap::from_vec(w, h, f32s(m)).unwrap())
            .collect();
        let weights = f32s(&c["weights"]);
        let pairs: Vec<(&ErrorMap, f32)> = maps.iter().zip(weights).collect();
        let mut out = ErrorMap::new(w, h).unwrap();
        fuse_into(&pairs, &mut out).unwrap();
        assert_all_close(out.as_slice(), &f64s(&c["expected"]), "fusion");
    }
}

#[test]
fn scoring_nearest_upsampling() {
    let fx = load("errormap.json");
    let cases = arr(&fx, "upsample_nearest");
    assert!(!cases.is_empty());
    for c in cases {
        let (sw, sh) = (usize_of(c, "src_width"), usize_of(c, "src_height"));
        let (dw, dh) = (usize_of(c, "dst_width"), usize_of(c, "dst_height"));
        let src = ErrorMap::from_vec(sw, sh, f32s(&c["src"])).unwrap();
        let mut dst = ErrorMap::new(dw, dh).unwrap();
        upsample_nearest_into(&src, &mut dst).unwrap();
        let rows: Vec<usize> = arr(c, "row_index")
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let cols: Vec<usize> = arr(c, "col_index")
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!((rows.len(), cols.len()), (dh, dw), "index vectors");
        for (y, &sy) in rows.iter().enumerate() {
            for (x, &sx) in cols.iter().enumerate() {
                assert_eq!(
                    dst.get(x, y),
                    src.get(sx, sy),
                    "{sw}x{sh} -> {dw}x{dh} at ({x}, {y})"
                );
            }
        }
        if !c["expected"].is_null() {
            assert_eq!(dst.as_slice(), f32s(&c["expected"]).as_slice());
        }
    }
}

#[test]
fn scoring_patch_detector_matches_strided_all_ones_convolution() {
    let fx = load("patch.json");
    let cases = arr(&fx, "cases");
    assert!(cases.len() >= 10);
    let mut saw_ped2 = false;
    for (n, c) in cases.iter().enumerate() {
        let map = gen_map(&c["map"]);
        check_generated(&map, &c["checksum"], &format!("case {n}"));
        let cfg = patch_config(&c["patch"]);
        saw_ped2 |= (
            map.width(),
            map.height(),
            cfg.height,
            cfg.width,
            cfg.stride_y,
            cfg.stride_x,
        ) == (360, 240, 30, 20, 8, 5);
        let reduce = match c["reduce"].as_str().unwrap() {
            "sum" => PatchReduce::Sum,
            "mean" => PatchReduce::Mean,
            other => panic!("unknown reduce {other}"),
        };
        let threshold = c["threshold"].as_f64().map(|t| t as f32);
        let ctx = format!(
            "case {n} ({}x{} {cfg:?} {reduce:?} thr {threshold:?})",
            map.width(),
            map.height()
        );

        let mut det = PatchDetector::new(cfg, reduce, map.width(), map.height()).unwrap();
        let grid: Vec<usize> = arr(c, "grid")
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(det.grid(), (grid[0], grid[1]), "{ctx}: grid");
        let r = det.detect(&map, threshold).unwrap();

        assert_close(
            f64::from(r.max),
            c["max"].as_f64().unwrap(),
            &format!("{ctx}: max"),
        );
        let (fw, fh) = (map.width() as f32, map.height() as f32);
        let px =
            |reg_x: f32, reg_y: f32| ((reg_x * fw).round() as u64, (reg_y * fh).round() as u64);
        let am: Vec<u64> = arr(c, "argmax")
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(px(r.argmax.x, r.argmax.y), (am[0], am[1]), "{ctx}: argmax");
        assert_eq!(r.argmax.score, r.max);
        assert_close(f64::from(r.argmax.w), cfg.width as f64 / fw as f64, &ctx);
        assert_close(f64::from(r.argmax.h), cfg.height as f64 / fh as f64, &ctx);

        let want = arr(c, "regions");
        assert_eq!(r.regions.len(), want.len(), "{ctx}: region count");
        for (i, (got, w)) in r.regions.iter().zip(want).enumerate() {
            assert_eq!(
                px(got.x, got.y),
                (w["x"].as_u64().unwrap(), w["y"].as_u64().unwrap()),
                "{ctx}: region {i} position"
            );
            assert_close(
                f64::from(got.score),
                w["score"].as_f64().unwrap(),
                &format!("{ctx}: region {i} score"),
            );
        }
        // Running again on the same detector must give the same answer (buffers are reused).
        assert_eq!(det.detect(&map, threshold).unwrap(), r, "{ctx}: repeat");
    }
    assert!(saw_ped2, "the MAAM-Net Ped2 geometry must be covered");
}

#[test]
fn scoring_pscd_matches_patchwise_all_ones_convolution_of_both_maps() {
    let fx = load("pscd.json");
    let cases = arr(&fx, "cases");
    assert!(!cases.is_empty());
    for (n, c) in cases.iter().enumerate() {
        let (img, flow) = (gen_map(&c["img"]), gen_map(&c["flow"]));
        check_generated(&img, &c["img_checksum"], &format!("case {n} img"));
        check_generated(&flow, &c["flow_checksum"], &format!("case {n} flow"));
        let cfg = patch_config(&c["patch"]);
        assert_eq!(
            (cfg.height, cfg.width, cfg.stride_y, cfg.stride_x),
            (30, 20, 8, 5)
        );
        let (hp_img, hp_flow) = (
            c["hp_img"].as_f64().unwrap() as f32,
            c["hp_flow"].as_f64().unwrap() as f32,
        );
        let (w, h) = (img.width(), img.height());
        let mut fused = ErrorMap::new(w, h).unwrap();
        // the recipe's fusion: per pixel, then one patch sum
        vigil_engine::scoring::fuse_into(&[(&flow, hp_flow), (&img, hp_img)], &mut fused).unwrap();
        let mut det = PatchDetector::new(cfg, PatchReduce::Sum, w, h).unwrap();
        let grid: Vec<usize> = arr(c, "grid")
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(det.grid(), (grid[0], grid[1]), "case {n}: grid");
        let r = det.detect(&fused, None).unwrap();
        // f32 per-pixel fusion against f64 patch-level fusion
        let close = |got: f32, want: f64, what: &str| {
            assert!(
                (f64::from(got) - want).abs() <= 2e-6 * want.abs(),
                "case {n} {what}: {got} vs numpy {want}"
            );
        };
        close(r.max, c["max"].as_f64().unwrap(), "max");
        let am: Vec<u64> = arr(c, "argmax")
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let px = |x: f32, y: f32| ((x * w as f32).round() as u64, (y * h as f32).round() as u64);
        assert_eq!(
            px(r.argmax.x, r.argmax.y),
            (am[0], am[1]),
            "case {n}: argmax"
        );
        let want = arr(c, "regions");
        assert_eq!(r.regions.len(), want.len(), "case {n}: regions");
        for (got, w) in r.regions.iter().zip(want) {
            assert_eq!(
                px(got.x, got.y),
                (w["x"].as_u64().unwrap(), w["y"].as_u64().unwrap()),
                "case {n}: region position"
            );
            close(got.score, w["score"].as_f64().unwrap(), "region score");
        }
        // each term alone, as the recipe reports them
        close(
            det.detect(&img, None).unwrap().max,
            c["img_max"].as_f64().unwrap(),
            "img",
        );
        close(
            det.detect(&flow, None).unwrap().max,
            c["flow_max"].as_f64().unwrap(),
            "flow",
        );
    }
}

#[test]
fn scoring_rolling_minmax_matches_naive_window() {
    let fx = load("normalizer.json");
    let cases = arr(&fx, "rolling_minmax");
    assert!(!cases.is_empty());
    for c in cases {
        let name = c["sequence"].as_str().unwrap();
        let xs = f32s(&fx["sequences"][name]);
        assert!(!xs.is_empty(), "sequence {name}");
        let (window, floor) = (usize_of(c, "window"), c["floor"].as_f64().unwrap() as f32);
        let mut n = RollingMinMax::new(window, floor).unwrap();
        let got: Vec<f32> = xs.iter().map(|&x| n.push(x).unwrap()).collect();
        assert_all_close(
            &got,
            &f64s(&c["expected"]),
            &format!("{name} window {window} floor {floor}"),
        );
    }
}

#[test]
fn scoring_median_filter_matches_scipy_medfilt() {
    let fx = load("smoothing.json");
    let cases = arr(&fx, "medfilt");
    assert!(!cases.is_empty());
    for c in cases {
        let xs = f32s(&c["input"]);
        let width = usize_of(c, "width");
        let got = median_filter(&xs, width).unwrap();
        // A median selects one of its inputs (or a padding zero): exact equality.
        assert_eq!(got, f32s(&c["expected"]), "len {} width {width}", xs.len());
    }
}

#[test]
fn scoring_roc_auc_curve_and_eer_match_sklearn() {
    let fx = load("metrics.json");
    let cases = arr(&fx, "cases");
    assert!(!cases.is_empty());
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let scores = f32s(&c["scores"]);
        let labels: Vec<bool> = arr(c, "labels")
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();

        let auc = roc_auc(&scores, &labels).unwrap();
        let want = c["auc"].as_f64().unwrap();
        assert!(
            (auc - want).abs() < 1e-9,
            "{name}: auc {auc} vs sklearn {want}"
        );

        let curve = roc_curve(&scores, &labels).unwrap();
        let (fpr, tpr) = (f64s(&c["fpr"]), f64s(&c["tpr"]));
        assert_eq!(curve.fpr.len(), fpr.len(), "{name}: number of ROC points");
        for i in 0..fpr.len() {
            assert!((curve.fpr[i] - fpr[i]).abs() < 1e-8, "{name}: fpr[{i}]");
            assert!((curve.tpr[i] - tpr[i]).abs() < 1e-8, "{name}: tpr[{i}]");
            let t = &arr(c, "thresholds")[i];
            match t.as_f64() {
                // sklearn may return the threshold off by an ulp of f64; the scores are f32.
                Some(t) => assert!(
                    (curve.thresholds[i] - t).abs() <= 1e-12 * t.abs(),
                    "{name}: threshold[{i}] {} vs {t}",
                    curve.thresholds[i]
                ),
                None => assert_eq!(curve.thresholds[i], f64::INFINITY),
            }
        }

        let e = eer(&scores, &labels).unwrap();
        let want = c["eer"].as_f64().unwrap();
        assert!((e - want).abs() < 1e-9, "{name}: eer {e} vs {want}");

        let mut mm = scores.clone();
        minmax_normalize(&mut mm).unwrap();
        assert_all_close(&mm, &f64s(&c["minmax"]), &format!("{name}: minmax"));
    }
}

#[test]
fn scoring_steady_state_per_frame_path_does_not_allocate() {
    // MAAM-Net on Ped2: frame error and flow error at 240x360, a low-resolution map upsampled
    // to it, fusion, patches, normaliser, smoothing, events.
    let (w, h) = (360, 240);
    let frames: Vec<(Vec<f32>, Vec<f32>)> = (0..4u64)
        .map(|i| (splitmix_unit(100 + i, w * h), splitmix_unit(200 + i, w * h)))
        .collect();
    let flow: Vec<f32> = splitmix_unit(300, 2 * w * h);
    let flow_pred: Vec<f32> = splitmix_unit(301, 2 * w * h);
    let low = ErrorMap::from_vec(24, 16, splitmix_unit(400, 24 * 16)).unwrap();

    let mut img_err = ErrorMap::new(w, h).unwrap();
    let mut flow_err = ErrorMap::new(w, h).unwrap();
    let mut up = ErrorMap::new(w, h).unwrap();
    let mut fused = ErrorMap::new(w, h).unwrap();
    let cfg = PatchConfig {
        height: 30,
        width: 20,
        stride_y: 8,
        stride_x: 5,
    };
    let mut det = PatchDetector::new(cfg, PatchReduce::Sum, w, h).unwrap();
    let mut norm = Normalizer::from_config(&NormalizerConfig::MinMax {
        window: 64,
        floor: 0.05,
    })
    .unwrap();
    let mut events = EventDetector::new(EventConfig {
        on: 0.5,
        off: 0.2,
        min_frames_on: 2,
        min_frames_off: 3,
        cooldown_frames: 0,
        update_every_frames: 1,
    })
    .unwrap();

    let mut step = |i: u64, boost: f32| -> Option<Transition> {
        let (pred, target) = &frames[i as usize % frames.len()];
        squared_error_into(pred, target, &mut img_err).unwrap();
        l2_norm_channels_into(&flow_pred, &flow, 2, &mut flow_err).unwrap();
        upsample_nearest_into(&low, &mut up).unwrap();
        fuse_into(
            &[(&img_err, 10.0), (&flow_err, 1.0), (&up, 0.5)],
            &mut fused,
        )
        .unwrap();
        let _ = mse(pred, target).unwrap();
        let p = det.detect(&fused, None).unwrap();
        let s = norm.push(p.max * boost).unwrap();
        events
            .update(
                i,
                Duration::from_millis(i * 40),
                s + boost - 1.0,
                &p.regions,
            )
            .unwrap()
    };

    // Warm-up fills the windows and opens an event: creating its ULID may allocate (the RNG
    // is set up lazily), which is allowed once per event.
    let mut started = false;
    for i in 0..80 {
        started |= matches!(step(i, 1.0 + (i % 5) as f32), Some(Transition::Start(_)));
    }
    assert!(started, "the warm-up must open an event");

    let before = allocations();
    let mut updates = 0;
    for i in 80..200 {
        // Ever larger scores keep the event open and produce updates (which clone EventInfo).
        if let Some(t) = step(i, 5.0 + i as f32) {
            assert!(matches!(t, Transition::Update(_)), "{t:?}");
            updates += 1;
        }
    }
    let during = allocations() - before;
    assert!(updates > 0, "the loop must exercise updates");
    assert_eq!(
        during, 0,
        "the per-frame path allocated {during} times in 120 frames"
    );
}
