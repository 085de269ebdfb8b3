//! The MQTT contract end to end: Vigil's publisher against a real mosquitto, observed by an
//! independent client (`mosquitto_sub`), the way a consumer sees it.
//!
//! Timeouts are generous (tens of seconds) because CI machines are shared; nothing here
//! asserts on speed, only on what arrives.

use std::collections::HashSet;
use std::env;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use std::sync::{mpsc, Arc};
use vigil_daemon::mqtt::message::{
    rfc3339_utc, BrokerState, CameraHealth, CameraState, EndReason, EventKind, EventMessage,
    EventSchema, Health, HealthSchema, Region,
};
use vigil_daemon::mqtt::{MqttConfig, Outbox, Publisher};
use vigil_tests::{
    journal_pending, repo_root, validate_against_schema, wait_until, FlakyLink, Message, Mosquitto,
    Subscriber,
};

const LONG: Duration = Duration::from_secs(60);

fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

fn event_schema() -> PathBuf {
    repo_root().join("docs/schemas/vigil.event-1.schema.json")
}

fn health_schema() -> PathBuf {
    repo_root().join("docs/schemas/vigil.health-1.schema.json")
}

fn config(port: u16, device: &str) -> MqttConfig {
    let mut c = MqttConfig::new("127.0.0.1", device);
    c.port = port;
    // Short, so that a dead connection is noticed quickly even without a socket error.
    c.keep_alive_s = 5;
    c
}

fn event(device: &str, camera: &str, id: &str, kind: EventKind, frame: u64) -> EventMessage {
    let now = rfc3339_utc(std::time::SystemTime::now());
    EventMessage {
        schema: EventSchema,
        id: id.to_owned(),
        kind,
        device: device.into(),
        camera: camera.into(),
        model: "maam-net-ped2".into(),
        started_at: now.clone(),
        ended_at: (kind == EventKind::End).then_some(now),
        frame,
        score: 0.5 + (frame % 50) as f32 / 100.0,
        peak_score: 0.99,
        threshold: 0.6,
        latency_frames: 1,
        regions: vec![Region {
            x: 0.25,
            y: 0.5,
            w: 0.125,
            h: 0.25,
            score: 0.75,
        }],
        reason: (kind == EventKind::End).then_some(EndReason::Score),
    }
}

/// Event messages among `msgs`, parsed, first occurrence of each (`id`, `type`, `frame`) only:
/// what a de-duplicating consumer keeps.
fn deduplicated_events(msgs: &[Message]) -> Vec<EventMessage> {
    let mut seen = HashSet::new();
    msgs.iter()
        .filter(|m| m.topic.ends_with("/events"))
        .map(|m| {
            serde_json::from_str::<EventMessage>(&m.payload)
                .unwrap_or_else(|e| panic!("not a vigil.event/1 message ({e}): {}", m.payload))
        })
        .filter(|e| seen.insert((e.id.clone(), e.kind, e.frame)))
        .collect()
}

fn statuses(msgs: &[Message], device: &str) -> Vec<String> {
    let topic = format!("vigil/{device}/status");
    msgs.iter()
        .filter(|m| m.topic == topic)
        .map(|m| m.payload.clone())
        .collect()
}

