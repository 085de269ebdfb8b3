//! The engine's Farnebäck flow equals OpenCV's `calcOpticalFlowFarneback` (same parameters,
//! flags 0) on real Ped2 frame pairs at model resolution: mean end-point error <= 0.05 px per
//! pair (the bound; measured ~1e-6).
//!
//! OpenCV runs for real (`opencv-python-headless` in the project's `.venv/`, created by
//! `tests/bootstrap.sh test`; `VIGIL_PYTHON` overrides the interpreter). Without it the test
//! fails and says how to install it.

use crate::common;

use common::{python, repo};
use std::path::PathBuf;
use std::process::Command;
use vigil_engine::flow::{Farneback, FarnebackParams, FlowField};
use vigil_engine::imageio;
use vigil_engine::preprocess::{InputGeometry, Preprocessor, ResizeFilter};

fn ped2() -> PathBuf {
    let p = repo().join("../shared/datasets/ped2");
    assert!(
        p.is_dir(),
        "{} not found: the Ped2 benchmark must sit beside the repository (../shared/datasets/ped2)",
        p.display()
    );
    p
}

#[test]
fn farneback_matches_opencv_on_ped2() {
    let geo = InputGeometry {
        width: 192,
        height: 128,
        channels: 1,
        pixel_range: [-1.0, 1.0],
        resize: ResizeFilter::Bilinear,
    };
    let mut pre = Preprocessor::new(geo);
    let params = FarnebackParams::default();
    let mut fb = Farneback::new(params, 192, 128).unwrap();
    // Walking people, the bicycle of test video 01 (frames 80-81, fast motion), a cart in
    // video 05, and a training pair.
    let root = ped2();
    let pairs = [
        ("testing/frames/01", 10),
        ("testing/frames/01", 80),
        ("testing/frames/05", 100),
        ("training/frames/03", 40),
    ];
    let (mut inputs, mut flows) = (Vec::new(), Vec::new());
    for (dir, t) in pairs {
        let mut planes = Vec::new();
        for i in [t, t + 1] {
            let frame = imageio::load(&root.join(dir).join(format!("{i:03}.jpg")), i as u64)
                .unwrap_or_else(|e| panic!("{dir}/{i:03}.jpg: {e}"));
            let mut plane = vec![0.0; geo.plane_len()];
            pre.run(&frame, &mut plane).unwrap();
            planes.push(plane);
        }
        let mut f = FlowField::new(192, 128);
        fb.compute(&planes[0], &planes[1], geo.pixel_range, &mut f)
            .unwrap();
        // What the estimator sees: the model plane on the 0..255 scale.
        for p in &planes {
            inputs.extend(p.iter().map(|v| (v + 1.0) * 127.5));
        }
        flows.extend_from_slice(f.as_slice());
    }
    let dir = tempfile::tempdir().unwrap();
    let n = pairs.len();
    let write = |name: &str, data: &[f32]| {
        let arr = ndarray::ArrayD::from_shape_vec(vec![n, 2, 128, 192], data.to_vec()).unwrap();
        ndarray_npy::write_npy(dir.path().join(name), &arr).unwrap();
    };
    write("pairs.npy", &inputs);
    write("rust.npy", &flows);
    std::fs::write(
        dir.path().join("params.json"),
        serde_json::to_string(&params).unwrap(),
    )
    .unwrap();
    let out = Command::new(python())
        .arg(repo().join("engine/tests/fixtures/flow/opencv_flow.py"))
        .arg(dir.path())
        .output()
        .expect("run opencv_flow.py");
    assert!(
        out.status.success(),
        "opencv_flow.py failed (is opencv-python-headless installed? `bash tests/bootstrap.sh test`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{report}");
    let rows = report["pairs"].as_array().unwrap();
    assert_eq!(rows.len(), n);
    for ((dir, t), r) in pairs.iter().zip(rows) {
        let mean = r["mean_epe"].as_f64().unwrap();
        let mag = r["opencv_max_magnitude"].as_f64().unwrap();
        // A pair without motion would make the comparison vacuous.
        assert!(mag > 0.5, "{dir} {t}: OpenCV found no motion (max {mag})");
        assert!(
            mean <= 0.05,
            "{dir} {t}: mean EPE {mean} px against OpenCV (> 0.05)"
        );
    }
}
