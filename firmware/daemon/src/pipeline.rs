//! The daemon's threads: per camera one capture thread and one inference thread joined by a
//! preallocated [`FrameRing`]; one publisher (with its own MQTT threads) shared by all cameras.
//!
//! Capture never waits for inference (a live camera drops the oldest frame, counted); the
//! inference thread never waits for the broker (events are written to the outbox and handed
//! over). A stop request (SIGTERM) ends capture, lets inference drain the ring, closes open
//! events, and leaves unacknowledged events in the outbox.

use crate::config::CameraConfig;
use crate::events::EventStage;
use crate::logging::PER_CAMERA_TARGET;
use crate::mqtt::{CameraState, EndReason, EventMessage, Publisher};
use crate::source::ring::FrameRing;
use crate::source::{self, Next, SourceConfig};
use crate::stats::CameraStats;
use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::frame::{Geometry, PixelLayout};
use vigil_engine::package::ModelPackage;
use vigil_engine::scoring::default_normalizer;

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

/// Lines of [`PreparedCamera::describe_scoring`].
fn describe_scoring(
    cfg: &CameraConfig,
    pkg: &ModelPackage,
    normalizer: &vigil_engine::scoring::NormalizerConfig,
    events: &crate::thresholds::ResolvedEvents,
) -> Vec<String> {
    use vigil_engine::scoring::NormalizerConfig;
    let origin = if cfg.normalizer.is_some() {
        "configured"
    } else {
        "default, from the package's calibration"
    };
    let desc = match *normalizer {
        NormalizerConfig::Baseline {
            median,
            spread,
            window,
            gate,
            relearn,
        } => format!(
            "baseline (level starts at {median:.4}, spread {spread:.4}, window {window}, gate {gate}, relearn {relearn})"
        ),
        NormalizerConfig::MinMax { window, floor } => {
            format!("minmax (window {window}, floor {floor:.4})")
        }
        NormalizerConfig::ZScore { mean, std } => format!("zscore (mean {mean:.4}, std {std:.4})"),
    };
    let at = |y: f32| {
        normalizer
            .raw_at(y)
            .map(|r| format!(" = raw {r:.4}"))
            .unwrap_or_default()
    };
    let e = &events.config;
    let mut lines = vec![format!(
        "normaliser {desc}, {origin}; events on {}{}, off {}{}",
        e.on,
        at(e.on),
        e.off,
        at(e.off),
    )];
    if let Some(d) = &events.derivation {
        lines.push(format!("event thresholds: {d}"));
    }
    if let Some(s) = pkg.manifest.calibration.as_ref().map(|c| &c.score) {
        lines.push(format!(
            "raw score on the package's normal training frames: p50 {:.4}, p99 {:.4}, p99.9 {:.4}, max {:.4}",
            s.p50, s.p99, s.p999, s.max
        ));
    }
    lines
}

/// A camera ready to run: its model is loaded, its recipe, normaliser and event settings are
/// built, and its source is open. Everything `vigil run` can refuse at start about a camera is
/// refused while preparing it, before anything reaches the broker; `vigil check` prepares each
/// camera the same way (and drops it), so the two cannot disagree.
pub struct PreparedCamera {
    name: String,
    /// `model <name> (<recipe>), calibrated: ...`, for `vigil check`.
    model: String,
    /// The normaliser and what the event thresholds mean in raw score, for `vigil check`.
    scoring: Vec<String>,
    source: SourceConfig,
    lossless: bool,
    src: BoxedSource,
    analyzer: Analyzer,
    detector: EventStage,
    geometry: Geometry,
}

