//! The systemd notify protocol against a real `NOTIFY_SOCKET` datagram socket: `vigil run`
//! reports READY=1 once the camera's frames are scored, pings WATCHDOG=1 while the pipeline makes
//! progress, and stops pinging within one watchdog period once the camera hangs (the synthetic
//! source's `stall_after` fault injection: the capture thread blocks forever, like a stuck
//! driver). No broker is needed: events wait in the outbox.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WATCHDOG: Duration = Duration::from_millis(1500);

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn watchdog_pings_follow_pipeline_progress_and_stop_on_a_stall() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    // A port nobody listens on: the publisher keeps retrying, the pipeline does not care.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mqtt]
host = "127.0.0.1"
port = {port}
device = "watchdog-test"

[outbox]
dir = "{outbox}"

[[camera]]
name = "stuck"
model = "{model}"
source = {{ kind = "synthetic", fps = 20.0, realtime = true, stall_after = 40 }}
"#,
            outbox = dir.path().join("outbox").display(),
            model = repo().join("engine/models/ped2-bdfi").display(),
        ),
    )
    .unwrap();
    let log_path = dir.path().join("vigil.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
        .env("VIGIL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start vigil");

    let start = Instant::now();
    let mut ready_at = None;
    let mut pings: Vec<Instant> = Vec::new();
    let mut statuses: Vec<String> = Vec::new();
    let mut stall_seen_at = None;
    let mut buf = [0u8; 4096];
    // Collect until the stall has been visible for 3 watchdog periods, or give up after 120 s.
    while start.elapsed() < Duration::from_secs(120) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            for line in msg.lines() {
                match line {
                    "READY=1" => ready_at = ready_at.or(Some(Instant::now())),
                    "WATCHDOG=1" => pings.push(Instant::now()),
                    l if l.starts_with("STATUS=") => statuses.push(l.to_owned()),
                    _ => {}
                }
            }
        }
        if stall_seen_at.is_none() {
            let mut log = String::new();
            if let Ok(mut f) = std::fs::File::open(&log_path) {
                let _ = f.read_to_string(&mut log);
            }
            if log.contains("stalling on purpose") {
                stall_seen_at = Some(Instant::now());
            }
        }
        if stall_seen_at.is_some_and(|t| t.elapsed() > WATCHDOG * 3) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "vigil exited early ({status}):\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
    }
    // SIGTERM with a camera stuck in its source: vigil abandons the stuck thread after its grace,
    // flushes and exits with an error (so Restart=on-failure applies) instead of hanging until
    // the service manager's SIGKILL.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(term.success());
    let sent = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if sent.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("vigil did not exit within 40 s of SIGTERM\n{log}"));
    assert!(
        !status.success(),
        "a stuck camera must make the exit an error: {status}\n{log}"
    );
    assert!(log.contains("did not stop within"), "{log}");
    let sd: Vec<String> = {
        let mut v = Vec::new();
        while let Ok(n) = sock.recv(&mut buf) {
            v.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        v
    };
    assert!(
        sd.iter().any(|m| m.contains("STOPPING=1")),
        "no STOPPING=1 after SIGTERM: {sd:?}"
    );

    let ready_at = ready_at.unwrap_or_else(|| panic!("no READY=1 was sent\n{log}"));
    let stall_at = stall_seen_at.unwrap_or_else(|| panic!("the source never stalled\n{log}"));
    assert!(
        statuses
            .iter()
            .any(|s| s.contains("stuck: streaming") && s.contains("fps")),
        "STATUS lines: {statuses:?}"
    );
    let before: Vec<_> = pings
        .iter()
        .filter(|t| **t >= ready_at && **t < stall_at)
        .collect();
    assert!(
        before.len() >= 2,
        "expected watchdog pings while frames flowed, got {} ({:?} between READY and the stall)\n{log}",
        before.len(),
        stall_at - ready_at
    );
    assert!(
        pings.iter().all(|t| *t >= ready_at),
        "a WATCHDOG=1 came before READY=1"
    );
    let last = *pings.last().unwrap();
    assert!(
        last < stall_at + WATCHDOG,
        "pings went on {:?} after the stall (watchdog period {WATCHDOG:?})\n{log}",
        last - stall_at
    );
    assert!(
        log.contains("has made no progress"),
        "the stall was not logged:\n{log}"
    );
}
