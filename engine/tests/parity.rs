//! Parity: the shipped ONNX run by tract equals the PyTorch checkpoint it was exported from,
//! on real Ped2 frames prepared by the runtime's own preprocessing (max abs difference <= 1e-4).
//!
//! PyTorch runs for real (engine/zoo/parity.py in the project's virtualenv, `.venv/`, created by
//! `tests/bootstrap.sh`; `VIGIL_PYTHON` overrides the interpreter). If it is missing the test
//! fails and says how to create it: a skipped parity test proves nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_engine::analyzer::Analyzer;
use vigil_engine::frame::Frame;
use vigil_engine::imageio;
use vigil_engine::package::ModelPackage;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let p = std::env::var_os("VIGIL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        p.is_file(),
        "{} not found: create the Python environment with `bash tests/bootstrap.sh test` (or set VIGIL_PYTHON)",
        p.display()
    );
    p
}

fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let arr = ndarray::ArrayD::from_shape_vec(shape.to_vec(), data.to_vec()).unwrap();
    ndarray_npy::write_npy(path, &arr).unwrap();
}

fn read_npy(path: &Path) -> ndarray::ArrayD<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn tract_matches_pytorch_on_real_frames() {
    let pkg = ModelPackage::load(&repo().join("engine/models/ped2-bdfi")).unwrap();
    let mut analyzer = Analyzer::cpu(&pkg, 1).unwrap();
    // Frames 69-71 of test video 01 (bicycle present) from the committed demo clip.
    let clip = repo().join("firmware/assets/demo/ped2-test01");
    let mut scored = None;
    for i in 69..=71u64 {
        let mut f: Frame = imageio::load(&clip.join(format!("{i:03}.jpg")), i).unwrap();
        f.index = i;
        scored = analyzer.push(&f).unwrap();
    }
    assert!(scored.is_some(), "a full window must produce a score");
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&str> = pkg
        .manifest
        .onnx
        .inputs
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for (spec, t) in pkg.manifest.onnx.inputs.iter().zip(analyzer.inputs()) {
        write_npy(
            &dir.path().join(format!("{}.npy", spec.name)),
            t.shape(),
            t.data(),
        );
    }
    assert_eq!(names, ["prev", "next"]);
    let out = dir.path().join("torch");
    let status = Command::new(python())
        .arg(repo().join("engine/zoo/parity.py"))
        .arg("--checkpoint")
        .arg(repo().join("engine/zoo/checkpoints/ped2-bdfi.pt"))
        .arg("--inputs")
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run engine/zoo/parity.py");
    assert!(status.success(), "engine/zoo/parity.py failed");
    for (spec, t) in pkg.manifest.onnx.outputs.iter().zip(analyzer.outputs()) {
        let reference = read_npy(&out.join(format!("{}.npy", spec.name)));
        assert_eq!(reference.shape(), t.shape(), "output {}", spec.name);
        let max = reference
            .iter()
            .zip(t.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("output {}: max |tract - pytorch| = {max:e}", spec.name);
        assert!(
            max <= 1e-4,
            "output {}: tract differs from PyTorch by {max} (> 1e-4)",
            spec.name
        );
    }
}

/// MAAM-Net: the ONNX (BatchNorm folded) run by tract against the PyTorch checkpoint in eval
/// mode, on frame 69 of test video 01 prepared by the runtime.
#[test]
fn maam_net_tract_matches_pytorch_on_a_real_frame() {
    let pkg = ModelPackage::load(&repo().join("engine/models/ped2-maam-net")).unwrap();
    let mut analyzer = Analyzer::cpu(&pkg, 1).unwrap();
    let clip = repo().join("firmware/assets/demo/ped2-test01");
    let mut scored = None;
    for i in 69..=70u64 {
        let mut f: Frame = imageio::load(&clip.join(format!("{i:03}.jpg")), i).unwrap();
        f.index = i;
        scored = analyzer.push(&f).unwrap();
    }
    let scored = scored.expect("a full window must produce a score");
    assert_eq!(scored.frame_index, 69);
    let dir = tempfile::tempdir().unwrap();
    let spec = &pkg.manifest.onnx.inputs[0];
    assert_eq!(spec.name, "frame");
    let t = &analyzer.inputs()[0];
    write_npy(&dir.path().join("frame.npy"), t.shape(), t.data());
    let out = dir.path().join("torch");
    let status = Command::new(python())
        .arg(repo().join("engine/zoo/parity_maam_net.py"))
        .arg("--checkpoint")
        .arg(repo().join("engine/zoo/checkpoints/ped2-maam-net.pt"))
        .arg("--inputs")
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run engine/zoo/parity_maam_net.py");
    assert!(status.success(), "engine/zoo/parity_maam_net.py failed");
    for (spec, t) in pkg.manifest.onnx.outputs.iter().zip(analyzer.outputs()) {
        let reference = read_npy(&out.join(format!("{}.npy", spec.name)));
        assert_eq!(reference.shape(), t.shape(), "output {}", spec.name);
        let max = reference
            .iter()
            .zip(t.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!(
            "maam-net output {}: max |tract - pytorch| = {max:e}",
            spec.name
        );
        assert!(
            max <= 1e-4,
            "output {}: tract differs from PyTorch by {max}",
            spec.name
        );
    }
}
