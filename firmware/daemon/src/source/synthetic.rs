//! Generated frames for demos and tests without a camera: a textured static background (a
//! stand-in for a walkway) with a few slow, pedestrian-like blobs, and optionally an anomaly
//! burst: a large blob crossing the scene more than ten times faster, the way a cyclist or a
//! cart crosses a Ped2 scene.
//!
//! Everything is a pure function of `(seed, frame index)`, so two sources with the same
//! configuration produce identical streams and a test can ask whether a frame is anomalous
//! ([`SyntheticSource::is_anomalous`]) for ground truth.

use std::time::Duration;

use log::info;
use vigil_engine::frame::{Frame, Geometry, PixelLayout};

use super::dir::Pacer;
use super::{FrameSource, Next, OutputColor, SourceError, SyntheticConfig};

/// SplitMix64: a tiny, well-mixed deterministic generator. Used as a hash of (seed, stream
/// position) so that no generator state has to be carried between frames.
const fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from a hash.
fn unit(h: u64) -> f32 {
    (h >> 40) as f32 / (1u64 << 24) as f32
}

#[derive(Debug, Clone, Copy)]
struct Blob {
    x0: f32,
    y0: f32,
    vx: f32,
    vy: f32,
    rx: f32,
    ry: f32,
    /// Gray level, and colour for RGB output.
    gray: f32,
    rgb: [f32; 3],
}

const PEDESTRIANS: usize = 6;

/// See the module docs.
#[derive(Debug)]
pub struct SyntheticSource {
    geometry: Geometry,
    /// The static scene, already in the output layout; copied into each frame.
    background: Vec<u8>,
    blobs: [Blob; PEDESTRIANS],
    seed: u64,
    fps: f32,
    anomaly_at: Option<u64>,
    anomaly_frames: u64,
    count: Option<u64>,
    stall_after: Option<u64>,
    next: u64,
    pacer: Option<Pacer>,
}

impl SyntheticSource {
    pub fn new(config: &SyntheticConfig) -> Result<Self, SourceError> {
        let layout = match config.output {
            OutputColor::Gray => PixelLayout::Gray8,
            OutputColor::Rgb => PixelLayout::Rgb8,
        };
        let geometry = Geometry::new(config.width, config.height, layout)
            .map_err(|e| SourceError::Config(format!("synthetic source: {e}")))?;
        if !(config.fps.is_finite() && config.fps > 0.0 && config.fps <= 1000.0) {
            return Err(SourceError::Config(format!(
                "synthetic fps = {}: must be between 0 and 1000",
                config.fps
            )));
        }
        if config.anomaly_at.is_some() && config.anomaly_frames == 0 {
            return Err(SourceError::Config(
                "synthetic anomaly_frames = 0 with anomaly_at set: the anomaly would never show"
                    .to_owned(),
            ));
        }
        let (w, h) = (config.width as f32, config.height as f32);
        let seed = config.seed;
        let blobs = std::array::from_fn(|i| {
            let r = |k: u64| unit(splitmix(seed ^ splitmix(0xB10B_0000 + (i as u64) * 16 + k)));
            // About the size of a Ped2 pedestrian: 1/40 of the width across, 2.5 times as tall.
            let rx = (w * (0.010 + 0.006 * r(0))).max(1.5);
            let dir = if r(1) < 0.5 { -1.0 } else { 1.0 };
            let shade = 0.25 + 0.5 * r(7);
            Blob {
                x0: w * r(2),
                y0: h * (0.35 + 0.5 * r(3)),
                vx: dir * (0.3 + 0.9 * r(4)) * w / 360.0,
                vy: (r(5) - 0.5) * 0.3 * h / 240.0,
                rx,
                ry: rx * 2.5,
                gray: if r(6) < 0.7 {
                    255.0 * shade * 0.5
                } else {
                    255.0 * (0.6 + shade * 0.5)
                },
                rgb: [255.0 * r(8), 255.0 * r(9), 255.0 * r(10)],
            }
        });
        let background = render_background(geometry, seed);
        info!(
            "synthetic source {}x{} at {} fps, seed {}{}",
            config.width,
            config.height,
            config.fps,
            seed,
            match config.anomaly_at {
                Some(a) => format!(
                    ", anomaly at frames {a}..{}",
                    a.saturating_add(config.anomaly_frames)
                ),
                None => String::new(),
            }
        );
        Ok(Self {
            geometry,
            background,
            blobs,
            seed,
            fps: config.fps,
            anomaly_at: config.anomaly_at,
            anomaly_frames: config.anomaly_frames,
            count: config.count,
            stall_after: config.stall_after,
            next: 0,
            pacer: config.realtime.then(|| Pacer::new(config.fps)),
        })
    }