impl PreparedCamera {
    /// Loads the model and opens the source; see the type's docs.
    pub fn prepare(
        cfg: &CameraConfig,
        device: &str,
        engine_dir: &std::path::Path,
    ) -> Result<PreparedCamera> {
        let pkg = ModelPackage::load(&cfg.model).with_context(|| format!("camera {}", cfg.name))?;
        let analyzer = crate::backend::analyzer(&pkg, &cfg.backend, engine_dir, cfg.max_gap)
            .with_context(|| format!("camera {}: loading {}", cfg.name, pkg.dir.display()))?;
        let normalizer = cfg
            .normalizer
            .unwrap_or_else(|| default_normalizer(pkg.normal_scores()));
        let src = source::open(&cfg.source).with_context(|| format!("camera {}", cfg.name))?;
        // After the source: thresholds given as a false-alarm rate need its frame rate.
        let events = cfg
            .events
            .resolve(&pkg, &normalizer, src.nominal_fps())
            .with_context(|| format!("camera {}: events", cfg.name))?;
        let detector = EventStage::new(
            &pkg,
            &normalizer,
            events.config,
            cfg.region_fraction,
            device,
            &cfg.name,
            analyzer.recipe().latency_frames(),
        )
        .with_context(|| format!("camera {}", cfg.name))?;
        log::info!(
            "camera {}: {} -> model {} ({} on {}, normaliser {:?})",
            cfg.name,
            src.describe(),
            pkg.manifest.name,
            pkg.manifest.recipe,
            analyzer.backend_name(),
            normalizer
        );
        let geometry = Geometry::new(
            pkg.manifest.input.width,
            pkg.manifest.input.height,
            PixelLayout::Rgb8,
        )
        .context("model input geometry")?;
        let model = format!(
            "model {} ({}), calibrated: {}",
            pkg.manifest.name,
            pkg.manifest.recipe,
            if pkg.manifest.calibration.is_some() {
                "yes"
            } else {
                "no (run `vigil calib scores`)"
            }
        );
        let scoring = describe_scoring(cfg, &pkg, &normalizer, &events);
        Ok(PreparedCamera {
            name: cfg.name.clone(),
            model,
            scoring,
            source: cfg.source.clone(),
            lossless: cfg
                .lossless
                .unwrap_or(matches!(cfg.source, SourceConfig::Dir(_))),
            src,
            analyzer,
            detector,
            geometry,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the camera reads and which model scores it, for `vigil check`.
    pub fn describe(&self) -> String {
        format!("{} -> {}", self.src.describe(), self.model)
    }

    /// The normaliser the camera runs and the raw scores its event thresholds stand for, beside
    /// the package's normal quantiles, for `vigil check`: `on`/`off` read in the model's units.
    pub fn describe_scoring(&self) -> &[String] {
        &self.scoring
    }

    /// Starts the camera's capture and inference threads.
    pub fn spawn(
        self,
        publisher: Arc<Publisher>,
        stop: Arc<AtomicBool>,
        observer: Option<Sender<Observed>>,
    ) -> Result<CameraHandle> {
        let PreparedCamera {
            name,
            model: _,
            scoring: _,
            source: source_cfg,
            lossless,
            mut src,
            mut analyzer,
            mut detector,
            geometry,
        } = self;
        let ring = Arc::new(Ring::new(geometry));
        let stats = Arc::new(CameraStats::new(&name));
        let capture = {
            let (ring, stats, stop, name) =
                (ring.clone(), stats.clone(), stop.clone(), name.clone());
            std::thread::Builder::new()
                .name(format!("capture-{name}"))
                .spawn(move || {
                    let mut reopen = || source::open(&source_cfg);
                    let r = capture_loop(
                        &mut src,
                        &mut reopen,
                        &ring,
                        &stats,
                        &stop,
                        lossless,
                        RECONNECT,
                    );
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
            let (ring, stats) = (ring, stats.clone());
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
                    // Capture ends on its own only when the stream ended or the camera failed;
                    // otherwise vigil is stopping.
                    let reason = match stats.state() {
                        CameraState::Ended | CameraState::Failed => EndReason::StreamEnd,
                        _ => EndReason::Stop,
                    };
                    if let Some(msg) = detector.finish(reason) {
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
}

/// " (N similar suppressed)" after a rate-limited warning, or nothing when none was.
fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar suppressed)")
    }
}

/// Limits one camera's repeated warnings: a camera failing every 100 ms must not flood the
/// journal. Logged with [`PER_CAMERA_TARGET`], which the process-wide per-line limiter lets
/// through, so each camera's warnings are thinned once, on their own.
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

/// How often a camera that keeps rejecting frames gets a summary line: the per-line log limiter
/// (`logging`) may have hidden some of the individual warnings, the summary never is.
const REJECTION_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Logs rejected frames so that none goes unreported: one warning per frame (its own call site,
/// so the journal's per-site limiter is the only one that can thin them out, and timeouts
/// cannot use up its burst), a summary with counts and the latest reason every
/// [`REJECTION_SUMMARY_EVERY`] while rejections go on, and a final one when capture ends
/// (however it ends: the summary is written on drop).
struct RejectionLog<'a> {
    stats: &'a CameraStats,
    since_summary: u64,
    last_summary: Instant,
}

impl<'a> RejectionLog<'a> {
    fn new(stats: &'a CameraStats) -> Self {
        Self {
            stats,
            since_summary: 0,
            last_summary: Instant::now(),
        }
    }

    fn reject(&mut self, e: &source::SourceError) {
        // One line per frame: an error text ending in a newline would split the journal entry.
        let reason = e.to_string().replace(['\n', '\r'], " ").trim().to_owned();
        log::warn!("camera {}: frame rejected: {reason}", self.stats.name);
        self.stats.reject(reason);
        self.since_summary += 1;
        if self.last_summary.elapsed() >= REJECTION_SUMMARY_EVERY {
            self.summary("in the last minute");
        }
    }

    /// Logs how many frames were rejected since the last summary, if any.
    fn summary(&mut self, period: &str) {
        if self.since_summary > 0 {
            log::warn!(
                "camera {}: {} frame(s) rejected {period} ({} since start); latest: {}",
                self.stats.name,
                self.since_summary,
                self.stats.rejected.load(Ordering::Relaxed),
                self.stats.last_rejection().unwrap_or_default()
            );
        }
        self.since_summary = 0;
        self.last_summary = Instant::now();
    }
}

impl Drop for RejectionLog<'_> {
    fn drop(&mut self) {
        self.summary("since the last report, when capture ended");
    }
}

/// Delays between attempts to reopen a camera that went away: short at first (a USB hub reset
/// takes about a second), growing to a bound. The bound stays under the systemd watchdog's
/// stall limit (half of `WatchdogSec=10s`): every attempt counts as progress, so a camera that
/// is unplugged does not get the whole service restarted, while a reopen that hangs in the
/// driver still does.
#[derive(Debug, Clone, Copy)]
struct ReopenDelays {
    first: Duration,
    max: Duration,
}

const RECONNECT: ReopenDelays = ReopenDelays {
    first: Duration::from_millis(250),
    max: Duration::from_secs(2),
};

type BoxedSource = Box<dyn source::FrameSource + Send>;

/// Consecutive failed frames (timeouts, corrupt or glitched buffers) after which a camera is
/// reopened rather than waited on.
const REOPEN_AFTER_FAILURES: u32 = 20;

/// Sleeps `d` in short slices; false if a stop was requested meanwhile.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
    }
    !stop.load(Ordering::Relaxed)
}

/// Reopens the camera after `cause` until it works, a stop is requested (`Ok(false)`), or the
/// reopen fails for a reason retrying cannot fix.
fn reconnect(
    src: &mut BoxedSource,
    reopen: &mut dyn FnMut() -> Result<BoxedSource, source::SourceError>,
    stats: &CameraStats,
    stop: &AtomicBool,
    delays: ReopenDelays,
    cause: &source::SourceError,
) -> Result<bool> {
    stats.set_state(CameraState::Reconnecting);
    log::warn!("camera {}: {cause}", stats.name);
    // Jittered, so cameras on one hub do not retry in lockstep.
    let mut backoff = crate::backoff::Backoff::new(delays.first, delays.max);
    let mut attempts = 0u32;
    let since = Instant::now();
    let mut warn = RateLimit {
        last: None,
        suppressed: 0,
    };
    loop {
        if !sleep_unless_stopped(backoff.next_delay(), stop) {
            return Ok(false);
        }
        attempts += 1;
        stats.transient_errors.fetch_add(1, Ordering::Relaxed);
        match reopen() {
            Ok(new) => {
                *src = new;
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "camera {}: reopened after {attempts} attempt(s), {:.1} s without frames: {}",
                    stats.name,
                    since.elapsed().as_secs_f32(),
                    src.describe()
                );
                stats.set_state(CameraState::Starting);
                return Ok(true);
            }
            Err(e) if e.needs_reopen() => {
                if let Some(n) = warn.allow(Duration::from_secs(60)) {
                    log::warn!(
                        target: PER_CAMERA_TARGET,
                        "camera {}: still unavailable after {attempts} attempt(s): {e} \
                         (retrying every {:?} at most){}",
                        stats.name,
                        delays.max,
                        suppressed_note(n)
                    );
                }
            }
            Err(e) => {
                return Err(e).context(format!("camera {}: reopening", stats.name));
            }
        }
    }
}

fn capture_loop(
    src: &mut BoxedSource,
    reopen: &mut dyn FnMut() -> Result<BoxedSource, source::SourceError>,
    ring: &Ring,
    stats: &CameraStats,
    stop: &AtomicBool,
    lossless: bool,
    reopen_backoff: ReopenDelays,
) -> Result<()> {
    let mut rejections = RejectionLog::new(stats);
    let mut warn = RateLimit {
        last: None,
        suppressed: 0,
    };
    let mut backoff = Duration::from_millis(10);
    let mut failures = 0u32;
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
                failures = 0;
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
                failures += 1;
                if matches!(e, source::SourceError::Timeout { .. }) {
                    stats.set_state(CameraState::Stalled);
                }
                if e.is_rejected_frame() {
                    rejections.reject(&e);
                } else if let Some(suppressed) = warn.allow(Duration::from_secs(10)) {
                    log::warn!(
                        target: PER_CAMERA_TARGET,
                        "camera {}: {e}{}",
                        stats.name,
                        suppressed_note(suppressed)
                    );
                }
                if failures >= REOPEN_AFTER_FAILURES && e.is_device_fault() {
                    // Nothing but failures for a while: a format change, or a camera wedged
                    // after a USB glitch. Reopening renegotiates the format and resets it.
                    failures = 0;
                    if !reconnect(src, reopen, stats, stop, reopen_backoff, &e)? {
                        break;
                    }
                    continue;
                }
                // Never longer than between reopen attempts (2 s): the watchdog's stall limit.
                std::thread::sleep(backoff.min(reopen_backoff.max));
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) if e.needs_reopen() => {
                ring.release(frame);
                // A new stream's frame numbers start afresh; the recipe's window notices the
                // jump and restarts instead of mixing frames from before and after the gap.
                if !reconnect(src, reopen, stats, stop, reopen_backoff, &e)? {
                    break;
                }
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
    detector: &mut EventStage,
    ring: &Ring,
    stats: &CameraStats,
    publisher: &Publisher,
    observer: Option<&Sender<Observed>>,
) -> Result<()> {
    let mut warn = RateLimit {
        last: None,
        suppressed: 0,
    };
    let mut last_index: Option<u64> = None;
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
        // Frames lost to a drop or a camera hiccup restart the recipe's window inside the
        // analyzer; the normaliser keeps the camera's history (the scene has not changed).
        let result = analyzer.push(&frame);
        ring.release(frame);
        let scored = match result {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                if let Some(n) = warn.allow(Duration::from_secs(10)) {
                    log::warn!(
                        target: PER_CAMERA_TARGET,
                        "camera {}: frame skipped: {e}{}",
                        stats.name,
                        suppressed_note(n)
                    );
                }
                continue;
            }
        };
        stats.scored.fetch_add(1, Ordering::Relaxed);
        if last_index.is_some_and(|last| scored.frame_index <= last) {
            // A new stream (a looped replay, a reopened camera) numbers its frames afresh. An
            // event open in the old stream cannot be assumed to go on in the new one: close it.
            log::info!(
                "camera {}: a new stream starts at frame {}; closing any open event",
                stats.name,
                scored.frame_index
            );
            if let Some(msg) = detector.finish(EndReason::StreamEnd) {
                emit(publisher, observer, msg);
            }
        }
        last_index = Some(scored.frame_index);
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
    // Logged once the outbox holds it, so the log lists exactly the events that were accepted
    // for delivery (the fault tests compare it with what the broker delivered).
    match publisher.publish_event(&msg) {
        Ok(seq) => log::info!("event {} (outbox #{seq})", msg.summary()),
        // Only a message that can never be sent (shutting down, invalid) gets here: a full or
        // read-only disk is absorbed by the outbox, which keeps the event in memory.
        Err(e) => log::error!(
            "event {} {} camera {} frame {} could not be queued for publishing: {e}",
            msg.kind,
            msg.id,
            msg.camera,
            msg.frame
        ),
    }
    if let Some(o) = observer {
        let _ = o.send(Observed::Event(msg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FrameSource, SourceError};
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;
    use vigil_engine::frame::Frame;

    /// A camera double: frames numbered from 0, then the device vanishes after `vanish_after`
    /// frames (if set), else the stream ends after `end_after`.
    struct Camera {
        next: u64,
        vanish_after: Option<u64>,
        end_after: u64,
    }

    impl FrameSource for Camera {
        fn next_into(&mut self, frame: &mut Frame) -> Result<Next, SourceError> {
            if Some(self.next) == self.vanish_after {
                return Err(SourceError::Disconnected {
                    device: "/dev/video7".into(),
                });
            }
            if self.next >= self.end_after {
                return Ok(Next::EndOfStream);
            }
            frame.index = self.next;
            self.next += 1;
            Ok(Next::Frame)
        }
        fn describe(&self) -> String {
            "double".into()
        }
        fn nominal_fps(&self) -> Option<f32> {
            None
        }
    }

    const FAST: ReopenDelays = ReopenDelays {
        first: Duration::from_millis(1),
        max: Duration::from_millis(4),
    };

    fn ring() -> Arc<Ring> {
        Arc::new(Ring::new(
            Geometry::new(4, 4, PixelLayout::Gray8).expect("4x4 is valid"),
        ))
    }

    /// Drains the ring on a thread, returning the frame indices it saw.
    fn drain(ring: Arc<Ring>) -> std::thread::JoinHandle<Vec<u64>> {
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while let Some(f) = ring.pop_timeout(Duration::from_secs(5)) {
                seen.push(f.index);
                ring.release(f);
            }
            seen
        })
    }

