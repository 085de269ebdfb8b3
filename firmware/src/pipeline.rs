//! The daemon's threads: per camera one capture thread and one inference thread joined by a
//! preallocated [`FrameRing`]; one publisher (with its own MQTT threads) shared by all cameras.
//!
//! Capture never waits for inference (a live camera drops the oldest frame, counted); the
//! inference thread never waits for the broker (events are written to the outbox and handed
//! over). A stop request (SIGTERM) ends capture, lets inference drain the ring, closes open
//! events, and leaves unacknowledged events in the outbox.

use crate::config::CameraConfig;
use crate::detector::{default_normalizer, Detector};
use crate::mqtt::{CameraHealth, CameraState, EventMessage, Publisher};
use crate::source::ring::FrameRing;
use crate::source::{self, Next, SourceConfig};
use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::frame::{Geometry, PixelLayout};
use vigil_engine::package::ModelPackage;

/// Frames in flight between capture and inference. Four absorbs a slow inference or two without
/// adding more than a few frames of latency.
pub const RING: usize = 4;
pub type Ring = FrameRing<RING>;

/// What the pipeline reports to an observer (the demo's console, tests, `vigil bench`).
#[derive(Debug, Clone)]
pub enum Observed {
    Scored {
        camera: String,
        frame: u64,
        raw: f32,
        score: f32,
    },
    /// An event message that was written to the outbox (before the broker acknowledged it).
    Event(EventMessage),
    /// The camera's stream ended (replay sources).
    Ended { camera: String },
}

/// Live counters of one camera, read by the health reporter.
#[derive(Debug)]
pub struct CameraStats {
    pub name: String,
    pub frames: AtomicU64,
    pub scored: AtomicU64,
    pub transient_errors: AtomicU64,
    pub dropped: AtomicU64,
    pub queue_depth: AtomicU64,
    state: Mutex<CameraState>,
    started: Instant,
}

impl CameraStats {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            frames: AtomicU64::new(0),
            scored: AtomicU64::new(0),
            transient_errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            state: Mutex::new(CameraState::Starting),
            started: Instant::now(),
        }
    }
    pub fn state(&self) -> CameraState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn set_state(&self, s: CameraState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
    /// The counters the systemd watchdog judges liveness by.
    pub fn progress(&self) -> crate::systemd::Progress {
        crate::systemd::Progress {
            frames: self.frames.load(Ordering::Relaxed),
            transient_errors: self.transient_errors.load(Ordering::Relaxed),
            scored: self.scored.load(Ordering::Relaxed),
            finished: matches!(self.state(), CameraState::Ended | CameraState::Failed),
        }
    }
    pub fn health(&self) -> CameraHealth {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        CameraHealth {
            camera: self.name.clone(),
            state: self.state(),
            fps: (self.scored.load(Ordering::Relaxed) as f64 / secs) as f32,
            frames: self.frames.load(Ordering::Relaxed),
            dropped_frames: self.dropped.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed) as u32,
        }
    }
}

pub struct CameraHandle {
    pub stats: Arc<CameraStats>,
    capture: JoinHandle<Result<()>>,
    inference: JoinHandle<Result<()>>,
}

impl CameraHandle {
    /// Waits for both threads; the first error wins.
    pub fn join(self) -> Result<()> {
        let c = self
            .capture
            .join()
            .map_err(|_| anyhow::anyhow!("camera {}: capture thread panicked", self.stats.name))?;
        let i = self.inference.join().map_err(|_| {
            anyhow::anyhow!("camera {}: inference thread panicked", self.stats.name)
        })?;
        c.and(i)
    }
    pub fn is_finished(&self) -> bool {
        self.capture.is_finished() && self.inference.is_finished()
    }
}

/// Loads the model and opens the source (so a bad model or missing camera fails here, at start,
/// with a clear message), then starts the camera's two threads.
pub fn spawn_camera(
    cfg: &CameraConfig,
    device: &str,
    engine_dir: &std::path::Path,
    publisher: Arc<Publisher>,
    stop: Arc<AtomicBool>,
    observer: Option<Sender<Observed>>,
) -> Result<CameraHandle> {
    let pkg = ModelPackage::load(&cfg.model).with_context(|| format!("camera {}", cfg.name))?;
    let mut analyzer = crate::tensorrt::analyzer(&pkg, &cfg.backend, engine_dir, cfg.max_gap)
        .with_context(|| format!("camera {}: loading {}", cfg.name, pkg.dir.display()))?;
    let normalizer = cfg.normalizer.unwrap_or_else(|| default_normalizer(&pkg));
    let mut detector = Detector::new(
        &pkg,
        &normalizer,
        cfg.events,
        cfg.region_fraction,
        device,
        &cfg.name,
        analyzer.recipe().latency_frames(),
    )
    .with_context(|| format!("camera {}", cfg.name))?;
    let mut src = source::open(&cfg.source).with_context(|| format!("camera {}", cfg.name))?;
    log::info!(
        "camera {}: {} -> model {} ({} on {}, normaliser {:?})",
        cfg.name,
        src.describe(),
        pkg.manifest.name,
        pkg.manifest.recipe,
        analyzer.backend_name(),
        normalizer
    );
    let geo = Geometry::new(
        pkg.manifest.input.width,
        pkg.manifest.input.height,
        PixelLayout::Rgb8,
    )
    .context("model input geometry")?;
    let ring = Arc::new(Ring::new(geo));
    let stats = Arc::new(CameraStats::new(&cfg.name));
    let lossless = cfg.lossless || is_unpaced_replay(&cfg.source);

    let capture = {
        let (ring, stats, stop, name) =
            (ring.clone(), stats.clone(), stop.clone(), cfg.name.clone());
        std::thread::Builder::new()
            .name(format!("capture-{name}"))
            .spawn(move || {
                let r = capture_loop(src.as_mut(), &ring, &stats, &stop, lossless);
                ring.close();
                if let Err(e) = &r {
                    stats.set_state(CameraState::Failed);
                    log::error!("camera {name}: {e:#}");
                }
                r
            })
            .context("starting capture thread")?
    };
    let inference = {
        let (ring, stats, name) = (ring, stats.clone(), cfg.name.clone());
        std::thread::Builder::new()
            .name(format!("infer-{name}"))
            .spawn(move || {
                detector.set_epoch(SystemTime::now());
                let r = inference_loop(
                    &mut analyzer,
                    &mut detector,
                    &ring,
                    &stats,
                    &publisher,
                    observer.as_ref(),
                );
                if let Some(msg) = detector.finish() {
                    emit(&publisher, observer.as_ref(), msg);
                }
                if let Some(o) = &observer {
                    let _ = o.send(Observed::Ended {
                        camera: name.clone(),
                    });
                }
                if let Err(e) = &r {
                    log::error!("camera {name}: {e:#}");
                }
                r
            })
            .context("starting inference thread")?
    };
    Ok(CameraHandle {
        stats,
        capture,
        inference,
    })
}

