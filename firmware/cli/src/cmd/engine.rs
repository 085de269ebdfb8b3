//! `vigil engine build` and `vigil engine selftest`: TensorRT engines from a model package, and
//! one real window through the engine and the CPU backend side by side.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use vigil_daemon::backend::{
    analyzer, build_options, require_native, BackendConfig, DEFAULT_ENGINE_DIR,
};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::package::ModelPackage;
use vigil_tensorrt::{
    load_or_build, shell_join, trtexec_command, BuildEvent, EngineCache, Precision, TrtRuntime,
};

#[derive(clap::Subcommand)]
pub enum EngineCmd {
    /// Build a package's TensorRT engine into the engine cache (FP16, INT8 or both; GPU or DLA).
    Build(BuildArgs),
    /// Run one window of real frames through the engine and the CPU backend; compare.
    Selftest(SelftestArgs),
}

pub fn run(cmd: EngineCmd) -> Result<()> {
    match cmd {
        EngineCmd::Build(args) => build(&args),
        EngineCmd::Selftest(args) => selftest(&args),
    }
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
    print_runtime(&rt);
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
/// One line naming the TensorRT and GPU found; engines are tied to both.
fn print_runtime(rt: &TrtRuntime) {
    let i = rt.info();
    println!(
        "TensorRT {} (shim compiled against {}), CUDA runtime {}.{}, GPU {} sm_{}{}{}, {} DLA core(s)",
        i.trt_version,
        i.compiled_against,
        i.cuda_runtime.0,
        i.cuda_runtime.1,
        i.cuda_device,
        i.sm.0,
        i.sm.1,
        if i.integrated { " (integrated, Jetson)" } else { "" },
        i.dla_cores
    );
}

pub fn selftest(args: &SelftestArgs) -> Result<()> {
    require_native()?;
    let pkg = ModelPackage::load(&args.model)?;
    // What the box has, first: a selftest result means little without the TensorRT it ran on.
    print_runtime(&TrtRuntime::new(0)?);
    let backend = BackendConfig::Tensorrt {
        precision: args.precision,
        dla: args.dla,
        workspace_mb: None,
    };
    let mut trt = analyzer(&pkg, &backend, &args.cache_dir, 1)?;
    let mut cpu = Analyzer::cpu(&pkg, 1)?;
    let frames = match &args.frames {
        Some(d) => d.clone(),
        None => super::demo::bundled_clip()?,
    };
    let files = vigil_engine::imageio::frame_files(&frames)
        .with_context(|| format!("reading frames from {}", frames.display()))?;
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
