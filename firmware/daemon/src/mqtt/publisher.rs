//! The MQTT publisher: takes event messages from the pipeline, makes them durable in the
//! [`Outbox`], and delivers them to the broker at QoS 1, removing each from the outbox only when
//! the broker's PUBACK for it arrives.
//!
//! # Threads
//!
//! * `vigil-mqtt-io` owns rumqttc's [`Connection`] and does nothing but iterate it (blocking),
//!   forwarding every notification to the coordinator. It never has a timeout imposed on it:
//!   rumqttc's event loop is not safe to cancel in the middle of a write, and a timeout around
//!   it could also cut off a slow connection attempt forever.
//! * `vigil-mqtt` (the coordinator) owns all publishing decisions: it is the only thread that
//!   hands publishes to rumqttc, so the order of rumqttc's `Outgoing::Publish(pkid)`
//!   notifications is exactly the order of its own requests. That is how a PUBACK's packet id is
//!   mapped back to an outbox sequence number.
//! * The caller's thread (`publish_event`) only writes the outbox and nudges the coordinator
//!   through a bounded channel with `try_send`, so a slow or absent broker never blocks it
//!   beyond the durable write.
//!
//! # Reconnects
//!
//! The MQTT session is clean: the outbox, not the broker, is the session state. (A persistent
//! session, `clean_session = false`, would make the broker and rumqttc retransmit too, on
//! their own packet ids, and the pkid-to-sequence mapping below could no longer be exact.
//! docs/reliability.md compares the two.) When the
//! connection drops, the io thread waits for the coordinator to forget everything in flight,
//! then empties rumqttc's own request queue and retry list (so nothing is sent twice by two
//! mechanisms and the pkid mapping stays exact), sleeps a jittered exponential backoff (capped
//! at [`MAX_BACKOFF`]) and reconnects. After every ConnAck the coordinator publishes `online`
//! and re-publishes every un-acknowledged outbox message in order. A message whose PUBACK was
//! lost is therefore delivered twice; consumers de-duplicate on `id`.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, RecvTimeoutError, Sender, TryRecvError};
use log::{debug, error, info, warn};
use rumqttc::{
    Client, ConnectReturnCode, Connection, ConnectionError, Event, LastWill, MqttOptions, Outgoing,
    Packet, QoS, TlsConfiguration, Transport,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::inflight::{InFlight, Surprise, Tag};
use super::message::{
    health_topic, status_topic, validate_topic_part, BrokerState, EventMessage, Health,
    MessageError, TopicError, STATUS_OFFLINE, STATUS_ONLINE, STATUS_STOPPED,
};
use super::open_events::{interrupted_end, OpenEvents};
use super::outbox::{Outbox, OutboxError};
use crate::backoff::Backoff;

/// Most event messages handed to rumqttc and not yet acknowledged. Small, so that after a
/// reconnect little is sent twice, but large enough to keep a LAN broker busy.
const EVENT_WINDOW: usize = 32;
/// rumqttc's in-flight limit (also the packet-id cycle). Well above [`EVENT_WINDOW`] plus the
/// status and health publishes, so packet ids are never reused while still in flight.
const RUMQTTC_INFLIGHT: u16 = 100;
/// rumqttc's request queue: room for the whole window, status, health and the DISCONNECT.
const REQUEST_CAPACITY: usize = 64;
/// Largest MQTT packet in either direction. Events with many regions are a few KiB; rumqttc's
/// default (10 KiB) is too tight to be safe.
const MAX_PACKET_BYTES: usize = 256 * 1024;
/// How long one connection attempt (TCP + CONNECT/CONNACK) may take.
const CONNECT_TIMEOUT_S: u64 = 5;
/// First reconnect delay.
const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// Longest reconnect delay: a broker that comes back is used within about this long.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connection that lasted this long resets the backoff; a broker that accepts and then
/// immediately drops us (e.g. another box using the same client id) must not cause a tight
/// reconnect loop.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// After the flush phase of `shutdown`, how long to wait for the PUBACK of `stopped`.
const STOPPED_GRACE: Duration = Duration::from_secs(1);
/// While the broker stays unreachable, how often the log is reminded.
const DOWN_WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// Capacity of the coordinator's command channel.
const COMMAND_CAPACITY: usize = 64;
/// Capacity of the io thread -> coordinator channel.
const IO_CAPACITY: usize = 1024;
/// Capacity of the delivery notification channel handed out by [`Publisher::delivered`].
const DELIVERED_CAPACITY: usize = 1024;

fn default_port() -> u16 {
    1883
}

fn default_keep_alive_s() -> u64 {
    30
}

/// The `[mqtt]` section of the configuration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (default 1883).
    #[serde(default = "default_port")]
    pub port: u16,
    /// MQTT client id (default `vigil-<device>`). Must be unique per broker: the broker
    /// disconnects the older of two clients with the same id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Seconds between keep-alive pings (default 30); a dead broker is noticed within about
    /// 1.5 times this.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    #[serde(default)]
    pub username: Option<String>,
    /// Never logged: `Debug` prints it as `<redacted>`. Prefer `password_file` or the
    /// `VIGIL_MQTT_PASSWORD` environment variable, which keep it out of the config file.
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password (first line); must not be readable by other users.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// MQTT over TLS: `{ ca = "...", cert = "...", key = "..." }` (cert and key for brokers
    /// that require client certificates). Without it the connection is plain TCP.
    #[serde(default)]
    pub tls: Option<super::security::TlsConfig>,
    /// This box's name, the second level of every topic (`vigil/<device>/...`).
    pub device: String,
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("keep_alive_s", &self.keep_alive_s)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .field("device", &self.device)
            .finish()
    }
}

