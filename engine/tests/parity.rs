//! Parity: the shipped ONNX run by tract equals the PyTorch checkpoint it was exported from,
//! on real Ped2 frames prepared by the runtime's own preprocessing (max abs difference <= 1e-4).
//!
//! PyTorch runs for real (`python -m vigil_zoo parity`: the zoo package, installed into the
//! project's virtualenv `.venv/` by `tests/bootstrap.sh`; `VIGIL_PYTHON` overrides the
//! interpreter). If it is missing the test fails and says how to create it: a skipped parity test
//! proves nothing.

use crate::common;

use common::{python, repo};
use std::path::Path;
use std::process::Command;
use vigil_engine::analyzer::Analyzer;
use vigil_engine::frame::Frame;
use vigil_engine::imageio;
use vigil_engine::package::ModelPackage;

fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let arr = ndarray::ArrayD::from_shape_vec(shape.to_vec(), data.to_vec()).unwrap();
    ndarray_npy::write_npy(path, &arr).unwrap();
}

fn read_npy(path: &Path) -> ndarray::ArrayD<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `frames` of the demo clip (Ped2 test video 01) through the package's analyzer, hands its
/// network inputs to `vigil-zoo parity --model <model>` and compares every output.
fn check_parity(
    package: &str,
    checkpoint: &str,
    model: &str,
    frames: std::ops::RangeInclusive<u64>,
) {
    let pkg = ModelPackage::load(&repo().join("engine/models").join(package)).unwrap();
    let mut analyzer = Analyzer::cpu(&pkg, 1).unwrap();
    let clip = repo().join("firmware/cli/assets/demo/ped2-test01");
    let mut scored = None;
    for i in frames {
        let mut f: Frame = imageio::load(&clip.join(format!("{i:03}.jpg")), i).unwrap();
        f.index = i;
        scored = analyzer.push(&f).unwrap();
    }
    assert!(
        scored.is_some(),
        "{package}: a full window must produce a score"
    );
    let dir = tempfile::tempdir().unwrap();
    for (spec, t) in pkg.manifest.onnx.inputs.iter().zip(analyzer.inputs()) {
        // an all-zero input (no object found, an unfilled slot) would make parity trivial
        assert!(
            t.data().iter().any(|&v| v != 0.0),
            "{package}: input `{}` is all zeros",
            spec.name
        );
        write_npy(
            &dir.path().join(format!("{}.npy", spec.name)),
            t.shape(),
            t.data(),
        );
    }
    let out = dir.path().join("torch");
    let status = Command::new(python())
        .args([
            "-m",
            "vigil_zoo",
            "parity",
            "--model",
            model,
            "--checkpoint",
        ])
        .arg(repo().join("engine/zoo/checkpoints").join(checkpoint))
        .arg("--inputs")
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run python -m vigil_zoo parity");
    assert!(
        status.success(),
        "python -m vigil_zoo parity --model {model} failed (no vigil_zoo? `bash tests/bootstrap.sh \
         test` installs engine/zoo into .venv)"
    );
    for (spec, t) in pkg.manifest.onnx.outputs.iter().zip(analyzer.outputs()) {
        let reference = read_npy(&out.join(format!("{}.npy", spec.name)));
        assert_eq!(
            reference.shape(),
            t.shape(),
            "{package} output {}",
            spec.name
        );
        let max = reference
            .iter()
            .zip(t.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!(
            "{package} output {}: max |tract - pytorch| = {max:e}",
            spec.name
        );
        assert!(
            max <= 1e-4,
            "{package} output {}: tract differs from PyTorch by {max} (> 1e-4)",
            spec.name
        );
    }
}

/// Frames 69-71 (bicycle present): inputs t-1 and t+1.
#[test]
fn bdfi_tract_matches_pytorch_on_real_frames() {
    check_parity("ped2-bdfi", "ped2-bdfi.pt", "bdfi", 69..=71);
}

/// Frame 69 (its flow target needs 70); the ONNX has BatchNorm folded, the checkpoint not.
#[test]
fn maam_net_tract_matches_pytorch_on_a_real_frame() {
    check_parity("ped2-maam-net", "ped2-maam-net.pt", "maam-net", 69..=70);
}

/// Frames 66-69 and the engine's three flows between them predict frame 70.
#[test]
fn stm_ae_tract_matches_pytorch_on_real_frames_and_flows() {
    check_parity("ped2-stm-ae", "ped2-stm-ae.pt", "stm-ae", 66..=70);
}

/// Frames 80-100 (the extractor's background settles; frame 100 has the bicycle and a dozen
/// walkers): the object cubes of frame 100, the unused slots zero.
#[test]
fn hf2vad_tract_matches_pytorch_on_real_object_cubes() {
    check_parity("ped2-hf2vad", "ped2-hf2vad.pt", "hf2vad", 80..=100);
}

/// Keyframes 62, 66 and 70 (bicycle present) of the clip 62-70.
#[test]
fn ustn_dsc_tract_matches_pytorch_on_real_keyframes() {
    check_parity("ped2-ustn-dsc", "ped2-ustn-dsc.pt", "ustn-dsc", 62..=70);
}
