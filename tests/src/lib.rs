//! Test harness shared by Vigil's integration tests (`tests/tests/*.rs`).
//!
//! The tests use real things (see "Tests use real things" in the design notes): a real
//! mosquitto broker started per test on a free loopback port, and an independent MQTT client
//! (`mosquitto_sub`) to observe what a consumer would see. When a tool is missing the harness
//! panics with the install command: a test that silently skips proves nothing.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fmt};

use tempfile::TempDir;

/// How long a broker may take to accept connections after being (re)started. Generous: CI
/// machines are shared and slow, and nothing here measures speed.
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a subscriber may take to be subscribed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

const INSTALL_HINT: &str = "apt-get install mosquitto mosquitto-clients";

/// The workspace root (the directory holding `docs/`, `firmware/`, `tests/`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("cannot bind any port on 127.0.0.1")
        .port()
}

/// Polls `cond` every 20 ms until it holds; panics after `timeout` naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A name unique within this machine, for client ids and probe topics.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Finds a program on PATH or in the sbin directories Debian installs daemons to (which are
/// not on a normal user's PATH); panics with the install command if it is missing.
fn find_program(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "\n\n*** `{name}` is not installed. These tests need a real MQTT broker and \
                 client: run `{INSTALL_HINT}` ***\n\n"
            )
        })
}

/// A mosquitto broker on 127.0.0.1, killed when dropped.
pub struct Mosquitto {
    port: u16,
    dir: TempDir,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts mosquitto on a free port with `persistence false`: a restart forgets sessions and
    /// retained messages.
    pub fn start() -> Mosquitto {
        Self::start_with(false)
    }

    /// Starts mosquitto with persistence in its temporary directory, so that a graceful
    /// [`Mosquitto::stop`] / [`Mosquitto::restart`] keeps persistent sessions (and the QoS 1
    /// messages queued for them) and retained messages, as a production broker does. Outage
    /// tests need this: without it a subscriber's session dies with the broker, and whatever
    /// the device re-sends before the subscriber has re-subscribed is lost to it — a property
    /// of the broker, not of the device under test.
    pub fn start_persistent() -> Mosquitto {
        Self::start_with(true)
    }

    /// As [`Mosquitto::start_persistent`], and the broker also saves its state after every
    /// change, so that even a SIGKILL ([`Mosquitto::kill`]) keeps subscriptions and queued
    /// messages: the fault tests crash the broker and must not blame the device for what a
    /// broker without a saved session forgets.
    pub fn start_crash_safe() -> Mosquitto {
        Self::start_edited(true, |conf, _| {
            conf.replace(
                "autosave_interval 0\n",
                "autosave_on_changes true\nautosave_interval 1\n",
            )
        })
    }

    /// Starts mosquitto with its configuration edited by `edit` (given the default text, with
    /// the plain anonymous listener on [`Mosquitto::port`] first) and the broker's directory
    /// ([`Mosquitto::dir`], removed with it), where `edit` may put certificates and password
    /// files.
    pub fn start_edited(persistent: bool, edit: impl FnOnce(String, &Path) -> String) -> Mosquitto {
        let mut m = Self::start_with(persistent);
        m.stop();
        let conf = fs::read_to_string(&m.conf).expect("cannot read mosquitto.conf");
        let edited = edit(conf, m.dir.path());
        fs::write(&m.conf, edited).expect("cannot write mosquitto.conf");
        m.spawn();
        m
    }

    fn start_with(persistent: bool) -> Mosquitto {
        let dir = tempfile::Builder::new()
            .prefix("vigil-mosquitto-")
            .tempdir()
            .expect("cannot create a temporary directory for mosquitto");
        // mosquitto started as root drops to the `mosquitto` user, which must be able to write
        // its persistence file here.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777))
                .expect("cannot chmod the mosquitto directory");
        }
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\nlog_type all\n"
        );
        if persistent {
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 0\n",
                dir.path().display()
            ));
        } else {
            text.push_str("persistence false\n");
        }
        fs::write(&conf, text).expect("cannot write mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        let mut m = Mosquitto {
            port,
            dir,
            conf,
            log,
            child: None,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "mosquitto is already running");
        let program = find_program("mosquitto");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("cannot open the mosquitto log");
        let mut child = Command::new(&program)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot dup the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; try `{INSTALL_HINT}`",
                    program.display()
                )
            });
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "mosquitto exited while starting ({status}) on port {}; its log:\n{}",
                    self.port,
                    self.log_text()
                );
            }
            if TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mosquitto did not accept connections on port {} within {BROKER_START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the broker process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the broker gracefully (SIGTERM, as systemd does), waiting for it to exit; with
    /// persistence it saves its sessions first. Falls back to SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we spawned and have not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the broker at once (SIGKILL), like a crash or a power cut of the broker host.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port with the same configuration (stopping it
    /// first if it is running).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Everything the broker logged so far (all of its runs).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The broker's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One message seen by a [`Subscriber`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: String,
}

impl Message {
    /// The payload parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or_else(|e| {
            panic!(
                "payload on {} is not JSON ({e}): {}",
                self.topic, self.payload
            )
        })
    }
}