impl MqttConfig {
    /// A configuration with defaults for everything but the broker host and device name.
    pub fn new(host: impl Into<String>, device: impl Into<String>) -> MqttConfig {
        MqttConfig {
            host: host.into(),
            port: default_port(),
            client_id: None,
            keep_alive_s: default_keep_alive_s(),
            username: None,
            password: None,
            password_file: None,
            tls: None,
            device: device.into(),
        }
    }

    /// The client id in effect (`client_id`, or `vigil-<device>`).
    pub fn effective_client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("vigil-{}", self.device))
    }

    /// Checks the configuration; errors say which key to change.
    pub fn validate(&self) -> Result<(), PublisherError> {
        validate_topic_part("device", &self.device)?;
        let bad = |msg: String| Err(PublisherError::Config(msg));
        if self.host.trim().is_empty() {
            return bad("mqtt.host is empty; set it to the broker's host name or address".into());
        }
        if self.port == 0 {
            return bad("mqtt.port is 0; the usual MQTT port is 1883".into());
        }
        let id = self.effective_client_id();
        if id.is_empty() || id.len() > 65535 {
            return bad("mqtt.client_id must be 1-65535 bytes (23 or fewer is safest)".into());
        }
        if !(1..=u64::from(u16::MAX)).contains(&self.keep_alive_s) {
            return bad(format!(
                "mqtt.keep_alive_s = {} is out of range; use 1-65535 seconds (30 is typical)",
                self.keep_alive_s
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("mqtt.password is set without mqtt.username; MQTT 3.1.1 needs both".into());
        }
        if self.password_file.is_some() && self.username.is_none() {
            return bad(
                "mqtt.password_file is set without mqtt.username; MQTT 3.1.1 needs both".into(),
            );
        }
        if self.password.is_some() && self.password_file.is_some() {
            return bad("mqtt.password and mqtt.password_file are both set; keep one".into());
        }
        Ok(())
    }

    /// The password in effect: `password`, else the first line of `password_file` (whose
    /// permissions are checked). Never logged.
    pub fn resolved_password(&self) -> Result<Option<String>, PublisherError> {
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        self.password_file
            .as_deref()
            .map(super::security::read_password)
            .transpose()
            .map_err(|e| PublisherError::Config(e.to_string()))
    }

    /// The rumqttc options this configuration means, last will included: `offline`,
    /// retained, QoS 1 on `vigil/<device>/status`.
    pub fn mqtt_options(&self) -> Result<MqttOptions, PublisherError> {
        self.validate()?;
        let status = status_topic(&self.device)?;
        let mut o = MqttOptions::new(self.effective_client_id(), self.host.trim(), self.port);
        // validate() bounds keep_alive_s to 1..=65535, which set_keep_alive accepts.
        o.set_keep_alive(Duration::from_secs(self.keep_alive_s));
        // The outbox is the session state (see the module docs).
        o.set_clean_session(true);
        o.set_last_will(LastWill::new(
            status,
            STATUS_OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
        o.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        o.set_inflight(RUMQTTC_INFLIGHT);
        if let Some(user) = &self.username {
            o.set_credentials(user.clone(), self.resolved_password()?.unwrap_or_default());
        }
        if let Some(tls) = &self.tls {
            let config = tls
                .client_config()
                .map_err(|e| PublisherError::Config(e.to_string()))?;
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        Ok(o)
    }
}

/// Errors of the publisher.
#[derive(Debug, Error)]
pub enum PublisherError {
    #[error("invalid MQTT configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("refusing to publish: {0}")]
    Message(#[from] MessageError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("cannot encode the {what} message as JSON: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "message is for device {message:?} but this publisher publishes for device {configured:?}"
    )]
    WrongDevice { message: String, configured: String },
    #[error("the MQTT publisher is shutting down and accepts no more messages")]
    ShuttingDown,
    #[error("cannot start the MQTT thread: {0}")]
    Thread(#[source] io::Error),
}

/// An event message the broker has acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Its outbox sequence number (as returned by [`Publisher::publish_event`]).
    pub seq: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

impl Delivered {
    /// The payload as an [`EventMessage`].
    pub fn event(&self) -> Result<EventMessage, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

/// A snapshot of the publisher's state, for health reports and `vigil demo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherStats {
    pub connected: bool,
    pub outbox_depth: usize,
    pub outbox_dropped: u64,
    pub outbox_corrupt: u64,
    /// Event records that could not be written (held in memory instead), since start.
    pub outbox_write_failures: u64,
    /// The outbox's current write failure, if any.
    pub outbox_error: Option<String>,
}

/// What [`Publisher::shutdown`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Event messages still in the outbox (they are sent on the next start).
    pub outbox_depth: usize,
    /// Whether the broker acknowledged the retained `stopped` status.
    pub stopped_published: bool,
    /// Whether the connection was closed with an MQTT DISCONNECT (so the last will was not
    /// fired).
    pub clean_disconnect: bool,
}

enum Command {
    /// Something new is in the outbox or the health slot.
    Wake,
    Shutdown {
        deadline: Instant,
        done: Sender<ShutdownReport>,
    },
}

enum IoEvent {
    Mqtt(Event),
    /// The connection failed or a connection attempt failed. The io thread waits for `resume`
    /// before touching rumqttc's queues, so the coordinator can forget what was in flight first.
    Down {
        error: String,
        resume: Sender<()>,
    },
}

struct Shared {
    outbox: Mutex<Outbox>,
    /// Which anomalies are open, on disk, so a restart can close them.
    open: OpenEvents,
    /// Latest health payload not yet handed to rumqttc; older ones are superseded, never queued.
    health: Mutex<Option<Vec<u8>>>,
    delivered: Mutex<Option<Sender<Delivered>>>,
    connected: AtomicBool,
    accepting: AtomicBool,
}

/// Spools an `end` (reason `restart`) for every anomaly an earlier run left open, after the
/// outbox's backlog and before anything this run produces, and returns the record of open
/// anomalies for this run (`<outbox>/open/`, see [`super::open_events`]).
fn close_interrupted_events(outbox: &mut Outbox) -> Result<OpenEvents, PublisherError> {
    let dir = outbox.dir().join("open");
    let (open, left) = match OpenEvents::open(dir.clone(), outbox.fsync_policy()) {
        Ok(found) => found,
        // Like a full outbox disk, this must not keep detection from starting: events still go
        // out, only the closing of anomalies across a crash is lost, and the log says so.
        Err(e) => {
            error!(
                "cannot read or create {} ({e}): anomalies open before this start, if any, get \
                 no `end`, and neither will those open if vigil dies",
                dir.display()
            );
            return Ok(OpenEvents::unread(dir, outbox.fsync_policy()));
        }
    };
    let now = std::time::SystemTime::now();
    for last in &left {
        let end = interrupted_end(last, now);
        let topic = end.topic()?;
        let payload = serde_json::to_vec(&end).map_err(|source| PublisherError::Encode {
            what: "event",
            source,
        })?;
        let seq = outbox.push(&payload, &topic)?;
        info!(
            "event {} (outbox #{seq}): the previous run stopped without ending it",
            end.summary()
        );
        if let Err(e) = open.note(&end, seq) {
            warn!(
                "event {}: closed, but its open record in {} could not be removed ({e}); the \
                 next start will close it again",
                end.id,
                open.dir().display()
            );
        }
    }
    Ok(open)
}

/// A poisoned lock only means another thread panicked while holding it; the data (an outbox
/// index, a health slot) is still consistent enough to keep delivering events.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishes Vigil's MQTT contract (see `docs/mqtt.md`). Cheap to share between threads
/// (`&self` methods); call [`Publisher::shutdown`] for a clean stop.
///
/// Dropping it without `shutdown` stops publishing without an MQTT DISCONNECT, like a crash:
/// the broker then announces the last will (`offline`) once it notices, which is within the
/// keep-alive interval.
pub struct Publisher {
    device: String,
    shared: Arc<Shared>,
    commands: Sender<Command>,
    coordinator: Mutex<Option<JoinHandle<()>>>,
    io: Mutex<Option<JoinHandle<()>>>,
    report: Mutex<Option<ShutdownReport>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("device", &self.device)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Publisher {
    /// Starts publishing for `config.device`, delivering whatever `outbox` still holds from an
    /// earlier run first. Returns at once; the connection is made (and remade) in the background.
    pub fn start(config: &MqttConfig, mut outbox: Outbox) -> Result<Publisher, PublisherError> {
        let options = config.mqtt_options()?;
        let status = status_topic(&config.device)?;
        let health = health_topic(&config.device)?;
        let open = close_interrupted_events(&mut outbox)?;
        let (client, mut connection) = Client::new(options, REQUEST_CAPACITY);
        connection
            .eventloop
            .network_options
            .set_connection_timeout(CONNECT_TIMEOUT_S);

        if outbox.depth() > 0 {
            info!(
                "MQTT outbox {} holds {} undelivered event message(s) from an earlier run; \
                 they are sent first",
                outbox.dir().display(),
                outbox.depth()
            );
        }
        let shared = Arc::new(Shared {
            outbox: Mutex::new(outbox),
            open,
            health: Mutex::new(None),
            delivered: Mutex::new(None),
            connected: AtomicBool::new(false),
            accepting: AtomicBool::new(true),
        });
        let (cmd_tx, cmd_rx) = bounded(COMMAND_CAPACITY);
        let (io_tx, io_rx) = bounded(IO_CAPACITY);
        let (stop_tx, stop_rx) = bounded(1);

        let io = thread::Builder::new()
            .name("vigil-mqtt-io".into())
            .spawn(move || io_loop(connection, io_tx, stop_rx))
            .map_err(PublisherError::Thread)?;

        let coordinator = Coordinator {
            client,
            shared: shared.clone(),
            broker: format!("{}:{}", config.host.trim(), config.port),
            status_topic: status,
            health_topic: health,
            commands: cmd_rx,
            io: io_rx,
            io_stop: stop_tx,
            connected: false,
            connected_at: None,
            down_since: None,
            last_down_warning: None,
            in_flight: InFlight::default(),
            shutdown: None,
        };
        let coordinator = thread::Builder::new()
            .name("vigil-mqtt".into())
            .spawn(move || coordinator.run())
            .map_err(PublisherError::Thread)?;

        Ok(Publisher {
            device: config.device.clone(),
            shared,
            commands: cmd_tx,
            coordinator: Mutex::new(Some(coordinator)),
            io: Mutex::new(Some(io)),
            report: Mutex::new(None),
        })
    }

    /// Validates `msg`, writes it durably to the outbox and queues it for delivery. Returns its
    /// outbox sequence number once it is on disk (or, if the disk refuses the write, held in
    /// memory and reported: see [`Outbox::push`]); delivery happens in the background (see
    /// [`Publisher::delivered`]). Never waits for the broker.
    pub fn publish_event(&self, msg: &EventMessage) -> Result<u64, PublisherError> {
        if !self.shared.accepting.load(Ordering::SeqCst) {
            return Err(PublisherError::ShuttingDown);
        }
        msg.validate()?;
        if msg.device != self.device {
            return Err(PublisherError::WrongDevice {
                message: msg.device.clone(),
                configured: self.device.clone(),
            });
        }
        let topic = msg.topic()?;
        let payload = serde_json::to_vec(msg).map_err(|source| PublisherError::Encode {
            what: "event",
            source,
        })?;
        let seq = lock(&self.shared.outbox).push(&payload, &topic)?;
        debug!("event {} ({}) spooled as outbox #{seq}", msg.id, msg.kind);
        if let Err(e) = self.shared.open.note(msg, seq) {
            // The event itself is safe in the outbox; only closing it after a crash is at risk.
            error!(
                "event {} ({}): cannot record in {} whether it is open ({e}); if vigil dies \
                 before this anomaly ends, the next start cannot close it",
                msg.id,
                msg.kind,
                self.shared.open.dir().display()
            );
        }
        self.wake();
        Ok(seq)
    }

    /// Publishes `health` (retained, QoS 0: it is periodic and only the latest one matters) as
    /// soon as the broker is reachable; a newer call replaces one not yet sent. The
    /// `outbox_depth`, `outbox_dropped` and `broker` fields are filled in from the publisher's
    /// own state, overriding what the caller put there.
    pub fn publish_health(&self, health: &Health) -> Result<(), PublisherError> {
        health.validate()?;
        if health.device != self.device {
            return Err(PublisherError::WrongDevice {
                message: health.device.clone(),
                configured: self.device.clone(),
            });
        }
        let stats = self.stats();
        let mut h = health.clone();
        h.outbox_depth = stats.outbox_depth as u64;
        h.outbox_dropped = stats.outbox_dropped;
        h.outbox_corrupt = stats.outbox_corrupt;
        h.outbox_error = stats.outbox_error.clone();
        h.broker = if stats.connected {
            BrokerState::Connected
        } else {
            BrokerState::Disconnected
        };
        let payload = serde_json::to_vec(&h).map_err(|source| PublisherError::Encode {
            what: "health",
            source,
        })?;
        *lock(&self.shared.health) = Some(payload);
        self.wake();
        Ok(())
    }

    /// A channel that receives every event message as the broker acknowledges it (so
    /// `vigil demo` can print events as they are confirmed). Calling it again replaces the
    /// previous channel. Notifications that do not fit (1024 unread) are dropped, never
    /// blocking delivery.
    pub fn delivered(&self) -> Receiver<Delivered> {
        let (tx, rx) = bounded(DELIVERED_CAPACITY);
        *lock(&self.shared.delivered) = Some(tx);
        rx
    }

    /// Current connection and outbox state.
    pub fn stats(&self) -> PublisherStats {
        let outbox = lock(&self.shared.outbox);
        PublisherStats {
            connected: self.shared.connected.load(Ordering::SeqCst),
            outbox_depth: outbox.depth(),
            outbox_dropped: outbox.dropped(),
            outbox_corrupt: outbox.corrupt(),
            outbox_write_failures: outbox.write_failures(),
            outbox_error: outbox.last_error().map(str::to_owned),
        }
    }

    /// Whether the broker connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// The device this publisher publishes for.
    pub fn device(&self) -> &str {
        &self.device
    }

    fn wake(&self) {
        // Full means a wake-up is already queued, which is all that is needed: the
        // coordinator reads the outbox, not the command. Disconnected means the coordinator is
        // gone; the message is safe on disk for the next start.
        if let Err(crossbeam_channel::TrySendError::Disconnected(_)) =
            self.commands.try_send(Command::Wake)
        {
            warn!("MQTT publisher thread is not running; the message stays in the outbox");
        }
    }

    /// Stops cleanly: accepts no more messages, waits up to `timeout` for the broker to
    /// acknowledge what is in flight, publishes the retained `stopped` status, and disconnects
    /// with an MQTT DISCONNECT (so the last will is not fired). Whatever is not acknowledged
    /// stays in the outbox for the next start. While the broker is unreachable it keeps trying
    /// to reconnect until `timeout`, then gives up (the broker, if it comes back, will show the
    /// last will `offline`). Returns within about `timeout` plus two seconds.
    /// Calling it again returns the first report.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let mut report_slot = lock(&self.report);
        if let Some(r) = *report_slot {
            return r;
        }
        self.shared.accepting.store(false, Ordering::SeqCst);
        let fallback = |s: &PublisherStats| ShutdownReport {
            outbox_depth: s.outbox_depth,
            stopped_published: false,
            clean_disconnect: false,
        };
        let (done_tx, done_rx) = bounded(1);
        let deadline = Instant::now() + timeout;
        let sent = self
            .commands
            .send_timeout(
                Command::Shutdown {
                    deadline,
                    done: done_tx,
                },
                timeout,
            )
            .is_ok();
        let report = if sent {
            match done_rx.recv_timeout(timeout + STOPPED_GRACE + Duration::from_secs(1)) {
                Ok(r) => {
                    // The coordinator returns right after reporting.
                    if let Some(h) = lock(&self.coordinator).take() {
                        let _ = h.join();
                    }
                    if r.clean_disconnect {
                        // The io thread exits right after forwarding the DISCONNECT.
                        if let Some(h) = lock(&self.io).take() {
                            let _ = h.join();
                        }
                    }
                    r
                }
                Err(_) => {
                    warn!("MQTT publisher did not finish its shutdown in time; leaving it behind");
                    fallback(&self.stats())
                }
            }
        } else {
            warn!("MQTT publisher thread is not running; nothing to shut down");
            fallback(&self.stats())
        };
        info!(
            "MQTT publisher stopped ({}); {} event message(s) left in the outbox for the next start",
            if report.stopped_published {
                "status \"stopped\" published"
            } else {
                "status \"stopped\" NOT confirmed by the broker"
            },
            report.outbox_depth
        );
        *report_slot = Some(report);
        report
    }
}

struct ShutdownState {
    deadline: Instant,
    done: Sender<ShutdownReport>,
    stopped_sent_at: Option<Instant>,
    stopped_acked: bool,
    disconnect_sent_at: Option<Instant>,
    disconnected: bool,
}

struct Coordinator {
    client: Client,
    shared: Arc<Shared>,
    broker: String,
    status_topic: String,
    health_topic: String,
    commands: Receiver<Command>,
    io: Receiver<IoEvent>,
    io_stop: Sender<()>,
    connected: bool,
    connected_at: Option<Instant>,
    down_since: Option<Instant>,
    last_down_warning: Option<Instant>,
    /// What each packet id handed to rumqttc carries, until its PUBACK.
    in_flight: InFlight,
    shutdown: Option<ShutdownState>,
}

impl Coordinator {
    fn run(mut self) {
        loop {
            // While shutting down, deadlines need checking; otherwise every state change
            // arrives as a message and the thread sleeps until one does.
            let tick = if self.shutdown.is_some() {
                Duration::from_millis(20)
            } else {
                Duration::from_secs(3600)
            };
            select! {
                recv(self.commands) -> cmd => match cmd {
                    Ok(Command::Wake) => {}
                    Ok(Command::Shutdown { deadline, done }) => {
                        self.shutdown = Some(ShutdownState {
                            deadline,
                            done,
                            stopped_sent_at: None,
                            stopped_acked: false,
                            disconnect_sent_at: None,
                            disconnected: false,
                        });
                    }
                    Err(_) => {
                        if self.shutdown.is_none() {
                            // The Publisher was dropped without shutdown(): behave like a crash
                            // (no DISCONNECT), so the broker's last will tells the truth.
                            info!("MQTT publisher dropped without shutdown; unacknowledged events stay in the outbox");
                            let _ = self.io_stop.try_send(());
                            return;
                        }
                    }
                },
                recv(self.io) -> ev => match ev {
                    Ok(ev) => self.handle_io(ev),
                    Err(_) => {
                        if let Some(s) = &mut self.shutdown {
                            s.disconnected = true;
                        } else {
                            error!("MQTT connection thread exited unexpectedly; events stay in the outbox");
                            return;
                        }
                    }
                },
                default(tick) => {}
            }
            self.submit();
            if self.progress_shutdown() {
                return;
            }
        }
    }

    fn set_connected(&mut self, up: bool) {
        self.connected = up;
        self.shared.connected.store(up, Ordering::SeqCst);
    }

    fn handle_io(&mut self, ev: IoEvent) {
        match ev {
            IoEvent::Mqtt(Event::Incoming(Packet::ConnAck(_))) => {
                match self.down_since.take() {
                    Some(since) => info!(
                        "MQTT connected to {} again after {:.1} s; re-sending {} unacknowledged event message(s)",
                        self.broker,
                        since.elapsed().as_secs_f32(),
                        lock(&self.shared.outbox).depth()
                    ),
                    None => info!("MQTT connected to {}", self.broker),
                }
                self.set_connected(true);
                self.connected_at = Some(Instant::now());
                self.in_flight.forget();
                let online = STATUS_ONLINE;
                self.publish_status(online);
            }
            IoEvent::Mqtt(Event::Outgoing(Outgoing::Publish(pkid))) => {
                match self.in_flight.written(pkid) {
                    Ok(()) => {}
                    Err(Surprise::Unrequested { pkid }) => warn!(
                        "MQTT: rumqttc sent a publish (packet id {pkid}) this publisher did not request"
                    ),
                    // Cannot happen while the window is below rumqttc's in-flight limit; if it
                    // does, the old message is simply re-sent on the next reconnect (it stays in
                    // the outbox).
                    Err(Surprise::Reused { pkid }) => {
                        warn!("MQTT: packet id {pkid} reused while still in flight")
                    }
                }
            }
            IoEvent::Mqtt(Event::Outgoing(Outgoing::AwaitAck(pkid))) => {
                debug!("MQTT: packet id {pkid} collided; waiting for its acknowledgement");
                self.in_flight.collided();
            }
            IoEvent::Mqtt(Event::Incoming(Packet::PubAck(ack))) => self.on_puback(ack.pkid),
            IoEvent::Mqtt(Event::Outgoing(Outgoing::Disconnect)) => {
                self.set_connected(false);
                if let Some(s) = &mut self.shutdown {
                    s.disconnected = true;
                }
            }
            IoEvent::Mqtt(_) => {}
            IoEvent::Down { error, resume } => self.on_down(&error, &resume),
        }
    }

    /// The broker acknowledged `pkid`: an event leaves the outbox (and is reported as
    /// delivered), `stopped` lets the shutdown go on.
    fn on_puback(&mut self, pkid: u16) {
        match self.in_flight.acknowledged(pkid) {
            Some(Tag::Event {
                seq,
                topic,
                payload,
            }) => {
                if let Err(e) = lock(&self.shared.outbox).ack(seq) {
                    warn!("MQTT: event #{seq} was delivered but {e}");
                }
                debug!("MQTT: event #{seq} acknowledged by the broker");
                if let Some(tx) = lock(&self.shared.delivered).as_ref() {
                    if tx
                        .try_send(Delivered {
                            seq,
                            topic,
                            payload,
                        })
                        .is_err()
                    {
                        debug!("delivery notification for #{seq} dropped (nobody reading)");
                    }
                }
            }
            Some(Tag::Status(s)) => {
                debug!("MQTT: status {s:?} acknowledged");
                if s == STATUS_STOPPED {
                    if let Some(sd) = &mut self.shutdown {
                        sd.stopped_acked = true;
                    }
                }
            }
            Some(Tag::Health) => {}
            None => debug!("MQTT: PUBACK for unknown packet id {}", pkid),
        }
    }

    /// The connection failed, or an attempt to make one did: say so (without one line per
    /// attempt while the broker stays away), then let the io thread reconnect.
    fn on_down(&mut self, error: &str, resume: &Sender<()>) {
        if self.connected {
            warn!(
                "MQTT connection to {} lost: {error}; events wait in the outbox until it is back",
                self.broker
            );
            if let Some(at) = self.connected_at.take() {
                debug!("MQTT connection lasted {:.1} s", at.elapsed().as_secs_f32());
            }
        } else if self.down_since.is_none() {
            warn!(
                "MQTT cannot connect to {}: {error}; retrying with backoff",
                self.broker
            );
            self.last_down_warning = Some(Instant::now());
        } else if match self.last_down_warning {
            None => true,
            Some(at) => at.elapsed() >= DOWN_WARNING_INTERVAL,
        } {
            // A broker that stays away (or refuses our credentials) must stay visible in
            // the log without one line per attempt.
            let secs = self.down_since.map_or(0, |t| t.elapsed().as_secs());
            warn!(
                "MQTT still cannot connect to {} after {secs} s: {error}; {} event message(s) waiting in the outbox",
                self.broker,
                lock(&self.shared.outbox).depth()
            );
            self.last_down_warning = Some(Instant::now());
        } else {
            debug!("MQTT still cannot connect to {}: {error}", self.broker);
        }
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
        }
        self.set_connected(false);
        self.in_flight.forget();
        // The io thread may now clear rumqttc's queues and reconnect.
        let _ = resume.send(());
    }

    fn publish_status(&mut self, status: &'static str) -> bool {
        match self
            .client
            .try_publish(self.status_topic.clone(), QoS::AtLeastOnce, true, status)
        {
            Ok(()) => {
                self.in_flight.requested(Tag::Status(status));
                true
            }
            Err(e) => {
                warn!("MQTT: cannot queue status {status:?}: {e}");
                false
            }
        }
    }

    /// Hands rumqttc whatever is due: the latest health, then outbox messages in order while the
    /// window has room.
    fn submit(&mut self) {
        if !self.connected {
            return;
        }
        if self
            .shutdown
            .as_ref()
            .is_some_and(|s| s.stopped_sent_at.is_some())
        {
            // Nothing may follow `stopped` but the DISCONNECT.
            return;
        }
        if self.shutdown.is_none() {
            let health = lock(&self.shared.health).take();
            if let Some(payload) = health {
                match self.client.try_publish(
                    self.health_topic.clone(),
                    QoS::AtMostOnce,
                    true,
                    payload,
                ) {
                    Ok(()) => self.in_flight.requested(Tag::Health),
                    Err(e) => debug!("MQTT: health not queued ({e}); the next one will be"),
                }
            }
        }
        while self.in_flight.events() < EVENT_WINDOW {
            let next = {
                let outbox = lock(&self.shared.outbox);
                let next = outbox
                    .pending_after(self.in_flight.last_submitted())
                    .next()
                    .map(|e| (e.seq, e.topic.to_owned(), e.payload.to_vec()));
                next
            };
            let Some((seq, topic, payload)) = next else {
                break;
            };
            if topic.is_empty() || !rumqttc::valid_topic(&topic) {
                // Only possible for a hand-edited outbox file; it would block the queue forever.
                error!("MQTT: outbox message #{seq} has an invalid topic {topic:?}; discarding it");
                if let Err(e) = lock(&self.shared.outbox).ack(seq) {
                    warn!("{e}");
                }
                self.in_flight.skipped(seq);
                continue;
            }
            match self
                .client
                .try_publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            {
                Ok(()) => self.in_flight.requested(Tag::Event {
                    seq,
                    topic,
                    payload,
                }),
                Err(_) => {
                    // rumqttc's queue is full; the next notification from it retries.
                    break;
                }
            }
        }
    }

    /// Advances a requested shutdown; returns true when the coordinator is done.
    fn progress_shutdown(&mut self) -> bool {
        let now = Instant::now();
        let connected = self.connected;
        let all_delivered = self.in_flight.events() == 0 && lock(&self.shared.outbox).depth() == 0;
        let Some(s) = &mut self.shutdown else {
            return false;
        };
        let mut finish = s.disconnected;
        if !finish && !connected && s.disconnect_sent_at.is_none() && now >= s.deadline {
            // Never (re)connected in time: the broker will announce the last will instead.
            finish = true;
        }
        if !finish
            && connected
            && s.stopped_sent_at.is_none()
            && (all_delivered || now >= s.deadline)
        {
            s.stopped_sent_at = Some(now);
            let ok = self.publish_status(STATUS_STOPPED);
            let Some(s) = &mut self.shutdown else {
                return false;
            };
            if !ok {
                // Nothing to wait for: go straight to the DISCONNECT.
                s.stopped_sent_at = Some(now.checked_sub(STOPPED_GRACE).unwrap_or(now));
                s.stopped_acked = false;
            }
            return false;
        }
        if !finish && connected && s.disconnect_sent_at.is_none() {
            if let Some(at) = s.stopped_sent_at {
                if s.stopped_acked || now >= at + STOPPED_GRACE {
                    s.disconnect_sent_at = Some(now);
                    if let Err(e) = self.client.try_disconnect() {
                        warn!("MQTT: cannot queue DISCONNECT: {e}");
                    }
                }
            }
        }
        if let Some(at) = s.disconnect_sent_at {
            if now >= at + STOPPED_GRACE {
                warn!("MQTT: DISCONNECT not confirmed in time");
                finish = true;
            }
        }
        if !finish {
            return false;
        }
        let report = ShutdownReport {
            outbox_depth: lock(&self.shared.outbox).depth(),
            stopped_published: s.stopped_acked,
            clean_disconnect: s.disconnected && s.disconnect_sent_at.is_some(),
        };
        let _ = s.done.send(report);
        self.set_connected(false);
        // Ends the io thread if it is waiting out a backoff.
        let _ = self.io_stop.try_send(());
        true
    }
}

fn describe(err: &ConnectionError) -> String {
    match err {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
        ) => format!(
            "the broker refused the connection ({code:?}); check mqtt.username and mqtt.password"
        ),
        ConnectionError::ConnectionRefused(code @ ConnectReturnCode::BadClientId) => {
            format!("the broker refused the client id ({code:?}); set mqtt.client_id to a short unique name")
        }
        other => other.to_string(),
    }
}

fn io_loop(mut connection: Connection, events: Sender<IoEvent>, stop: Receiver<()>) {
    let mut backoff = Backoff::new(BASE_BACKOFF, MAX_BACKOFF);
    let mut connected_at: Option<Instant> = None;
    loop {
        match connection.recv() {
            // All request senders are gone; cannot happen while rumqttc's event loop keeps its
            // own sender, but it would mean there is nothing left to do.
            Err(_) => break,
            Ok(Ok(event)) => {
                let last = matches!(event, Event::Outgoing(Outgoing::Disconnect));
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    connected_at = Some(Instant::now());
                }
                if events.send(IoEvent::Mqtt(event)).is_err() || last {
                    break;
                }
            }
            Ok(Err(err)) => {
                if connected_at
                    .take()
                    .is_some_and(|at| at.elapsed() >= STABLE_CONNECTION)
                {
                    backoff.reset();
                }
                let (resume_tx, resume_rx) = bounded(1);
                let down = IoEvent::Down {
                    error: describe(&err),
                    resume: resume_tx,
                };
                if events.send(down).is_err() || resume_rx.recv().is_err() {
                    break;
                }
                // Drop everything rumqttc would re-send on its own: the coordinator re-sends
                // from the outbox after the next ConnAck, in order, with a fresh pkid mapping.
                connection.eventloop.clean();
                connection.eventloop.pending.clear();
                let delay = backoff.next_delay();
                debug!("MQTT reconnecting in {} ms", delay.as_millis());
                match stop.recv_timeout(delay) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
        }
        if !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
            break;
        }
    }
    debug!("MQTT connection thread finished");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: MqttConfig =
            serde_json::from_str(r#"{"host":"broker.lan","device":"box-1"}"#).unwrap();
        assert_eq!(c.port, 1883);
        assert_eq!(c.keep_alive_s, 30);
        assert_eq!(c.effective_client_id(), "vigil-box-1");
        assert!(c.validate().is_ok());
        let err = serde_json::from_str::<MqttConfig>(r#"{"host":"h","device":"d","hots":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("hots"), "{err}");
    }

    #[test]
    fn password_is_never_in_debug_output() {
        let mut c = MqttConfig::new("h", "d");
        c.username = Some("user".into());
        c.password = Some("hunter2".into());
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("redacted"));
    }

    #[test]
    fn invalid_config_is_an_error_naming_the_key() {
        let mut c = MqttConfig::new("h", "bad/device");
        assert!(c.validate().unwrap_err().to_string().contains("device"));
        c.device = "ok".into();
        c.keep_alive_s = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("keep_alive_s"));
        c.keep_alive_s = 30;
        c.password = Some("p".into());
        assert!(c.validate().unwrap_err().to_string().contains("username"));
        c.password = None;
        c.host = " ".into();
        assert!(c.mqtt_options().unwrap_err().to_string().contains("host"));
    }

    #[test]
    fn options_carry_the_last_will() {
        let c = MqttConfig::new("h", "box-1");
        let o = c.mqtt_options().unwrap();
        let will = o.last_will().unwrap();
        assert_eq!(will.topic, "vigil/box-1/status");
        assert_eq!(&will.message[..], b"offline");
        assert!(will.retain);
        assert_eq!(will.qos, QoS::AtLeastOnce);
        assert!(o.clean_session());
        assert_eq!(o.client_id(), "vigil-box-1");
    }

    #[test]
    fn publish_event_is_durable_without_any_broker() {
        // Port 1 on loopback: nothing listens, every attempt is refused at once.
        let dir = tempfile::tempdir().unwrap();
        let mut c = MqttConfig::new("127.0.0.1", "box-1");
        c.port = 1;
        let p = Publisher::start(&c, Outbox::open(dir.path(), 100).unwrap()).unwrap();
        let mut e = crate::mqtt::message::tests_support::event("box-1", "cam0");
        let s1 = p.publish_event(&e).unwrap();
        e.kind = crate::mqtt::message::EventKind::Update;
        let s2 = p.publish_event(&e).unwrap();
        assert!(s2 > s1);
        assert_eq!(p.stats().outbox_depth, 2);
        assert!(!p.is_connected());
        e.device = "other".into();
        assert!(matches!(
            p.publish_event(&e),
            Err(PublisherError::WrongDevice { .. })
        ));
        e.device = "box-1".into();
        e.score = f32::NAN;
        assert!(matches!(
            p.publish_event(&e),
            Err(PublisherError::Message(_))
        ));
        let report = p.shutdown(Duration::from_millis(300));
        assert_eq!(report.outbox_depth, 2);
        assert!(!report.stopped_published);
        assert!(matches!(
            p.publish_event(&crate::mqtt::message::tests_support::event("box-1", "cam0")),
            Err(PublisherError::ShuttingDown)
        ));
        drop(p);
        assert_eq!(Outbox::open(dir.path(), 100).unwrap().depth(), 2);
    }
}
