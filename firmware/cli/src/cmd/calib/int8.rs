//! INT8 without a Jetson: `vigil calib int8` computes the TensorRT calibration cache on the CPU,
//! and `vigil eval --simulate-int8` predicts what INT8 costs in accuracy before anything is
//! flashed.
//!
//! Calibration runs the FP32 network (tract, decluttered graph: one node per ONNX operator) on
//! windows of normal training frames prepared by the run-time preprocessing, shows every
//! activation to `vigil_calib::int8` in two passes (range, then histogram), and writes the scales
//! in TensorRT's cache format, which the engine build reads instead of running TensorRT's own
//! calibrator on the box. Simulation quantise-dequantises, at its scale
//! (`scale * clamp(round(x / scale), -127, 127)`), every activation that a layer TensorRT runs
//! in INT8 reads (convolutions, deconvolutions, matrix products, pooling), while the network
//! runs. Network outputs and tensors that only feed element-wise arithmetic, index maths or
//! gathers stay float, as they do in an engine. Not simulated: weight quantisation (TensorRT
//! quantises weights per output channel, a much smaller error than per-tensor activations) and
//! TensorRT's choice to keep a layer in FP16/FP32 where INT8 is not faster. It is not bit-exact
//! with any INT8 kernel.

use super::plan::{self, PlanArgs, Planner, Quantiser};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use vigil_calib::int8::{
    CacheVersion, CalibrationCache, CalibrationMethod, HistogramPass, Percentile, RangePass,
    ScaleMethod, TensorCalibration,
};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::backend::probe::{Activation, ActivationHook, ProbeBackend};
use vigil_engine::dataset::{Dataset, Split};
use vigil_engine::frame::{Frame, PixelLayout};
use vigil_engine::imageio;
use vigil_engine::package::{Int8Section, ModelPackage};

#[derive(clap::Args, Debug)]
pub struct Int8Args {
    /// Model package; the cache is written to PKG/calib.cache unless --out says otherwise.
    pub model: PathBuf,
    /// Normal (training) frames: a dataset root (its `training` split) or a split directory.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Network runs to calibrate on, spread evenly over all videos.
    #[arg(long, default_value_t = 200)]
    pub windows: usize,
    /// auto (of the methods below, the one whose scales add the least noise to the score of
    /// held-out training windows), entropy (TensorRT's EntropyCalibration2), minmax, or
    /// percentile.
    #[arg(long, default_value = "auto")]
    pub method: String,
    /// With --method percentile: the percentile of |x| kept (e.g. 99.99).
    #[arg(long, default_value_t = 99.99)]
    pub percentile: f64,
    /// TensorRT version the engine will be built with (the cache header names it; TensorRT
    /// ignores a cache written for another version). JetPack 5.1: 8.5.2; JetPack 6.0: 8.6.2;
    /// JetPack 6.1/6.2: 10.3.0.
    #[arg(long, default_value = "10.3.0")]
    pub trt: String,
    /// Where to write the cache (default: PKG/calib.cache).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave out of the cache every tensor whose name contains one of these (comma-separated)
    /// substrings. TensorRT cannot run a layer in INT8 without its input's scale, so those
    /// layers stay FP16 (`best`) or FP32 (`int8`): mixed precision for the parts of a network
    /// that INT8 hurts (for BDFI, the memory addressing: docs/benchmarks.md).
    #[arg(long, value_delimiter = ',')]
    pub keep_float: Vec<String>,
    #[command(flatten)]
    pub plan: PlanArgs,
}

/// Parses "MAJOR.MINOR.PATCH".
pub fn parse_trt_version(s: &str) -> Result<CacheVersion> {
    let parts: Vec<&str> = s.split('.').collect();
    let [a, b, c] = parts.as_slice() else {
        bail!("TensorRT version {s:?} must be MAJOR.MINOR.PATCH, e.g. 10.3.0 or 8.6.2");
    };
    let n = |p: &str| -> Result<u32> {
        p.parse()
            .with_context(|| format!("TensorRT version {s:?}: {p:?} is not a number"))
    };
    Ok(CacheVersion::new(n(a)?, n(b)?, n(c)?)?)
}

