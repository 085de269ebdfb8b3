//! `vigil dataset collect`: records a configured camera into the dataset layout
//! (`OUT/frames/<clip>/NNNN.png`) that `vigil dataset export`, `vigil calib int8|scores
//! --dataset` and `vigil-zoo scene --frames` read, for training a model of the box's own scene
//! (docs/own-scene.md).
//!
//! Frames are saved as the source delivers them (PNG, lossless), not as tensors: the training
//! side prepares them with the runtime's own preprocessing, exactly as `vigil run` will.
//!
//! Footage for training must be normal, so by default the camera's configured model scores
//! every frame as it arrives (the same analyzer, normaliser and hysteresis that `vigil run`
//! uses: `vigil_engine::scoring::ScoreStream`), and no frame is saved while an event is open.
//! A clip never spans a discontinuity: it ends where frames were left out (an event, a gap in
//! the camera's stream, a new stream) and when it is full.

use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use vigil_daemon::config::{CameraConfig, Config};
use vigil_daemon::source::{self, FrameSource, Next, SourceError};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::frame::{Frame, PixelLayout};
use vigil_engine::package::ModelPackage;
use vigil_engine::scoring::{default_normalizer, ScoreStream, Transition};

#[derive(clap::Args, Debug)]
pub struct CollectArgs {
    /// Configuration naming the camera.
    #[arg(long, default_value = "/etc/vigil/vigil.toml")]
    pub config: PathBuf,
    /// Camera name (default: the first camera of the configuration).
    #[arg(long)]
    pub camera: Option<String>,
    /// Output directory: `frames/<clip>/NNNN.png` and `collect.json` are written there. It must
    /// not hold an earlier collection (collect each session into its own folder; the clip names
    /// start with the collection's UTC start time, so folders merge in time order).
    #[arg(long)]
    pub out: PathBuf,
    /// Stop after this much of the camera's stream time: `90s`, `30m`, `2h`, `1h30m`, `1d`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after saving this many frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Frames per second to keep, chosen by the frames' timestamps (a 30 fps camera at
    /// `--rate 10` keeps every third frame). Default: every frame the camera delivers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Consecutive kept frames per clip folder (600: one minute at 10 fps). A clip also ends
    /// where frames were left out (an event, a gap in the stream).
    #[arg(long, default_value_t = 600)]
    pub clip_frames: usize,
    /// Save frames while an event is open too, and do not run the camera's model (training
    /// footage must then be checked by hand for anomalies).
    #[arg(long)]
    pub keep_events: bool,
}

