//! Live counters of each camera: written by its capture and inference threads, read by the
//! health reporter and the systemd watchdog. A leaf module, so that the pipeline and the
//! notifier both read it without depending on each other.

use crate::mqtt::{CameraHealth, CameraState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Live counters of one camera, read by the health reporter.
#[derive(Debug)]
pub struct CameraStats {
    pub name: String,
    pub frames: AtomicU64,
    pub scored: AtomicU64,
    pub transient_errors: AtomicU64,
    /// Times the camera went away and was reopened.
    pub reconnects: AtomicU64,
    pub dropped: AtomicU64,
    pub queue_depth: AtomicU64,
    /// Frames refused before the model (corrupt, truncated, unreadable).
    pub rejected: AtomicU64,
    /// Why the latest rejected frame was refused (file or buffer, and the reason).
    last_rejection: Mutex<Option<String>>,
    state: Mutex<CameraState>,
    started: Instant,
}

impl CameraStats {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            frames: AtomicU64::new(0),
            scored: AtomicU64::new(0),
            transient_errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            last_rejection: Mutex::new(None),
            state: Mutex::new(CameraState::Starting),
            started: Instant::now(),
        }
    }
    pub fn state(&self) -> CameraState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn set_state(&self, s: CameraState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
    /// Counts a rejected frame and keeps `reason` as the latest one.
    pub(crate) fn reject(&self, reason: String) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        *self
            .last_rejection
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }
    pub fn last_rejection(&self) -> Option<String> {
        self.last_rejection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// The counters the systemd watchdog judges liveness by.
    pub fn progress(&self) -> Progress {
        Progress {
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
            frames_rejected: self.rejected.load(Ordering::Relaxed),
            last_rejection: self.last_rejection(),
        }
    }
}

/// Counters of one camera at one instant (see [`CameraStats::progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Frames the capture thread delivered.
    pub frames: u64,
    /// Capture attempts that failed and are being retried (a reconnecting camera is alive).
    pub transient_errors: u64,
    /// Frames the inference thread scored.
    pub scored: u64,
    /// The stream ended (replay) or the camera stopped: nothing more is expected of it.
    pub finished: bool,
}