/// The scale methods to calibrate with, each with its label and cache header: one, or for
/// `auto` the candidates whose validation noise decides.
fn methods(name: &str, percentile: f64) -> Result<Vec<(String, ScaleMethod, CalibrationMethod)>> {
    // TensorRT has no percentile calibrator; its cache reader only needs *a* known header, and
    // the scales are what they are.
    let pct = |p: f64| -> Result<(String, ScaleMethod, CalibrationMethod)> {
        Ok((
            format!("percentile-{p}"),
            ScaleMethod::Percentile(Percentile::new(p)?),
            CalibrationMethod::EntropyCalibration2,
        ))
    };
    let entropy = || {
        (
            "entropy".to_owned(),
            ScaleMethod::Entropy,
            CalibrationMethod::EntropyCalibration2,
        )
    };
    let minmax = || {
        (
            "minmax".to_owned(),
            ScaleMethod::MinMax,
            CalibrationMethod::MinMaxCalibration,
        )
    };
    Ok(match name {
        "entropy" => vec![entropy()],
        "minmax" => vec![minmax()],
        "percentile" => vec![pct(percentile)?],
        "auto" => vec![entropy(), minmax(), pct(99.9)?, pct(99.99)?, pct(99.999)?],
        other => bail!("unknown --method {other:?}: use auto, entropy, minmax or percentile"),
    })
}

/// The two passes share one hook type; the caller keeps a handle on the collected statistics.
enum Pass {
    Range(RangePass),
    Histogram(HistogramPass),
}

#[derive(Clone)]
struct Recorder(Arc<Mutex<(Pass, Option<anyhow::Error>)>>);

impl ActivationHook for Recorder {
    fn visit(&mut self, act: &Activation, data: &mut [f32]) {
        // Every activation goes into the cache, as TensorRT's own calibrator does: which ones
        // run in INT8 is the builder's choice, made per layer.
        let name = act.name.as_str();
        let Ok(mut g) = self.0.lock() else { return };
        let r = match &mut g.0 {
            Pass::Range(p) => p.observe(name, data),
            Pass::Histogram(p) => p.observe(name, data),
        };
        if let Err(e) = r {
            g.1.get_or_insert(anyhow::Error::new(e).context(format!("activation `{name}`")));
        }
    }
}

/// One network run: the frames `end - (window-1)*stride, ..., end` of a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowAt {
    pub video: usize,
    pub end: usize,
    pub stride: usize,
}

/// `n` windows of consecutive frames spread evenly over `ds`.
fn spread(ds: &Dataset, window: usize, n: usize) -> Vec<WindowAt> {
    let usable: Vec<WindowAt> = ds
        .videos
        .iter()
        .enumerate()
        .flat_map(|(video, v)| {
            (window.saturating_sub(1)..v.frames.len()).map(move |end| WindowAt {
                video,
                end,
                stride: 1,
            })
        })
        .collect();
    if usable.is_empty() || n == 0 {
        return Vec::new();
    }
    let n = n.min(usable.len());
    (0..n).map(|i| usable[i * usable.len() / n]).collect()
}

/// Runs the analyzer once per window: reset, push the window's frames (numbered as consecutive,
/// so a triple-speed window is one clip to the recipe); the backend runs, and the hook sees the
/// activations, exactly once per window. Returns each window's streaming score.
pub fn run_windows(
    analyzer: &mut Analyzer,
    ds: &Dataset,
    windows: &[WindowAt],
    bar: &indicatif::ProgressBar,
) -> Result<Vec<f32>> {
    let len = analyzer.recipe().window_len();
    let mut frame = Frame::placeholder();
    let mut scores = Vec::with_capacity(windows.len());
    for w in windows {
        let video = &ds.videos[w.video];
        analyzer.reset();
        let mut score = None;
        for k in 0..len {
            let t = w.end + (k + 1) * w.stride - len * w.stride;
            imageio::load_into(&video.frames[t], &mut frame)?;
            frame.index = k as u64;
            if let Some(s) = analyzer.push(&frame).with_context(|| {
                format!("video {} frame {}", video.id, video.frames[t].display())
            })? {
                score = Some(s.raw);
            }
        }
        scores.push(score.with_context(|| {
            format!(
                "internal: {len} frames of video {} gave the recipe no score",
                video.id
            )
        })?);
        bar.inc(1);
    }
    Ok(scores)
}