/// Parses a humane duration: one or more `<number><unit>` parts (`90s`, `1.5h`, `1h30m`), with
/// units `s`, `m`/`min`, `h`, `d`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = |why: &str| format!("duration {s:?}: {why} (examples: 90s, 30m, 2h, 1h30m)");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut secs = 0.0f64;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n_end == 0 {
            return Err(bad("expected a number"));
        }
        let n: f64 = rest[..n_end]
            .parse()
            .map_err(|_| bad(&format!("{:?} is not a number", &rest[..n_end])))?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..u_end].trim();
        rest = &rest[u_end..];
        let per = match unit {
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => return Err(bad("every number needs a unit (s, m, h or d)")),
            other => return Err(bad(&format!("unknown unit {other:?}: use s, m, h or d"))),
        };
        secs += n * per;
    }
    if secs <= 0.0 {
        return Err(bad("must be longer than zero"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| bad(&e.to_string()))
}

/// `1.2 GiB`.
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Space a collection must leave free on the output filesystem: the box's outbox journal and
/// logs may live there. 5 % of the filesystem, at most 1 GiB (a small SD card cannot spare a
/// whole GiB, a large disk needs no more).
fn margin(total: u64) -> u64 {
    (total / 20).min(1 << 30)
}

/// Free bytes (for an unprivileged writer) and total bytes of the filesystem holding `path`,
/// or of its nearest existing ancestor (the output folder may not exist yet).
fn filesystem_space(path: &Path) -> Result<(u64, u64)> {
    let abs =
        std::path::absolute(path).with_context(|| format!("resolving --out {}", path.display()))?;
    let existing = abs
        .ancestors()
        .find(|p| p.exists())
        .context("no ancestor of --out exists")?;
    let st = rustix::fs::statvfs(existing)
        .with_context(|| format!("reading the free space of {}", existing.display()))?;
    Ok((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// Keeps frames at `rate` per second of the stream's timestamps: of the frames around each due
/// time (`first + k / rate`), the first one that is closer to it than half a camera frame
/// interval. Due times are laid on a grid from the first kept frame, so rounding and jitter do
/// not accumulate; after a gap (or when the camera is slower than `rate`) the grid restarts.
struct Decimator {
    period: Option<Duration>,
    next_due: Option<Duration>,
    prev: Option<Duration>,
}

impl Decimator {
    fn new(rate: Option<f64>) -> Self {
        Self {
            period: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            next_due: None,
            prev: None,
        }
    }

    /// A new stream: its timestamps start afresh.
    fn restart(&mut self) {
        self.next_due = None;
        self.prev = None;
    }

    fn keep(&mut self, ts: Duration) -> bool {
        let Some(period) = self.period else {
            return true;
        };
        let half = self
            .prev
            .and_then(|p| ts.checked_sub(p))
            .map(|d| d / 2)
            .unwrap_or_default();
        self.prev = Some(ts);
        match self.next_due {
            Some(due) if ts + half < due => false,
            Some(due) => {
                let next = due + period;
                self.next_due = Some(if next <= ts { ts + period } else { next });
                true
            }
            None => {
                self.next_due = Some(ts + period);
                true
            }
        }
    }
}

/// A frame kept by the rate, waiting for the model's verdict.
struct Candidate {
    frame: Frame,
    /// Position among the candidates: consecutive numbers may share a clip.
    seq: u64,
    /// Frames were lost right before this one (a gap in the stream, a new stream).
    break_before: bool,
}

/// Per-clip record for `collect.json`.
#[derive(serde::Serialize)]
struct ClipRecord {
    name: String,
    frames: usize,
    /// The source's frame indices and stream times of the first and last frame.
    first_index: u64,
    last_index: u64,
    start_s: f64,
    end_s: f64,
}

/// A failed write, told apart so that a full disk gets its own message.
struct WriteFailed {
    path: PathBuf,
    error: io::Error,
}

/// Writes kept frames into clip folders.
struct Writer {
    frames_dir: PathBuf,
    /// The collection's UTC start (`20260314T093000`): clip names sort in time order across
    /// collections.
    prefix: String,
    clip_frames: usize,
    /// Digits of the frame file names: 4, more for clips of 10,000 frames or more.
    digits: usize,
    clips: Vec<ClipRecord>,
    open: bool,
    last_seq: Option<u64>,
    kept: u64,
    bytes: u64,
    png: Vec<u8>,
}

impl Writer {
    fn new(out: &Path, prefix: String, clip_frames: usize) -> Self {
        Self {
            frames_dir: out.join("frames"),
            prefix,
            clip_frames,
            digits: (clip_frames.saturating_sub(1)).to_string().len().max(4),
            clips: Vec::new(),
            open: false,
            last_seq: None,
            kept: 0,
            bytes: 0,
            png: Vec::new(),
        }
    }

    /// The next kept frame starts a new clip.
    fn end_clip(&mut self) {
        self.open = false;
    }

    fn save(&mut self, c: &Candidate) -> std::result::Result<(), WriteFailed> {
        let continues = self.open
            && !c.break_before
            && self.last_seq.is_some_and(|s| s + 1 == c.seq)
            && self
                .clips
                .last()
                .is_some_and(|k| k.frames < self.clip_frames);
        let ts = c.frame.timestamp.as_secs_f64();
        if !continues {
            let name = format!("{}-{:04}", self.prefix, self.clips.len());
            let dir = self.frames_dir.join(&name);
            std::fs::create_dir_all(&dir).map_err(|error| WriteFailed {
                path: dir.clone(),
                error,
            })?;
            self.clips.push(ClipRecord {
                name,
                frames: 0,
                first_index: c.frame.index,
                last_index: c.frame.index,
                start_s: ts,
                end_s: ts,
            });
            self.open = true;
        }
        let clip = self
            .clips
            .last_mut()
            .expect("a clip was opened above when none was");
        let path = self.frames_dir.join(&clip.name).join(format!(
            "{:0w$}.png",
            clip.frames,
            w = self.digits
        ));
        encode_png(&c.frame, &mut self.png).map_err(|error| WriteFailed {
            path: path.clone(),
            error,
        })?;
        if let Err(error) = std::fs::write(&path, &self.png) {
            // A partial file would be read as a corrupt frame by whoever trains on the folder;
            // removing it also gives back the space for collect.json on a full disk.
            let _ = std::fs::remove_file(&path);
            return Err(WriteFailed { path, error });
        }
        clip.frames += 1;
        clip.last_index = c.frame.index;
        clip.end_s = ts;
        self.last_seq = Some(c.seq);
        self.kept += 1;
        self.bytes += self.png.len() as u64;
        Ok(())
    }
}

fn encode_png(frame: &Frame, out: &mut Vec<u8>) -> io::Result<()> {
    use image::ImageEncoder;
    out.clear();
    let g = frame.geometry();
    let color = match g.layout() {
        PixelLayout::Gray8 => image::ExtendedColorType::L8,
        PixelLayout::Rgb8 => image::ExtendedColorType::Rgb8,
    };
    image::codecs::png::PngEncoder::new(&mut *out)
        .write_image(frame.data(), g.width(), g.height(), color)
        .map_err(io::Error::other)
}

/// The camera's model and event hysteresis, deciding which buffered frames may be saved.
///
/// The recipe scores a frame `latency_frames` behind the newest one, and an event starts only
/// after `min_frames_on` frames at or above `on`, dated back to the first of them. So frames wait
/// in a queue until their own score (and that of any run of high scores they may start) is
/// known: a frame is saved only once no event can open on or before it, and dropped when an
/// event covers it. The queue holds a few frames (latency, plus a run of high scores, at most
/// `min_frames_on + cooldown_frames`).
struct Gate {
    analyzer: Analyzer,
    stream: ScoreStream,
    on: f32,
    open: bool,
    /// First frame of the current run of scores at or above `on` while no event is open: an
    /// event may yet start there.
    run_start: Option<u64>,
    events: u64,
    errors: u64,
}

/// What the gate decided after a frame.
enum Verdict {
    /// Save queued frames with an index below `keep_below`, drop (skipped in an event) queued
    /// frames up to and including `drop_through`.
    Decide {
        keep_below: u64,
        drop_through: Option<u64>,
        new_event: bool,
    },
    Wait,
}

impl Gate {
    fn new(cam: &CameraConfig, engine_dir: &Path, fps: Option<f32>) -> Result<(Self, String)> {
        let pkg = ModelPackage::load(&cam.model)?;
        let analyzer = vigil_daemon::backend::analyzer(&pkg, &cam.backend, engine_dir, cam.max_gap)
            .with_context(|| format!("loading {}", pkg.dir.display()))?;
        let normalizer = cam
            .normalizer
            .unwrap_or_else(|| default_normalizer(pkg.normal_scores()));
        let events = cam.events.resolve(&pkg, &normalizer, fps)?.config;
        let stream = ScoreStream::new(&normalizer, events)?;
        log::info!(
            "camera {}: model {} ({} on {}) scores every frame; frames inside events are not saved",
            cam.name,
            pkg.manifest.name,
            pkg.manifest.recipe,
            analyzer.backend_name()
        );
        Ok((
            Self {
                analyzer,
                stream,
                on: events.on,
                open: false,
                run_start: None,
                events: 0,
                errors: 0,
            },
            format!("{} ({})", pkg.manifest.name, pkg.dir.display()),
        ))
    }

    fn push(&mut self, frame: &Frame, camera: &str) -> Result<Verdict> {
        let scored = match self.analyzer.push(frame) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(Verdict::Wait),
            Err(e) => {
                // As in `vigil run`: a frame the model cannot take is skipped; its neighbours
                // are decided by the scores around it.
                self.errors += 1;
                if self.errors <= 5 {
                    log::warn!("camera {camera}: frame {} not scored: {e}", frame.index);
                }
                return Ok(Verdict::Wait);
            }
        };
        let j = scored.frame_index;
        let score = self.stream.normalise(scored.raw)?;
        let t = self
            .stream
            .update(j, scored.timestamp, score, &[])
            .with_context(|| format!("camera {camera}: scoring frame {j}"))?;
        Ok(match t {
            Some(Transition::Start(info)) => {
                self.open = true;
                self.run_start = None;
                self.events += 1;
                log::info!(
                    "camera {camera}: event from frame {} (score {score:.3}); not saving until it ends",
                    info.start_frame
                );
                Verdict::Decide {
                    keep_below: info.start_frame,
                    drop_through: Some(j),
                    new_event: true,
                }
            }
            Some(Transition::End(info)) => {
                self.open = false;
                log::info!(
                    "camera {camera}: event ended at frame {}",
                    info.end_frame.unwrap_or(j)
                );
                Verdict::Decide {
                    keep_below: 0,
                    drop_through: Some(j),
                    new_event: false,
                }
            }
            _ if self.open => Verdict::Decide {
                keep_below: 0,
                drop_through: Some(j),
                new_event: false,
            },
            _ => {
                if score >= self.on {
                    let r = *self.run_start.get_or_insert(j);
                    Verdict::Decide {
                        keep_below: r,
                        drop_through: None,
                        new_event: false,
                    }
                } else {
                    self.run_start = None;
                    Verdict::Decide {
                        keep_below: j + 1,
                        drop_through: None,
                        new_event: false,
                    }
                }
            }
        })
    }

    /// The stream ends (or a new one begins, or the collection stops): frames whose score will
    /// never come are kept unless an event is open or may be starting (a run of high scores),
    /// in which case they are dropped as in an event. Returns the verdict for the queue.
    fn finish(&mut self) -> Verdict {
        let v = if self.open {
            Verdict::Decide {
                keep_below: 0,
                drop_through: Some(u64::MAX),
                new_event: false,
            }
        } else if let Some(r) = self.run_start {
            Verdict::Decide {
                keep_below: r,
                drop_through: Some(u64::MAX),
                new_event: false,
            }
        } else {
            Verdict::Decide {
                keep_below: u64::MAX,
                drop_through: None,
                new_event: false,
            }
        };
        // A new stream's frames are numbered afresh and its window restarts: an event cannot be
        // assumed to go on across it (as in `vigil run`).
        self.stream.finish();
        self.analyzer.reset();
        self.open = false;
        self.run_start = None;
        v
    }
}

/// Why the collection stopped.
#[derive(Debug, Clone, PartialEq)]
enum Stop {
    Frames,
    Duration,
    EndOfStream,
    Signal,
    Failed(String),
}

impl Stop {
    fn describe(&self) -> String {
        match self {
            Stop::Frames => "--frames reached".into(),
            Stop::Duration => "--duration reached".into(),
            Stop::EndOfStream => "end of the camera's stream".into(),
            Stop::Signal => "interrupted (SIGINT/SIGTERM)".into(),
            Stop::Failed(e) => format!("failed: {e}"),
        }
    }
}

/// The run's state and counters.
struct Run<'a> {
    args: &'a CollectArgs,
    camera: &'a str,
    writer: Writer,
    gate: Option<Gate>,
    queue: VecDeque<Candidate>,
    /// Recycled frame buffers for the queue: no allocation per frame once warm.
    spare: Vec<Frame>,
    decimator: Decimator,
    seq: u64,
    break_next: bool,
    read: u64,
    skipped: u64,
    dropped_by_rate: u64,
    bar: indicatif::ProgressBar,
}

impl Run<'_> {
    /// One camera frame: through the rate, the queue and the model; saves what is decided.
    fn frame(&mut self, frame: &Frame) -> std::result::Result<(), RunError> {
        self.read += 1;
        if self.decimator.keep(frame.timestamp) {
            let mut buf = self.spare.pop().unwrap_or_else(Frame::placeholder);
            buf.copy_from(frame);
            self.queue.push_back(Candidate {
                frame: buf,
                seq: self.seq,
                break_before: std::mem::take(&mut self.break_next),
            });
            self.seq += 1;
        } else {
            self.dropped_by_rate += 1;
        }
        let verdict = match self.gate.as_mut() {
            None => Verdict::Decide {
                keep_below: u64::MAX,
                drop_through: None,
                new_event: false,
            },
            Some(g) => g.push(frame, self.camera).map_err(RunError::Other)?,
        };
        self.apply(verdict)
    }

    fn apply(&mut self, verdict: Verdict) -> std::result::Result<(), RunError> {
        let Verdict::Decide {
            keep_below,
            drop_through,
            new_event,
        } = verdict
        else {
            return Ok(());
        };
        while let Some(c) = self.queue.front() {
            let i = c.frame.index;
            if i < keep_below {
                if self.limit_reached() {
                    return Ok(());
                }
                let c = self.queue.pop_front().expect("front exists");
                let r = self.writer.save(&c);
                self.spare.push(c.frame);
                r.map_err(RunError::Write)?;
                self.bar.set_position(self.writer.kept);
            } else if drop_through.is_some_and(|d| i <= d) {
                let c = self.queue.pop_front().expect("front exists");
                self.spare.push(c.frame);
                self.skipped += 1;
                self.writer.end_clip();
            } else {
                break;
            }
        }
        if new_event {
            self.writer.end_clip();
        }
        self.bar.set_message(self.message());
        Ok(())
    }

    fn limit_reached(&self) -> bool {
        self.args.frames.is_some_and(|n| self.writer.kept >= n)
    }

    /// The stream ended or restarts: decide every queued frame.
    fn flush(&mut self) -> std::result::Result<(), RunError> {
        let v = match self.gate.as_mut() {
            Some(g) => g.finish(),
            None => Verdict::Decide {
                keep_below: u64::MAX,
                drop_through: None,
                new_event: false,
            },
        };
        self.apply(v)?;
        // Only frames left over by --frames remain; they are not saved.
        self.spare.extend(self.queue.drain(..).map(|c| c.frame));
        Ok(())
    }

    fn message(&self) -> String {
        format!(
            "{} skipped in events, {} clips",
            self.skipped,
            self.writer.clips.len()
        )
    }
}

enum RunError {
    Write(WriteFailed),
    Other(anyhow::Error),
}

/// Reads the next frame, retrying transient camera errors and reopening a camera that went
/// away, as `vigil run` does; a long collection should survive a USB hiccup. Returns false at
/// the end of the stream or on a stop request; `reopened` is set when a new stream began.
fn next_frame(
    src: &mut Box<dyn FrameSource + Send>,
    cam: &CameraConfig,
    frame: &mut Frame,
    stop: &AtomicBool,
    reopened: &mut bool,
) -> Result<bool> {
    let mut failures = 0u32;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match src.next_into(frame) {
            Ok(Next::Frame) => return Ok(true),
            Ok(Next::EndOfStream) => return Ok(false),
            Err(e) if e.is_transient() && failures < 50 => {
                failures += 1;
                if failures <= 3 {
                    log::warn!("camera {}: {e}; retrying", cam.name);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) if e.needs_reopen() => {
                log::warn!("camera {}: {e}; reopening", cam.name);
                *src = reopen(cam, stop, &e)?;
                *reopened = true;
                failures = 0;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("camera {}", cam.name)));
            }
        }
    }
}

