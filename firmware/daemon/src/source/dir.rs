//! Replay of a directory of image files as a video stream (a Ped2 test video, a recording
//! exported as JPEGs, a demo clip).
//!
//! Files are taken in natural name order (`2.jpg` before `10.jpg`, so unpadded frame numbers
//! replay in order) and decoded with `vigil_engine::imageio`, the same decoder evaluation and
//! dataset export use, so a replayed video yields exactly the pixels the model was scored on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use vigil_engine::frame::Frame;
use vigil_engine::imageio;

use super::{DirConfig, FrameSource, Next, SourceError};

/// Timestamps of an unpaced replay advance at this rate: Ped2 and Avenue are 10 fps-class
/// surveillance videos, and a timestamp derived from the frame number keeps time-based
/// settings (event durations, cooldowns) meaningful when replaying faster than real time.
pub const UNPACED_TIMESTAMP_FPS: f32 = 10.0;

/// Sleeps until frame `k` is due at `start + k / fps`. Due times are computed from the start,
/// not from the previous frame, so per-frame overhead and sleep overshoot do not accumulate.
#[derive(Debug)]
pub(crate) struct Pacer {
    period: Duration,
    start: Option<Instant>,
    emitted: u64,
}

impl Pacer {
    /// `fps` must be finite and positive (callers validate the configuration).
    pub(crate) fn new(fps: f32) -> Self {
        Self {
            period: Duration::from_secs_f64(1.0 / f64::from(fps)),
            start: None,
            emitted: 0,
        }
    }

    /// Waits for the next frame's due time. The first frame is due immediately.
    pub(crate) fn wait(&mut self) {
        let now = Instant::now();
        let start = *self.start.get_or_insert(now);
        let due = start
            + self
                .period
                .saturating_mul(u32::try_from(self.emitted).unwrap_or(u32::MAX));
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > self.period * 4 {
            // Far behind (a stalled consumer, a suspended process): re-anchor instead of
            // delivering a burst of "late" frames as fast as possible to catch up.
            debug!(
                "replay {:?} behind schedule; re-anchoring pacing",
                now - due
            );
            self.start = Some(now);
            self.emitted = 0;
        }
        self.emitted += 1;
        if self.emitted >= u64::from(u32::MAX) {
            // Keep the multiplication above in range on very long loops.
            self.start = Some(Instant::now());
            self.emitted = 1;
        }
    }
}

