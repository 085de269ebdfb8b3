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
            Some(c) => {
                println!("camera {}: {}", cam.name, c.describe());
                for line in c.describe_scoring() {
                    println!("camera {}: {line}", cam.name);
                }
            }
            None => println!("camera {}: device busy, not opened (see above)", cam.name),
        }
    }
    if vigil_tensorrt::NATIVE {
        // Read from the library itself: known even where no GPU runtime can be created.
        println!("TensorRT {} installed", vigil_tensorrt::library_version());
    }
    for cam in &cfg.cameras {
        print_engine_readiness(&cam.name, &cam.model);
    }
    println!("{}: OK", config.display());
    Ok(())
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
