//! `vigil bench`: per-stage timings on real frames, all measured in one run so the ratios
//! between stages are meaningful on a noisy machine.

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vigil_daemon::backend::BackendConfig;
use vigil_engine::frame::Frame;
use vigil_engine::imageio;
use vigil_engine::package::ModelPackage;
use vigil_engine::preprocess::Preprocessor;
use vigil_engine::scoring::{squared_error_into, ErrorMap, EventConfig, EventDetector, Normalizer};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value = "engine/models/ped2-bdfi")]
    pub model: PathBuf,
    /// Directory of frames (e.g. ../shared/datasets/ped2/testing/frames/01).
    #[arg(long, default_value = "firmware/cli/assets/demo/ped2-test01")]
    pub frames: PathBuf,
    /// Timed passes over the frames.
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    #[arg(long)]
    pub json: bool,
    /// Camera frame rate for the cameras-per-box estimate.
    #[arg(long, default_value_t = 10.0)]
    pub fps: f64,
    #[command(flatten)]
    pub backend: super::backend::BackendArgs,
}

/// The JSON of `vigil bench --json`.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub frames: usize,
    pub passes: usize,
    pub stages: Vec<StageReport>,
    pub backends: Vec<BackendReport>,
    /// The process's peak resident memory (VmHWM) at the end: every backend loaded so far
    /// counts, so run one backend per process to attribute it.
    pub peak_rss_mb: Option<f64>,
}

/// One backend's network and whole-analyzer timings, measured on the same frames in the same
/// run as the others.
#[derive(Debug, Serialize)]
pub struct BackendReport {
    pub backend: String,
    /// ONNX Runtime's version, when the backend is ONNX Runtime.
    pub library: Option<String>,
    pub threads: usize,
    pub network: StageReport,
    pub analyzer: StageReport,
    /// Frames per second of one camera's analyzer on one thread.
    pub frames_per_s: f64,
    /// Cameras at `fps` frames/s that the machine's cores carry, one analyzer per core
    /// (floor(cores x frames_per_s / fps) / threads); the per-frame work outside the analyzer
    /// (decode, events) is not counted.
    pub cameras: u64,
    pub cores: usize,
    pub fps: f64,
}

#[derive(Debug, Serialize, Default)]
pub struct StageReport {
    pub stage: &'static str,
    pub mean_us: f64,
    pub p99_us: f64,
    pub samples: usize,
}

