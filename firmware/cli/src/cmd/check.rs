//! `vigil check`: every check `vigil run` makes at start, without connecting or scoring.

use super::run::{load_config, ConfigArg};
use anyhow::{Context, Result};

pub fn run(args: ConfigArg) -> Result<()> {
    let config = args.config;
    let cfg = load_config(&config)?;
    // The very checks `vigil run` makes before it connects (vigil_daemon::preflight).
    let checked = vigil_daemon::preflight(&cfg, vigil_daemon::Purpose::Check)
        .with_context(|| format!("config {}", config.display()))?;
    for cam in &cfg.cameras {
        match checked.cameras.iter().find(|c| c.name() == cam.name) {
            Some(c) => println!("camera {}: {}", cam.name, c.describe()),
            None => println!("camera {}: device busy, not opened (see above)", cam.name),
        }
    }
    if vigil_tensorrt::NATIVE {
        // Read from the library itself: known even where no GPU runtime can be created.
        println!("TensorRT {} installed", vigil_tensorrt::library_version());
    }
    for cam in &cfg.cameras {
        print_scoring(cam);
        print_engine_readiness(&cam.name, &cam.model);
    }
    println!("{}: OK", config.display());
    Ok(())
}

/// The normaliser a camera runs and the raw scores its event thresholds stand for, so that
/// `on`/`off` can be read in the model's own units (and against its calibration).
fn print_scoring(cam: &vigil_daemon::config::CameraConfig) {
    let Ok(pkg) = vigil_engine::package::ModelPackage::load(&cam.model) else {
        return; // preflight has already reported the package
    };
    let (norm, origin) = match cam.normalizer {
        Some(n) => (n, "configured"),
        None => (
            vigil_engine::scoring::default_normalizer(pkg.normal_scores()),
            "default, from the package's calibration",
        ),
    };
    let desc = match norm {
        vigil_engine::scoring::NormalizerConfig::Baseline {
            median,
            spread,
            window,
            gate,
            relearn,
        } => format!(
            "baseline (level starts at {median:.4}, spread {spread:.4}, window {window}, gate {gate}, relearn {relearn})"
        ),
        vigil_engine::scoring::NormalizerConfig::MinMax { window, floor } => {
            format!("minmax (window {window}, floor {floor:.4})")
        }
        vigil_engine::scoring::NormalizerConfig::ZScore { mean, std } => {
            format!("zscore (mean {mean:.4}, std {std:.4})")
        }
    };
    let at = |y: f32| {
        norm.raw_at(y)
            .map(|r| format!(" = raw {r:.4}"))
            .unwrap_or_default()
    };
    println!(
        "camera {}: normaliser {desc}, {origin}; events on {}{}, off {}{}",
        cam.name,
        cam.events.on,
        at(cam.events.on),
        cam.events.off,
        at(cam.events.off),
    );
    if let Some(s) = pkg.manifest.calibration.as_ref().map(|c| &c.score) {
        println!(
            "camera {}: raw score on the package's normal training frames: p50 {:.4}, p99 {:.4}, p99.9 {:.4}, max {:.4}",
            cam.name, s.p50, s.p99, s.p999, s.max
        );
    }
}

/// Whether each JetPack's TensorRT can build an engine of the camera's model, by the ONNX
/// parser's operator tables: worth knowing on a CPU box before the package is copied to a
/// Jetson. A warning, not a failure: the CPU backend runs every package.
fn print_engine_readiness(camera: &str, model: &std::path::Path) {
    use vigil_tensorrt::onnx_support::ParserTable;
    let onnx = match vigil_engine::package::ModelPackage::load(model) {
        Ok(p) => p.onnx_path(),
        Err(_) => return, // preflight has already reported the package
    };
    let mut ready = Vec::new();
    for t in ParserTable::ALL {
        match t.table().check_file(&onnx) {
            Ok(r) if r.is_empty() => ready.push(t.label()),
            Ok(r) => log::warn!(
                "camera {camera}: {} cannot build an engine of {}: {}",
                t.label(),
                model.display(),
                r.join("; ")
            ),
            Err(e) => log::warn!("camera {camera}: {}: {e}", onnx.display()),
        }
    }
    if !ready.is_empty() {
        println!(
            "camera {camera}: model ONNX accepted by {}",
            ready.join(", ")
        );
    }
}
