//! `vigil`: the one binary. See `vigil --help` and docs/.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use vigil::config::Config;
use vigil_engine::dataset::{self, Dataset, Split};
use vigil_engine::objects::ObjectFinder;
use vigil_engine::package::ModelPackage;
use vigil_engine::preprocess::{InputGeometry, ResizeFilter};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Video anomaly detection on edge boxes: camera frames in, anomaly events out over MQTT"
)]
struct Cli {
    /// Log filter (error, warn, info, debug, trace; or per module, as RUST_LOG). Default:
    /// info; warn for `demo`, whose console already shows every event as the broker delivers it.
    #[arg(long, global = true, env = "VIGIL_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon (what systemd starts).
    ///
    /// Every configuration key, its default and an example per camera source: docs/configuration.md
    /// (installed as /usr/share/doc/vigil/configuration.md).
    Run {
        #[arg(long, short, default_value = "/etc/vigil/vigil.toml")]
        config: PathBuf,
    },
    /// Make every check `vigil run` makes at start (configuration, TLS and password files,
    /// outbox directory, model packages, camera sources); exit 0 or explain what is wrong.
    Check {
        #[arg(long, short, default_value = "/etc/vigil/vigil.toml")]
        config: PathBuf,
    },
    /// Self-contained demo: bundled model, replayed Ped2 clip, embedded MQTT broker.
    Demo(vigil::demo::DemoArgs),
    /// Frame-level ROC AUC of a model package on a labelled dataset.
    Eval {
        #[arg(long)]
        model: PathBuf,
        /// Dataset root (e.g. ../shared/datasets/ped2; its `testing` split is used) or split dir.
        #[arg(long)]
        dataset: PathBuf,
        /// Comma-separated video ids (default: all labelled videos).
        #[arg(long, value_delimiter = ',')]
        videos: Vec<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Write a PNG of the score curves with the ground truth shaded.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Write every frame's scores as CSV: video,frame,anomalous,score_paper,score_stream.
        #[arg(long)]
        scores_csv: Option<PathBuf>,
        /// Also evaluate with every activation quantised to INT8 at the calibration cache's
        /// scales, and report FP32 and simulated-INT8 AUC side by side.
        #[arg(long)]
        simulate_int8: bool,
        /// Calibration cache for --simulate-int8 (default: PKG/calib.cache).
        #[arg(long, requires = "simulate_int8")]
        calib: Option<PathBuf>,
    },
    /// Per-stage timings and throughput on real frames.
    Bench(vigil::bench::BenchArgs),
    /// TensorRT engines: build (or print the trtexec command), and check one against the CPU.
    Engine {
        #[command(subcommand)]
        cmd: EngineCmd,
    },
    /// Training data from the runtime's own preprocessing.
    Dataset {
        #[command(subcommand)]
        cmd: DatasetCmd,
    },
    /// Calibration of a model package.
    Calib {
        #[command(subcommand)]
        cmd: CalibCmd,
    },
}

#[derive(Subcommand)]
enum DatasetCmd {
    /// Write `<video>.npy` (float32 [T,C,H,W]) + index.json for every video of a split.
    Export(ExportArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// Dataset root or split directory.
    #[arg(long)]
    dataset: PathBuf,
    /// Split to use when given a dataset root.
    #[arg(long, default_value = "training", value_parser = ["training", "testing"])]
    split: String,
    #[arg(long)]
    out: PathBuf,
    /// Take the geometry from this package's manifest instead of the flags below.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 192)]
    width: u32,
    #[arg(long, default_value_t = 128)]
    height: u32,
    #[arg(long, default_value_t = 1)]
    channels: u32,
    /// Pixel range as LO,HI.
    #[arg(
        long,
        default_value = "-1,1",
        value_delimiter = ',',
        num_args = 2,
        allow_negative_numbers = true
    )]
    range: Vec<f32>,
    /// Also write the engine's optical flow between consecutive frames (`<video>.flow.npy`),
    /// with the `[flow]` parameters of `--model` when it has them, OpenCV's usual Farneback
    /// parameters otherwise.
    #[arg(long)]
    flow: bool,
    /// Also write the moving objects' cubes (`<video>.obj_{frames,flows,boxes}.npy`) for
    /// object-centric models (hf2vad), with the `[objects]` parameters of `--model` when it has
    /// them, the built-in motion extractor's defaults otherwise. Needs `--flow`.
    #[arg(long, requires = "flow")]
    objects: bool,
}

#[derive(Subcommand)]
enum EngineCmd {
    /// Build a package's TensorRT engine into the engine cache (FP16, INT8 or both; GPU or DLA).
    Build(vigil::tensorrt::BuildArgs),
    /// Run one window of real frames through the engine and the CPU backend; compare.
    Selftest(vigil::tensorrt::SelftestArgs),
}