fn report(stage: &'static str, mut d: Vec<Duration>) -> StageReport {
    d.sort();
    let us = |x: &Duration| x.as_secs_f64() * 1e6;
    StageReport {
        stage,
        mean_us: d.iter().map(us).sum::<f64>() / d.len().max(1) as f64,
        p99_us: d
            .get(((d.len() as f64) * 0.99) as usize)
            .or(d.last())
            .map(us)
            .unwrap_or(0.0),
        samples: d.len(),
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    crate::warn_if_debug_build("bench");
    if !(args.fps.is_finite() && args.fps > 0.0) {
        anyhow::bail!(
            "--fps {} is not a frame rate: give the cameras' frames per second, e.g. 10",
            args.fps
        );
    }
    let pkg = ModelPackage::load(&args.model)?;
    let files = vigil_daemon::source::dir::list_frames(&args.frames)?;
    let geo = pkg.manifest.input;
    let (w, h) = (geo.width as usize, geo.height as usize);
    // Decoded frames kept in memory so the other stages are timed without disk or decoder.
    let mut decoded = Vec::new();
    let mut t_decode = Vec::new();
    let mut f = Frame::placeholder();
    for p in &files {
        let t = Instant::now();
        imageio::load_into(p, &mut f)?;
        t_decode.push(t.elapsed());
        decoded.push(f.clone());
    }
    let mut pre = Preprocessor::new(geo);
    let mut plane = vec![0f32; geo.plane_len()];
    let mut prev = vec![0f32; geo.plane_len()];
    let mut map = ErrorMap::new(w, h)?;
    let mut patches = pkg.patch_detector()?;
    let mut norm = Normalizer::from_config(&vigil_engine::scoring::default_normalizer(
        pkg.normal_scores(),
    ))?;
    let mut events = EventDetector::new(EventConfig {
        ..vigil_engine::scoring::default_events()
    })?;
    let (mut t_pre, mut t_err, mut t_patch, mut t_norm, mut t_event, mut t_cpu) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut i = 0u64;
    for _ in 0..args.passes {
        for fr in &decoded {
            let start = Instant::now();
            pre.run(fr, &mut plane)?;
            let a = Instant::now();
            squared_error_into(&plane, &prev, &mut map)?;
            let b = Instant::now();
            let r = patches.detect(&map, Some(0.0))?;
            let c = Instant::now();
            let s = norm.push(r.max)?;
            let d = Instant::now();
            let _ = events.update(i, Duration::from_millis(100 * i), s, &r.regions)?;
            let e = Instant::now();
            std::mem::swap(&mut plane, &mut prev);
            t_pre.push(a - start);
            t_err.push(b - a);
            t_patch.push(c - b);
            t_norm.push(d - c);
            t_event.push(e - d);
            t_cpu.push(e - start);
            i += 1;
        }
    }
    // The network and the whole analyzer chain, frame by frame, once per backend.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut backends = Vec::new();
    for &kind in &args.backend.backend {
        let cfg = args.backend.config(kind);
        let mut analyzer = super::backend::analyzer(&pkg, &cfg, u64::MAX)?;
        let (mut t_net, mut t_total) = (vec![], vec![]);
        let mut idx = 0u64;
        for _ in 0..args.passes.max(1) {
            for fr in &decoded {
                let mut fr = fr.clone();
                fr.index = idx;
                idx += 1;
                let t = Instant::now();
                if analyzer.push(&fr).context("analyzer")?.is_some() {
                    t_total.push(t.elapsed());
                    t_net.push(analyzer.times().network);
                }
            }
        }
        let name = analyzer.backend_name();
        let ort = matches!(cfg, BackendConfig::Onnxruntime { .. });
        let threads = match cfg {
            BackendConfig::Onnxruntime { threads, .. } => threads,
            _ => 1,
        };
        let analyzer = report("analyzer total (preprocess+network+score)", t_total);
        let frames_per_s = 1e6 / analyzer.mean_us.max(1e-9);
        backends.push(BackendReport {
            backend: name.to_string(),
            library: ort
                .then(|| vigil_onnxruntime::library::loaded().map(|l| l.version.clone()))
                .flatten(),
            threads,
            network: report("network", t_net),
            cameras: ((cores as f64 * frames_per_s / args.fps).floor() as u64)
                / threads.max(1) as u64,
            analyzer,
            frames_per_s,
            cores,
            fps: args.fps,
        });
    }
    let stages = vec![
        report("decode (JPEG file)", t_decode),
        report("preprocess (resize+normalise)", t_pre),
        report("error map", t_err),
        report("patch detector", t_patch),
        report("normaliser", t_norm),
        report("event detector", t_event),
        report("per-frame work except network", t_cpu),
    ];
    let bench = BenchReport {
        model: pkg.manifest.name.clone(),
        frames: decoded.len(),
        passes: args.passes,
        stages,
        backends,
        peak_rss_mb: peak_rss_mb(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&bench)?);
    } else {
        println!(
            "model {} ({}x{}), {} frames x {} passes, source frames {}x{}",
            pkg.manifest.name,
            w,
            h,
            decoded.len(),
            args.passes,
            decoded.first().map(|f| f.geometry().width()).unwrap_or(0),
            decoded.first().map(|f| f.geometry().height()).unwrap_or(0)
        );
        println!("{:<45} {:>10} {:>10}", "stage", "mean us", "p99 us");
        for s in &bench.stages {
            println!("{:<45} {:>10.1} {:>10.1}", s.stage, s.mean_us, s.p99_us);
        }
        for b in &bench.backends {
            let label = match &b.library {
                Some(v) => format!("{} {v}, {} thread(s)", b.backend, b.threads),
                None => format!("{}, {} thread(s)", b.backend, b.threads),
            };
            println!(
                "{:<45} {:>10.1} {:>10.1}",
                format!("network ({label})"),
                b.network.mean_us,
                b.network.p99_us
            );
            println!(
                "{:<45} {:>10.1} {:>10.1}",
                format!("analyzer total ({label})"),
                b.analyzer.mean_us,
                b.analyzer.p99_us
            );
        }
        for b in &bench.backends {
            println!(
                "{}: {:.1} frames/s for one camera; {} camera(s) at {} frames/s on {} core(s)",
                b.backend, b.frames_per_s, b.cameras, b.fps, b.cores
            );
        }
        if let [a, b] = bench.backends.as_slice() {
            println!(
                "network time {} / {}: {:.2}",
                b.backend,
                a.backend,
                b.network.mean_us / a.network.mean_us.max(1e-9)
            );
        }
        if let Some(mb) = bench.peak_rss_mb {
            println!("peak RSS: {mb:.0} MB");
        }
    }
    Ok(())
}

/// VmHWM from /proc/self/status (Linux); `None` elsewhere.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
