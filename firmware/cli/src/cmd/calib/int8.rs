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

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use vigil_calib::int8::{
    CacheVersion, CalibrationCache, CalibrationMethod, HistogramPass, Percentile, RangePass,
    ScaleMethod,
};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::backend::probe::{fake_quantize, Activation, ActivationHook, ProbeBackend};
use vigil_engine::dataset::{Dataset, Split};
use vigil_engine::frame::{Frame, PixelLayout};
use vigil_engine::imageio;
use vigil_engine::package::ModelPackage;

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
    /// entropy (TensorRT's EntropyCalibration2), minmax, or percentile.
    #[arg(long, default_value = "entropy")]
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

fn parse_method(name: &str, percentile: f64) -> Result<(ScaleMethod, CalibrationMethod)> {
    Ok(match name {
        "entropy" => (ScaleMethod::Entropy, CalibrationMethod::EntropyCalibration2),
        "minmax" => (ScaleMethod::MinMax, CalibrationMethod::MinMaxCalibration),
        // TensorRT has no percentile calibrator; its cache reader only needs *a* known header,
        // and the scales are what they are.
        "percentile" => (
            ScaleMethod::Percentile(Percentile::new(percentile)?),
            CalibrationMethod::EntropyCalibration2,
        ),
        other => bail!("unknown --method {other:?}: use entropy, minmax or percentile"),
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

/// Window end positions (frame indices per video) of `n` network runs spread over `ds`.
fn spread(ds: &Dataset, window: usize, n: usize) -> Vec<(usize, usize)> {
    let usable: Vec<(usize, usize)> = ds
        .videos
        .iter()
        .enumerate()
        .flat_map(|(v, video)| (window.saturating_sub(1)..video.frames.len()).map(move |t| (v, t)))
        .collect();
    if usable.is_empty() || n == 0 {
        return Vec::new();
    }
    let n = n.min(usable.len());
    (0..n).map(|i| usable[i * usable.len() / n]).collect()
}

/// Runs the analyzer once per window position: reset, push the window's frames; the backend
/// runs (and the hook sees the activations) exactly once per position.
fn run_windows(
    analyzer: &mut Analyzer,
    ds: &Dataset,
    positions: &[(usize, usize)],
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let window = analyzer.recipe().window_len();
    let mut frame = Frame::placeholder();
    for &(v, end) in positions {
        let video = &ds.videos[v];
        analyzer.reset();
        for t in end + 1 - window..=end {
            imageio::load_into(&video.frames[t], &mut frame)?;
            frame.index = t as u64;
            analyzer.push(&frame).with_context(|| {
                format!("video {} frame {}", video.id, video.frames[t].display())
            })?;
        }
        bar.inc(1);
    }
    Ok(())
}

/// `vigil calib int8`: writes the cache and returns where.
pub fn calibrate(args: &Int8Args) -> Result<PathBuf> {
    let pkg = ModelPackage::load(&args.model)?;
    let ds = Dataset::open(&args.dataset, Split::Training)?;
    let (method, header) = parse_method(&args.method, args.percentile)?;
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
    let Pass::Histogram(hist) = &g.0 else {
        bail!("internal: calibration pass out of order");
    };
    let mut scales = hist.calibrate(method);
    let before = scales.len();
    scales.retain(|name, _| !args.keep_float.iter().any(|k| name.contains(k.as_str())));
    if !args.keep_float.is_empty() {
        log::info!(
            "--keep-float {:?}: {} of {before} tensors left out of the cache (their layers stay float)",
            args.keep_float,
            before - scales.len()
        );
    }
    let cache = CalibrationCache::from_calibrations(version, header, scales.iter())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.model.join(vigil_engine::package::CALIB_CACHE_FILE));
    vigil_engine::package::write_atomically(&out, cache.to_string().as_bytes())
        .with_context(|| format!("writing the calibration cache {}", out.display()))?;
    println!(
        "wrote {} ({} tensors, {} header, {} windows of {})",
        out.display(),
        cache.len(),
        cache.method(),
        positions.len(),
        ds.root.display()
    );
    Ok(out)
}

/// Quantise-dequantise at the cache's scales.
struct Quantiser(std::collections::HashMap<String, f32>);

impl ActivationHook for Quantiser {
    fn visit(&mut self, act: &Activation, data: &mut [f32]) {
        if !act.int8 {
            return;
        }
        if let Some(&s) = self.0.get(&act.name) {
            fake_quantize(data, s);
        }
    }
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
    let probe = ProbeBackend::load(
        &pkg.onnx_path(),
        &m.onnx.inputs,
        &m.onnx.outputs,
        Quantiser(scales),
    )?;
    let names: Vec<String> = probe
        .activations()
        .into_iter()
        .filter(|a| a.int8)
        .map(|a| a.name)
        .collect();
    let covered = names.iter().filter(|n| cache.get(n).is_some()).count();
    if covered == 0 {
        bail!(
            "calibration cache {} names none of the {} activations of {}: it belongs to another model; recreate it with `vigil calib int8`",
            cache_path.display(),
            names.len(),
            pkg.dir.display()
        );
    }
    if covered < names.len() {
        log::warn!(
            "calibration cache {} covers {covered} of {} INT8 activations; the rest stay FP32",
            cache_path.display(),
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
