//! Every shipped package scores real Ped2 frames the same on ONNX Runtime as on tract.

use crate::common::{library, repo};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::imageio;
use vigil_engine::package::ModelPackage;
use vigil_onnxruntime::{OrtBackend, OrtOptions};

/// Per-frame scores (and each score component) may differ by this much, relative to the score's
/// magnitude where it exceeds 1 (PSNR-based scores are in the tens of dB): two sets of kernels
/// summing in different orders, nothing more.
const SCORE_TOL: f32 = 1e-4;

/// Ped2 test video 01 (the demo clip) from frame 50: the cyclist enters at 61, so both normal and
/// anomalous frames are scored.
const FRAMES: std::ops::RangeInclusive<u64> = 50..=85;

fn check(package: &str) {
    let pkg = ModelPackage::load(&repo().join("engine/models").join(package)).unwrap();
    let m = &pkg.manifest;
    let opts = OrtOptions {
        library: Some(library()),
        ..OrtOptions::default()
    };
    let ort = OrtBackend::load(&pkg.onnx_path(), &m.onnx.inputs, &m.onnx.outputs, &opts)
        .unwrap_or_else(|e| panic!("{package}: {e}"));
    let mut a = Analyzer::with_backend(&pkg, Box::new(ort), 1).unwrap();
    assert_eq!(a.backend_name(), "onnxruntime");
    let mut b = Analyzer::cpu(&pkg, 1).unwrap();
    let clip = repo().join("firmware/cli/assets/demo/ped2-test01");
    let (mut scored, mut worst_score, mut worst_out) = (0, 0f32, 0f32);
    for i in FRAMES {
        let f = imageio::load(&clip.join(format!("{i:03}.jpg")), i).unwrap();
        let (sa, sb) = (a.push(&f).unwrap(), b.push(&f).unwrap());
        for (x, y) in a.outputs().iter().zip(b.outputs()) {
            for (p, q) in x.data().iter().zip(y.data()) {
                worst_out = worst_out.max((p - q).abs());
            }
        }
        match (sa, sb) {
            (Some(sa), Some(sb)) => {
                scored += 1;
                assert_eq!(sa.frame_index, sb.frame_index);
                let pairs = std::iter::once((sa.raw, sb.raw))
                    .chain(sa.components.into_iter().zip(sb.components));
                for (p, q) in pairs {
                    let d = (p - q).abs() / q.abs().max(1.0);
                    worst_score = worst_score.max(d);
                    assert!(
                        d <= SCORE_TOL,
                        "{package} frame {}: onnxruntime {p} vs tract {q} (relative {d:.2e} > {SCORE_TOL:e})",
                        sb.frame_index
                    );
                }
            }
            (None, None) => {}
            (sa, sb) => panic!("{package} frame {i}: onnxruntime scored {sa:?}, tract {sb:?}"),
        }
    }
    eprintln!(
        "{package}: {scored} frames scored, largest relative score difference {worst_score:.2e}, largest network output difference {worst_out:.2e}"
    );
    assert!(scored >= 20, "{package}: only {scored} frames scored");
}

#[test]
fn bdfi_matches_tract() {
    check("ped2-bdfi");
}

#[test]
fn maam_net_matches_tract() {
    check("ped2-maam-net");
}

#[test]
fn stm_ae_matches_tract() {
    check("ped2-stm-ae");
}

#[test]
fn hf2vad_matches_tract() {
    check("ped2-hf2vad");
}

#[test]
fn ustn_dsc_matches_tract() {
    check("ped2-ustn-dsc");
}