/// The frame files of `dir` in natural order.
pub fn list_frames(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SourceError::DirMissing {
            path: dir.to_owned(),
        },
        _ => SourceError::DirUnreadable {
            path: dir.to_owned(),
            source: e,
        },
    })?;
    if !meta.is_dir() {
        return Err(SourceError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    imageio::frame_files(dir).map_err(|source| SourceError::DirUnreadable {
        path: dir.to_owned(),
        source,
    })
}

/// Replays image files; see the module docs.
#[derive(Debug)]
pub struct DirSource {
    path: PathBuf,
    /// The selected slice of the directory (after `start` and `count`).
    files: Vec<PathBuf>,
    start: usize,
    /// Next position in `files`.
    next: usize,
    fps: Option<f32>,
    looping: bool,
    pacer: Option<Pacer>,
}

impl DirSource {
    pub fn open(config: &DirConfig) -> Result<Self, SourceError> {
        if let Some(fps) = config.fps {
            if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
                return Err(SourceError::Config(format!(
                    "dir fps = {fps}: must be between 0 and 1000, or left out to replay as fast as possible"
                )));
            }
        }
        let all = list_frames(&config.path)?;
        if all.is_empty() {
            return Err(SourceError::DirEmpty {
                path: config.path.clone(),
            });
        }
        let start = config.start.unwrap_or(0);
        if start >= all.len() {
            return Err(SourceError::Config(format!(
                "dir start = {start}, but {} holds only {} frames",
                config.path.display(),
                all.len()
            )));
        }
        let available = all.len() - start;
        let count = match config.count {
            Some(0) => {
                return Err(SourceError::Config(
                    "dir count = 0 would replay nothing".to_owned(),
                ))
            }
            Some(c) if c > available => {
                warn!(
                    "dir count = {c}, but only {available} frames remain after start = {start} in {}; replaying {available}",
                    config.path.display()
                );
                available
            }
            Some(c) => c,
            None => available,
        };
        let files: Vec<PathBuf> = all.into_iter().skip(start).take(count).collect();
        info!(
            "replaying {} frames from {} ({})",
            files.len(),
            config.path.display(),
            match config.fps {
                Some(f) => format!("{f} fps real time"),
                None => "unpaced".to_owned(),
            }
        );
        Ok(Self {
            path: config.path.clone(),
            files,
            start,
            next: 0,
            fps: config.fps,
            looping: config.looping,
            pacer: config.fps.map(Pacer::new),
        })
    }

    /// Number of files one pass replays.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FrameSource for DirSource {
    fn next_into(&mut self, frame: &mut Frame) -> Result<Next, SourceError> {
        if self.next >= self.files.len() {
            if !self.looping {
                return Ok(Next::EndOfStream);
            }
            // Index and timestamp restart with the files: they name the file's place in the
            // video (what labels refer to), and a decreasing index tells windowed consumers
            // that the sequence restarted.
            debug!("looping {} back to its first frame", self.path.display());
            self.next = 0;
        }
        let pos = self.next;
        // Advance first: an unreadable file is skipped, not retried forever.
        self.next += 1;
        if let Some(p) = self.pacer.as_mut() {
            p.wait();
        }
        let path = &self.files[pos];
        imageio::load_into(path, frame).map_err(|source| SourceError::UnreadableFrame {
            path: path.clone(),
            source,
        })?;
        let index = (self.start + pos) as u64;
        frame.index = index;
        let fps = self.fps.unwrap_or(UNPACED_TIMESTAMP_FPS);
        frame.timestamp = Duration::from_secs_f64(index as f64 / f64::from(fps));
        Ok(Next::Frame)
    }

    fn describe(&self) -> String {
        format!(
            "dir {} ({} frames from #{}, {}{})",
            self.path.display(),
            self.files.len(),
            self.start,
            match self.fps {
                Some(f) => format!("{f} fps"),
                None => "unpaced".to_owned(),
            },
            if self.looping { ", looping" } else { "" }
        )
    }

    /// The paced rate, or [`UNPACED_TIMESTAMP_FPS`] (the rate timestamps advance at) when
    /// unpaced.
    fn nominal_fps(&self) -> Option<f32> {
        Some(self.fps.unwrap_or(UNPACED_TIMESTAMP_FPS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const PED2: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets/ped2/testing/frames/01"
    );

    fn ped2() -> PathBuf {
        let p = PathBuf::from(PED2);
        assert!(
            p.is_dir(),
            "Ped2 frames expected at {} (the shared dataset)",
            p.display()
        );
        p
    }

    fn config(path: PathBuf) -> DirConfig {
        DirConfig {
            path,
            fps: None,
            looping: false,
            start: None,
            count: None,
        }
    }

    fn blank() -> Frame {
        Frame::placeholder()
    }

    #[test]
    fn replays_ped2_in_order_with_indices_and_timestamps() {
        let mut cfg = config(ped2());
        cfg.start = Some(5);
        cfg.count = Some(4);
        let mut src = DirSource::open(&cfg).unwrap();
        assert_eq!(src.len(), 4);
        let mut f = blank();
        let mut seen = Vec::new();
        while src.next_into(&mut f).unwrap() == Next::Frame {
            seen.push((f.index, f.timestamp));
            assert_eq!((f.geometry().width(), f.geometry().height()), (360, 240));
        }
        let expect: Vec<(u64, Duration)> = (5..9)
            .map(|i| (i, Duration::from_millis(i * 100)))
            .collect();
        assert_eq!(seen, expect);
        // Frame 070 decoded by the source equals the engine's own decode of that file.
        let mut cfg = config(ped2());
        cfg.start = Some(70);
        cfg.count = Some(1);
        let mut src = DirSource::open(&cfg).unwrap();
        assert_eq!(src.next_into(&mut f).unwrap(), Next::Frame);
        let direct = imageio::load(&ped2().join("070.jpg"), 70).unwrap();
        assert_eq!(f.data(), direct.data());
        assert_eq!(f.index, 70);
        assert_eq!(src.next_into(&mut f).unwrap(), Next::EndOfStream);
        assert_eq!(src.next_into(&mut f).unwrap(), Next::EndOfStream);
    }

    /// A directory with copies of a few Ped2 frames under unpadded numeric names.
    fn numbered_copies(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (i, n) in names.iter().enumerate() {
            std::fs::copy(
                ped2().join(format!("{:03}.jpg", i * 10)),
                dir.path().join(n),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("labels.json"), "{}").unwrap();
        std::fs::create_dir(dir.path().join("sub.jpg")).unwrap();
        dir
    }

    #[test]
    fn natural_order_on_disk_loop_and_skip_of_unreadable_files() {
        let dir = numbered_copies(&["1.jpg", "2.jpg", "10.jpg"]);
        // A file that is not a JPEG at all.
        std::fs::write(dir.path().join("3.jpg"), b"not a jpeg").unwrap();
        let mut cfg = config(dir.path().to_owned());
        cfg.looping = true;
        let mut src = DirSource::open(&cfg).unwrap();
        assert_eq!(src.len(), 4, "non-image files and directories are ignored");
        let mut f = blank();
        let reference: Vec<Frame> = (0..3)
            .map(|i| imageio::load(&ped2().join(format!("{:03}.jpg", i * 10)), 0).unwrap())
            .collect();
        for pass in 0..2 {
            assert_eq!(src.next_into(&mut f).unwrap(), Next::Frame);
            assert_eq!((f.index, f.data()), (0, reference[0].data()), "pass {pass}");
            assert_eq!(src.next_into(&mut f).unwrap(), Next::Frame);
            assert_eq!((f.index, f.data()), (1, reference[1].data()));
            let err = src.next_into(&mut f).unwrap_err();
            assert!(err.is_transient(), "{err}");
            assert!(err.to_string().contains("3.jpg"), "{err}");
            assert_eq!(
                src.next_into(&mut f).unwrap(),
                Next::Frame,
                "the bad file is skipped, not retried"
            );
            assert_eq!(
                (f.index, f.data()),
                (3, reference[2].data()),
                "10.jpg comes last"
            );
        }
    }

    #[test]
    fn missing_empty_and_bad_configurations_are_clear_errors() {
        let err = DirSource::open(&config("/nonexistent/vigil/frames".into())).unwrap_err();
        assert!(
            matches!(err, SourceError::DirMissing { .. }) && !err.is_transient(),
            "{err}"
        );
        assert!(
            err.to_string().contains("/nonexistent/vigil/frames"),
            "{err}"
        );

        let empty = tempfile::tempdir().unwrap();
        std::fs::write(empty.path().join("notes.txt"), "x").unwrap();
        let err = DirSource::open(&config(empty.path().to_owned())).unwrap_err();
        assert!(matches!(err, SourceError::DirEmpty { .. }), "{err}");

        let file = empty.path().join("notes.txt");
        let err = DirSource::open(&config(file)).unwrap_err();
        assert!(matches!(err, SourceError::NotADirectory { .. }), "{err}");

        let mut cfg = config(ped2());
        cfg.start = Some(100_000);
        assert!(matches!(
            DirSource::open(&cfg).unwrap_err(),
            SourceError::Config(_)
        ));
        let mut cfg = config(ped2());
        cfg.count = Some(0);
        assert!(matches!(
            DirSource::open(&cfg).unwrap_err(),
            SourceError::Config(_)
        ));
        for fps in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let mut cfg = config(ped2());
            cfg.fps = Some(fps);
            assert!(
                matches!(DirSource::open(&cfg).unwrap_err(), SourceError::Config(_)),
                "fps {fps}"
            );
        }
        // count beyond the end is clamped, not an error.
        let mut cfg = config(ped2());
        cfg.start = Some(178);
        cfg.count = Some(50);
        assert_eq!(DirSource::open(&cfg).unwrap().len(), 2);
    }

    #[test]
    fn paced_replay_keeps_real_time_without_drift() {
        let mut cfg = config(ped2());
        cfg.fps = Some(50.0);
        cfg.count = Some(11);
        let mut src = DirSource::open(&cfg).unwrap();
        assert_eq!(src.nominal_fps(), Some(50.0));
        let mut f = blank();
        let t0 = Instant::now();
        let mut arrivals = Vec::new();
        while src.next_into(&mut f).unwrap() == Next::Frame {
            arrivals.push(t0.elapsed());
        }
        assert_eq!(arrivals.len(), 11);
        assert_eq!(
            f.timestamp,
            Duration::from_millis(200),
            "timestamp = index / fps"
        );
        // 10 periods of 20 ms. Sleeping 20 ms after each decode would accumulate the decode
        // time on top; due times from the start do not. Generous upper bound for a loaded box.
        let total = arrivals[10];
        assert!(total >= Duration::from_millis(200), "{total:?}");
        assert!(total < Duration::from_millis(400), "{total:?}");
        // Each frame is released no earlier than its due time.
        for (k, t) in arrivals.iter().enumerate() {
            assert!(
                *t + Duration::from_millis(2) >= Duration::from_millis(20 * k as u64),
                "frame {k} early: {t:?}"
            );
        }
    }

    #[test]
    fn pacer_does_not_accumulate_overhead() {
        let mut p = Pacer::new(100.0);
        let t0 = Instant::now();
        for _ in 0..21 {
            p.wait();
            // Work that takes a good part of the period.
            std::thread::sleep(Duration::from_millis(4));
        }
        // 20 periods of 10 ms = 200 ms (+ the last 4 ms of work). Per-frame sleeping of 10 ms
        // after the work would take 21 * 14 = 294 ms.
        let total = t0.elapsed();
        assert!(total >= Duration::from_millis(200), "{total:?}");
        assert!(total < Duration::from_millis(270), "{total:?}");
    }

    #[test]
    fn describe_names_the_directory() {
        let mut cfg = config(ped2());
        cfg.looping = true;
        let d = DirSource::open(&cfg).unwrap().describe();
        assert!(
            d.contains("frames/01") && d.contains("180 frames") && d.contains("looping"),
            "{d}"
        );
    }
}
