//! The service manager protocol (sd_notify(3)) for `Type=notify` units: `READY=1` once every
//! camera has delivered a scored frame (model loaded, frames flowing), `STATUS=` lines with each
//! camera's state and rate, `STOPPING=1` on shutdown, and `WATCHDOG=1` pings that come from the
//! pipeline's own progress. A timer that pinged regardless would keep a hung camera or a stuck
//! inference alive forever; here the pings stop as soon as one camera stops making progress, and
//! systemd restarts the service after `WatchdogSec=`.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op.

use crate::mqtt::CameraState;
use crate::stats::{CameraStats, Progress};
use sd_notify::NotifyState;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether each camera's two threads are making progress.
///
/// Capture is alive when it delivered a frame or retried a failing device; inference is alive
/// when it scored a frame, or had nothing to score. A camera is stalled when neither held for
/// longer than `stall_after`.
#[derive(Debug)]
pub struct Heartbeat {
    stall_after: Duration,
    last: Vec<(Progress, Instant)>,
}

impl Heartbeat {
    pub fn new(cameras: usize, stall_after: Duration, now: Instant) -> Self {
        Self {
            stall_after,
            last: vec![(Progress::default(), now); cameras],
        }
    }

    /// Records the cameras' counters; returns the index of the first stalled camera, if any.
    pub fn check(&mut self, now: Instant, progress: &[Progress]) -> Option<usize> {
        let mut stalled = None;
        for (i, (p, (seen, alive_at))) in progress.iter().zip(self.last.iter_mut()).enumerate() {
            let capture = p.frames > seen.frames || p.transient_errors > seen.transient_errors;
            let inference = p.scored > seen.scored || p.frames == seen.frames;
            if p.finished || (capture && inference) {
                *seen = *p;
                *alive_at = now;
            } else if now.duration_since(*alive_at) > self.stall_after && stalled.is_none() {
                stalled = Some(i);
            }
        }
        stalled
    }
}

/// Drives the protocol from the daemon's supervision loop.
pub struct Notifier {
    watchdog: Option<Duration>,
    heartbeat: Heartbeat,
    ready: bool,
    next_ping: Instant,
    next_status: Instant,
    reported_stall: Option<usize>,
}

/// Interval of `STATUS=` updates.
const STATUS_EVERY: Duration = Duration::from_secs(5);

impl Notifier {
    /// Reads `WATCHDOG_USEC`/`WATCHDOG_PID` from the environment (set by systemd).
    pub fn from_env(cameras: usize) -> Self {
        Self::new(cameras, sd_notify::watchdog_enabled(), Instant::now())
    }

    pub fn new(cameras: usize, watchdog: Option<Duration>, now: Instant) -> Self {
        if let Some(w) = watchdog {
            log::info!(
                "systemd watchdog every {:.1} s: pings stop when a camera makes no progress for {:.1} s",
                w.as_secs_f64(),
                w.as_secs_f64() / 2.0
            );
        }
        // Half the period to decide, pings every third: a stall stops the pings well within one
        // watchdog period, and a healthy pipeline never misses one.
        let stall_after = watchdog.map_or(Duration::from_secs(30), |w| w / 2);
        Self {
            watchdog,
            heartbeat: Heartbeat::new(cameras, stall_after, now),
            ready: false,
            next_ping: now,
            next_status: now,
            reported_stall: None,
        }
    }

    /// Called every few tens of milliseconds by the daemon.
    pub fn tick(&mut self, now: Instant, cameras: &[Arc<CameraStats>]) {
        let progress: Vec<Progress> = cameras.iter().map(|c| c.progress()).collect();
        let stalled = self.heartbeat.check(now, &progress);
        if !self.ready && progress.iter().all(|p| p.scored > 0 || p.finished) {
            self.ready = true;
            notify(&[NotifyState::Ready, NotifyState::Status(&status(cameras))]);
            log::info!("ready: every camera has scored a frame");
        }
        if let Some(i) = stalled {
            if self.reported_stall != Some(i) {
                log::error!(
                    "camera {} has made no progress for {:.1} s: withholding the watchdog ping so the service manager restarts vigil",
                    cameras[i].name,
                    self.heartbeat.stall_after.as_secs_f64()
                );
                self.reported_stall = Some(i);
            }
        } else {
            self.reported_stall = None;
        }
        // systemd arms the watchdog once start-up is complete (READY=1).
        if let (true, Some(w), None) = (self.ready, self.watchdog, stalled) {
            if now >= self.next_ping {
                notify(&[NotifyState::Watchdog]);
                self.next_ping = now + w / 3;
            }
        }
        if self.ready && now >= self.next_status {
            notify(&[NotifyState::Status(&status(cameras))]);
            self.next_status = now + STATUS_EVERY;
        }
    }

    pub fn stopping(&self) {
        notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("sd_notify to NOTIFY_SOCKET failed: {e}");
    }
}

/// One line for `systemctl status`: per camera its state, scored rate and drops.
fn status(cameras: &[Arc<CameraStats>]) -> String {
    cameras
        .iter()
        .map(|c| {
            let h = c.health();
            format!(
                "{}: {} {:.1} fps, {} dropped",
                h.camera,
                match h.state {
                    CameraState::Starting => "starting",
                    CameraState::Streaming => "streaming",
                    CameraState::Stalled => "stalled",
                    CameraState::Reconnecting => "reconnecting",
                    CameraState::Ended => "ended",
                    CameraState::Failed => "failed",
                },
                h.fps,
                h.dropped_frames
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(frames: u64, transient_errors: u64, scored: u64) -> Progress {
        Progress {
            frames,
            transient_errors,
            scored,
            finished: false,
        }
    }

    #[test]
    fn a_camera_that_stops_scoring_is_stalled_after_the_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut hb = Heartbeat::new(2, s, t0);
        assert_eq!(hb.check(t0 + s / 2, &[p(5, 0, 4), p(5, 0, 4)]), None);
        // camera 1: capture goes on, inference is stuck at 4
        assert_eq!(
            hb.check(t0 + s, &[p(10, 0, 9), p(10, 0, 4)]),
            None,
            "not yet past the window"
        );
        assert_eq!(hb.check(t0 + s * 2, &[p(15, 0, 14), p(15, 0, 4)]), Some(1));
        // camera 0: capture hangs (no frames, no retries) once camera 1 recovered
        assert_eq!(hb.check(t0 + s * 3, &[p(15, 0, 15), p(20, 0, 19)]), None);
        assert_eq!(hb.check(t0 + s * 5, &[p(15, 0, 15), p(30, 0, 29)]), Some(0));
    }

    #[test]
    fn reconnecting_idle_and_finished_cameras_are_alive() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut hb = Heartbeat::new(3, s, t0);
        let fin = Progress {
            finished: true,
            ..p(3, 0, 3)
        };
        for k in 1..10u64 {
            // 0: device unplugged, capture retrying; 1: streaming; 2: replay ended
            let now = t0 + s * k as u32;
            assert_eq!(
                hb.check(now, &[p(0, k, 0), p(10 * k, 0, 10 * k), fin]),
                None,
                "t={k}s"
            );
        }
    }
}
