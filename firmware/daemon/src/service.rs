//! `vigil run`: starts the publisher and every camera, reports health, and stops cleanly on
//! SIGTERM/SIGINT (capture stops, queued frames are scored, open events are closed, the
//! publisher waits for acknowledgements; anything unacknowledged stays in the outbox).

use crate::config::Config;
use crate::mqtt::{BrokerState, Health, Outbox, Publisher};
use crate::pipeline::{CameraHandle, Observed, PreparedCamera};
use crate::source::SourceError;
use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a stop waits for the broker to acknowledge what is in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a stop waits for the cameras' threads to drain and finish.
pub const CAMERA_STOP_GRACE: Duration = Duration::from_secs(10);

pub fn install_signal_handlers(stop: &Arc<AtomicBool>) -> Result<()> {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handler")?;
    }
    Ok(())
}

pub fn run(cfg: &Config, stop: Arc<AtomicBool>) -> Result<()> {
    run_with_observer(cfg, stop, None)
}

/// The daemon's body; `observer` receives scores and events (demo, tests).
pub fn run_with_observer(
    cfg: &Config,
    stop: Arc<AtomicBool>,
    observer: Option<Sender<Observed>>,
) -> Result<()> {
    // Nothing reaches the broker before every refusal has had its chance: a start that fails
    // on a missing frames directory must not leave a retained `stopped` behind.
    let Preflight { outbox, cameras } = preflight(cfg, Purpose::Run)?;
    let outbox = outbox.context("the outbox is opened for a run")?;
    let publisher =
        Arc::new(Publisher::start(&cfg.mqtt, outbox).context("starting the MQTT publisher")?);
    let mut cams: Vec<CameraHandle> = Vec::new();
    for c in cameras {
        match c.spawn(publisher.clone(), stop.clone(), observer.clone()) {
            Ok(h) => cams.push(h),
            Err(e) => {
                // Only a thread that could not be started gets here. No clean `stopped`: the
                // process exits without DISCONNECT, so the broker publishes the will `offline`,
                // which is what consumers must see for a box that failed to come up.
                stop.store(true, Ordering::Relaxed);
                for h in cams {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    log::info!(
        "vigil running: {} camera(s), device {}",
        cams.len(),
        cfg.mqtt.device
    );
    let started = Instant::now();
    let interval = Duration::from_secs(cfg.health.interval_s);
    let mut next_health = Instant::now();
    let all_stats: Vec<_> = cams.iter().map(|c| c.stats.clone()).collect();
    let mut notifier = crate::systemd::Notifier::from_env(cams.len());
    // Ends on a stop request, or when every camera's stream has ended (replay sources).
    while !stop.load(Ordering::Relaxed) && !cams.iter().all(|c| c.is_finished()) {
        if !interval.is_zero() && Instant::now() >= next_health {
            publish_health(&publisher, &cams, &cfg.mqtt.device, started, interval);
            next_health = Instant::now() + interval;
        }
        notifier.tick(Instant::now(), &all_stats);
        std::thread::sleep(Duration::from_millis(50));
    }
    notifier.stopping();
    if stop.load(Ordering::Relaxed) {
        log::info!("stop requested: draining cameras");
    }
    stop.store(true, Ordering::Relaxed);
    let mut first_err = None;
    let stats: Vec<_> = cams.iter().map(|c| c.stats.clone()).collect();
    // A thread stuck inside a driver or a model call cannot be interrupted; after the grace it
    // is abandoned (it dies with the process) so the outbox is still flushed and the stop ends
    // before the service manager's kill. Exiting with an error lets Restart=on-failure act.
    let deadline = Instant::now() + CAMERA_STOP_GRACE;
    while Instant::now() < deadline && !cams.iter().all(|c| c.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for h in cams {
        if !h.is_finished() {
            let e = anyhow::anyhow!(
                "camera {}: did not stop within {:?} (stuck in its source or model); abandoned",
                h.stats.name,
                CAMERA_STOP_GRACE
            );
            log::error!("{e:#}");
            first_err.get_or_insert(e);
        } else if let Err(e) = h.join() {
            first_err.get_or_insert(e);
        }
    }
    for s in &stats {
        let h = s.health();
        // fps counts from the camera's start, model load included: the rate a user sees.
        log::info!(
            "camera {}: {} frames captured, {} rejected, {} dropped, {:.2} scored frames/s",
            h.camera,
            h.frames,
            h.frames_rejected,
            h.dropped_frames,
            h.fps
        );
    }
    if !interval.is_zero() {
        let h = health(&publisher, &stats, &cfg.mqtt.device, started, interval);
        let _ = publisher.publish_health(&h);
    }
    let report = publisher.shutdown(SHUTDOWN_GRACE);
    log::info!(
        "stopped: {} event(s) left in the outbox for the next start, clean disconnect: {}",
        report.outbox_depth,
        report.clean_disconnect
    );
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Why [`preflight`] runs: `vigil run` opens everything for use; `vigil check` must not disturb
/// a vigil that may be running on the same configuration (its outbox journal, its cameras).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Run,
    Check,
}

/// What [`preflight`] found usable.
pub struct Preflight {
    /// The opened outbox (for [`Purpose::Run`]; a check only proves the directory writable).
    pub outbox: Option<Outbox>,
    /// Every camera with its model loaded and source open, in configuration order; for a
    /// check, a camera whose device is busy (streaming to a running vigil) is left out.
    pub cameras: Vec<PreparedCamera>,
}

/// Everything `vigil run` refuses at start, checked before anything connects to the broker,
/// and in the same code for `vigil check` so that the two cannot disagree: the MQTT settings
/// (TLS and password files), the outbox directory, and every camera's model package, backend
/// and source (the frames directory exists and holds frames, the device exists and opens).
pub fn preflight(cfg: &Config, purpose: Purpose) -> Result<Preflight> {
    cfg.mqtt
        .mqtt_options()
        .context("[mqtt] (TLS and password files are read at start)")?;
    let outbox_context = || {
        format!(
            "outbox {} (set [outbox] dir to a writable, persistent directory)",
            cfg.outbox.dir.display()
        )
    };
    let outbox = match purpose {
        Purpose::Run => Some(
            Outbox::open_with(&cfg.outbox.dir, cfg.outbox.options())
                .with_context(outbox_context)?,
        ),
        Purpose::Check => {
            crate::mqtt::outbox::check_writable(&cfg.outbox.dir).with_context(outbox_context)?;
            None
        }
    };
    let mut cameras = Vec::new();
    for c in &cfg.cameras {
        match PreparedCamera::prepare(c, &cfg.mqtt.device, &cfg.engines.dir) {
            Ok(p) => cameras.push(p),
            Err(e)
                if purpose == Purpose::Check
                    && matches!(
                        e.downcast_ref::<SourceError>(),
                        Some(SourceError::DeviceBusy { .. })
                    ) =>
            {
                log::warn!(
                    "camera {}: {e:#}; if that is the running vigil, the device is fine",
                    c.name
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Preflight { outbox, cameras })
}

fn health(
    publisher: &Publisher,
    stats: &[Arc<crate::stats::CameraStats>],
    device: &str,
    started: Instant,
    interval: Duration,
) -> Health {
    let p = publisher.stats();
    Health {
        schema: Default::default(),
        device: device.to_owned(),
        sent_at: crate::mqtt::message::rfc3339_utc(std::time::SystemTime::now()),
        interval_s: interval.as_secs(),
        uptime_s: started.elapsed().as_secs(),
        cameras: stats.iter().map(|s| s.health()).collect(),
        outbox_depth: p.outbox_depth as u64,
        outbox_dropped: p.outbox_dropped,
        outbox_corrupt: p.outbox_corrupt,
        outbox_error: p.outbox_error.clone(),
        broker: if p.connected {
            BrokerState::Connected
        } else {
            BrokerState::Disconnected
        },
    }
}

fn publish_health(
    publisher: &Publisher,
    cams: &[CameraHandle],
    device: &str,
    started: Instant,
    interval: Duration,
) {
    let stats: Vec<_> = cams.iter().map(|c| c.stats.clone()).collect();
    if let Err(e) = publisher.publish_health(&health(publisher, &stats, device, started, interval))
    {
        log::warn!("health not published: {e}");
    }
}