    /// Whether frame `index` shows the anomaly (ground truth for tests and demos).
    pub fn is_anomalous(&self, index: u64) -> bool {
        match self.anomaly_at {
            Some(a) => index >= a && index - a < self.anomaly_frames,
            None => false,
        }
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Renders frame `index` into `frame` (random access; used by `next_into`).
    pub fn render(&self, index: u64, frame: &mut Frame) {
        frame.reshape(self.geometry);
        let data = frame.data_mut();
        data.copy_from_slice(&self.background);
        let (w, h) = (self.geometry.width() as f32, self.geometry.height() as f32);
        let t = index as f32;
        for b in &self.blobs {
            // Walk across and re-enter on the other side; drift vertically within the walkway.
            let span = w + 4.0 * b.rx;
            let x = (b.x0 + b.vx * t).rem_euclid(span) - 2.0 * b.rx;
            let (lo, hi) = (h * 0.3, h * 0.9);
            let y = lo + triangle(b.y0 - lo + b.vy * t, hi - lo);
            // A slight sway of the width, like a walking gait.
            let sway = 1.0 + 0.08 * (t * 0.7 + b.x0).sin();
            draw_blob(self.geometry, data, x, y, b.rx * sway, b.ry, b.gray, b.rgb);
        }
        if let (Some(a), true) = (self.anomaly_at, self.is_anomalous(index)) {
            let rx = w / 8.0;
            let ry = h / 6.0;
            // Crosses the whole width during the burst: for the default 30 frames on a
            // 360-pixel scene that is ~16 px per frame against the pedestrians' ~1.
            let p = (index - a) as f32 / (self.anomaly_frames.max(2) - 1) as f32;
            let x = -rx + p * (w + 2.0 * rx);
            draw_blob(
                self.geometry,
                data,
                x,
                h * 0.62,
                rx,
                ry,
                245.0,
                [240.0, 40.0, 30.0],
            );
        }
        add_sensor_noise(data, self.seed, index);
    }
}

/// Folds `v` into [0, len] back and forth.
fn triangle(v: f32, len: f32) -> f32 {
    if len <= 0.0 {
        return 0.0;
    }
    let m = v.rem_euclid(2.0 * len);
    if m > len {
        2.0 * len - m
    } else {
        m
    }
}

/// A textured, static walkway: coarse value noise (paving, shadows) plus fine grain, with a
/// brightness gradient towards the bottom like a camera looking down at a path.
fn render_background(g: Geometry, seed: u64) -> Vec<u8> {
    let (w, h) = (g.width() as usize, g.height() as usize);
    let bpp = g.layout().bytes_per_pixel();
    let mut out = vec![0u8; g.byte_len()];
    const CELL: usize = 24;
    let lattice =
        |cx: usize, cy: usize| unit(splitmix(seed ^ splitmix(((cx as u64) << 32) | cy as u64)));
    for y in 0..h {
        for x in 0..w {
            let (cx, cy) = (x / CELL, y / CELL);
            let fx = (x % CELL) as f32 / CELL as f32;
            let fy = (y % CELL) as f32 / CELL as f32;
            let top = lattice(cx, cy) * (1.0 - fx) + lattice(cx + 1, cy) * fx;
            let bottom = lattice(cx, cy + 1) * (1.0 - fx) + lattice(cx + 1, cy + 1) * fx;
            let coarse = top * (1.0 - fy) + bottom * fy;
            let grain = unit(splitmix(seed.wrapping_add(0x5EED) ^ (y * w + x) as u64)) - 0.5;
            let v = 90.0 + 50.0 * coarse + 40.0 * (y as f32 / h as f32) + 16.0 * grain;
            let v = v.clamp(0.0, 255.0);
            let o = (y * w + x) * bpp;
            if bpp == 1 {
                out[o] = v as u8;
            } else {
                // A slightly warm gray, so RGB consumers see some colour.
                out[o] = (v * 1.02).min(255.0) as u8;
                out[o + 1] = v as u8;
                out[o + 2] = (v * 0.92) as u8;
            }
        }
    }
    out
}

/// Alpha-blends a soft-edged ellipse centred at (cx, cy) into the frame.
#[allow(clippy::too_many_arguments)]
fn draw_blob(
    g: Geometry,
    data: &mut [u8],
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    gray: f32,
    rgb: [f32; 3],
) {
    let (w, h) = (g.width() as i64, g.height() as i64);
    let bpp = g.layout().bytes_per_pixel();
    let x0 = ((cx - rx).floor() as i64).max(0);
    let x1 = ((cx + rx).ceil() as i64).min(w - 1);
    let y0 = ((cy - ry).floor() as i64).max(0);
    let y1 = ((cy + ry).ceil() as i64).min(h - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let dx = (x as f32 + 0.5 - cx) / rx;
            let dy = (y as f32 + 0.5 - cy) / ry;
            let d = dx * dx + dy * dy;
            if d >= 1.0 {
                continue;
            }
            // Solid inside, a soft rim over the outer quarter: no aliasing shimmer as blobs
            // move by fractions of a pixel.
            let a = ((1.0 - d) * 4.0).min(1.0);
            let o = (y as usize * w as usize + x as usize) * bpp;
            if bpp == 1 {
                data[o] = (f32::from(data[o]) * (1.0 - a) + gray * a) as u8;
            } else {
                for c in 0..3 {
                    data[o + c] = (f32::from(data[o + c]) * (1.0 - a) + rgb[c] * a) as u8;
                }
            }
        }
    }
}

