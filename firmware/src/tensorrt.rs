//! The inference backend a camera runs on, and the `vigil engine` commands.
//!
//! `backend = { kind = "tensorrt", precision = "fp16" }` in a camera's config runs its model as a
//! TensorRT engine (crate `vigil-tensorrt`, docs/tensorrt.md): the engine is taken from the
//! engine cache, or built once at start and cached. This needs a binary built with
//! `--features tensorrt` on a JetPack; other builds carry only the test double of the TensorRT
//! shim and refuse, with the fix, instead of pretending.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::package::ModelPackage;
use vigil_tensorrt::{
    load_or_build, shell_join, trtexec_command, BuildEvent, BuildOptions, EngineCache, Precision,
    TensorRtBackend, TrtRuntime,
};

/// Default engine cache directory (the unit's StateDirectory, systemd/vigil.tmpfile).
pub const DEFAULT_ENGINE_DIR: &str = "/var/lib/vigil/engines";

/// `[[camera]] backend = ...`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// tract on the CPU (any machine).
    #[default]
    Cpu,
    /// A TensorRT engine on the GPU or a DLA core.
    Tensorrt {
        #[serde(default = "default_precision")]
        precision: Precision,
        /// DLA core (Orin, Xavier); layers DLA cannot run fall back to the GPU.
        #[serde(default)]
        dla: Option<u32>,
        /// Builder workspace limit in MiB (default: TensorRT's).
        #[serde(default)]
        workspace_mb: Option<u64>,
    },
}

fn default_precision() -> Precision {
    Precision::Fp16
}

/// Build options for a package: INT8 and best read the package's `calib.cache`
/// (`vigil calib int8`).
pub fn build_options(
    pkg: &ModelPackage,
    precision: Precision,
    dla: Option<u32>,
    workspace_mb: Option<u64>,
) -> Result<BuildOptions> {
    let mut o = BuildOptions::new(pkg.onnx_path(), precision);
    if precision.uses_calibration() {
        let cache = pkg.dir.join(crate::int8::CACHE_FILE);
        if !cache.is_file() {
            bail!(
                "precision {precision} needs the package's INT8 calibration cache {}, which is \
                 missing: create it with `vigil calib int8 {} --dataset DIR` (docs/tensorrt.md)",
                cache.display(),
                pkg.dir.display()
            );
        }
        o.calib_cache = Some(cache);
    }
    o.dla_core = dla;
    o.workspace_mb = workspace_mb;
    o.validate()?;
    Ok(o)
}

fn require_native() -> Result<()> {
    if !vigil_tensorrt::NATIVE {
        bail!(
            "this vigil was built without TensorRT: build it on the Jetson with \
             `cargo build --release -p vigil --features tensorrt` (docs/tensorrt.md), use \
             `vigil engine build --print-trtexec` to build the engine with trtexec, or set the \
             camera's backend to {{ kind = \"cpu\" }}"
        );
    }
    Ok(())
}

/// Opens the cache (an unwritable directory is an error here, at start, not a rebuild on every
/// boot), reuses or builds the engine, and wraps it in an analyzer.
pub fn analyzer(
    pkg: &ModelPackage,
    backend: &BackendConfig,
    engine_dir: &Path,
    max_gap: u64,
) -> Result<Analyzer> {
    let BackendConfig::Tensorrt {
        precision,
        dla,
        workspace_mb,
    } = backend
    else {
        return Ok(Analyzer::cpu(pkg, max_gap)?);
    };
    require_native()?;
    let opts = build_options(pkg, *precision, *dla, *workspace_mb)?;
    let rt = TrtRuntime::new(0)?;
    let cache = EngineCache::open(engine_dir)?;
    let prepared = load_or_build(&rt, &cache, &opts, log_progress)?;
    let m = &pkg.manifest;
    let backend = TensorRtBackend::new(&prepared.engine, &m.onnx.inputs, &m.onnx.outputs)?;
    log::info!(
        "model {}: TensorRT {} engine {} ({})",
        m.name,
        precision,
        prepared.path.display(),
        if prepared.built {
            "built now"
        } else {
            "cached"
        }
    );
    Ok(Analyzer::with_backend(pkg, Box::new(backend), max_gap)?)
}

fn log_progress(ev: &BuildEvent) -> bool {
    if let BuildEvent::PhaseStart {
        phase,
        parent: None,
        ..
    } = ev
    {
        log::info!("TensorRT build: {phase}");
    }
    true
}

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Model package.
    pub model: PathBuf,
    /// fp32, fp16, int8 or best (int8/best read PKG/calib.cache: `vigil calib int8`).
    #[arg(long, default_value = "fp16")]
    pub precision: Precision,
    /// DLA core (with GPU fallback).
    #[arg(long)]
    pub dla: Option<u32>,
    /// Builder workspace limit in MiB.
    #[arg(long)]
    pub workspace: Option<u64>,
    /// Engine cache directory (the one `vigil run` reads).
    #[arg(long, default_value = DEFAULT_ENGINE_DIR)]
    pub cache_dir: PathBuf,
    /// Print the equivalent trtexec command instead of building (works in any build of vigil).
    #[arg(long)]
    pub print_trtexec: bool,
}

