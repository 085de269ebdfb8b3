//! Faults of issue 7, end to end: the real `vigil` binary replays Ped2 test video 01 with the
//! shipped BDFI package into a real mosquitto, while the broker crashes, vigil is SIGKILLed,
//! the journal is torn, the disk is full, or SIGTERM lands in a burst. An independent client
//! (`mosquitto_sub`, persistent QoS 1 session) is the consumer.
//!
//! "Produced" is what vigil logged as accepted (`event <type> <id> ... (outbox #n)`, written
//! after the outbox took the message); "received" is what the consumer got, de-duplicated on
//! (id, type, frame) as the MQTT contract asks consumers to. Every test asserts that the two
//! lists are equal, in order, and not empty.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use vigil_tests::{
    journal_pending, ped2_root, repo_root, vigil_bin, Message, Mosquitto, Subscriber,
};

const LONG: Duration = Duration::from_secs(90);

/// One event message as a de-duplicating consumer keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Ev {
    kind: String,
    id: String,
    frame: u64,
}

struct Setup {
    dir: tempfile::TempDir,
    device: &'static str,
}

impl Setup {
    fn new(device: &'static str) -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("temporary directory"),
            device,
        }
    }

    fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// Writes a config for camera `ped2-01` reading `source` (a TOML inline table) and returns
    /// its path. Updates go out every `update_every` frames while an event lasts.
    fn config(&self, name: &str, port: u16, source: &str, update_every: u32) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        fs::write(
            &path,
            format!(
                r#"
[mqtt]
host = "127.0.0.1"
port = {port}
device = "{device}"
keep_alive_s = 5

[outbox]
dir = "{outbox}"

[health]
interval_s = 1

[[camera]]
name = "ped2-01"
model = "{model}"
source = {source}
lossless = true
events = {{ on = 0.5, off = 0.35, min_frames_on = 3, min_frames_off = 5, cooldown_frames = 10, update_every_frames = {update_every} }}
"#,
                device = self.device,
                outbox = self.outbox().display(),
                model = repo_root().join("engine/models/ped2-bdfi").display(),
            ),
        )
        .expect("write config");
        path
    }

    fn log(&self, run: &str) -> PathBuf {
        self.dir.path().join(format!("{run}.log"))
    }
}

fn video01(extra: &str) -> String {
    format!(
        "{{ kind = \"dir\", path = \"{}\"{extra} }}",
        ped2_root().join("testing/frames/01").display()
    )
}

/// A vigil process that is killed if the test ends without reaping it (a failed assertion must
/// not leave a replay running on the machine).
struct Vigil(Child);