#[test]
fn events_published_while_connected_arrive_and_match_the_schema() {
    init_logging();
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "vigil/#");
    let dir = tempfile::tempdir().unwrap();
    let outbox_dir = dir.path().join("outbox");
    let device = "box-a";
    let publisher = Publisher::start(
        &config(broker.port(), device),
        Outbox::open(&outbox_dir, 1000).unwrap(),
    )
    .unwrap();
    let delivered = publisher.delivered();

    let first = EventMessage::new_id();
    let second = EventMessage::new_id();
    let sent = vec![
        event(device, "cam0", &first, EventKind::Start, 100),
        event(device, "cam0", &first, EventKind::Update, 105),
        event(device, "cam0", &first, EventKind::End, 130),
        event(device, "cam-1_b", &second, EventKind::Start, 7),
    ];
    let mut seqs = Vec::new();
    for e in &sent {
        seqs.push(publisher.publish_event(e).unwrap());
    }

    let got = sub
        .wait_for(|m| deduplicated_events(m).len() >= sent.len(), LONG)
        .expect("all events should arrive at an independent subscriber");
    let events: Vec<&Message> = got
        .iter()
        .filter(|m| m.topic.ends_with("/events"))
        .collect();
    for m in &events {
        validate_against_schema(event_schema(), &m.json()).unwrap();
    }
    assert_eq!(events[0].topic, "vigil/box-a/cam0/events");
    assert!(events
        .iter()
        .any(|m| m.topic == "vigil/box-a/cam-1_b/events"));
    // Exactly what was sent, field for field, in order.
    assert_eq!(deduplicated_events(&got), sent);

    // The validator really checks: a payload missing `id` or with a bad type is rejected.
    let mut broken = events[0].json();
    broken.as_object_mut().unwrap().remove("id");
    assert!(validate_against_schema(event_schema(), &broken).is_err());
    let mut broken = events[0].json();
    broken["type"] = "begin".into();
    assert!(validate_against_schema(event_schema(), &broken).is_err());

    // Every event is reported as acknowledged, and the outbox ends empty, on disk too.
    let mut acked = Vec::new();
    let deadline = Instant::now() + LONG;
    while acked.len() < sent.len() && Instant::now() < deadline {
        if let Ok(d) = delivered.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(d.event().unwrap(), sent[acked.len()]);
            acked.push(d.seq);
        }
    }
    assert_eq!(acked, seqs, "delivery notifications, in order");
    wait_until("an empty outbox", LONG, || {
        publisher.stats().outbox_depth == 0
    });
    assert_eq!(journal_pending(&outbox_dir).len(), 0);

    // Health: retained JSON that validates, with the publisher's own outbox numbers.
    let health = Health {
        schema: HealthSchema,
        device: device.into(),
        sent_at: rfc3339_utc(std::time::SystemTime::now()),
        interval_s: 10,
        uptime_s: 12,
        cameras: vec![CameraHealth {
            camera: "cam0".into(),
            state: CameraState::Streaming,
            fps: 9.5,
            frames: 120,
            dropped_frames: 3,
            queue_depth: 1,
            frames_rejected: 2,
            last_rejection: Some("frame file 9.jpg skipped: it is empty".into()),
        }],
        outbox_depth: 999,
        outbox_dropped: 999,
        outbox_corrupt: 999,
        outbox_error: Some("stale".into()),
        broker: BrokerState::Disconnected,
    };
    publisher.publish_health(&health).unwrap();
    let got = sub
        .wait_for(|m| m.iter().any(|m| m.topic == "vigil/box-a/health"), LONG)
        .expect("health should arrive");
    let h = got
        .iter()
        .find(|m| m.topic == "vigil/box-a/health")
        .unwrap()
        .json();
    validate_against_schema(health_schema(), &h).unwrap();
    assert_eq!(h["outbox_depth"], 0);
    assert_eq!(h["outbox_dropped"], 0);
    assert_eq!(h["broker"], "connected");
    assert_eq!(h["cameras"][0]["state"], "streaming");
    let late = Subscriber::start(broker.port(), "vigil/box-a/health");
    late.wait_for(|m| !m.is_empty(), LONG)
        .expect("health is retained: a late subscriber gets it");

    let report = publisher.shutdown(Duration::from_secs(20));
    assert_eq!(report.outbox_depth, 0);
    assert!(report.stopped_published);
}

