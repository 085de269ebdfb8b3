//! Time of the engine's Farnebäck flow per frame pair at model resolution, on one core, on the
//! frames of a Ped2 video (tests/bench_flow.sh runs it beside OpenCV on the same frames), and
//! the time of the object extractor (hf2vad) per frame on the same stream, and of the test
//! detector (`[detector]`, the 160x160 YOLOv8-layout fixture: letterbox, tract, decode, NMS).
//!
//!   cargo run --release -p vigil-engine --example flow_bench -- FRAMES_DIR [PAIRS] [OUT_NPY]
//!
//! Prints the median over the pairs of (a) a pair from scratch (both frames expanded, what
//! OpenCV's call does) and (b) a pair in a stream (the newer frame expanded, the older one's
//! expansion reused, what the runtime does). With OUT_NPY, writes the model-resolution frames
//! it used (float32 [N, H, W], 0..255) so the OpenCV side times exactly the same input.

use std::time::Instant;
use vigil_engine::flow::{Farneback, FarnebackParams};
use vigil_engine::imageio;
use vigil_engine::objects::{
    Detector, DetectorLayout, DetectorSpec, MotionExtractor, ObjectParams,
};
use vigil_engine::preprocess::{InputGeometry, Preprocessor, ResizeFilter};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .expect("usage: flow_bench FRAMES_DIR [PAIRS] [OUT_NPY]");
    let pairs: usize = args
        .get(2)
        .map_or(100, |s| s.parse().expect("PAIRS is a number"));
    let (w, h) = (192usize, 128usize);
    let geo = InputGeometry {
        width: w as u32,
        height: h as u32,
        channels: 1,
        pixel_range: [0.0, 255.0],
        resize: ResizeFilter::Bilinear,
    };
    let mut pre = Preprocessor::new(geo);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read FRAMES_DIR")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "jpg" || e == "png" || e == "tif")
        })
        .collect();
    files.sort();
    files.truncate(pairs + 1);
    let planes: Vec<Vec<f32>> = files
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let f = imageio::load(p, i as u64).expect("decode frame");
            let mut plane = vec![0.0; w * h];
            pre.run(&f, &mut plane).expect("preprocess");
            plane
        })
        .collect();
    if let Some(out) = args.get(3) {
        let flat: Vec<f32> = planes.iter().flatten().copied().collect();
        let arr = ndarray::Array3::from_shape_vec((planes.len(), h, w), flat).unwrap();
        ndarray_npy::write_npy(out, &arr).expect("write OUT_NPY");
    }
    let mut fb = Farneback::new(FarnebackParams::default(), w, h).unwrap();
    let mut field = fb.new_field();
    let range = [0.0, 255.0];
    // warm-up
    fb.compute(&planes[0], &planes[1], range, &mut field)
        .unwrap();
    let scratch: Vec<f64> = planes
        .windows(2)
        .map(|p| {
            let t = Instant::now();
            fb.compute(&p[0], &p[1], range, &mut field).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let (mut a, mut b) = (fb.new_expansion(), fb.new_expansion());
    fb.expand(&planes[0], range, &mut a).unwrap();
    let stream: Vec<f64> = planes[1..]
        .iter()
        .map(|p| {
            let t = Instant::now();
            fb.expand(p, range, &mut b).unwrap();
            fb.flow(&a, &b, &mut field);
            std::mem::swap(&mut a, &mut b);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "vigil farneback {w}x{h}, {} pairs, 1 thread: from scratch median {:.3} ms/pair, streaming median {:.3} ms/pair",
        scratch.len(),
        median(scratch),
        median(stream)
    );
    // the hf2vad recipe's object extractor on the same stream (per frame, boxes included)
    let mut ex = MotionExtractor::new(ObjectParams::default(), w, h, 1, range).unwrap();
    let mut boxes = 0;
    let objects: Vec<f64> = planes
        .windows(5)
        .enumerate()
        .map(|(i, clip)| {
            let refs: Vec<&[f32]> = clip.iter().map(|p| p.as_slice()).collect();
            let t = Instant::now();
            boxes += ex.detect(i as u64 + 4, &refs).unwrap().len();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "vigil motion objects {w}x{h}, {} frames, 1 thread: median {:.3} ms/frame ({:.1} boxes/frame)",
        objects.len(),
        median(objects.clone()),
        boxes as f64 / objects.len() as f64
    );
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detector");
    let spec = DetectorSpec {
        file: "ped2-people-yolov8.onnx".into(),
        sha256: String::new(),
        layout: DetectorLayout::Yolov8,
        classes: vec![0],
        score_threshold: 0.5,
        nms_iou: 0.45,
        cover: 0.6,
    };
    let mut det = Detector::load(&spec, &fixtures, &geo, 16, 40).unwrap();
    let mut found = 0;
    let detect: Vec<f64> = planes
        .iter()
        .map(|p| {
            let t = Instant::now();
            found += det.detect(p).unwrap().len();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "vigil test detector (160x160 YOLOv8 layout, 61k parameters) {w}x{h}, {} frames, 1 thread: median {:.3} ms/frame ({:.1} boxes/frame)",
        detect.len(),
        median(detect.clone()),
        found as f64 / detect.len() as f64
    );
}