/// `vigil engine build`.
pub fn build(args: &BuildArgs) -> Result<()> {
    let pkg = ModelPackage::load(&args.model)?;
    let opts = build_options(&pkg, args.precision, args.dla, args.workspace)?;
    if args.print_trtexec {
        // trtexec's engine has no record in vigil's cache, so it gets a plain name; load it
        // with `vigil engine selftest --engine` or point a deployment at it.
        let dla = args.dla.map(|d| format!("-dla{d}")).unwrap_or_default();
        let out = args.cache_dir.join(format!(
            "{}-{}{dla}.engine",
            pkg.manifest.name, args.precision
        ));
        let timing = args.cache_dir.join("timing-trtexec.cache");
        println!(
            "{}",
            shell_join(&trtexec_command(&opts, &out, Some(&timing)))
        );
        return Ok(());
    }
    require_native()?;
    let rt = TrtRuntime::new(0)?;
    let cache = EngineCache::open(&args.cache_dir)?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let prepared = load_or_build(&rt, &cache, &opts, |ev| {
        if let BuildEvent::PhaseStart { phase, .. } = ev {
            bar.set_message(phase.to_string());
        }
        true
    })?;
    bar.finish_and_clear();
    println!(
        "{} engine {} for {} ({})",
        args.precision,
        prepared.path.display(),
        pkg.manifest.name,
        if prepared.built {
            "built"
        } else {
            "already cached"
        }
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct SelftestArgs {
    /// Model package.
    pub model: PathBuf,
    #[arg(long, default_value = "fp16")]
    pub precision: Precision,
    #[arg(long)]
    pub dla: Option<u32>,
    #[arg(long, default_value = DEFAULT_ENGINE_DIR)]
    pub cache_dir: PathBuf,
    /// Frames to run one window on (a directory of images; default: the bundled demo clip).
    #[arg(long)]
    pub frames: Option<PathBuf>,
    /// Largest accepted difference from the CPU backend, relative to each output's largest
    /// magnitude (default: 1e-3 for fp32, 2e-2 for fp16, 1e-1 for int8/best).
    #[arg(long)]
    pub tolerance: Option<f32>,
}

/// `vigil engine selftest`: the engine and the CPU backend on the same real window; prints the
/// largest difference per output and fails beyond the tolerance.
pub fn selftest(args: &SelftestArgs) -> Result<()> {
    require_native()?;
    let pkg = ModelPackage::load(&args.model)?;
    let backend = BackendConfig::Tensorrt {
        precision: args.precision,
        dla: args.dla,
        workspace_mb: None,
    };
    let mut trt = analyzer(&pkg, &backend, &args.cache_dir, 1)?;
    let mut cpu = Analyzer::cpu(&pkg, 1)?;
    let frames = match &args.frames {
        Some(d) => d.clone(),
        None => crate::demo::bundled_clip()?,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&frames)
        .with_context(|| format!("reading frames from {}", frames.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| vigil_engine::imageio::is_frame_file(p))
        .collect();
    files.sort_by(|a, b| vigil_engine::imageio::natural_cmp(a.as_os_str(), b.as_os_str()));
    let window = cpu.recipe().window_len();
    if files.len() < window {
        bail!(
            "{} holds {} frames; the model needs {window}",
            frames.display(),
            files.len()
        );
    }
    for (i, f) in files.iter().take(window).enumerate() {
        let mut frame = vigil_engine::imageio::load(f, i as u64)?;
        frame.index = i as u64;
        trt.push(&frame)?;
        cpu.push(&frame)?;
    }
    let tol = args.tolerance.unwrap_or(match args.precision {
        Precision::Fp32 => 1e-3,
        Precision::Fp16 => 2e-2,
        Precision::Int8 | Precision::Best => 1e-1,
    });
    let mut worst = 0.0f32;
    for ((spec, a), b) in pkg
        .manifest
        .onnx
        .outputs
        .iter()
        .zip(trt.outputs())
        .zip(cpu.outputs())
    {
        let scale = b
            .data()
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
            .max(f32::MIN_POSITIVE);
        let diff = a
            .data()
            .iter()
            .zip(b.data())
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        println!(
            "output {}: max |trt - cpu| {diff:.3e} ({:.3e} of its range)",
            spec.name,
            diff / scale
        );
        worst = worst.max(diff / scale);
    }
    if worst > tol {
        bail!(
            "TensorRT {} differs from the CPU backend by {worst:.3e} > {tol:.1e}",
            args.precision
        );
    }
    println!("selftest passed: worst relative difference {worst:.3e} <= {tol:.1e}");
    Ok(())
}