#[test]
fn events_published_during_a_broker_outage_arrive_in_order_after_it_returns() {
    init_logging();
    // Persistent broker so that the subscriber's session (and what is queued for it) survives
    // the restart: see Mosquitto::start_persistent.
    let mut broker = Mosquitto::start_persistent();
    let sub = Subscriber::start(broker.port(), "vigil/box-b/+/events");
    let dir = tempfile::tempdir().unwrap();
    let outbox_dir = dir.path().join("outbox");
    let device = "box-b";
    let publisher = Publisher::start(
        &config(broker.port(), device),
        Outbox::open(&outbox_dir, 1000).unwrap(),
    )
    .unwrap();

    let warm_up = event(device, "cam0", &EventMessage::new_id(), EventKind::Start, 1);
    publisher.publish_event(&warm_up).unwrap();
    sub.wait_for(|m| !deduplicated_events(m).is_empty(), LONG)
        .expect("the warm-up event should arrive while the broker is up");
    wait_until("the warm-up event to be acknowledged", LONG, || {
        publisher.stats().outbox_depth == 0
    });

    broker.stop();
    wait_until("the publisher to notice the outage", LONG, || {
        !publisher.is_connected()
    });

    const N: u64 = 25;
    let sent: Vec<EventMessage> = (0..N)
        .map(|i| {
            event(
                device,
                "cam0",
                &EventMessage::new_id(),
                EventKind::Start,
                10 + i,
            )
        })
        .collect();
    for e in &sent {
        publisher
            .publish_event(e)
            .expect("publish_event must succeed while the broker is down");
    }
    // Nothing can be acknowledged without a broker: all N wait on disk.
    assert_eq!(publisher.stats().outbox_depth, N as usize);
    assert_eq!(journal_pending(&outbox_dir).len(), N as usize);
    assert!(!publisher.is_connected());
    // Keep the broker away long enough for several reconnect attempts to fail.
    thread::sleep(Duration::from_secs(2));
    assert!(!publisher.is_connected());

    broker.restart();
    let ids: HashSet<String> = sent.iter().map(|e| e.id.clone()).collect();
    let got = sub
        .wait_for(
            |m| {
                let seen: HashSet<String> =
                    deduplicated_events(m).into_iter().map(|e| e.id).collect();
                ids.is_subset(&seen)
            },
            Duration::from_secs(120),
        )
        .expect("every event spooled during the outage should arrive after the broker returns");
    let received: Vec<EventMessage> = deduplicated_events(&got)
        .into_iter()
        .filter(|e| ids.contains(&e.id))
        .collect();
    assert_eq!(
        received, sent,
        "all N, in order, after de-duplication on id"
    );
    for m in got.iter().filter(|m| m.topic.ends_with("/events")) {
        validate_against_schema(event_schema(), &m.json()).unwrap();
    }

    wait_until("the outbox to drain after reconnecting", LONG, || {
        publisher.stats().outbox_depth == 0
    });
    assert_eq!(journal_pending(&outbox_dir).len(), 0);
    assert_eq!(publisher.stats().outbox_dropped, 0);
    assert!(publisher.is_connected());
    let report = publisher.shutdown(Duration::from_secs(20));
    assert_eq!(report.outbox_depth, 0);
}

