//! The detector stage (`[detector]`) on real Ped2 frames, with a real trained detector: the
//! fixture `fixtures/detector/ped2-people-yolov8.onnx` has Ultralytics YOLOv8's output layout and
//! was trained on Ped2's training videos (`vigil-zoo detector train`,
//! engine/zoo/vigil_zoo/detector/train.py; a stand-in for a user's COCO export, which cannot be
//! downloaded here). Its decoded, NMS-filtered boxes must match the independent Python reference
//! (`vigil-zoo detector ref`, engine/zoo/vigil_zoo/detector/ref.py: OpenCV letterbox, onnxruntime,
//! numpy NMS) recorded in `fixtures/detector/ped2-test01-f100.json`, and cover the walkers drawn
//! by hand; in a package, detections join the motion boxes as HF2-VAD's pipeline joins them.

use crate::common;

use common::demo::{best_cover, planes, to_model, FRAME_100, GEO};
use common::repo;
use std::path::{Path, PathBuf};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::frame::Frame;
use vigil_engine::imageio;
use vigil_engine::objects::{Detector, DetectorLayout, DetectorSpec, ObjectFinder};
use vigil_engine::package::{sha256_file, ModelPackage};

fn fixtures() -> PathBuf {
    repo().join("engine/tests/fixtures/detector")
}

const ONNX: &str = "ped2-people-yolov8.onnx";

fn spec(score_threshold: f32, nms_iou: f32) -> DetectorSpec {
    DetectorSpec {
        file: ONNX.into(),
        sha256: sha256_file(&fixtures().join(ONNX)).unwrap(),
        layout: DetectorLayout::Yolov8,
        classes: vec![0],
        score_threshold,
        nms_iou,
        cover: 0.6,
    }
}

fn detector(s: &DetectorSpec) -> Detector {
    Detector::load(s, &fixtures(), &GEO, 16, 1).unwrap()
}

#[test]
fn detections_match_the_python_reference_on_two_ped2_frames() {
    let text = std::fs::read_to_string(fixtures().join("ped2-test01-f100.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let frames = reference["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 2);
    for f in frames {
        let index = f["frame"].as_u64().unwrap();
        let s = spec(
            f["score_threshold"].as_f64().unwrap() as f32,
            f["nms_iou"].as_f64().unwrap() as f32,
        );
        let mut d = detector(&s);
        let lb = d.letterbox();
        assert_eq!(
            (lb.left, lb.top),
            (
                f["letterbox"]["left"].as_u64().unwrap() as usize,
                f["letterbox"]["top"].as_u64().unwrap() as usize
            )
        );
        let plane = planes(&[index]).remove(0);
        let got = d.detect(&plane).unwrap().to_vec();
        let want = f["boxes"].as_array().unwrap();
        assert!(want.len() >= 10, "frame {index}: the reference has a crowd");
        assert_eq!(
            got.len(),
            want.len(),
            "frame {index}: {got:?} against the reference {want:?}"
        );
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let w: Vec<f32> = w
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            for (a, b) in [g.x0, g.y0, g.x1, g.y1].iter().zip(&w[..4]) {
                assert!(
                    (a - b).abs() < 0.05,
                    "frame {index} box {i}: {g:?} against {w:?}"
                );
            }
            assert!(
                (g.score - w[4]).abs() < 1e-3,
                "frame {index} box {i}: {g:?} against {w:?}"
            );
        }
    }
}

#[test]
fn detections_cover_the_walkers_drawn_by_hand() {
    let mut d = detector(&spec(0.5, 0.45));
    let plane = planes(&[100]).remove(0);
    let boxes: Vec<_> = d
        .detect(&plane)
        .unwrap()
        .iter()
        .filter_map(|x| x.bbox())
        .collect();
    for &(what, x0, y0, x1, y1) in FRAME_100 {
        // A detector trained on walkers finds the cyclist's upper body at best.
        if what == "bicycle" {
            continue;
        }
        let truth = to_model(x0, y0, x1, y1);
        let cover = best_cover(&truth, &boxes);
        assert!(
            cover >= 0.5,
            "{what} at {truth:?} covered {:.0} % by {boxes:?}",
            cover * 100.0
        );
    }
    // A frame of uniform grey holds nobody.
    let grey = vec![0.0; plane.len()];
    assert_eq!(d.detect(&grey).unwrap(), &[]);
    // A frame of the wrong size is an error, not a panic.
    let err = d.detect(&plane[1..]).unwrap_err().to_string();
    assert!(err.contains("192x128"), "{err}");
}

/// A copy of the shipped hf2vad package with the fixture detector added as `[detector]`;
/// `edit` may change the table before it is written.
fn hf2vad_with_detector(edit: impl FnOnce(&mut toml::Table)) -> tempfile::TempDir {
    let src = repo().join("engine/models/ped2-hf2vad");
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "model.toml", "calib.cache"] {
        // Not every package has its INT8 cache yet (engine/tests/int8_caches.rs).
        if src.join(f).exists() {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
    }
    std::fs::copy(fixtures().join(ONNX), dir.path().join("detector.onnx")).unwrap();
    let path = dir.path().join("model.toml");
    let mut t: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let mut d = toml::Table::new();
    d.insert("file".into(), "detector.onnx".into());
    d.insert(
        "sha256".into(),
        sha256_file(&fixtures().join(ONNX)).unwrap().into(),
    );
    d.insert("layout".into(), "yolov8".into());
    edit(&mut d);
    t.insert("detector".into(), d.into());
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    ModelPackage::load(dir).unwrap_err().to_string()
}