/// +-2 levels of per-frame noise: a real sensor never repeats a pixel exactly, and consumers
/// (normalisers, frame differences) must not be tested on a perfectly still image.
fn add_sensor_noise(data: &mut [u8], seed: u64, index: u64) {
    let base = splitmix(seed ^ splitmix(index ^ 0x0153_0153));
    for (i, px) in data.iter_mut().enumerate() {
        let n = (splitmix(base ^ i as u64) % 5) as i16 - 2;
        *px = (i16::from(*px) + n).clamp(0, 255) as u8;
    }
}

impl FrameSource for SyntheticSource {
    fn next_into(&mut self, frame: &mut Frame) -> Result<Next, SourceError> {
        if self.count.is_some_and(|c| self.next >= c) {
            return Ok(Next::EndOfStream);
        }
        if self.stall_after.is_some_and(|s| self.next >= s) {
            log::warn!(
                "synthetic source: stalling on purpose after {} frames (stall_after)",
                self.next
            );
            loop {
                std::thread::park();
            }
        }
        if let Some(p) = self.pacer.as_mut() {
            p.wait();
        }
        let index = self.next;
        self.next += 1;
        self.render(index, frame);
        frame.index = index;
        frame.timestamp = Duration::from_secs_f64(index as f64 / f64::from(self.fps));
        Ok(Next::Frame)
    }

    fn describe(&self) -> String {
        format!(
            "synthetic {}x{} {} @{} fps seed {}{}",
            self.geometry.width(),
            self.geometry.height(),
            match self.geometry.layout() {
                PixelLayout::Gray8 => "gray",
                PixelLayout::Rgb8 => "rgb",
            },
            self.fps,
            self.seed,
            match self.anomaly_at {
                Some(a) => format!(", anomaly {a}..{}", a.saturating_add(self.anomaly_frames)),
                None => String::new(),
            }
        )
    }

    fn nominal_fps(&self) -> Option<f32> {
        Some(self.fps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64, anomaly_at: Option<u64>) -> SyntheticConfig {
        SyntheticConfig {
            width: 180,
            height: 120,
            fps: 10.0,
            seed,
            anomaly_at,
            anomaly_frames: 20,
            output: OutputColor::Gray,
            count: None,
            realtime: false,
            stall_after: None,
        }
    }

    fn frames(c: &SyntheticConfig, n: usize) -> Vec<Frame> {
        let mut src = SyntheticSource::new(c).unwrap();
        let mut f = Frame::placeholder();
        (0..n)
            .map(|_| {
                assert_eq!(src.next_into(&mut f).unwrap(), Next::Frame);
                f.clone()
            })
            .collect()
    }

    fn mean_abs_diff(a: &Frame, b: &Frame) -> f64 {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(&x, &y)| f64::from(x.abs_diff(y)))
            .sum::<f64>()
            / a.data().len() as f64
    }

    #[test]
    fn deterministic_per_seed() {
        let a = frames(&cfg(3, Some(10)), 25);
        let b = frames(&cfg(3, Some(10)), 25);
        assert_eq!(a, b);
        let c = frames(&cfg(4, Some(10)), 25);
        assert_ne!(
            a[0].data(),
            c[0].data(),
            "a different seed gives a different scene"
        );
        for (i, f) in a.iter().enumerate() {
            assert_eq!(f.index, i as u64);
            assert_eq!(f.timestamp, Duration::from_millis(100 * i as u64));
        }
    }

