//! The built-in motion extractor on real Ped2 frames (test video 01, the demo clip): it boxes
//! the moving people and the bicycle of frame 100, and a frame without motion yields no box.
//!
//! The reference boxes were drawn by hand on the original 360x240 frame 100 (looking at the
//! image, not at the extractor's output): the bicycle and five walkers clear of the crowd.

mod common;

use common::repo;
use vigil_engine::frame::Frame;
use vigil_engine::imageio;
use vigil_engine::objects::{BoundingBox, MotionExtractor, ObjectParams};
use vigil_engine::preprocess::{InputGeometry, Preprocessor, ResizeFilter};

const GEO: InputGeometry = InputGeometry {
    width: 192,
    height: 128,
    channels: 1,
    pixel_range: [-1.0, 1.0],
    resize: ResizeFilter::Bilinear,
};

/// (what, x0, y0, x1, y1) in the original 360x240 frame.
const FRAME_100: &[(&str, u32, u32, u32, u32)] = &[
    ("bicycle", 78, 107, 104, 142),
    ("walker with bag, lower centre", 140, 143, 152, 173),
    ("walker left of centre", 152, 120, 163, 147),
    ("walker centre", 180, 118, 193, 148),
    ("walker behind the bicycle", 115, 110, 130, 136),
    ("walker right", 273, 132, 287, 172),
];

fn planes(indices: &[u64]) -> Vec<Vec<f32>> {
    let clip = repo().join("firmware/assets/demo/ped2-test01");
    let mut pre = Preprocessor::new(GEO);
    indices
        .iter()
        .map(|&i| {
            let f: Frame = imageio::load(&clip.join(format!("{i:03}.jpg")), i).unwrap();
            let mut p = vec![0.0; GEO.plane_len()];
            pre.run(&f, &mut p).unwrap();
            p
        })
        .collect()
}

fn to_model(x0: u32, y0: u32, x1: u32, y1: u32) -> BoundingBox {
    let s = |v: u32, full: u32, model: u32| (v * model + full / 2) / full;
    BoundingBox {
        x0: s(x0, 360, 192),
        y0: s(y0, 240, 128),
        x1: s(x1, 360, 192),
        y1: s(y1, 240, 128),
    }
}

fn extractor() -> MotionExtractor {
    MotionExtractor::new(ObjectParams::default(), 192, 128, 1, GEO.pixel_range).unwrap()
}

#[test]
fn boxes_cover_the_moving_people_and_the_bicycle_of_a_ped2_frame() {
    // a stream of frames 80..=100, as the runtime sees it: the background settles first
    let frames = planes(&(80..=100).collect::<Vec<_>>());
    let mut ex = extractor();
    let mut boxes = Vec::new();
    for t in 4..frames.len() {
        let clip: Vec<&[f32]> = frames[t - 4..=t].iter().map(|p| p.as_slice()).collect();
        boxes = ex.detect(80 + t as u64, &clip).unwrap().to_vec();
    }
    assert!(
        boxes.len() >= 5,
        "frame 100 has a dozen walkers and a bicycle, boxes: {boxes:?}"
    );
    for b in &boxes {
        assert!(
            b.area() < 192 * 128 / 12,
            "one box swallows a large part of the frame (objects not separated): {b:?}"
        );
    }
    for &(what, x0, y0, x1, y1) in FRAME_100 {
        let truth = to_model(x0, y0, x1, y1);
        let best = boxes
            .iter()
            .map(|b| b.intersection(&truth) as f32 / truth.area() as f32)
            .fold(0.0, f32::max);
        assert!(
            best >= 0.5,
            "{what} at {truth:?} (model pixels) is covered {:.0} % at best by {boxes:?}",
            best * 100.0
        );
    }
}

#[test]
fn a_frame_without_motion_yields_no_box() {
    let still = planes(&[100]).remove(0);
    let mut ex = extractor();
    for t in 0..6u64 {
        let clip = [still.as_slice(); 5];
        assert_eq!(
            ex.detect(100 + t, &clip).unwrap(),
            &[],
            "still frame, call {t}"
        );
    }
}
