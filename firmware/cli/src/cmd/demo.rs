//! `vigil demo`: the whole product on any machine, with nothing to set up. A short Ped2 clip
//! (committed in the repository; a bicycle rides through from frame 60) is replayed through the
//! bundled model into an embedded MQTT broker; an independent MQTT client subscribed to the
//! event topic prints every event as the broker delivers it.

use crate::broker::EmbeddedBroker;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use vigil_daemon::config::{CameraConfig, Config, HealthConfig, OutboxConfig};
use vigil_daemon::mqtt::MqttConfig;
use vigil_daemon::pipeline::Observed;
use vigil_daemon::source::{DirConfig, SourceConfig};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Model package (default: the bundled ped2-bdfi).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Directory of frames to replay (default: the bundled Ped2 clip).
    #[arg(long)]
    pub frames: Option<PathBuf>,
    /// Use this broker (HOST:PORT) instead of starting an embedded one.
    #[arg(long)]
    pub broker: Option<String>,
    /// Replay at this rate (frames per second); default: as fast as the model scores.
    #[arg(long)]
    pub fps: Option<f32>,
    /// Print every frame's score, not only events.
    #[arg(long)]
    pub scores: bool,
}

/// Finds a bundled asset: next to the working directory (a source checkout), next to the
/// executable's checkout (`target/release/vigil`), or where the .deb installs it.
fn bundled(rel_checkout: &str, installed: &str) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from(rel_checkout)];
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1).take(4) {
            candidates.push(anc.join(rel_checkout));
        }
    }
    candidates.push(PathBuf::from(installed));
    candidates.into_iter().find(|p| p.exists())
}

pub const DEMO_MODEL: &str = "engine/models/ped2-bdfi";
pub const DEMO_CLIP: &str = "firmware/cli/assets/demo/ped2-test01";

/// The bundled Ped2 clip (checkout or installed package).
pub fn bundled_clip() -> Result<PathBuf> {
    bundled(DEMO_CLIP, "/usr/share/vigil/demo/ped2-test01")
        .context("the bundled clip firmware/cli/assets/demo/ped2-test01 was not found; run from the repository root or pass --frames")
}

pub fn run(args: DemoArgs) -> Result<()> {
    let model = match args.model {
        Some(m) => m,
        None => bundled(DEMO_MODEL, "/usr/share/vigil/models/ped2-bdfi").context(
            "the bundled model engine/models/ped2-bdfi was not found; run from the repository root or pass --model",
        )?,
    };
    let frames = match args.frames {
        Some(f) => f,
        None => bundled_clip()?,
    };
    let _broker;
    let (host, port) = match &args.broker {
        Some(hp) => {
            let (h, p) = hp.rsplit_once(':').context("--broker must be HOST:PORT")?;
            (h.to_owned(), p.parse::<u16>().context("--broker port")?)
        }
        None => {
            let b = EmbeddedBroker::start(None).context("starting the embedded MQTT broker")?;
            let hp = (b.host().to_owned(), b.port());
            _broker = b;
            hp
        }
    };
    let outbox = tempdir()?;
    let device = "demo";
    let camera = "ped2-01";
    let mut mqtt = MqttConfig::new(host.clone(), device);
    mqtt.port = port;
    let cfg = Config {
        mqtt,
        outbox: OutboxConfig {
            dir: outbox.clone(),
            max_messages: 1000,
            ..OutboxConfig::default()
        },
        health: HealthConfig { interval_s: 5 },
        engines: Default::default(),
        cameras: vec![CameraConfig {
            name: camera.into(),
            model: model.clone(),
            source: SourceConfig::Dir(DirConfig {
                path: frames.clone(),
                fps: args.fps,
                looping: false,
                start: None,
                count: None,
            }),
            backend: Default::default(),
            max_gap: 1,
            lossless: Some(true),
            normalizer: None,
            events: Default::default(),
            region_fraction: 0.7,
        }],
    };
    println!(
        "vigil demo: model {} replaying {} into mqtt://{host}:{port}",
        model.display(),
        frames.display()
    );
    println!("events topic: vigil/{device}/{camera}/events\n");
    let sub = subscriber(&host, port, &format!("vigil/{device}/+/events"))?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    vigil_daemon::install_signal_handlers(&stop)?;
    let show_scores = args.scores;
    let printer = std::thread::spawn(move || {
        let mut events = 0;
        for o in rx {
            match o {
                Observed::Scored {
                    frame, score, raw, ..
                } if show_scores => {
                    println!("frame {frame:>4}  raw {raw:>8.3}  score {score:.3}");
                }
                Observed::Event(_) => events += 1,
                _ => {}
            }
        }
        events
    });
    let result = vigil_daemon::run_with_observer(&cfg, stop, Some(tx));
    let produced = printer.join().unwrap_or(0);
    // Give the subscriber a moment to receive the last acknowledged messages.
    let received = sub.finish(produced, Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&outbox);
    result?;
    println!("\n{produced} event message(s) produced, {received} received from the broker");
    println!(
        "what these events are worth on a real camera (how late they start, how many false alarms): docs/mqtt.md, \"What a consumer should expect\""
    );
    if received < produced {
        bail!(
            "{} event message(s) were not received from the broker",
            produced - received
        );
    }
    Ok(())
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("vigil-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// An MQTT client independent of the publisher, printing what the broker delivers.
struct Subscriber {
    rx: crossbeam_channel::Receiver<()>,
}

impl Subscriber {
    fn finish(self, expected: usize, wait: Duration) -> usize {
        let mut got = 0;
        let deadline = std::time::Instant::now() + wait;
        while got < expected {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.rx.recv_timeout(left).is_err() {
                break;
            }
            got += 1;
        }
        got + self.rx.try_iter().count()
    }
}

fn subscriber(host: &str, port: u16, filter: &str) -> Result<Subscriber> {
    use rumqttc::{Client, Event, Incoming, MqttOptions, QoS};
    let mut opts = MqttOptions::new(format!("vigil-demo-sub-{}", std::process::id()), host, port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut conn) = Client::new(opts, 16);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .context("subscribing")?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _client = client;
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    let _ = ready_tx.try_send(());
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    print_event(&p.payload);
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => {
                    log::debug!("demo subscriber: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the demo's MQTT subscriber could not subscribe within 10 s")?;
    Ok(Subscriber { rx })
}

fn print_event(payload: &[u8]) {
    match serde_json::from_slice::<vigil_daemon::mqtt::EventMessage>(payload) {
        Ok(m) => {
            let region = m
                .regions
                .first()
                .map(|r| {
                    format!(
                        "  region x={:.2} y={:.2} w={:.2} h={:.2}",
                        r.x, r.y, r.w, r.h
                    )
                })
                .unwrap_or_default();
            let reason = m
                .reason
                .map(|r| format!("  reason={r}"))
                .unwrap_or_default();
            println!(
                "EVENT {:<6} id={} camera={} frame={:>4} score={:.3} peak={:.3}{}{}",
                m.kind.to_string(),
                m.id,
                m.camera,
                m.frame,
                m.score,
                m.peak_score,
                region,
                reason
            );
        }
        Err(_) => println!("EVENT (unparsed) {}", String::from_utf8_lossy(payload)),
    }
}
