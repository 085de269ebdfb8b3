//! Steady state allocates nothing per frame: preprocessing into the recipe
//! window with its optical-flow stage (Farnebäck expansion and flow per frame pair), the
//! object extractor (background model, morphology, components, boxes), the error map, and the detector stage (normaliser, patch detector, event logic) are
//! run on real Ped2 frames at the model's resolution (192x128) under a counting global allocator. The network itself (tract)
//! is excluded: it is measured separately in docs/benchmarks.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated minus bytes freed while counting: what a counted region leaves behind.
static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        }
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            LIVE.fetch_add(n as i64 - l.size() as i64, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

use vigil_daemon::events::EventStage;
use vigil_daemon::source::pixfmt::{PixelDecoder, RawFormat, RawGeometry};
use vigil_engine::flow::{Farneback, FarnebackParams};
use vigil_engine::frame::{Frame, PixelLayout};
use vigil_engine::objects::{MotionExtractor, ObjectParams};
use vigil_engine::package::ModelPackage;
use vigil_engine::preprocess::Preprocessor;
use vigil_engine::recipe::{Scored, MAX_COMPONENTS};
use vigil_engine::scoring::{squared_error_into, ErrorMap, EventConfig, NormalizerConfig};
use vigil_engine::window::FrameWindow;

#[test]
fn per_frame_work_except_the_network_allocates_nothing() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let pkg = ModelPackage::load(&repo.join("engine/models/ped2-bdfi")).unwrap();
    let geo = pkg.manifest.input;
    // Real camera-like buffers: Ped2 frames encoded as MJPEG (what a UVC camera sends).
    let clip = repo.join("firmware/cli/assets/demo/ped2-test01");
    let jpegs: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            // At model resolution: fast_image_resize recomputes its filter coefficients on every
            // call (about 330 small allocations per 360x240 -> 192x128 frame, measured), a known
            // gap tracked in docs/benchmarks.md; a camera configured at the model's size skips it.
            let img = image::open(clip.join(format!("{i:03}.jpg")))
                .unwrap()
                .into_luma8();
            let img = image::imageops::resize(
                &img,
                geo.width,
                geo.height,
                image::imageops::FilterType::Triangle,
            );
            let mut buf = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 85)
                .encode_image(&img)
                .unwrap();
            buf
        })
        .collect();
    let mut decoder = PixelDecoder::new(
        RawGeometry::packed(RawFormat::Mjpeg, geo.width, geo.height).unwrap(),
        PixelLayout::Gray8,
    )
    .unwrap();
    let mut frame = Frame::blank(decoder.output());
    let mut pre = Preprocessor::new(geo);
    // with the flow stage the flow recipes use (maam-net, stm-ae)
    let flow = Farneback::new(
        FarnebackParams::default(),
        geo.width as usize,
        geo.height as usize,
    )
    .unwrap();
    let mut window = FrameWindow::with_flow(
        3,
        geo.plane_len(),
        1,
        flow,
        geo.channels as usize,
        geo.pixel_range,
    );
    let mut map = ErrorMap::new(geo.width as usize, geo.height as usize).unwrap();
    // the object extractor of the object-centric recipe (hf2vad)
    let mut objects = MotionExtractor::new(
        ObjectParams::default(),
        geo.width as usize,
        geo.height as usize,
        geo.channels as usize,
        geo.pixel_range,
    )
    .unwrap();
    let mut boxes_seen = 0usize;
    // Thresholds out of reach: this test is about frames, events (rare, a message each) allocate.
    let events = EventConfig {
        on: 2.0,
        off: 1.5,
        min_frames_on: 3,
        min_frames_off: 3,
        cooldown_frames: 0,
        update_every_frames: 0,
    };
    let mut detector = EventStage::new(
        &pkg,
        // The default normaliser's kind (a warm baseline), with a short window so that the
        // measured frames go round it several times.
        &NormalizerConfig::Baseline {
            median: 0.0,
            spread: 1.0,
            window: 64,
            gate: 1.0,
            relearn: 200,
        },
        events,
        0.7,
        "box",
        "cam",
        1,
    )
    .unwrap();

    let mut run = |i: u64, counting: bool| {
        // MJPEG decoding is outside the counted region: zune-jpeg allocates its internal
        // buffers on every decode (our side reuses the frame and scratch buffers). YUYV, NV12
        // and GREY decoding do not allocate.
        decoder
            .decode(&jpegs[i as usize % jpegs.len()], &mut frame)
            .unwrap();
        frame.index = i;
        frame.timestamp = Duration::from_millis(100 * i);
        COUNTING.store(counting, Ordering::Relaxed);
        window.push(&frame, &mut pre).unwrap();
        if window.is_full() {
            squared_error_into(window.plane(2), window.plane(0), &mut map).unwrap();
            let mut components = [0.0; MAX_COMPONENTS];
            components[0] = vigil_engine::scoring::mean(&map);
            let scored = Scored {
                frame_index: window.index(1),
                timestamp: window.timestamp(1),
                raw: components[0],
                components,
            };
            let (_, msg) = detector.process(&scored, &map).unwrap();
            assert!(msg.is_none());
            // the flow was computed: the Ped2 walkers move
            assert!(window.flow(1).dx().iter().any(|v| v.abs() > 0.1));
            let clip = [window.plane(0), window.plane(1), window.plane(2)];
            boxes_seen += objects.detect(window.index(2), &clip).unwrap().len();
        }
        COUNTING.store(false, Ordering::Relaxed);
    };
    // Warm-up: first decode sizes the buffers, the window fills.
    for i in 0..5 {
        run(i, false);
    }
    ALLOCS.store(0, Ordering::Relaxed);
    for i in 5..200 {
        run(i, true);
    }
    let n = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(n, 0, "{n} heap allocations in 195 steady-state frames");
    assert!(
        boxes_seen > 195,
        "the extractor found the walkers: {boxes_seen} boxes"
    );

    // The two known gaps, measured as bounded: at the camera's own resolution (Ped2's 360x240
    // JPEG frames, as a UVC camera sends MJPEG) zune-jpeg allocates inside every decode and
    // fast_image_resize recomputes its filter coefficients on every resize. Both must allocate
    // the same small amount every frame and free all of it before the frame is done: a
    // per-frame cost, never growth.
    let camera_jpegs: Vec<Vec<u8>> = (0..40)
        .map(|i| std::fs::read(clip.join(format!("{i:03}.jpg"))).unwrap())
        .collect();
    let first = image::load_from_memory(&camera_jpegs[0]).unwrap();
    let mut cam_decoder = PixelDecoder::new(
        RawGeometry::packed(RawFormat::Mjpeg, first.width(), first.height()).unwrap(),
        PixelLayout::Gray8,
    )
    .unwrap();
    let mut cam_frame = Frame::blank(cam_decoder.output());
    let mut plane = vec![0f32; geo.plane_len()];
    let (mut decode, mut resize) = (Vec::new(), Vec::new());
    for i in 0..120 {
        let jpeg = &camera_jpegs[i % camera_jpegs.len()];
        ALLOCS.store(0, Ordering::Relaxed);
        LIVE.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        cam_decoder.decode(jpeg, &mut cam_frame).unwrap();
        COUNTING.store(false, Ordering::Relaxed);
        let d = (ALLOCS.load(Ordering::Relaxed), LIVE.load(Ordering::Relaxed));
        ALLOCS.store(0, Ordering::Relaxed);
        LIVE.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        pre.run(&cam_frame, &mut plane).unwrap();
        COUNTING.store(false, Ordering::Relaxed);
        let r = (ALLOCS.load(Ordering::Relaxed), LIVE.load(Ordering::Relaxed));
        if i >= 5 {
            decode.push(d);
            resize.push(r);
        }
    }
    for (what, v) in [("MJPEG decode", &decode), ("resize", &resize)] {
        let max = v.iter().map(|x| x.0).max().unwrap_or(0);
        let min = v.iter().map(|x| x.0).min().unwrap_or(0);
        let left = v.iter().map(|x| x.1).max().unwrap_or(0);
        eprintln!("{what} at 360x240: {min}-{max} allocations per frame, at most {left} bytes left after a frame");
        assert_eq!(left, 0, "{what} keeps memory from frame to frame");
        assert!(
            max <= 2 * min.max(1) && max < 2000,
            "{what}: {min}-{max} allocations per frame is not a bounded per-frame cost"
        );
    }
}