impl std::ops::Deref for Vigil {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Vigil {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `vigil run` with its log (info) in `log`.
fn spawn(config: &Path, log: &Path) -> Vigil {
    spawn_cmd(
        Command::new(vigil_bin())
            .args(["run", "--config"])
            .arg(config),
        log,
    )
}

fn spawn_cmd(cmd: &mut Command, log: &Path) -> Vigil {
    let file = fs::File::create(log).expect("log file");
    Vigil(
        cmd.env("VIGIL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .spawn()
            .expect("start vigil"),
    )
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

fn wait_exit(child: &mut Child, log: &Path, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for vigil") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "vigil did not exit within {timeout:?}; its log:\n{}",
                read(log)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs vigil on a finite source until it exits by itself, which it must do successfully;
/// returns its log.
fn run_to_end(s: &Setup, name: &str, port: u16, source: &str, update_every: u32) -> String {
    let config = s.config(name, port, source, update_every);
    let log = s.log(name);
    let mut child = spawn(&config, &log);
    let status = wait_exit(&mut child, &log, LONG);
    let text = read(&log);
    assert!(status.success(), "run {name} failed: {status}\n{text}");
    text
}

fn read(log: &Path) -> String {
    fs::read_to_string(log).unwrap_or_default()
}

/// Events vigil accepted, in order, from its log.
fn produced(log: &str) -> Vec<Ev> {
    log.lines()
        .filter(|l| l.contains("(outbox #"))
        .filter_map(|l| {
            let rest = &l[l.find(" event ")? + " event ".len()..];
            let mut w = rest.split_whitespace();
            let kind = w.next()?.to_owned();
            let id = w.next()?.to_owned();
            let frame = rest.split(" frame ").nth(1)?.split_whitespace().next()?;
            Some(Ev {
                kind,
                id,
                frame: frame.parse().ok()?,
            })
        })
        .collect()
}

/// Event messages the consumer got, first occurrence of each key only.
fn received(msgs: &[Message]) -> Vec<Ev> {
    let mut seen = std::collections::HashSet::new();
    msgs.iter()
        .filter(|m| m.topic.ends_with("/events"))
        .map(|m| {
            let v = m.json();
            Ev {
                kind: v["type"].as_str().expect("type").to_owned(),
                id: v["id"].as_str().expect("id").to_owned(),
                frame: v["frame"].as_u64().expect("frame"),
            }
        })
        .filter(|e| seen.insert(e.clone()))
        .collect()
}

/// Waits until the consumer has every produced event, then checks the lists are equal.
fn assert_all_delivered(sub: &Subscriber, want: &[Ev], logs: &str) {
    assert!(
        !want.is_empty(),
        "vigil produced no event; its log:\n{logs}"
    );
    sub.wait_for(|m| received(m).len() >= want.len(), LONG)
        .unwrap_or_else(|e| {
            panic!(
                "only {} of {} produced events arrived: {e}\nvigil log:\n{logs}",
                received(&e.seen).len(),
                want.len()
            )
        });
    // Anything late would be a duplicate or an event nobody produced: give it a moment.
    thread::sleep(Duration::from_millis(500));
    let got = received(&sub.messages());
    assert_eq!(
        got.len(),
        want.len(),
        "received {} events, produced {}",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "event {i} differs (order or content)");
    }
    let raw = sub
        .messages()
        .iter()
        .filter(|m| m.topic.ends_with("/events"))
        .count();
    eprintln!(
        "delivered: {} of {} events produced, in order ({} messages before de-duplication)",
        got.len(),
        want.len(),
        raw
    );
}

/// A crash-safe broker, a scratch directory for `device`, and a consumer of its topics.
fn start(device: &'static str) -> (Mosquitto, Setup, Subscriber) {
    let broker = Mosquitto::start_crash_safe();
    let s = Setup::new(device);
    let sub = Subscriber::start(broker.port(), &format!("vigil/{device}/#"));
    (broker, s, sub)
}

fn health(msgs: &[Message], device: &str) -> Vec<serde_json::Value> {
    let t = format!("vigil/{device}/health");
    msgs.iter()
        .filter(|m| m.topic == t)
        .map(Message::json)
        .collect()
}

/// (a) The broker is SIGKILLed while video 01 is replayed and comes back 10 s later.
#[test]
fn a_broker_killed_mid_replay_loses_no_event() {
    let (mut broker, s, sub) = start("fault-a");
    let config = s.config("a", broker.port(), &video01(", fps = 30.0, loop = true"), 5);
    let log = s.log("a");
    let mut vigil = spawn(&config, &log);
    sub.wait_for(|m| !received(m).is_empty(), LONG)
        .unwrap_or_else(|e| panic!("no first event: {e}\n{}", read(&log)));
    broker.kill();
    let before_outage = produced(&read(&log)).len();
    thread::sleep(Duration::from_secs(10));
    let during_outage = produced(&read(&log)).len() - before_outage;
    broker.restart();
    // Let it deliver the backlog and produce a few more events with the broker back.
    let target = produced(&read(&log)).len() + 3;
    vigil_tests::wait_until("more events after the broker's return", LONG, || {
        produced(&read(&log)).len() >= target
    });
    signal(&vigil, libc::SIGTERM);
    let status = wait_exit(&mut vigil, &log, Duration::from_secs(30));
    let text = read(&log);
    assert!(status.success(), "vigil failed: {status}\n{text}");
    assert!(
        during_outage >= 3,
        "only {during_outage} events were produced during the outage; the test proves nothing"
    );
    assert_all_delivered(&sub, &produced(&text), &text);
    assert!(journal_pending(&s.outbox()).is_empty());
}

/// (b) vigil is SIGKILLed in the middle of an event while the broker is away; the next start
/// delivers what the first run had accepted, before its own events.
#[test]
fn sigkill_mid_event_then_restart_loses_no_event() {
    let (mut broker, s, sub) = start("fault-b");
    let config = s.config("b1", broker.port(), &video01(", fps = 30.0"), 2);
    let log1 = s.log("b1");
    let mut first = spawn(&config, &log1);
    sub.wait_for(|m| received(m).iter().any(|e| e.kind == "start"), LONG)
        .unwrap_or_else(|e| panic!("no start event: {e}\n{}", read(&log1)));
    broker.stop();
    let at_stop = produced(&read(&log1)).len();
    vigil_tests::wait_until("events while the broker is away", LONG, || {
        produced(&read(&log1)).len() >= at_stop + 3
    });
    signal(&first, libc::SIGKILL);
    let _ = first.wait();
    let first_log = read(&log1);
    let pending = journal_pending(&s.outbox());
    assert!(
        pending.len() >= 3,
        "the killed run should have left accepted events in the journal, found {pending:?}"
    );
    broker.restart();
    let second_log = run_to_end(&s, "b2", broker.port(), &video01(""), 2);
    let mut want = produced(&first_log);
    want.extend(produced(&second_log));
    assert_all_delivered(
        &sub,
        &want,
        &format!("{first_log}\n--- restart ---\n{second_log}"),
    );
    assert!(journal_pending(&s.outbox()).is_empty());
}

/// (c) The journal is torn in the middle of its last record (as a power cut leaves it): the
/// next start succeeds, delivers the valid prefix and reports the damage.
#[test]
fn a_journal_torn_mid_record_delivers_its_valid_prefix() {
    let (mut broker, s, sub) = start("fault-c");
    broker.stop();
    // First run with the broker down: every event stays in the journal.
    let first_log = run_to_end(&s, "c1", broker.port(), &video01(""), 10);
    let accepted = produced(&first_log);
    assert!(
        accepted.len() >= 2,
        "too few events to tear one: {first_log}"
    );
    assert_eq!(journal_pending(&s.outbox()).len(), accepted.len());
    let mut segments: Vec<PathBuf> = fs::read_dir(s.outbox())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "journal"))
        .collect();
    segments.sort();
    let last = segments.last().expect("a journal segment");
    let len = fs::metadata(last).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    assert_eq!(journal_pending(&s.outbox()).len(), accepted.len() - 1);

    // Second run, broker back, five normal frames (no event of its own).
    broker.restart();
    let second_log = run_to_end(&s, "c2", broker.port(), &video01(", count = 5"), 10);
    assert!(produced(&second_log).is_empty(), "{second_log}");
    assert!(
        second_log.contains("cut off the remaining"),
        "the damage was not reported:\n{second_log}"
    );
    let want = &accepted[..accepted.len() - 1];
    assert_all_delivered(&sub, want, &second_log);
    let reported = health(&sub.messages(), s.device)
        .iter()
        .any(|h| h["outbox_corrupt"] == 1);
    assert!(reported, "no health message reported outbox_corrupt = 1");
    assert!(journal_pending(&s.outbox()).is_empty());
}

/// (d) The outbox lives on a full filesystem (a 64 KiB tmpfs, filled up, in a private mount
/// namespace): detection goes on, events are still delivered from memory, and the condition
/// is reported in the log and in health.
#[test]
fn a_full_disk_is_reported_and_detection_goes_on() {
    let (broker, s, sub) = start("fault-d");
    fs::create_dir_all(s.outbox()).unwrap();
    let config = s.config("d", broker.port(), &video01(""), 10);
    let log = s.log("d");
    let script = format!(
        "set -e; mount -t tmpfs -o size=64k vigil-full '{outbox}'; \
         dd if=/dev/zero of='{outbox}/filler' bs=4k 2>/dev/null || true; \
         df -k '{outbox}' >&2; exec '{vigil}' run --config '{config}'",
        outbox = s.outbox().display(),
        vigil = vigil_bin().display(),
        config = config.display()
    );
    // Root can mount in a new mount namespace; anyone else needs a user namespace too.
    let ns = if unsafe { libc::geteuid() } == 0 {
        "-m"
    } else {
        "-rm"
    };
    let mut vigil = spawn_cmd(
        Command::new("unshare").args([ns, "sh", "-c", &script]),
        &log,
    );
    let status = wait_exit(&mut vigil, &log, LONG);
    let text = read(&log);
    assert!(
        !text.contains("mount: ") && !text.contains("unshare: "),
        "this test needs `unshare` (util-linux) and permission to mount a tmpfs in a private \
         mount namespace:\n{text}"
    );
    assert!(
        status.success(),
        "vigil failed on a full disk: {status}\n{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        text.contains("No space left on device") && text.contains("kept in memory"),
        "the full disk was not reported:\n{text}"
    );
    assert_all_delivered(&sub, &produced(&text), &text);
    let reported = health(&sub.messages(), s.device).iter().any(|h| {
        h["outbox_error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left"))
    });
    assert!(reported, "no health message carried outbox_error");
}

/// (e) SIGTERM in the middle of an event, with updates going out as often as the detector
/// allows (every frame whose score rises): vigil stops cleanly, closes the open event, and
/// everything it accepted, the closing `end` included, is delivered.
#[test]
fn sigterm_during_a_burst_stops_cleanly_and_loses_nothing() {
    let (broker, s, sub) = start("fault-e");
    let config = s.config("e", broker.port(), &video01(", loop = true"), 1);
    let log = s.log("e");
    let mut vigil = spawn(&config, &log);
    vigil_tests::wait_until("an open event with updates", LONG, || {
        let p = produced(&read(&log));
        p.len() >= 3 && p.last().is_some_and(|e| e.kind == "update")
    });
    signal(&vigil, libc::SIGTERM);
    let status = wait_exit(&mut vigil, &log, Duration::from_secs(30));
    let text = read(&log);
    assert!(
        status.success(),
        "vigil did not stop cleanly: {status}\n{text}"
    );
    assert!(
        text.contains("stopped: 0 event(s) left in the outbox"),
        "{text}"
    );
    let want = produced(&text);
    assert_eq!(
        want.last().map(|e| e.kind.as_str()),
        Some("end"),
        "the open event was not closed at the stop:\n{text}"
    );
    assert_all_delivered(&sub, &want, &text);
    assert!(journal_pending(&s.outbox()).is_empty());
}
