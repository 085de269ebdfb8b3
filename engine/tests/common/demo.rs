//! The demo clip (Ped2 test video 01, in the repository) at the shipped packages' geometry, and
//! boxes drawn by hand on its frame 100.

use super::repo;
use vigil_engine::frame::Frame;
use vigil_engine::imageio;
use vigil_engine::objects::BoundingBox;
use vigil_engine::preprocess::{InputGeometry, Preprocessor, ResizeFilter};

pub const GEO: InputGeometry = InputGeometry {
    width: 192,
    height: 128,
    channels: 1,
    pixel_range: [-1.0, 1.0],
    resize: ResizeFilter::Bilinear,
};

/// (what, x0, y0, x1, y1) in the original 360x240 frame 100, drawn by hand looking at the
/// image (not at any extractor's output): the bicycle and five walkers clear of the crowd.
pub const FRAME_100: &[(&str, u32, u32, u32, u32)] = &[
    ("bicycle", 78, 107, 104, 142),
    ("walker with bag, lower centre", 140, 143, 152, 173),
    ("walker left of centre", 152, 120, 163, 147),
    ("walker centre", 180, 118, 193, 148),
    ("walker behind the bicycle", 115, 110, 130, 136),
    ("walker right", 273, 132, 287, 172),
];

pub fn planes(indices: &[u64]) -> Vec<Vec<f32>> {
    let clip = repo().join("firmware/cli/assets/demo/ped2-test01");
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

pub fn to_model(x0: u32, y0: u32, x1: u32, y1: u32) -> BoundingBox {
    let s = |v: u32, full: u32, model: u32| (v * model + full / 2) / full;
    BoundingBox {
        x0: s(x0, 360, 192),
        y0: s(y0, 240, 128),
        x1: s(x1, 360, 192),
        y1: s(y1, 240, 128),
    }
}

/// The largest fraction of `truth` that one of `boxes` covers.
pub fn best_cover(truth: &BoundingBox, boxes: &[BoundingBox]) -> f32 {
    boxes
        .iter()
        .map(|b| b.intersection(truth) as f32 / truth.area() as f32)
        .fold(0.0, f32::max)
}