/// `vigil calib int8`: writes the cache and returns where.
pub fn calibrate(args: &Int8Args) -> Result<PathBuf> {
    let pkg = ModelPackage::load(&args.model)?;
    let ds = Dataset::open(&args.dataset, Split::Training)?;
    let methods = methods(&args.method, args.percentile)?;
    let version = parse_trt_version(&args.trt)?;
    let m = &pkg.manifest;
    let shared = Arc::new(Mutex::new((Pass::Range(RangePass::new()), None)));
    let probe = ProbeBackend::load(
        &pkg.onnx_path(),
        &m.onnx.inputs,
        &m.onnx.outputs,
        Recorder(shared.clone()),
    )?;
    let tensors = probe.activations().len();
    let mut analyzer = Analyzer::with_backend(&pkg, Box::new(probe), 1)?;
    let positions = spread(&ds, analyzer.recipe().window_len(), args.windows);
    if positions.is_empty() {
        bail!(
            "{} has no video long enough for the model's {}-frame window",
            ds.root.display(),
            analyzer.recipe().window_len()
        );
    }
    log::info!(
        "INT8 calibration of {} ({} activations) on {} windows of {}, two passes",
        m.name,
        tensors,
        positions.len(),
        ds.root.display()
    );
    let bar = indicatif::ProgressBar::new(2 * positions.len() as u64);
    run_windows(&mut analyzer, &ds, &positions, &bar)?;
    {
        let mut g = shared
            .lock()
            .map_err(|_| anyhow::anyhow!("calibration state poisoned"))?;
        if let Some(e) = g.1.take() {
            return Err(e);
        }
        let taken = std::mem::replace(&mut g.0, Pass::Range(RangePass::new()));
        let Pass::Range(range) = taken else {
            bail!("internal: calibration pass out of order");
        };
        g.0 = Pass::Histogram(range.into_histogram_pass());
    }
    run_windows(&mut analyzer, &ds, &positions, &bar)?;
    bar.finish_and_clear();
    let mut g = shared
        .lock()
        .map_err(|_| anyhow::anyhow!("calibration state poisoned"))?;
    if let Some(e) = g.1.take() {
        return Err(e);
    }
    let Pass::Histogram(hist) = std::mem::replace(&mut g.0, Pass::Range(RangePass::new())) else {
        bail!("internal: calibration pass out of order");
    };
    drop(g);
    drop(analyzer);
    let mut keep_float = std::collections::BTreeMap::new();
    let by_hand = |name: &str| args.keep_float.iter().find(|k| name.contains(k.as_str()));
    let scales_of = |method: ScaleMethod| {
        let mut scales = hist.calibrate(method);
        scales.retain(|name, _| by_hand(name).is_none());
        scales
    };
    // The plan and `--method auto` measure on the same held-out windows.
    let mut planner = if args.plan.no_plan && methods.len() == 1 {
        None
    } else {
        Some(planner(&pkg, &ds, &positions, &args.plan)?)
    };
    let mut tried = std::collections::BTreeMap::new();
    let (label, header, mut scales) = match (methods.as_slice(), planner.as_mut()) {
        ([(label, method, header)], _) => (label.clone(), *header, scales_of(*method)),
        (_, Some((planner, int8_read))) => {
            let mut best: Option<(f32, String, CalibrationMethod, _)> = None;
            for (label, method, header) in &methods {
                let scales = scales_of(*method);
                let n = planner.noise(&quantisable(&scales, int8_read))?;
                log::info!(
                    "--method auto: {label}: every INT8-read tensor quantised, {n:.4} sd of noise"
                );
                tried.insert(label.clone(), n);
                if best.as_ref().is_none_or(|b| n < b.0) {
                    best = Some((n, label.clone(), *header, scales));
                }
            }
            let (_, label, header, scales) = best.context("internal: no calibration method")?;
            log::info!("--method auto: {label} has the least noise");
            (label, header, scales)
        }
        (_, None) => bail!("internal: --method auto without validation windows"),
    };
    for name in hist.iter().map(|(n, _)| n) {
        if let Some(k) = by_hand(name) {
            keep_float.insert(
                name.to_owned(),
                format!("--keep-float {k} (chosen by hand)"),
            );
        }
    }
    if !args.keep_float.is_empty() {
        log::info!(
            "--keep-float {:?}: {} tensors left out of the cache (their layers stay float)",
            args.keep_float,
            keep_float.len()
        );
    }
    let plan = match (&mut planner, args.plan.no_plan) {
        (Some((planner, int8_read)), false) => {
            let plan = planner.choose(&quantisable(&scales, int8_read), args.plan.budget)?;
            for k in &plan.kept {
                scales.remove(&k.name);
                keep_float.insert(
                    k.name.clone(),
                    format!(
                        "quantised alone it adds {:.4} sd of noise to the validation score (rank {} of {})",
                        k.noise_alone, k.rank, plan.candidates
                    ),
                );
            }
            Some(plan)
        }
        _ => None,
    };
    let validation_windows = planner.as_ref().map_or(0, |(p, _)| p.windows());
    drop(planner);
    let cache = CalibrationCache::from_calibrations(version, header, scales.iter())?;
    let in_package = args.out.is_none();
    let out = args.out.clone().unwrap_or_else(|| pkg.calib_cache_path());
    vigil_engine::package::write_atomically(&out, cache.to_string().as_bytes())
        .with_context(|| format!("writing the calibration cache {}", out.display()))?;
    println!(
        "wrote {} ({} tensors, {} header, {} windows of {}; {} kept float)",
        out.display(),
        cache.len(),
        cache.method(),
        positions.len(),
        ds.root.display(),
        keep_float.len()
    );
    if let Some(p) = &plan {
        println!(
            "precision plan on {} validation windows: score noise {:.4} sd with every INT8-read tensor quantised, {:.4} sd with the plan (budget {})",
            p.windows, p.noise_all_int8, p.noise, args.plan.budget
        );
    }
    if in_package {
        // The manifest ties the cache to this ONNX, so a re-exported model cannot silently
        // pick up scales measured on other weights.
        let mut pkg = pkg;
        pkg.manifest.int8 = Some(Int8Section {
            sha256: vigil_engine::package::sha256_file(&out)
                .with_context(|| format!("reading back {}", out.display()))?,
            onnx_sha256: pkg.manifest.onnx.sha256.clone(),
            trt: args.trt.clone(),
            method: label,
            methods_tried: tried,
            windows: positions.len(),
            dataset: args.dataset.display().to_string(),
            validation_windows,
            noise_all_int8: plan.as_ref().map(|p| p.noise_all_int8),
            noise: plan.as_ref().map(|p| p.noise),
            keep_float,
        });
        pkg.save_manifest()?;
        println!(
            "recorded the cache and its plan in {}/model.toml [int8]",
            pkg.dir.display()
        );
    }
    Ok(out)
}