    #[test]
    fn pedestrians_move_slowly_and_the_anomaly_is_a_burst_of_motion() {
        let c = cfg(11, Some(40));
        let f = frames(&c, 70);
        let src = SyntheticSource::new(&c).unwrap();
        // Frames before the anomaly are exactly those of a stream without one.
        let quiet = frames(&cfg(11, None), 70);
        assert_eq!(f[..40], quiet[..40]);
        assert!(
            !src.is_anomalous(39)
                && src.is_anomalous(40)
                && src.is_anomalous(59)
                && !src.is_anomalous(60)
        );
        // Frame-to-frame change beyond sensor noise (+-2): the edges of slow blobs before, a
        // large fast blob during the burst.
        let changed = |a: &Frame, b: &Frame| {
            a.data()
                .iter()
                .zip(b.data())
                .filter(|(x, y)| x.abs_diff(**y) > 30)
                .count()
        };
        let normal = (1..40).map(|i| changed(&f[i - 1], &f[i])).sum::<usize>() as f64 / 39.0;
        let burst = (41..60).map(|i| changed(&f[i - 1], &f[i])).sum::<usize>() as f64 / 19.0;
        assert!(normal > 5.0, "the pedestrians must move: {normal}");
        assert!(
            burst > 5.0 * normal,
            "anomaly burst not distinct: normal {normal:.1}, burst {burst:.1} pixels/frame"
        );
        assert!(
            mean_abs_diff(&f[0], &f[1]) > 0.3,
            "the sensor noise must make every frame differ"
        );
        // And the scene really has pedestrians: the noise-free difference between frame 0 and
        // frame 30 of the quiet stream is localised but present.
        let moved = quiet[0]
            .data()
            .iter()
            .zip(quiet[30].data())
            .filter(|(a, b)| a.abs_diff(**b) > 30)
            .count();
        assert!(
            moved > 50,
            "blobs should have moved: {moved} pixels changed"
        );
        assert!(
            moved < quiet[0].data().len() / 5,
            "too much change for slow pedestrians: {moved}"
        );
    }

    #[test]
    fn background_is_textured() {
        let f = &frames(&cfg(5, None), 1)[0];
        let mean = f.data().iter().map(|&v| f64::from(v)).sum::<f64>() / f.data().len() as f64;
        let var = f
            .data()
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / f.data().len() as f64;
        assert!(var.sqrt() > 8.0, "background too flat: std {}", var.sqrt());
    }

    #[test]
    fn rgb_output_count_and_config_errors() {
        let mut c = cfg(1, None);
        c.output = OutputColor::Rgb;
        c.count = Some(3);
        let mut src = SyntheticSource::new(&c).unwrap();
        let mut f = Frame::blank(Geometry::new(180, 120, PixelLayout::Rgb8).unwrap());
        let ptr = f.data().as_ptr();
        for _ in 0..3 {
            assert_eq!(src.next_into(&mut f).unwrap(), Next::Frame);
            assert_eq!(f.geometry().layout(), PixelLayout::Rgb8);
            assert_eq!(f.data().as_ptr(), ptr, "the frame buffer is reused");
        }
        assert_eq!(src.next_into(&mut f).unwrap(), Next::EndOfStream);
        assert!(src.describe().contains("180x120 rgb"), "{}", src.describe());

        let mut bad = cfg(1, Some(5));
        bad.anomaly_frames = 0;
        assert!(matches!(
            SyntheticSource::new(&bad).unwrap_err(),
            SourceError::Config(_)
        ));
        let mut bad = cfg(1, None);
        bad.width = 0;
        assert!(matches!(
            SyntheticSource::new(&bad).unwrap_err(),
            SourceError::Config(_)
        ));
        let mut bad = cfg(1, None);
        bad.fps = 0.0;
        assert!(matches!(
            SyntheticSource::new(&bad).unwrap_err(),
            SourceError::Config(_)
        ));
    }

    #[test]
    fn realtime_paces_frames() {
        let mut c = cfg(1, None);
        c.fps = 100.0;
        c.realtime = true;
        c.count = Some(6);
        let mut src = SyntheticSource::new(&c).unwrap();
        let mut f = Frame::placeholder();
        let t = std::time::Instant::now();
        while src.next_into(&mut f).unwrap() == Next::Frame {}
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(50), "{took:?}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
}