fn is_unpaced_replay(src: &SourceConfig) -> bool {
    matches!(src, SourceConfig::Dir(d) if d.fps.is_none())
}

/// Limits repeated identical warnings: a camera failing every 100 ms must not flood the journal.
struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    fn allow(&mut self, every: Duration) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now - t < every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

fn capture_loop(
    src: &mut (dyn source::FrameSource + Send),
    ring: &Ring,
    stats: &CameraStats,
    stop: &AtomicBool,
    lossless: bool,
) -> Result<()> {
    let mut warn = RateLimit {
        last: None,
        suppressed: 0,
    };
    let mut backoff = Duration::from_millis(10);
    while !stop.load(Ordering::Relaxed) {
        if lossless {
            // Replay: wait for room instead of dropping, so every frame of the file is scored.
            while ring.depth() >= RING - 1 && !stop.load(Ordering::Relaxed) && !ring.is_closed() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let Some(mut frame) = ring.acquire() else {
            break;
        };
        match src.next_into(&mut frame) {
            Ok(Next::Frame) => {
                ring.commit(frame);
                stats.frames.fetch_add(1, Ordering::Relaxed);
                stats.dropped.store(ring.dropped(), Ordering::Relaxed);
                backoff = Duration::from_millis(10);
                if stats.state() != CameraState::Streaming {
                    stats.set_state(CameraState::Streaming);
                }
            }
            Ok(Next::EndOfStream) => {
                ring.release(frame);
                log::info!(
                    "camera {}: end of stream after {} frames",
                    stats.name,
                    stats.frames.load(Ordering::Relaxed)
                );
                stats.set_state(CameraState::Ended);
                return Ok(());
            }
            Err(e) if e.is_transient() => {
                ring.release(frame);
                stats.transient_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = warn.allow(Duration::from_secs(10)) {
                    log::warn!(
                        "camera {}: {e} ({suppressed} similar messages suppressed)",
                        stats.name
                    );
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                ring.release(frame);
                return Err(e).context(format!("camera {}", stats.name));
            }
        }
    }
    Ok(())
}

fn inference_loop(
    analyzer: &mut Analyzer,
    detector: &mut Detector,
    ring: &Ring,
    stats: &CameraStats,
    publisher: &Publisher,
    observer: Option<&Sender<Observed>>,
) -> Result<()> {
    let mut warn = RateLimit {
        last: None,
        suppressed: 0,
    };
    loop {
        let Some(frame) = ring.pop_timeout(Duration::from_millis(200)) else {
            if ring.is_closed() {
                return Ok(());
            }
            continue;
        };
        stats
            .queue_depth
            .store(ring.depth() as u64, Ordering::Relaxed);
        let resets_before = analyzer.window_resets();
        let result = analyzer.push(&frame);
        ring.release(frame);
        if analyzer.window_resets() != resets_before {
            // Frames were lost (drops, camera hiccup): scores after the gap start afresh.
            detector.reset_normalizer();
        }
        let scored = match result {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                if let Some(n) = warn.allow(Duration::from_secs(10)) {
                    log::warn!(
                        "camera {}: frame skipped: {e} ({n} similar suppressed)",
                        stats.name
                    );
                }
                continue;
            }
        };
        stats.scored.fetch_add(1, Ordering::Relaxed);
        let (score, msg) = detector
            .process(&scored, analyzer.error_map())
            .with_context(|| {
                format!(
                    "camera {}: scoring frame {}",
                    stats.name, scored.frame_index
                )
            })?;
        if let Some(o) = observer {
            let _ = o.send(Observed::Scored {
                camera: stats.name.clone(),
                frame: scored.frame_index,
                raw: scored.raw,
                score,
            });
        }
        if let Some(msg) = msg {
            emit(publisher, observer, msg);
        }
    }
}

fn emit(publisher: &Publisher, observer: Option<&Sender<Observed>>, msg: EventMessage) {
    log::info!(
        "event {} {} camera {} frame {} score {:.3} peak {:.3}",
        msg.kind,
        msg.id,
        msg.camera,
        msg.frame,
        msg.score,
        msg.peak_score
    );
    if let Err(e) = publisher.publish_event(&msg) {
        // The outbox could not take it (disk full, read-only): detection goes on; the message
        // is lost and says so loudly.
        log::error!(
            "event {} {} could not be stored for publishing: {e}",
            msg.kind,
            msg.id
        );
    }
    if let Some(o) = observer {
        let _ = o.send(Observed::Event(msg));
    }
}
