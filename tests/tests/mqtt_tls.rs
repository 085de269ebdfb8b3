//! MQTT over TLS against a real mosquitto with a TLS listener that requires a client
//! certificate and a password; certificates are made by `openssl` for each run. A consumer on
//! the broker's plain loopback listener observes what arrives.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use vigil_daemon::mqtt::message::{rfc3339_utc, EventKind, EventMessage, EventSchema};
use vigil_daemon::mqtt::security::TlsConfig;
use vigil_daemon::mqtt::{MqttConfig, Outbox, Publisher};
use vigil_tests::{free_port, Mosquitto, Subscriber};

const USER: &str = "vigil-box";
const PASSWORD: &str = "correct horse battery staple";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("\n\n*** `openssl` is needed to make test certificates ({e}): apt-get install openssl ***\n\n")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server and a client certificate signed by it, in `dir`.
fn make_pki(dir: &Path, ca_name: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        ca_name,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
        ("client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"),
    ] {
        let mut req = vec!["req"];
        req.extend(ec);
        let (key, csr, pem, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN=vigil-test-{name}");
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req);
        fs::write(dir.join(&extfile), ext).unwrap();
        openssl(
            dir,
            &[
                "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", &pem, "-days", "2", "-extfile", &extfile,
            ],
        );
    }
    // mosquitto drops to its own user when started as root: it must read its files.
    for f in fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

struct TlsBroker {
    broker: Mosquitto,
    tls_port: u16,
    pki: PathBuf,
}

fn start_tls_broker() -> TlsBroker {
    let tls_port = free_port();
    let mut pki = None;
    let broker = Mosquitto::start_edited(false, |conf, broker_dir| {
        let dir = broker_dir.join("pki");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        make_pki(&dir, "/CN=vigil-test-ca");
        let passwd = dir.join("passwd");
        fs::write(&passwd, "").unwrap();
        let out = Command::new("mosquitto_passwd")
            .args(["-b"])
            .arg(&passwd)
            .args([USER, PASSWORD])
            .output()
            .expect("mosquitto_passwd (package mosquitto) is needed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::set_permissions(&passwd, fs::Permissions::from_mode(0o644)).unwrap();
        let d = dir.display();
        let text = format!(
            "per_listener_settings true\n{conf}\nlistener {tls_port} 127.0.0.1\n\
             cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             require_certificate true\npassword_file {d}/passwd\nallow_anonymous false\n"
        );
        pki = Some(dir);
        text
    });
    TlsBroker {
        broker,
        tls_port,
        pki: pki.expect("the config edit ran"),
    }
}

/// A client-side copy of the secrets with the modes a box would use.
fn client_files(pki: &Path, into: &Path, password_mode: u32) -> (TlsConfig, PathBuf) {
    for f in ["ca.pem", "client.pem", "client.key"] {
        fs::copy(pki.join(f), into.join(f)).unwrap();
    }
    fs::set_permissions(into.join("client.key"), fs::Permissions::from_mode(0o600)).unwrap();
    let pw = into.join("mqtt-password");
    fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    fs::set_permissions(&pw, fs::Permissions::from_mode(password_mode)).unwrap();
    (
        TlsConfig {
            ca: into.join("ca.pem"),
            cert: Some(into.join("client.pem")),
            key: Some(into.join("client.key")),
        },
        pw,
    )
}

fn config(port: u16, tls: TlsConfig, password_file: PathBuf) -> MqttConfig {
    let mut c = MqttConfig::new("127.0.0.1", "tls-box");
    c.port = port;
    c.keep_alive_s = 5;
    c.username = Some(USER.into());
    c.password_file = Some(password_file);
    c.tls = Some(tls);
    c
}

fn event(frame: u64) -> EventMessage {
    let now = rfc3339_utc(std::time::SystemTime::now());
    EventMessage {
        schema: EventSchema,
        id: EventMessage::new_id(),
        kind: EventKind::Start,
        device: "tls-box".into(),
        camera: "cam0".into(),
        model: "ped2-bdfi".into(),
        started_at: now,
        ended_at: None,
        frame,
        score: 0.9,
        peak_score: 0.9,
        threshold: 0.5,
        latency_frames: 1,
        regions: vec![],
        reason: None,
    }
}

#[test]
fn events_travel_over_mutual_tls_with_a_password_from_a_file() {
    let b = start_tls_broker();
    let sub = Subscriber::start(b.broker.port(), "vigil/tls-box/+/events");
    let dir = tempfile::tempdir().unwrap();
    let (tls, pw) = client_files(&b.pki, dir.path(), 0o640);
    let cfg = config(b.tls_port, tls, pw);
    // The secret never reaches a log line through Debug.
    assert!(!format!("{cfg:?}").contains(PASSWORD));
    let p = Publisher::start(&cfg, Outbox::open(dir.path().join("outbox"), 100).unwrap())
        .expect("publisher over TLS");
    let e = event(7);
    p.publish_event(&e).unwrap();
    let got = sub
        .wait_for(|m| !m.is_empty(), Duration::from_secs(30))
        .unwrap_or_else(|e| {
            panic!(
                "nothing arrived over TLS: {e}\nbroker log:\n{}",
                b.broker.log_text()
            )
        });
    assert_eq!(got[0].json()["id"], e.id.as_str());
    assert!(p.shutdown(Duration::from_secs(10)).stopped_published);
    let log = b.broker.log_text();
    assert!(
        log.contains(&format!("u'{USER}'")) || log.contains(USER),
        "the broker did not see the authenticated user:\n{log}"
    );
}

#[test]
fn a_foreign_ca_or_a_wrong_password_never_delivers() {
    let b = start_tls_broker();
    let sub = Subscriber::start(b.broker.port(), "vigil/tls-box/+/events");

    // A CA that did not sign the broker's certificate: the handshake must fail.
    let other = tempfile::tempdir().unwrap();
    make_pki(other.path(), "/CN=some-other-ca");
    let dir = tempfile::tempdir().unwrap();
    let (mut tls, pw) = client_files(&b.pki, dir.path(), 0o600);
    tls.ca = other.path().join("ca.pem");
    let p = Publisher::start(
        &config(b.tls_port, tls, pw),
        Outbox::open(dir.path().join("o1"), 10).unwrap(),
    )
    .unwrap();
    p.publish_event(&event(1)).unwrap();

    // The right CA, the wrong password.
    let dir2 = tempfile::tempdir().unwrap();
    let (tls2, pw2) = client_files(&b.pki, dir2.path(), 0o600);
    fs::write(&pw2, "not the password\n").unwrap();
    let mut cfg2 = config(b.tls_port, tls2, pw2);
    cfg2.client_id = Some("vigil-tls-box-2".into());
    let p2 = Publisher::start(&cfg2, Outbox::open(dir2.path().join("o2"), 10).unwrap()).unwrap();
    p2.publish_event(&event(2)).unwrap();

    thread::sleep(Duration::from_secs(4));
    assert!(sub.messages().is_empty(), "{:?}", sub.messages());
    for p in [&p, &p2] {
        assert!(!p.is_connected());
        assert_eq!(
            p.stats().outbox_depth,
            1,
            "the event must wait in the outbox"
        );
    }
}

#[test]
fn a_password_file_other_users_can_read_is_refused_at_start() {
    let b = start_tls_broker();
    let dir = tempfile::tempdir().unwrap();
    let (tls, pw) = client_files(&b.pki, dir.path(), 0o644);
    let err = Publisher::start(
        &config(b.tls_port, tls, pw),
        Outbox::open(dir.path().join("o"), 10).unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mqtt-password") && err.contains("chmod 640"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
}