/// The INT8-read activations among `scales`, with their scales: what the plan may quantise.
fn quantisable(
    scales: &std::collections::BTreeMap<String, TensorCalibration>,
    int8_read: &[String],
) -> std::collections::HashMap<String, f32> {
    int8_read
        .iter()
        .filter_map(|n| scales.get(n).map(|c| (n.clone(), c.scale.get())))
        .collect()
}

/// The package's network hooked by `quantiser`, and the names of the activations an INT8
/// engine reads in INT8 (the only ones the quantiser touches).
fn quantising_probe(
    pkg: &ModelPackage,
    quantiser: Quantiser,
) -> Result<(ProbeBackend<Quantiser>, Vec<String>)> {
    let m = &pkg.manifest;
    let probe = ProbeBackend::load(&pkg.onnx_path(), &m.onnx.inputs, &m.onnx.outputs, quantiser)?;
    let int8_read = probe
        .activations()
        .into_iter()
        .filter(|a| a.int8)
        .map(|a| a.name)
        .collect();
    Ok((probe, int8_read))
}

/// A planner (`plan.rs`) on a fresh quantising network, over validation windows that are not
/// calibration windows, and the names of the activations an INT8 engine reads in INT8.
fn planner<'a>(
    pkg: &ModelPackage,
    ds: &'a Dataset,
    calibration: &[WindowAt],
    args: &PlanArgs,
) -> Result<(Planner<'a>, Vec<String>)> {
    let m = &pkg.manifest;
    let quantiser = Quantiser::default();
    let (probe, int8_read) = quantising_probe(pkg, quantiser.clone())?;
    let analyzer = Analyzer::with_backend(pkg, Box::new(probe), 1)?;
    let windows = plan::validation_windows(
        ds,
        analyzer.recipe().window_len(),
        args.validation_windows,
        calibration,
    );
    log::info!(
        "INT8 plan: {} INT8-read tensors, {} validation windows, budget {} sd",
        int8_read.len(),
        windows.len(),
        args.budget
    );
    let planner = Planner::new(
        analyzer,
        quantiser,
        ds,
        windows,
        m.calibration.as_ref().map(|c| c.score.std),
    )?;
    Ok((planner, int8_read))
}