#[derive(Subcommand)]
enum CalibCmd {
    /// Score statistics on normal training frames, written into the package's manifest.
    Scores {
        /// Model package (its model.toml is updated in place).
        model: PathBuf,
        /// Dataset root or split directory with normal videos.
        #[arg(long)]
        dataset: PathBuf,
    },
    /// INT8 activation calibration on the CPU: TensorRT's calibration cache (EntropyCalibration2
    /// by default), written into the package.
    Int8(vigil::int8::Int8Args),
    /// Save short clips of a configured camera (PNG, dataset layout) for `calib int8` and
    /// `calib scores` on the scene the box watches.
    Collect(vigil::int8::CollectArgs),
}

fn main() {
    let cli = Cli::parse();
    let default_log = if matches!(cli.cmd, Cmd::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    vigil::logging::init(cli.log.as_deref().unwrap_or(default_log));
    let result = dispatch(cli.cmd);
    // Reports what the rate limiter is still holding back (firmware/src/logging.rs).
    log::logger().flush();
    if let Err(e) = result {
        eprintln!("error: {}", one_line_chain(&e));
        std::process::exit(1);
    }
}

/// Timings from an unoptimised build of vigil's own crates are not what a box does.
fn warn_if_debug_build(cmd: &str) {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this vigil is a debug build; `vigil {cmd}` timings are not representative \
             (build with `cargo build --release` and use target/release/vigil)"
        );
    }
}

/// The whole context chain on one line ("camera cam0: model ...: reason"), like `{:#}`, but a
/// cause whose text its parent already quotes (library errors that show their source) is not
/// repeated: `cannot read: No such file or directory (os error 2)`, once.
fn one_line_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The broker password may come from the environment (a systemd `EnvironmentFile=` readable by
/// root only), which keeps it out of the config file; it wins over the file's keys.
const PASSWORD_ENV: &str = "VIGIL_MQTT_PASSWORD";

fn load_config(path: &std::path::Path) -> Result<Config> {
    let mut cfg = Config::load(path)?;
    if let Some(pw) = std::env::var_os(PASSWORD_ENV) {
        let pw = pw
            .into_string()
            .map_err(|_| anyhow::anyhow!("{PASSWORD_ENV} is not valid UTF-8"))?;
        anyhow::ensure!(
            cfg.mqtt.username.is_some(),
            "{PASSWORD_ENV} is set but [mqtt] username is not; MQTT needs both"
        );
        cfg.mqtt.password = Some(pw);
        cfg.mqtt.password_file = None;
    }
    Ok(cfg)
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Run { config } => {
            let cfg = load_config(&config)?;
            let stop = Arc::new(AtomicBool::new(false));
            vigil::daemon::install_signal_handlers(&stop)?;
            vigil::daemon::run(&cfg, stop)
        }
        Cmd::Check { config } => {
            let cfg = load_config(&config)?;
            // The very checks `vigil run` makes before it connects (daemon::preflight).
            let checked = vigil::daemon::preflight(&cfg, vigil::daemon::Purpose::Check)
                .with_context(|| format!("config {}", config.display()))?;
            for cam in &cfg.cameras {
                match checked.cameras.iter().find(|c| c.name() == cam.name) {
                    Some(c) => println!("camera {}: {}", cam.name, c.describe()),
                    None => println!("camera {}: device busy, not opened (see above)", cam.name),
                }
            }
            println!("{}: OK", config.display());
            Ok(())
        }
        Cmd::Demo(args) => vigil::demo::run(args),
        Cmd::Eval {
            model,
            dataset,
            videos,
            json,
            plot,
            scores_csv,
            simulate_int8,
            calib,
        } => {
            let pkg = ModelPackage::load(&model)?;
            let mut ds = Dataset::open(&dataset, Split::Testing)?;
            if !videos.is_empty() {
                ds.select(&videos)?;
            }
            if simulate_int8 {
                let cache = calib.unwrap_or_else(|| model.join(vigil::int8::CACHE_FILE));
                return eval_int8(&pkg, &ds, &cache, json);
            }
            warn_if_debug_build("eval");
            // The bar draws on stderr (and only on a terminal), so it never mixes into --json.
            let report = vigil::eval::evaluate(&pkg, &ds, None, true)?;
            if let Some(p) = &plot {
                vigil::eval::plot(&report, p)?;
            }
            if let Some(p) = &scores_csv {
                vigil::eval::write_scores_csv(&report, p)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
                if let Some(p) = &plot {
                    println!("plot: {}", p.display());
                }
            }
            Ok(())
        }
        Cmd::Bench(args) => {
            warn_if_debug_build("bench");
            vigil::bench::run(args)
        }
        Cmd::Engine {
            cmd: EngineCmd::Build(args),
        } => vigil::tensorrt::build(&args),
        Cmd::Engine {
            cmd: EngineCmd::Selftest(args),
        } => vigil::tensorrt::selftest(&args),
        Cmd::Dataset {
            cmd: DatasetCmd::Export(a),
        } => export(a),
        Cmd::Calib {
            cmd: CalibCmd::Scores { model, dataset },
        } => vigil::calibrate::scores(&model, &dataset),
        Cmd::Calib {
            cmd: CalibCmd::Int8(args),
        } => vigil::int8::calibrate(&args).map(|_| ()),
        Cmd::Calib {
            cmd: CalibCmd::Collect(args),
        } => vigil::int8::collect(&args).map(|_| ()),
    }
}