/// [`Subscriber::wait_for`] gave up; carries what was seen, for the failure message.
pub struct WaitTimeout {
    pub timeout: Duration,
    pub seen: Vec<Message>,
    pub client_log: String,
}

impl fmt::Debug for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "condition not met within {:?}; {} message(s) seen:",
            self.timeout,
            self.seen.len()
        )?;
        for m in &self.seen {
            writeln!(f, "  {} {}", m.topic, m.payload)?;
        }
        write!(f, "mosquitto_sub stderr:\n{}", self.client_log)
    }
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for WaitTimeout {}

#[derive(Default)]
struct Inbox {
    messages: Vec<Message>,
    probes: usize,
}

struct SubShared {
    inbox: Mutex<Inbox>,
    changed: Condvar,
    stop: AtomicBool,
    child: Mutex<Option<Child>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An independent MQTT client: `mosquitto_sub -v -q 1 -c` (QoS 1, persistent session),
/// collecting every (topic, payload) line on a thread. If mosquitto_sub exits (e.g. it was
/// started while the broker was down) it is restarted with the same client id, so its
/// session continues.
pub struct Subscriber {
    shared: Arc<SubShared>,
    reader: Option<JoinHandle<()>>,
    _dir: TempDir,
    stderr_log: PathBuf,
}

impl Subscriber {
    /// Subscribes to `filter` on the broker at 127.0.0.1:`port` and returns once the
    /// subscription is active (proven by a probe message making the round trip).
    pub fn start(port: u16, filter: &str) -> Subscriber {
        let program = find_program("mosquitto_sub");
        let publisher = find_program("mosquitto_pub");
        let id = unique("vigil-test-sub");
        let probe_topic = format!("vigil-test/probe/{id}");
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let stderr_log = dir.path().join("mosquitto_sub.stderr");
        let shared = Arc::new(SubShared {
            inbox: Mutex::new(Inbox::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            child: Mutex::new(None),
        });
        let args: Vec<String> = [
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            filter,
            "-t",
            &probe_topic,
            "-v",
            "-q",
            "1",
            "-i",
            &id,
            "-c",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let reader = {
            let shared = shared.clone();
            let stderr_log = stderr_log.clone();
            let probe_topic = probe_topic.clone();
            thread::spawn(move || read_loop(&program, &args, &probe_topic, &shared, &stderr_log))
        };
        let sub = Subscriber {
            shared,
            reader: Some(reader),
            _dir: dir,
            stderr_log,
        };
        // Publish probes until one comes back: then the subscription (made in the same
        // SUBSCRIBE as the filter) is active at the broker.
        let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
        loop {
            let _ = Command::new(&publisher)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
                .args(["-t", &probe_topic, "-m", "probe"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let inbox = lock(&sub.shared.inbox);
            let (inbox, _) = sub
                .shared
                .changed
                .wait_timeout_while(inbox, Duration::from_millis(300), |i| i.probes == 0)
                .unwrap_or_else(|p| p.into_inner());
            if inbox.probes > 0 {
                break;
            }
            drop(inbox);
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub did not subscribe to {filter:?} on port {port} within \
                 {SUBSCRIBE_TIMEOUT:?}; its stderr:\n{}",
                sub.client_log()
            );
        }
        sub
    }

    /// Every message received so far (probe messages excluded), in arrival order.
    pub fn messages(&self) -> Vec<Message> {
        lock(&self.shared.inbox).messages.clone()
    }

    /// Waits until `predicate` holds for the messages received so far; returns them.
    pub fn wait_for(
        &self,
        predicate: impl Fn(&[Message]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Message>, WaitTimeout> {
        let inbox = lock(&self.shared.inbox);
        let (inbox, _) = self
            .shared
            .changed
            .wait_timeout_while(inbox, timeout, |i| !predicate(&i.messages))
            .unwrap_or_else(|p| p.into_inner());
        if predicate(&inbox.messages) {
            Ok(inbox.messages.clone())
        } else {
            Err(WaitTimeout {
                timeout,
                seen: inbox.messages.clone(),
                client_log: self.client_log(),
            })
        }
    }

    /// What mosquitto_sub printed on stderr.
    pub fn client_log(&self) -> String {
        fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(mut child) = lock(&self.shared.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

fn read_loop(
    program: &Path,
    args: &[String],
    probe_topic: &str,
    shared: &SubShared,
    stderr_log: &Path,
) {
    while !shared.stop.load(Ordering::SeqCst) {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr_log)
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let spawned = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                if let Ok(mut f) = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(stderr_log)
                {
                    let _ = writeln!(f, "cannot run {}: {e}", program.display());
                }
                return;
            }
        };
        let stdout = child.stdout.take();
        *lock(&shared.child) = Some(child);
        if let Some(stdout) = stdout {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // `-v` prints "<topic> <payload>"; Vigil topics contain no spaces.
                let (topic, payload) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                let mut inbox = lock(&shared.inbox);
                if topic == probe_topic {
                    inbox.probes += 1;
                } else {
                    inbox.messages.push(Message {
                        topic: topic.to_owned(),
                        payload: payload.to_owned(),
                    });
                }
                drop(inbox);
                shared.changed.notify_all();
            }
        }
        // mosquitto_sub exited (or was killed by Drop): reap it, and restart it unless stopping.
        if let Some(mut child) = lock(&shared.child).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !shared.stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Validates `instance` against the JSON Schema (draft 2020-12, formats asserted) in
/// `schema_path`; the error lists every violation with its location.
pub fn validate_against_schema(
    schema_path: impl AsRef<Path>,
    instance: &serde_json::Value,
) -> Result<(), String> {
    let schema_path = schema_path.as_ref();
    let text = fs::read_to_string(schema_path)
        .map_err(|e| format!("cannot read schema {}: {e}", schema_path.display()))?;
    let schema: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("schema {} is not JSON: {e}", schema_path.display()))?;
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| {
            format!(
                "schema {} is not a valid JSON Schema: {e}",
                schema_path.display()
            )
        })?;
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} violates {}:\n  {}",
            instance,
            schema_path.display(),
            errors.join("\n  ")
        ))
    }
}

/// The `vigil` binary built by this `cargo test` run (`target/<profile>/vigil`, next to the
/// test executable's `deps/` directory). Cargo builds it because the `vigil` package has
/// integration tests of its own; a missing binary is a loud failure, not a skip.
pub fn vigil_bin() -> PathBuf {
    let exe = env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("vigil");
    assert!(
        bin.is_file(),
        "{} does not exist: run the tests with `cargo test --workspace` (which builds the vigil binary) or `cargo build -p vigil` first",
        bin.display()
    );
    bin
}

/// `../shared/datasets/ped2` beside the repository. Tests that replay real video need it; its
/// absence fails the test with the reason (it is provided next to every checkout and in CI).
pub fn ped2_root() -> PathBuf {
    let p = env::var_os("VIGIL_PED2")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/datasets/ped2"));
    assert!(
        p.join("testing/frames/01").is_dir(),
        "the UCSD Ped2 dataset was not found at {} (expected ../shared/datasets/ped2 beside the checkout, or set VIGIL_PED2)",
        p.display()
    );
    p
}

struct LinkShared {
    upstream: u16,
    passing: AtomicBool,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// A TCP relay on 127.0.0.1 between a client and a broker that can fail the way a network does,
/// while the broker itself stays up (so observers connected directly to the broker see
/// everything the broker gets):
///
/// * [`FlakyLink::blackhole`]: bytes in both directions are silently swallowed, as in a
///   partition — messages the client writes never arrive and acknowledgements never come back;
///   new connections are accepted and closed at once.
/// * [`FlakyLink::cut`]: every open connection is closed (the client sees the link drop).
/// * [`FlakyLink::heal`]: traffic flows again.
pub struct FlakyLink {
    port: u16,
    shared: Arc<LinkShared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FlakyLink {
    /// Starts relaying connections on a free port to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> FlakyLink {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind the relay's port");
        let port = listener.local_addr().expect("relay address").port();
        let shared = Arc::new(LinkShared {
            upstream,
            passing: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::spawn(move || {
                for client in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    if !shared.passing.load(Ordering::SeqCst) {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(server) =
                        TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, shared.upstream))
                    else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                        client.try_clone(),
                        server.try_clone(),
                        client.try_clone(),
                        server.try_clone(),
                    ) else {
                        continue;
                    };
                    lock(&shared.conns).extend([c3, s3]);
                    let up = shared.clone();
                    thread::spawn(move || pump(client, server, &up));
                    let down = shared.clone();
                    thread::spawn(move || pump(s2, c2, &down));
                }
            })
        };
        FlakyLink {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The port clients should connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts swallowing all traffic (see the type's docs).
    pub fn blackhole(&self) {
        self.shared.passing.store(false, Ordering::SeqCst);
    }

    /// Closes every open connection.
    pub fn cut(&self) {
        for s in lock(&self.shared.conns).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Lets traffic through again.
    pub fn heal(&self) {
        self.shared.passing.store(true, Ordering::SeqCst);
    }
}

impl Drop for FlakyLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.passing.store(false, Ordering::SeqCst);
        self.cut();
        // Wake the blocking accept so the thread sees `stop`.
        let _ = TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, shared: &LinkShared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Read and dropped while black-holed: the sender believes it was sent.
                if shared.passing.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Sequence numbers of the event messages pending in the outbox journal in `dir`, read straight
/// from the segment files (independently of the `Outbox` that may have them open), in order.
pub fn journal_pending(dir: &Path) -> Vec<u64> {
    use vigil_daemon::mqtt::journal::{decode, Record};
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "journal"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut pending = std::collections::BTreeSet::new();
    for p in names {
        let bytes = fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
        for r in decode(&bytes).records {
            match r {
                Record::Event { seq, .. } => pending.insert(seq),
                Record::Done { seq } => pending.remove(&seq),
            };
        }
    }
    pending.into_iter().collect()
}