#[test]
fn a_package_detector_is_checked_on_load() {
    let dir = hf2vad_with_detector(|_| {});
    let pkg = ModelPackage::load(dir.path()).unwrap();
    let d = pkg.manifest.detector.as_ref().expect("[detector] read");
    assert_eq!((d.classes.as_slice(), d.score_threshold), (&[0][..], 0.5));

    let dir = hf2vad_with_detector(|d| {
        d.insert("layout".into(), "yolov5".into());
    });
    let err = load_err(dir.path());
    assert!(
        err.contains("layout") && err.contains("[1, 5, 400]"),
        "{err}"
    );
    let dir = hf2vad_with_detector(|d| {
        d.insert("classes".into(), toml::Value::Array(vec![2.into()]));
    });
    assert!(load_err(dir.path()).contains("class 2"));
    let dir = hf2vad_with_detector(|d| {
        d.insert("sha256".into(), "00".into());
    });
    let err = load_err(dir.path());
    assert!(
        err.contains("detector.onnx") && err.contains("sha256"),
        "{err}"
    );
    let dir = hf2vad_with_detector(|d| {
        d.insert("file".into(), "yolo.onnx".into());
    });
    assert!(load_err(dir.path()).contains("yolo.onnx is missing"));
    let dir = hf2vad_with_detector(|d| {
        d.insert("iou".into(), 0.5.into());
    });
    assert!(load_err(dir.path()).contains("iou"));
    // Detections join object cubes: a frame-level package has nowhere to put them.
    let bdfi = tempfile::tempdir().unwrap();
    let src = repo().join("engine/models/ped2-bdfi");
    for f in ["model.onnx", "model.toml", "calib.cache"] {
        // Not every package has its INT8 cache yet (engine/tests/int8_caches.rs).
        if src.join(f).exists() {
            std::fs::copy(src.join(f), bdfi.path().join(f)).unwrap();
        }
    }
    let manifest = bdfi.path().join("model.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[detector]\nfile = \"model.onnx\"\nsha256 = \"\"\nlayout = \"yolov8\"\n");
    std::fs::write(&manifest, text).unwrap();
    assert!(load_err(bdfi.path()).contains("[detector] needs an [objects] table"));
}

#[test]
fn hf2vad_scores_detections_and_the_motion_boxes_they_miss() {
    let dir = hf2vad_with_detector(|_| {});
    let pkg = ModelPackage::load(dir.path()).unwrap();
    let params = pkg.manifest.objects.unwrap().params();
    let plain = ModelPackage::load(&repo().join("engine/models/ped2-hf2vad")).unwrap();
    let mut with = Analyzer::cpu(&pkg, 1).unwrap();
    let mut without = Analyzer::cpu(&plain, 1).unwrap();
    let mut motion_only = ObjectFinder::build(params, &pkg.manifest.input, None).unwrap();
    let clip = repo().join("firmware/cli/assets/demo/ped2-test01");
    let frames = planes(&(84..=100).collect::<Vec<_>>());
    let (mut objects_with, mut objects_without) = (0.0, 0.0);
    for (k, i) in (84..=100u64).enumerate() {
        let f: Frame = imageio::load(&clip.join(format!("{i:03}.jpg")), i).unwrap();
        let a = with.push(&f).unwrap();
        let b = without.push(&f).unwrap();
        if let (Some(a), Some(b)) = (a, b) {
            assert!(a.components[0].is_finite());
            (objects_with, objects_without) = (a.components[3], b.components[3]);
        }
        if k >= 4 {
            let clip: Vec<&[f32]> = frames[k - 4..=k].iter().map(|p| p.as_slice()).collect();
            motion_only.find(i, &clip).unwrap();
        }
    }
    // The recipe scored exactly what the object stage finds on frame 100.
    let mut again = ObjectFinder::build(
        params,
        &pkg.manifest.input,
        Some((pkg.manifest.detector.as_ref().unwrap(), pkg.dir.as_path())),
    )
    .unwrap();
    let mut boxes = Vec::new();
    for k in 4..frames.len() {
        let clip: Vec<&[f32]> = frames[k - 4..=k].iter().map(|p| p.as_slice()).collect();
        boxes = again.find(84 + k as u64, &clip).unwrap().to_vec();
    }
    assert_eq!(objects_with as usize, boxes.len());
    assert_eq!(
        objects_without as usize,
        motion_only.motion().boxes().len(),
        "without [detector] the motion boxes alone"
    );
    // Detections first, then motion boxes that no detection covers.
    let mut d = Detector::load(
        pkg.manifest.detector.as_ref().unwrap(),
        &pkg.dir,
        &GEO,
        params.slots as usize,
        params.min_area,
    )
    .unwrap();
    let raw: Vec<_> = d
        .detect(&frames[16])
        .unwrap()
        .iter()
        .filter_map(|x| x.bbox())
        .collect();
    // The shipped package drops objects that reach the frame border, detections included;
    // frame 100 has walkers at both side edges.
    assert!(params.drop_border);
    let dets: Vec<_> = raw
        .iter()
        .copied()
        .filter(|b| !b.touches_border(192, 128))
        .collect();
    assert!(dets.len() >= 5 && dets.len() < raw.len(), "{raw:?}");
    assert_eq!(&boxes[..dets.len()], dets.as_slice());
    for m in &boxes[dets.len()..] {
        assert!(dets
            .iter()
            .all(|x| (x.intersection(m) as f32) < 0.6 * m.area() as f32));
    }
    assert!(boxes.iter().all(|b| !b.touches_border(192, 128)));
    assert!(
        boxes.len() > dets.len(),
        "frame 100's cyclist is a motion box the walker detector misses: {boxes:?}"
    );
}