    /// A directory replay is lossless unless configured otherwise (the same replay raises the
    /// same events on any machine); a live camera drops unless told to block.
    #[test]
    fn replays_are_lossless_by_default_and_cameras_are_not() {
        let base = |source: &str, extra: &str| {
            format!(
                "[mqtt]\nhost = \"127.0.0.1\"\ndevice = \"box1\"\n[[camera]]\nname = \"c\"\n\
                 model = \"{}/../../engine/models/ped2-bdfi\"\nsource = {source}\n{extra}",
                env!("CARGO_MANIFEST_DIR")
            )
        };
        let frames = format!(
            "{{ kind = \"dir\", path = \"{}/../../../shared/datasets/ped2/testing/frames/01\", fps = 10.0 }}",
            env!("CARGO_MANIFEST_DIR")
        );
        let synthetic = "{ kind = \"synthetic\", width = 360, height = 240, fps = 10.0 }";
        for (source, extra, want) in [
            (frames.as_str(), "", true),
            (frames.as_str(), "lossless = false", false),
            (synthetic, "", false),
            (synthetic, "lossless = true", true),
        ] {
            let cfg = crate::config::Config::parse(&base(source, extra), Path::new("t.toml"))
                .unwrap_or_else(|e| panic!("{e}"));
            let cam = PreparedCamera::prepare(&cfg.cameras[0], "box1", Path::new("/tmp"))
                .unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(cam.lossless, want, "{source} {extra}");
        }
    }