/// An analyzer whose network quantises every activation the cache names. Fails if the cache
/// names none of the network's activations (a cache of another model).
pub fn simulated_int8_analyzer(pkg: &ModelPackage, cache_path: &Path) -> Result<Analyzer> {
    let text = std::fs::read_to_string(cache_path).with_context(|| {
        format!(
            "reading the calibration cache {} (create it with `vigil calib int8 {} --dataset DIR`)",
            cache_path.display(),
            pkg.dir.display()
        )
    })?;
    let cache = CalibrationCache::parse(&text)
        .with_context(|| format!("calibration cache {}", cache_path.display()))?;
    let scales: std::collections::HashMap<String, f32> =
        cache.iter().map(|(n, s)| (n.to_owned(), s.get())).collect();
    let m = &pkg.manifest;
    let (probe, names) = quantising_probe(pkg, Quantiser::new(scales))?;
    let covered = names.iter().filter(|n| cache.get(n).is_some()).count();
    if covered == 0 {
        bail!(
            "calibration cache {} names none of the {} activations of {}: it belongs to another model; recreate it with `vigil calib int8`",
            cache_path.display(),
            names.len(),
            pkg.dir.display()
        );
    }
    let planned = |n: &String| {
        m.int8
            .as_ref()
            .is_some_and(|q| q.keep_float.contains_key(n))
    };
    let unplanned = names
        .iter()
        .filter(|n| cache.get(n).is_none() && !planned(n))
        .count();
    if unplanned > 0 {
        log::warn!(
            "calibration cache {} covers {covered} of {} INT8 activations; {unplanned} not kept float by the package's [int8] plan stay FP32 too",
            cache_path.display(),
            names.len()
        );
    } else if covered < names.len() {
        log::info!(
            "{} of {} INT8 activations stay float, as the package's precision plan says",
            names.len() - covered,
            names.len()
        );
    }
    Ok(Analyzer::with_backend(pkg, Box::new(probe), 1)?)
}