/// Reopens a camera for up to a minute, then gives up with the last reason.
fn reopen(
    cam: &CameraConfig,
    stop: &AtomicBool,
    first: &SourceError,
) -> Result<Box<dyn FrameSource + Send>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut delay = Duration::from_millis(250);
    loop {
        std::thread::sleep(delay);
        match source::open(&cam.source) {
            Ok(s) => return Ok(s),
            Err(e) if std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) => {
                log::debug!("camera {}: reopen failed: {e}", cam.name);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => bail!(
                "camera {}: gone ({first}) and not back within a minute: {e}",
                cam.name
            ),
        }
    }
}

fn find_camera<'a>(cfg: &'a Config, path: &Path, name: Option<&str>) -> Result<&'a CameraConfig> {
    match name {
        Some(name) => cfg
            .cameras
            .iter()
            .find(|c| c.name == name)
            .with_context(|| {
                let names: Vec<&str> = cfg.cameras.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "{} has no camera named {name:?} (its cameras: {})",
                    path.display(),
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )
            }),
        None => cfg
            .cameras
            .first()
            .with_context(|| format!("{} configures no camera", path.display())),
    }
}

/// `20260314T093000` for a wall-clock time, UTC.
fn compact_utc(t: SystemTime) -> String {
    let s = vigil_daemon::mqtt::message::rfc3339_utc(t);
    s.chars()
        .take(19)
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

/// `vigil dataset collect`.
pub fn collect(args: &CollectArgs) -> Result<()> {
    if args.frames.is_none() && args.duration.is_none() {
        bail!(
            "say when to stop: --frames N (frames saved) and/or --duration D (stream time, e.g. 30m or 2h); whichever comes first ends the collection"
        );
    }
    if args.frames == Some(0) {
        bail!("--frames must be at least 1");
    }
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0 && r <= 1000.0) {
            bail!("--rate {r}: must be a number of frames per second between 0 and 1000");
        }
    }
    if args.clip_frames == 0 {
        bail!("--clip-frames must be at least 1");
    }
    let cfg = Config::load(&args.config)?;
    let cam = find_camera(&cfg, &args.config, args.camera.as_deref())?;
    if args.out.join("collect.json").exists()
        || std::fs::read_dir(args.out.join("frames")).is_ok_and(|mut d| d.next().is_some())
    {
        bail!(
            "{} already holds a collection; collect into a new folder (put the clip folders of several collections side by side in one frames/ folder to train on them together)",
            args.out.display()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    vigil_daemon::install_signal_handlers(&stop)?;
    let mut src = source::open(&cam.source).with_context(|| format!("camera {}", cam.name))?;
    // After the source: thresholds given as a false-alarm rate need its frame rate.
    let (gate, package) = if args.keep_events {
        (None, None)
    } else {
        let (g, p) = Gate::new(cam, &cfg.engines.dir, src.nominal_fps()).with_context(|| {
            format!(
                "camera {}: its model must run here to leave events out of the footage; pass --keep-events to collect every frame without it",
                cam.name
            )
        })?;
        (Some(g), Some(p))
    };
    let source_desc = src.describe();
    let mut frame = Frame::placeholder();
    let mut reopened = false;
    if !next_frame(&mut src, cam, &mut frame, &stop, &mut reopened)? {
        bail!("camera {} delivered no frame", cam.name);
    }

    // Disk: the first frame's PNG size times the frames planned, against the free space.
    let mut png = Vec::new();
    encode_png(&frame, &mut png).context("encoding the first frame as PNG")?;
    let per_frame = png.len() as u64;
    let nominal = src.nominal_fps().map(f64::from);
    let kept_rate = match (args.rate, nominal) {
        (Some(r), Some(n)) => r.min(n),
        (Some(r), None) => r,
        (None, Some(n)) => n,
        // A camera that does not say its rate: a common camera's.
        (None, None) => 30.0,
    };
    let by_duration = args
        .duration
        .map(|d| (d.as_secs_f64() * kept_rate).ceil() as u64);
    let planned = match (args.frames, by_duration) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => unreachable!("checked above"),
    };
    let need = per_frame.saturating_mul(planned);
    let (free, total) = filesystem_space(&args.out)?;
    let keep = margin(total);
    log::info!(
        "collecting up to {planned} frames from camera {} ({source_desc}), about {} per frame, {} in all; {} free on the output filesystem",
        cam.name,
        human_bytes(per_frame),
        human_bytes(need),
        human_bytes(free)
    );
    if need.saturating_add(keep) > free {
        bail!(
            "not enough disk space for this collection: {planned} frames of {}x{} at about {} each (the first frame's PNG) need {}, but {} has {} free and must keep {} free (5 % of the filesystem, at most 1 GiB); shrink the run with --frames, --duration or --rate, or choose an --out on a larger disk",
            frame.geometry().width(),
            frame.geometry().height(),
            human_bytes(per_frame),
            human_bytes(need),
            args.out.display(),
            human_bytes(free),
            human_bytes(keep)
        );
    }
    std::fs::create_dir_all(args.out.join("frames"))
        .with_context(|| format!("creating {}", args.out.join("frames").display()))?;

    let started = SystemTime::now();
    let bar = indicatif::ProgressBar::new(planned);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} frames kept, {msg}",
        )
        .context("progress bar template")?,
    );
    let mut run = Run {
        args,
        camera: &cam.name,
        writer: Writer::new(&args.out, compact_utc(started), args.clip_frames),
        gate,
        queue: VecDeque::new(),
        spare: Vec::new(),
        decimator: Decimator::new(args.rate),
        seq: 0,
        break_next: false,
        read: 0,
        skipped: 0,
        dropped_by_rate: 0,
        bar,
    };
    run.bar.set_message(run.message());

    // Stream time read so far, summed within streams (a new stream's clock starts afresh).
    let mut span = Duration::ZERO;
    let mut prev: Option<(u64, Duration)> = None;
    let max_gap = cam.max_gap.max(1);
    let outcome: std::result::Result<Stop, RunError> = (|| loop {
        let new_stream =
            reopened || prev.is_some_and(|(i, t)| frame.index <= i || frame.timestamp < t);
        if new_stream {
            reopened = false;
            run.flush()?;
            run.decimator.restart();
            run.break_next = true;
        } else if let Some((i, t)) = prev {
            if frame.index - i > max_gap {
                // Frames lost (a dropped stretch): the model's window restarts by itself; the
                // clip ends here.
                run.break_next = true;
            }
            span += frame.timestamp - t;
        }
        prev = Some((frame.index, frame.timestamp));
        if args.duration.is_some_and(|d| span >= d) {
            return Ok(Stop::Duration);
        }
        run.frame(&frame)?;
        if run.limit_reached() {
            return Ok(Stop::Frames);
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(Stop::Signal);
        }
        match next_frame(&mut src, cam, &mut frame, &stop, &mut reopened) {
            Ok(true) => {}
            Ok(false) if stop.load(Ordering::Relaxed) => return Ok(Stop::Signal),
            Ok(false) => return Ok(Stop::EndOfStream),
            Err(e) => return Err(RunError::Other(e)),
        }
    })();
    // Decide what is still queued (unless the disk is full: nothing more can be written).
    let (stopped, failure) = match outcome {
        Ok(s) => match run.flush() {
            Ok(()) => (s, None),
            Err(e) => fail(e),
        },
        Err(e) => fail(e),
    };
    run.bar.finish_and_clear();

    let ended = SystemTime::now();
    let w = &run.writer;
    let g = frame.geometry();
    let record = serde_json::json!({
        "camera": cam.name,
        "source": source_desc,
        "config": args.config.display().to_string(),
        "package": package,
        "events_left_out": !args.keep_events,
        "started_at": vigil_daemon::mqtt::message::rfc3339_utc(started),
        "ended_at": vigil_daemon::mqtt::message::rfc3339_utc(ended),
        "stream_seconds": span.as_secs_f64(),
        "geometry": { "width": g.width(), "height": g.height(),
                      "layout": format!("{:?}", g.layout()) },
        "rate": args.rate,
        "clip_frames": args.clip_frames,
        "frames_read": run.read,
        "frames_kept": w.kept,
        "frames_skipped_in_events": run.skipped,
        "frames_dropped_by_rate": run.dropped_by_rate,
        "events": run.gate.as_ref().map(|g| g.events),
        "bytes_written": w.bytes,
        "stopped": stopped.describe(),
        "clips": w.clips,
    });
    let json_path = args.out.join("collect.json");
    let json_written = serde_json::to_vec_pretty(&record)
        .map_err(anyhow::Error::from)
        .and_then(|b| {
            vigil_engine::package::write_atomically(&json_path, &b).map_err(anyhow::Error::from)
        });
    println!(
        "camera {} ({source_desc}) -> {}: {} frames kept in {} clips ({}); {} skipped while an event was open{}; {} dropped by --rate; {}",
        cam.name,
        args.out.display(),
        w.kept,
        w.clips.len(),
        human_bytes(w.bytes),
        run.skipped,
        match run.gate.as_ref() {
            Some(g) => format!(" ({} events)", g.events),
            None => " (--keep-events: none looked for)".to_owned(),
        },
        run.dropped_by_rate,
        stopped.describe()
    );
    if let Err(e) = &json_written {
        log::error!("could not write {}: {e:#}", json_path.display());
    }
    if let Some(e) = failure {
        return Err(e.context(format!(
            "collection stopped; the {} frames saved before it (in {} clips under {}) are complete{}",
            w.kept,
            w.clips.len(),
            args.out.join("frames").display(),
            if json_written.is_ok() {
                " and listed in collect.json"
            } else {
                ""
            }
        )));
    }
    json_written.with_context(|| format!("writing {}", json_path.display()))?;
    if w.kept == 0 {
        bail!(
            "no frame was saved from camera {} ({}): see the counts above",
            cam.name,
            stopped.describe()
        );
    }
    Ok(())
}

