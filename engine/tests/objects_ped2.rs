//! The built-in motion extractor on real Ped2 frames (test video 01, the demo clip): it boxes
//! the moving people and the bicycle of frame 100, and a frame without motion yields no box.
//!
//! The reference boxes (`common::demo::FRAME_100`) were drawn by hand on the original frame.

use crate::common;

use common::demo::{planes, to_model, FRAME_100, GEO};
use vigil_engine::objects::{MotionExtractor, ObjectParams};

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
        let best = common::demo::best_cover(&truth, &boxes);
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