#[test]
fn events_lost_in_flight_by_a_network_partition_are_resent_in_order() {
    init_logging();
    // The broker stays up; only the device's link to it fails. The subscriber is connected to
    // the broker directly, so it sees exactly what reached the broker.
    let broker = Mosquitto::start();
    let link = FlakyLink::start(broker.port());
    let sub = Subscriber::start(broker.port(), "vigil/box-f/+/events");
    let dir = tempfile::tempdir().unwrap();
    let outbox_dir = dir.path().join("outbox");
    let device = "box-f";
    let publisher = Arc::new(
        Publisher::start(
            &config(link.port(), device),
            Outbox::open(&outbox_dir, 10_000).unwrap(),
        )
        .unwrap(),
    );
    let delivered = publisher.delivered();

    // A steady stream of events produced across the partition, as a camera would.
    const N: u64 = 300;
    let sent: Vec<EventMessage> = (0..N)
        .map(|i| event(device, "cam0", &EventMessage::new_id(), EventKind::Start, i))
        .collect();
    let producer = {
        let publisher = publisher.clone();
        let sent = sent.clone();
        thread::spawn(move || {
            for e in &sent {
                publisher.publish_event(e).unwrap();
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    for _ in 0..30 {
        delivered
            .recv_timeout(LONG)
            .expect("the first events should be acknowledged while the link is up");
    }
    // Partition in the middle of the stream: what the publisher writes now is lost, and so
    // are the broker's PUBACKs. Only the outbox can save those messages.
    link.blackhole();
    thread::sleep(Duration::from_millis(500));
    let depth_during_partition = publisher.stats().outbox_depth;
    link.cut();
    wait_until("the publisher to notice the cut", LONG, || {
        !publisher.is_connected()
    });
    thread::sleep(Duration::from_millis(500));
    link.heal();
    producer.join().unwrap();
    assert!(
        depth_during_partition > 0,
        "nothing was waiting during the partition"
    );

    let ids: HashSet<String> = sent.iter().map(|e| e.id.clone()).collect();
    let got = sub
        .wait_for(
            |m| {
                let seen: HashSet<String> =
                    deduplicated_events(m).into_iter().map(|e| e.id).collect();
                ids.is_subset(&seen)
            },
            Duration::from_secs(120),
        )
        .expect("every event should reach the broker despite the partition");
    assert_eq!(
        deduplicated_events(&got),
        sent,
        "in order after de-duplication"
    );
    wait_until("the outbox to drain", LONG, || {
        publisher.stats().outbox_depth == 0
    });
    assert_eq!(journal_pending(&outbox_dir).len(), 0);
    assert!(
        publisher
            .shutdown(Duration::from_secs(20))
            .stopped_published
    );
}

#[test]
fn unacknowledged_events_survive_a_publisher_restart() {
    init_logging();
    let mut broker = Mosquitto::start_persistent();
    let sub = Subscriber::start(broker.port(), "vigil/box-r/+/events");
    let dir = tempfile::tempdir().unwrap();
    let outbox_dir = dir.path().join("outbox");
    let device = "box-r";
    broker.stop();

    // First run: the broker is down the whole time; shutdown gives up after its timeout.
    let first_run = Publisher::start(
        &config(broker.port(), device),
        Outbox::open(&outbox_dir, 1000).unwrap(),
    )
    .unwrap();
    let sent: Vec<EventMessage> = (0..5)
        .map(|i| event(device, "cam0", &EventMessage::new_id(), EventKind::Start, i))
        .collect();
    for e in &sent {
        first_run.publish_event(e).unwrap();
    }
    let report = first_run.shutdown(Duration::from_secs(1));
    assert_eq!(report.outbox_depth, 5);
    assert!(!report.stopped_published);
    drop(first_run);
    assert_eq!(journal_pending(&outbox_dir).len(), 5);

    // Second run, broker back: the backlog goes out first, in order.
    broker.restart();
    let second_run = Publisher::start(
        &config(broker.port(), device),
        Outbox::open(&outbox_dir, 1000).unwrap(),
    )
    .unwrap();
    let later = event(
        device,
        "cam0",
        &EventMessage::new_id(),
        EventKind::Start,
        99,
    );
    second_run.publish_event(&later).unwrap();
    let got = sub
        .wait_for(|m| deduplicated_events(m).len() >= 11, LONG)
        .expect("the backlog of the first run should be delivered by the second");
    let got = deduplicated_events(&got);
    assert_eq!(got.len(), 11, "{got:#?}");
    assert_eq!(&got[..5], &sent[..], "the backlog first, in order");
    // The first run's five anomalies never ended: the second run closes each (reason
    // `restart`, at its last frame) after the backlog and before anything of its own.
    for (end, start) in got[5..10].iter().zip(&sent) {
        assert_eq!(
            (end.kind, &end.id, end.frame, end.reason),
            (
                EventKind::End,
                &start.id,
                start.frame,
                Some(EndReason::Restart)
            )
        );
        assert_eq!(end.started_at, start.started_at);
        assert!(end.ended_at.is_some());
    }
    assert_eq!(got[10], later);
    wait_until("the outbox to drain", LONG, || {
        second_run.stats().outbox_depth == 0
    });
    assert_eq!(journal_pending(&outbox_dir).len(), 0);
    assert!(
        second_run
            .shutdown(Duration::from_secs(20))
            .stopped_published
    );
}

#[test]
fn retained_status_is_online_then_stopped_after_a_clean_shutdown() {
    init_logging();
    let broker = Mosquitto::start();
    let device = "box-c";
    let sub = Subscriber::start(broker.port(), "vigil/box-c/status");
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::start(
        &config(broker.port(), device),
        Outbox::open(dir.path().join("outbox"), 100).unwrap(),
    )
    .unwrap();
    sub.wait_for(
        |m| statuses(m, device).last().map(String::as_str) == Some("online"),
        LONG,
    )
    .expect("status should become online");
    let late = Subscriber::start(broker.port(), "vigil/box-c/status");
    late.wait_for(|m| statuses(m, device) == ["online"], LONG)
        .expect("online is retained");

    let report = publisher.shutdown(Duration::from_secs(20));
    assert!(report.stopped_published, "{report:?}");
    assert!(report.clean_disconnect, "{report:?}");
    sub.wait_for(
        |m| statuses(m, device).last().map(String::as_str) == Some("stopped"),
        LONG,
    )
    .expect("status should become stopped after shutdown");

    // Retained, and not overwritten by the last will (a clean DISCONNECT cancels it).
    let after = Subscriber::start(broker.port(), "vigil/box-c/status");
    let seen = after
        .wait_for(|m| !m.is_empty(), LONG)
        .expect("a subscriber after the stop gets the retained status");
    assert_eq!(statuses(&seen, device), ["stopped"]);
    assert!(
        !statuses(&sub.messages(), device).contains(&"offline".to_string()),
        "the will fired after a clean shutdown: {:?}",
        sub.messages()
    );
}

/// The will test's name in the test binary (tests/integration.rs makes this file a module).
const WILL_TEST: &str =
    "mqtt_outbox::last_will_offline_is_published_when_the_publishing_process_dies";
const CHILD_PORT_ENV: &str = "VIGIL_TEST_WILL_CHILD_PORT";
const CHILD_OUTBOX_ENV: &str = "VIGIL_TEST_WILL_CHILD_OUTBOX";
const CHILD_READY: &str = "VIGIL_WILL_CHILD_READY";

/// The child role of the will test: a process that publishes and is then killed (SIGKILL) by
/// the parent, so it never sends DISCONNECT — a real crash.
fn run_will_child(port: &str) -> ! {
    let port: u16 = port.parse().expect("child: bad port");
    let outbox = env::var(CHILD_OUTBOX_ENV).expect("child: no outbox directory");
    let publisher =
        Publisher::start(&config(port, "box-w"), Outbox::open(outbox, 100).unwrap()).unwrap();
    let deadline = Instant::now() + LONG;
    while !publisher.is_connected() {
        if Instant::now() > deadline {
            eprintln!("child: never connected to the broker");
            std::process::exit(3);
        }
        thread::sleep(Duration::from_millis(20));
    }
    println!("{CHILD_READY}");
    // Wait to be killed; exit on our own only if the parent vanished.
    thread::sleep(Duration::from_secs(300));
    std::process::exit(4);
}

#[test]
fn last_will_offline_is_published_when_the_publishing_process_dies() {
    if let Ok(port) = env::var(CHILD_PORT_ENV) {
        run_will_child(&port);
    }
    init_logging();
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "vigil/box-w/status");
    let dir = tempfile::tempdir().unwrap();

    // Re-run this very test binary, filtered to this test, in the child role.
    let exe = env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([WILL_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_PORT_ENV, broker.port().to_string())
        .env(CHILD_OUTBOX_ENV, dir.path().join("outbox"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot re-run the test binary as a child process");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(CHILD_READY) {
                let _ = tx.send(());
            }
        }
    });
    if let Err(e) = rx.recv_timeout(LONG) {
        let _ = child.kill();
        let status = child.wait();
        panic!("the child publisher never became ready ({e:?}); exit status {status:?}");
    }
    sub.wait_for(
        |m| statuses(m, "box-w").last().map(String::as_str) == Some("online"),
        LONG,
    )
    .expect("the child's status should be online");

    child.kill().unwrap();
    child.wait().unwrap();

    sub.wait_for(
        |m| statuses(m, "box-w").last().map(String::as_str) == Some("offline"),
        LONG,
    )
    .expect("the broker should publish the last will `offline` when the process dies");
    let late = Subscriber::start(broker.port(), "vigil/box-w/status");
    let seen = late
        .wait_for(|m| !m.is_empty(), LONG)
        .expect("the will is retained");
    assert_eq!(statuses(&seen, "box-w"), ["offline"]);
}

#[test]
fn invalid_events_are_refused_before_they_reach_the_outbox() {
    init_logging();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let outbox_dir = dir.path().join("outbox");
    let publisher = Publisher::start(
        &config(broker.port(), "box-v"),
        Outbox::open(&outbox_dir, 10).unwrap(),
    )
    .unwrap();
    let good = event(
        "box-v",
        "cam0",
        &EventMessage::new_id(),
        EventKind::Start,
        1,
    );
    let mut bad_camera = good.clone();
    bad_camera.camera = "cam/0".into();
    let err = publisher
        .publish_event(&bad_camera)
        .unwrap_err()
        .to_string();
    assert!(err.contains("camera") && err.contains("'/'"), "{err}");
    let mut bad_score = good.clone();
    bad_score.peak_score = f32::INFINITY;
    assert!(publisher.publish_event(&bad_score).is_err());
    assert_eq!(publisher.stats().outbox_depth, 0);
    assert_eq!(journal_pending(&outbox_dir).len(), 0);
    publisher.shutdown(Duration::from_secs(20));
}