/// A failure mid-run: its description for collect.json and the error to return.
fn fail(e: RunError) -> (Stop, Option<anyhow::Error>) {
    let err = match e {
        RunError::Write(WriteFailed { path, error }) => {
            if error.kind() == io::ErrorKind::StorageFull {
                anyhow::anyhow!(
                    "writing {}: {error}: the disk is full; free space or collect to an --out on a larger disk",
                    path.display()
                )
            } else {
                anyhow::anyhow!("writing {}: {error}", path.display())
            }
        }
        RunError::Other(e) => e,
    };
    (Stop::Failed(format!("{err:#}")), Some(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let s = |x: &str| parse_duration(x).map(|d| d.as_secs_f64());
        assert_eq!(s("90s"), Ok(90.0));
        assert_eq!(s("30m"), Ok(1800.0));
        assert_eq!(s("2h"), Ok(7200.0));
        assert_eq!(s("1h30m"), Ok(5400.0));
        assert_eq!(s("1h 30min"), Ok(5400.0));
        assert_eq!(s("1.5h"), Ok(5400.0));
        assert_eq!(s("1d"), Ok(86400.0));
        for bad in ["", "90", "h", "5x", "0s", "1..2h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    fn kept(fps: f64, rate: Option<f64>, n: u64) -> Vec<u64> {
        let mut d = Decimator::new(rate);
        (0..n)
            .filter(|&i| d.keep(Duration::from_secs_f64(i as f64 / fps)))
            .collect()
    }

    #[test]
    fn the_rate_keeps_frames_by_their_timestamps() {
        assert_eq!(kept(30.0, Some(10.0), 10), vec![0, 3, 6, 9]);
        assert_eq!(kept(10.0, Some(5.0), 6), vec![0, 2, 4]);
        assert_eq!(kept(25.0, Some(10.0), 11), vec![0, 2, 5, 7, 10]);
        // A rate above the camera's keeps everything; none keeps everything.
        assert_eq!(kept(10.0, Some(30.0), 4), vec![0, 1, 2, 3]);
        assert_eq!(kept(10.0, None, 4), vec![0, 1, 2, 3]);
        // Jitter around the due time does not lose or double a frame.
        let mut d = Decimator::new(Some(10.0));
        let ts = [0.0, 0.034, 0.066, 0.098, 0.134, 0.167, 0.201, 0.232];
        let k: Vec<f64> = ts
            .iter()
            .copied()
            .filter(|&t| d.keep(Duration::from_secs_f64(t)))
            .collect();
        assert_eq!(k, vec![0.0, 0.098, 0.201]);
    }

    #[test]
    fn the_margin_is_five_percent_up_to_a_gib() {
        assert_eq!(margin(20 << 20), 1 << 20);
        assert_eq!(margin(1 << 40), 1 << 30);
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