/// `vigil eval --simulate-int8`: the FP32 evaluation and the simulated-INT8 one on the same
/// frames, side by side.
fn eval_int8(pkg: &ModelPackage, ds: &Dataset, cache: &std::path::Path, json: bool) -> Result<()> {
    // The cache is checked first: a wrong one fails before minutes of FP32 evaluation.
    let mut analyzer = vigil::int8::simulated_int8_analyzer(pkg, cache)?;
    let fp32 = vigil::eval::evaluate(pkg, ds, None, !json)?;
    let int8 = vigil::eval::evaluate_with(&mut analyzer, pkg, ds, None, !json)?;
    let max_diff = fp32
        .videos
        .iter()
        .zip(&int8.videos)
        .flat_map(|(a, b)| a.scores_stream.iter().zip(&b.scores_stream))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if json {
        let v = serde_json::json!({
            "calibration_cache": cache.display().to_string(),
            "auc_fp32": fp32.auc,
            "auc_int8": int8.auc,
            "auc_delta": int8.auc - fp32.auc,
            "auc_stream_fp32": fp32.auc_stream,
            "auc_stream_int8": int8.auc_stream,
            "auc_stream_delta": int8.auc_stream - fp32.auc_stream,
            "max_abs_stream_score_diff": max_diff,
            "fp32": fp32,
            "int8_simulated": int8,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_report(&fp32);
        print_report(&int8);
        println!(
            "INT8 (simulated, {}): auc {:.4} vs FP32 {:.4} (delta {:+.4}); auc_stream {:.4} vs {:.4} (delta {:+.4}); max |score diff| {:.4}",
            cache.display(),
            int8.auc,
            fp32.auc,
            int8.auc - fp32.auc,
            int8.auc_stream,
            fp32.auc_stream,
            int8.auc_stream - fp32.auc_stream,
            max_diff
        );
    }
    Ok(())
}

fn print_report(r: &vigil::eval::EvalReport) {
    println!(
        "model {} ({}) on {} [{} backend]",
        r.model, r.recipe, r.dataset, r.backend
    );
    println!(
        "{:>6} {:>7} {:>9} {:>8} {:>11}",
        "video", "frames", "anomalous", "auc", "auc_stream"
    );
    let f = |a: Option<f64>| a.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into());
    for v in &r.videos {
        println!(
            "{:>6} {:>7} {:>9} {:>8} {:>11}",
            v.id,
            v.frames,
            v.anomalous_frames,
            f(v.auc),
            f(v.auc_stream)
        );
    }
    println!(
        "all    {:>7}           auc {:.4} (paper protocol)  auc_stream {:.4}  eer {:.4}  {:.1} fps",
        r.frames, r.auc, r.auc_stream, r.eer, r.fps
    );
}

fn export(a: ExportArgs) -> Result<()> {
    let pkg = a.model.as_deref().map(ModelPackage::load).transpose()?;
    let flow = a.flow.then(|| {
        pkg.as_ref()
            .and_then(|p| p.manifest.flow)
            .map(|f| f.farneback())
            .unwrap_or_default()
    });
    let geo = match &pkg {
        Some(p) => p.manifest.input,
        None => {
            if a.range.len() != 2 || a.range[0] >= a.range[1] {
                bail!("--range must be LO,HI with LO < HI, got {:?}", a.range);
            }
            InputGeometry {
                width: a.width,
                height: a.height,
                channels: a.channels,
                pixel_range: [a.range[0], a.range[1]],
                resize: ResizeFilter::Bilinear,
            }
        }
    };
    // The package's object stage (motion parameters and its detector, if any), so the training
    // cubes are the ones the recipe will be served; the motion defaults without a package.
    let objects = if a.objects {
        let params = pkg
            .as_ref()
            .and_then(|p| p.manifest.objects)
            .map(|o| o.params())
            .unwrap_or_default();
        let detector = pkg
            .as_ref()
            .and_then(|p| p.manifest.detector.as_ref().map(|d| (d, p.dir.as_path())));
        Some(ObjectFinder::build(params, &geo, detector).context("--objects")?)
    } else {
        None
    };
    let split = if a.split == "training" {
        Split::Training
    } else {
        Split::Testing
    };
    let ds = Dataset::open(&a.dataset, split)?;
    let bar = indicatif::ProgressBar::new(ds.frame_count() as u64);
    let with_objects = objects.is_some();
    dataset::export(&ds, geo, flow, objects, &a.out, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    println!(
        "exported {} videos, {} frames ({}x{}x{}){} to {}",
        ds.videos.len(),
        ds.frame_count(),
        geo.channels,
        geo.height,
        geo.width,
        match (flow.is_some(), with_objects) {
            (true, true) => " with flow and object cubes",
            (true, false) => " with flow",
            _ => "",
        },
        a.out.display()
    );
    Ok(())
}