#[derive(clap::Args, Debug)]
pub struct CollectArgs {
    /// Configuration naming the camera.
    #[arg(long, default_value = "/etc/vigil/vigil.toml")]
    pub config: PathBuf,
    /// Camera name (default: the first camera of the configuration).
    #[arg(long)]
    pub camera: Option<String>,
    /// Clips to save.
    #[arg(long, default_value_t = 20)]
    pub clips: usize,
    /// Consecutive frames per clip (at least the model's window, 9 for ustn-dsc).
    #[arg(long, default_value_t = 10)]
    pub clip_frames: usize,
    /// Frames skipped between clips, so the clips cover different moments of the scene.
    #[arg(long, default_value_t = 50)]
    pub skip: usize,
    /// Output directory, in the dataset layout (`frames/<clip>/NNNN.png`) that
    /// `vigil calib int8 --dataset` and `vigil calib scores --dataset` read.
    #[arg(long)]
    pub out: PathBuf,
}

/// `vigil calib collect`: saves short clips of a configured camera as PNG files, so that INT8
/// calibration (and score calibration) run on the scene the box will watch, through the same
/// preprocessing as `vigil run`. Frames are saved as the source delivers them, not as tensors:
/// the calibration then prepares them exactly as the daemon does.
pub fn collect(args: &CollectArgs) -> Result<usize> {
    let cfg = vigil_daemon::config::Config::load(&args.config)?;
    let cam = match &args.camera {
        Some(name) => cfg
            .cameras
            .iter()
            .find(|c| &c.name == name)
            .with_context(|| format!("{} has no camera named {name:?}", args.config.display()))?,
        None => cfg
            .cameras
            .first()
            .with_context(|| format!("{} configures no camera", args.config.display()))?,
    };
    if args.clips == 0 || args.clip_frames == 0 {
        bail!("--clips and --clip-frames must be at least 1");
    }
    let mut src =
        vigil_daemon::source::open(&cam.source).with_context(|| format!("camera {}", cam.name))?;
    log::info!(
        "collecting {} clips of {} frames from {}",
        args.clips,
        args.clip_frames,
        src.describe()
    );
    let mut frame = Frame::placeholder();
    let mut next = |frame: &mut Frame| -> Result<bool> {
        // Transient camera errors (a corrupt MJPEG frame, a timeout) are retried a few times;
        // collection is attended, so a camera that keeps failing stops it with the reason.
        let mut failures = 0;
        loop {
            match src.next_into(frame) {
                Ok(vigil_daemon::source::Next::Frame) => return Ok(true),
                Ok(vigil_daemon::source::Next::EndOfStream) => return Ok(false),
                Err(e) if e.is_transient() && failures < 10 => {
                    failures += 1;
                    log::warn!("camera {}: {e}; retrying", cam.name);
                }
                Err(e) => return Err(anyhow::Error::new(e).context(format!("camera {}", cam.name))),
            }
        }
    };
    let bar = indicatif::ProgressBar::new((args.clips * args.clip_frames) as u64);
    let mut saved = 0;
    'clips: for clip in 0..args.clips {
        if clip > 0 {
            for _ in 0..args.skip {
                if !next(&mut frame)? {
                    break 'clips;
                }
            }
        }
        let dir = args.out.join("frames").join(format!("{clip:03}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for i in 0..args.clip_frames {
            if !next(&mut frame)? {
                break 'clips;
            }
            let g = frame.geometry();
            let color = match g.layout() {
                PixelLayout::Gray8 => image::ExtendedColorType::L8,
                PixelLayout::Rgb8 => image::ExtendedColorType::Rgb8,
            };
            let path = dir.join(format!("{i:04}.png"));
            image::save_buffer(&path, frame.data(), g.width(), g.height(), color)
                .with_context(|| format!("writing {}", path.display()))?;
            saved += 1;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if saved == 0 {
        bail!("camera {} delivered no frame", cam.name);
    }
    println!(
        "saved {saved} frames of camera {} to {}",
        cam.name,
        args.out.display()
    );
    Ok(saved)
}