    #[test]
    fn a_vanished_camera_is_reopened_with_backoff_and_the_stream_goes_on() {
        let ring = ring();
        let consumer = drain(ring.clone());
        let stats = CameraStats::new("cam");
        let stop = AtomicBool::new(false);
        let mut src: BoxedSource = Box::new(Camera {
            next: 0,
            vanish_after: Some(5),
            end_after: 100,
        });
        // Unplugged for two attempts, then back (a new stream, numbered from 0 again).
        let attempts = AtomicUsize::new(0);
        let mut reopen = || -> Result<BoxedSource, SourceError> {
            if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err(SourceError::DeviceMissing {
                    device: "/dev/video7".into(),
                });
            }
            Ok(Box::new(Camera {
                next: 0,
                vanish_after: None,
                end_after: 3,
            }))
        };
        capture_loop(&mut src, &mut reopen, &ring, &stats, &stop, true, FAST).unwrap();
        ring.close();
        let seen = consumer.join().unwrap();
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 0, 1, 2]);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(stats.reconnects.load(Ordering::Relaxed), 1);
        // Every attempt counted as liveness for the watchdog.
        assert_eq!(stats.transient_errors.load(Ordering::Relaxed), 3);
        assert_eq!(stats.frames.load(Ordering::Relaxed), 8);
    }

    /// A camera whose every read fails (a format changed under it, a wedged device).
    struct Wedged;

    impl FrameSource for Wedged {
        fn next_into(&mut self, _: &mut Frame) -> Result<Next, SourceError> {
            Err(SourceError::Glitch {
                source_name: "double".into(),
                message: "buffer of the wrong size".into(),
            })
        }
        fn describe(&self) -> String {
            "wedged".into()
        }
        fn nominal_fps(&self) -> Option<f32> {
            None
        }
    }

    #[test]
    fn a_camera_that_only_fails_is_reopened_after_a_run_of_failures() {
        let ring = ring();
        let consumer = drain(ring.clone());
        let stats = CameraStats::new("cam");
        let stop = AtomicBool::new(false);
        let mut src: BoxedSource = Box::new(Wedged);
        let mut reopen = || -> Result<BoxedSource, SourceError> {
            Ok(Box::new(Camera {
                next: 0,
                vanish_after: None,
                end_after: 2,
            }))
        };
        capture_loop(&mut src, &mut reopen, &ring, &stats, &stop, true, FAST).unwrap();
        ring.close();
        assert_eq!(consumer.join().unwrap(), vec![0, 1]);
        assert_eq!(stats.reconnects.load(Ordering::Relaxed), 1);
        // The run of failures, then the one reopen attempt.
        assert_eq!(
            stats.transient_errors.load(Ordering::Relaxed),
            u64::from(REOPEN_AFTER_FAILURES) + 1
        );
        // Each failed read was a frame refused before the model, and health says so and why.
        let h = stats.health();
        assert_eq!(h.frames_rejected, u64::from(REOPEN_AFTER_FAILURES));
        assert_eq!(h.frames, 2);
        let why = h.last_rejection.unwrap_or_default();
        assert!(why.contains("buffer of the wrong size"), "{why}");
    }

    #[test]
    fn a_stop_during_reconnect_ends_the_loop_and_a_config_error_is_fatal() {
        let ring = ring();
        let stats = CameraStats::new("cam");
        let stop = AtomicBool::new(false);
        let mut src: BoxedSource = Box::new(Camera {
            next: 0,
            vanish_after: Some(0),
            end_after: 100,
        });
        let mut reopen = || -> Result<BoxedSource, SourceError> {
            stop.store(true, Ordering::SeqCst);
            Err(SourceError::DeviceMissing {
                device: "/dev/video7".into(),
            })
        };
        capture_loop(&mut src, &mut reopen, &ring, &stats, &stop, false, FAST).unwrap();
        assert_eq!(stats.state(), CameraState::Reconnecting);

        // A reopen that fails for a reason retrying cannot fix is reported, not retried.
        let stop = AtomicBool::new(false);
        let mut src: BoxedSource = Box::new(Camera {
            next: 0,
            vanish_after: Some(0),
            end_after: 100,
        });
        let mut reopen = || -> Result<BoxedSource, SourceError> {
            Err(SourceError::PermissionDenied {
                device: "/dev/video7".into(),
            })
        };
        let err =
            capture_loop(&mut src, &mut reopen, &ring, &stats, &stop, false, FAST).unwrap_err();
        assert!(format!("{err:#}").contains("permission denied"), "{err:#}");
    }
}
