//! End to end: Ped2 test video 01 replayed through `vigil run` (the real binary, the shipped
//! BDFI package) into a real mosquitto; an independent client (`mosquitto_sub`) receives the
//! events, each is validated against the published JSON Schema, and the detected anomaly must
//! overlap the labelled one (frames 60-179, a bicycle) with no event before frame 40; and the
//! events published are exactly those `vigil eval` counts for the video.

use std::process::Command;
use std::time::Duration;
use vigil_tests::{
    ped2_root, repo_root, validate_against_schema, vigil_bin, Mosquitto, Subscriber,
};

#[test]
fn ped2_video_01_yields_a_schema_valid_event_over_the_bicycle() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "vigil/#");
    let dir = tempfile::tempdir().unwrap();
    let frames = ped2_root().join("testing/frames/01");
    let model = repo_root().join("engine/models/ped2-bdfi");
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mqtt]
host = "127.0.0.1"
port = {port}
device = "ci-box"

[outbox]
dir = "{outbox}"

[health]
interval_s = 1

[[camera]]
name = "ped2-01"
model = "{model}"
source = {{ kind = "dir", path = "{frames}" }}
"#,
            port = broker.port(),
            outbox = dir.path().join("outbox").display(),
            model = model.display(),
            frames = frames.display(),
        ),
    )
    .unwrap();

    let out = Command::new(vigil_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("VIGIL_LOG", "info")
        .output()
        .expect("run vigil");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vigil run failed: {log}");

    // Wait for the end message of at least one event, then collect everything.
    sub.wait_for(
        |ms| {
            ms.iter()
                .any(|m| m.topic.ends_with("/events") && m.json()["type"] == "end")
        },
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("no `end` event message: {e}\nvigil log:\n{log}"));
    std::thread::sleep(Duration::from_millis(500));
    let msgs = sub.messages();

    let event_schema = repo_root().join("docs/schemas/vigil.event-1.schema.json");
    let health_schema = repo_root().join("docs/schemas/vigil.health-1.schema.json");
    let mut events = Vec::new();
    let mut saw_health = false;
    for m in &msgs {
        if m.topic == "vigil/ci-box/ped2-01/events" {
            let v = m.json();
            validate_against_schema(&event_schema, &v).unwrap_or_else(|e| panic!("{e}"));
            events.push(v);
        } else if m.topic == "vigil/ci-box/health" {
            validate_against_schema(&health_schema, &m.json()).unwrap_or_else(|e| panic!("{e}"));
            saw_health = true;
        }
    }
    assert!(saw_health, "no health message was published; got {msgs:?}");
    assert!(
        !events.is_empty(),
        "no event was published; vigil log:\n{log}"
    );

    // De-duplicate (delivery is at least once) and pair starts with ends.
    let mut spans = std::collections::BTreeMap::new();
    for e in &events {
        let id = e["id"].as_str().unwrap().to_owned();
        // `frame` of a start message is the frame on which the event was declared; of an end
        // message, the frame on which it was closed.
        let frame = e["frame"].as_u64().unwrap();
        let entry = spans.entry(id).or_insert((u64::MAX, None));
        match e["type"].as_str().unwrap() {
            "start" => entry.0 = entry.0.min(frame),
            "end" => entry.1 = Some(frame),
            _ => {}
        }
    }
    for (id, (start, end)) in &spans {
        assert!(
            *start >= 40,
            "event {id} starts at frame {start}, before frame 40 (the video is normal there)"
        );
        assert!(
            end.is_some(),
            "event {id} never ended (the stream ended, so it must have been closed)"
        );
    }
    let overlaps = spans
        .values()
        .any(|(s, e)| *s <= 179 && e.unwrap_or(u64::MAX) >= 60);
    assert!(
        overlaps,
        "no event overlaps the labelled anomaly 60-179: {spans:?}"
    );

    // `vigil eval` counts the daemon's events: the same (start, end) message frames.
    let eval = Command::new(vigil_bin())
        .args(["eval", "--json", "--videos", "01", "--model"])
        .arg(&model)
        .arg("--dataset")
        .arg(ped2_root())
        .output()
        .expect("run vigil eval");
    assert!(
        eval.status.success(),
        "vigil eval failed: {}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    let counted: std::collections::BTreeSet<(u64, u64)> = report["videos"][0]["events"]
        .as_array()
        .expect("eval reports the video's events")
        .iter()
        .map(|e| {
            (
                e["started_on"].as_u64().unwrap(),
                e["ended_on"].as_u64().unwrap(),
            )
        })
        .collect();
    let published: std::collections::BTreeSet<(u64, u64)> = spans
        .values()
        .map(|(s, e)| (*s, e.expect("checked above")))
        .collect();
    assert_eq!(
        published, counted,
        "the daemon published other events than `vigil eval` counts"
    );
    assert_eq!(
        report["events"]["episodes_detected"].as_u64(),
        Some(u64::from(overlaps)),
        "{}",
        report["events"]
    );

    // The retained status ends as `stopped` after the clean exit.
    let status: Vec<_> = msgs
        .iter()
        .filter(|m| m.topic == "vigil/ci-box/status")
        .map(|m| m.payload.as_str())
        .collect();
    assert_eq!(
        status.last(),
        Some(&"stopped"),
        "status messages: {status:?}"
    );
}

/// Issue 22: `vigil check` refuses exactly what `vigil run` refuses at start, with the same
/// message, and a refused `run` never reaches the broker (no retained `stopped` left behind).
#[test]
fn check_and_run_refuse_the_same_configs_before_connecting() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-frames");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "not a frame").unwrap();
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "x").unwrap();
    let frames = ped2_root().join("testing/frames/01");
    let model = repo_root().join("engine/models/ped2-bdfi");
    let dir_source =
        |p: &std::path::Path| format!("{{ kind = \"dir\", path = \"{}\" }}", p.display());
    let open_secret = dir.path().join("mqtt-password");
    std::fs::write(&open_secret, "hunter2\n").unwrap();
    std::fs::set_permissions(
        &open_secret,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let no_extra = String::new();
    let readable_password = format!(
        "username = \"vigil\"\npassword_file = \"{}\"\n",
        open_secret.display()
    );
    // (what is wrong, outbox dir, model dir, source, extra [mqtt] lines, the words both say)
    type Case<'a> = (
        &'a str,
        std::path::PathBuf,
        std::path::PathBuf,
        String,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "password file readable by others",
            dir.path().join("outbox"),
            model.clone(),
            dir_source(&frames),
            &readable_password,
            "chmod",
        ),
        (
            "missing frames directory",
            dir.path().join("outbox"),
            model.clone(),
            dir_source(&dir.path().join("nowhere")),
            &no_extra,
            "does not exist",
        ),
        (
            "frames directory without frames",
            dir.path().join("outbox"),
            model.clone(),
            dir_source(&empty),
            &no_extra,
            "holds no image files",
        ),
        (
            "missing model package",
            dir.path().join("outbox"),
            dir.path().join("no-model"),
            dir_source(&frames),
            &no_extra,
            "no-model",
        ),
        (
            "missing ONNX Runtime library",
            dir.path().join("outbox"),
            model.clone(),
            format!(
                "{}\nbackend = {{ kind = \"onnxruntime\", library = \"{}\" }}",
                dir_source(&frames),
                dir.path().join("no-lib/libonnxruntime.so").display()
            ),
            &no_extra,
            "backend.library",
        ),
        (
            "outbox below a file",
            a_file.join("outbox"),
            model.clone(),
            dir_source(&frames),
            &no_extra,
            "set [outbox] dir",
        ),
    ];
    for (i, (what, outbox, model, source, mqtt, says)) in cases.iter().enumerate() {
        let device = format!("refuse-{i}");
        let config = dir.path().join(format!("case{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ndevice = \"{device}\"\n{mqtt}\n\
                 [outbox]\ndir = \"{outbox}\"\n\n[[camera]]\nname = \"cam\"\nmodel = \"{model}\"\n\
                 source = {source}\n",
                port = broker.port(),
                outbox = outbox.display(),
                model = model.display(),
            ),
        )
        .unwrap();
        for cmd in ["check", "run"] {
            let out = Command::new(vigil_bin())
                .args([cmd, "--config"])
                .arg(&config)
                .env("VIGIL_LOG", "info")
                .output()
                .expect("run vigil");
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(
                !out.status.success(),
                "`vigil {cmd}` accepted a {what}:\n{err}"
            );
            assert!(
                err.contains(says),
                "`vigil {cmd}` on a {what} does not say {says:?}:\n{err}"
            );
            assert!(
                !err.contains("MQTT connected"),
                "`vigil {cmd}` connected before refusing a {what}:\n{err}"
            );
        }
        // Nothing about this device is retained at the broker: run never connected.
        let sub = Subscriber::start(broker.port(), &format!("vigil/{device}/#"));
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            sub.messages().is_empty(),
            "a refused start left messages for {device}: {:?}",
            sub.messages()
                .iter()
                .map(|m| (&m.topic, &m.payload))
                .collect::<Vec<_>>()
        );
    }
}
