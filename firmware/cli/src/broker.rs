//! An MQTT broker inside the process, for `vigil demo` only: the demo must show events flowing
//! over real MQTT on a machine that has no broker installed. `vigil run` never starts one; a
//! deployed box publishes to the site's broker.
//!
//! rumqttd 0.20 has no way to stop a running broker (its `Broker::start` joins server threads
//! that loop forever), so an [`EmbeddedBroker`] lives until the process exits. Dropping the
//! handle does not stop it; that is acceptable for a demo, which exits when it is done.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, TryRecvError};
use log::{debug, info};
use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};
use thiserror::Error;

/// How long the broker may take to accept connections after being started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error(
        "embedded MQTT broker: port {port} on 127.0.0.1 is not available ({source}); pick \
             another port or leave it unset for a free one"
    )]
    PortUnavailable {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("embedded MQTT broker: cannot find a free port on 127.0.0.1: {0}")]
    NoFreePort(#[source] io::Error),
    #[error("embedded MQTT broker: cannot start its thread: {0}")]
    Thread(#[source] io::Error),
    #[error("embedded MQTT broker on 127.0.0.1:{port} stopped while starting: {reason}")]
    Failed { port: u16, reason: String },
    #[error("embedded MQTT broker on 127.0.0.1:{port} did not accept connections within {secs} s")]
    Timeout { port: u16, secs: u64 },
}

/// A running in-process MQTT 3.1.1 broker on 127.0.0.1 (no authentication, loopback only).
#[derive(Debug)]
pub struct EmbeddedBroker {
    port: u16,
}

impl EmbeddedBroker {
    /// Starts the broker on `127.0.0.1:port`, or on a free port if `port` is `None`, and
    /// returns once it accepts connections.
    pub fn start(port: Option<u16>) -> Result<EmbeddedBroker, BrokerError> {
        let port = match port {
            Some(p) => {
                // rumqttd only logs a failed bind from its own thread; checking first turns the
                // common mistake (port taken, e.g. by a real mosquitto) into a clear error.
                TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p))
                    .map_err(|source| BrokerError::PortUnavailable { port: p, source })?;
                p
            }
            None => TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map_err(BrokerError::NoFreePort)?
                .port(),
        };
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let config = broker_config(addr);
        let (done_tx, done_rx) = bounded::<String>(1);
        thread::Builder::new()
            .name("vigil-broker".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                // start() only returns if every server thread ended (e.g. the bind failed).
                let reason = match broker.start() {
                    Ok(()) => "its server thread ended (see the log for the bind error)".to_owned(),
                    Err(e) => e.to_string(),
                };
                let _ = done_tx.send(reason);
            })
            .map_err(BrokerError::Thread)?;

        let started = Instant::now();
        loop {
            match done_rx.try_recv() {
                Ok(reason) => return Err(BrokerError::Failed { port, reason }),
                Err(TryRecvError::Disconnected) => {
                    return Err(BrokerError::Failed {
                        port,
                        reason: "its thread panicked".into(),
                    })
                }
                Err(TryRecvError::Empty) => {}
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                info!("embedded MQTT broker listening on {addr}");
                return Ok(EmbeddedBroker { port });
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(BrokerError::Timeout {
                    port,
                    secs: START_TIMEOUT.as_secs(),
                });
            }
            debug!("waiting for the embedded broker on {addr}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1`, the only address it listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }
}

fn broker_config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        // Matches the publisher's packet limit.
        max_payload_size: 256 * 1024,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "vigil-demo-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let mut v4 = HashMap::new();
    v4.insert("1".to_owned(), server);
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 64,
            max_outgoing_packet_count: 200,
            // rumqttd keeps published data in memory segments; a demo needs little.
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            ..RouterConfig::default()
        },
        v4: Some(v4),
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    use vigil_daemon::mqtt::message::EventSchema;
    use vigil_daemon::mqtt::{EventKind, EventMessage, MqttConfig, Outbox, Publisher};

    /// A valid start event of camera cam0 on device box-1.
    fn event() -> EventMessage {
        EventMessage {
            schema: EventSchema,
            id: EventMessage::new_id(),
            kind: EventKind::Start,
            device: "box-1".into(),
            camera: "cam0".into(),
            model: "ped2-bdfi".into(),
            started_at: "2026-12-07T12:00:00.123Z".into(),
            ended_at: None,
            frame: 42,
            score: 0.8,
            peak_score: 0.8,
            threshold: 0.5,
            latency_frames: 1,
            regions: Vec::new(),
            reason: None,
        }
    }

    #[test]
    fn rumqttc_clients_can_publish_and_subscribe_through_it() {
        let broker = EmbeddedBroker::start(None).unwrap();
        assert_ne!(broker.port(), 0);

        let (sub, mut sub_conn) = Client::new(
            MqttOptions::new("embedded-test-sub", broker.host(), broker.port()),
            10,
        );
        sub.subscribe("vigil/test/#", QoS::AtLeastOnce).unwrap();
        // Wait for the SUBACK before publishing, so the message cannot race the subscription.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                Instant::now() < deadline,
                "no SUBACK from the embedded broker"
            );
            match sub_conn.recv_timeout(Duration::from_secs(1)) {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => panic!("subscriber connection failed: {e}"),
            }
        }

        let (publ, mut pub_conn) = Client::new(
            MqttOptions::new("embedded-test-pub", broker.host(), broker.port()),
            10,
        );
        publ.publish("vigil/test/events", QoS::AtLeastOnce, false, "hello")
            .unwrap();
        let pub_thread = thread::spawn(move || {
            for ev in pub_conn.iter().take(50) {
                if let Ok(Event::Incoming(Packet::PubAck(_))) = ev {
                    return true;
                }
            }
            false
        });

        let got = loop {
            assert!(
                Instant::now() < deadline,
                "message never arrived through the embedded broker"
            );
            match sub_conn.recv_timeout(Duration::from_secs(1)) {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => break p,
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => panic!("subscriber connection failed: {e}"),
            }
        };
        assert_eq!(got.topic, "vigil/test/events");
        assert_eq!(&got.payload[..], b"hello");
        assert!(pub_thread.join().unwrap(), "publisher got no PUBACK");
    }

    #[test]
    fn embedded_mqtt_broker_refuses_a_taken_port() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = EmbeddedBroker::start(Some(port)).unwrap_err();
        assert!(matches!(err, BrokerError::PortUnavailable { .. }));
        assert!(err.to_string().contains(&port.to_string()));
    }

    #[test]
    fn events_are_delivered_and_acked_through_the_embedded_broker() {
        // The `vigil demo` combination: this publisher against rumqttd.
        let broker = EmbeddedBroker::start(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut c = MqttConfig::new(broker.host(), "box-1");
        c.port = broker.port();
        let p = Publisher::start(&c, Outbox::open(dir.path(), 100).unwrap()).unwrap();
        let delivered = p.delivered();
        let sent: Vec<EventMessage> = (0..3).map(|_| event()).collect();
        let seqs: Vec<u64> = sent.iter().map(|e| p.publish_event(e).unwrap()).collect();
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let d = delivered
                .recv_timeout(Duration::from_secs(60))
                .expect("the embedded broker should acknowledge every event");
            assert_eq!(d.topic, "vigil/box-1/cam0/events");
            assert_eq!(d.event().unwrap(), sent[got.len()]);
            got.push(d.seq);
        }
        assert_eq!(got, seqs);
        assert_eq!(p.stats().outbox_depth, 0);
        let report = p.shutdown(Duration::from_secs(10));
        assert!(
            report.stopped_published && report.clean_disconnect,
            "{report:?}"
        );
    }
}
