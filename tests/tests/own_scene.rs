//! Issue 17: the whole own-scene path, small enough for CI. A directory camera replaying Ped2
//! training frames stands in for the user's camera; `vigil calib collect` saves footage from it,
//! `vigil-zoo scene` (tiny schedule, bdfi: the cheapest model) turns that footage into a package
//! and a report, `vigil check` accepts a configuration naming the package, and `vigil run`
//! serves it into a real mosquitto, publishing status and health.
//!
//! The Python side is real: the project's virtualenv with `vigil_zoo` (`bash tests/bootstrap.sh
//! test`; `VIGIL_PYTHON` overrides the interpreter). Without it the test fails and says so: a
//! skipped end-to-end test proves nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vigil_tests::{
    ped2_root, repo_root, validate_against_schema, vigil_bin, Mosquitto, Subscriber,
};

fn python() -> PathBuf {
    let p = std::env::var_os("VIGIL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        p.is_file(),
        "\n\n*** {} not found: the own-scene test trains a model with vigil_zoo. Create the \
         Python environment with `bash tests/bootstrap.sh test` (or set VIGIL_PYTHON) ***\n\n",
        p.display()
    );
    p
}

/// A configuration whose one camera replays `frames` (at most `count` files) through `model`.
fn config(dir: &Path, port: u16, model: &Path, frames: &Path, count: usize) -> PathBuf {
    let path = dir.join(format!("vigil-{count}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[mqtt]
host = "127.0.0.1"
port = {port}
device = "scene-box"

[outbox]
dir = "{outbox}"

[health]
interval_s = 1

[[camera]]
name = "yard"
model = "{model}"
source = {{ kind = "dir", path = "{frames}", count = {count} }}
"#,
            outbox = dir.join("outbox").display(),
            model = model.display(),
            frames = frames.display(),
        ),
    )
    .unwrap();
    path
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

fn finite(v: &serde_json::Value, path: &[&str]) -> f64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    let f = x
        .as_f64()
        .unwrap_or_else(|| panic!("report {path:?} is not a number: {x}"));
    assert!(f.is_finite(), "report {path:?} = {f}");
    f
}

#[test]
fn footage_from_a_dir_camera_becomes_a_package_that_vigil_runs() {
    let t0 = Instant::now();
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let camera = ped2_root().join("training/frames/01");
    // The shipped package only names the camera for `calib collect` (it saves frames as the
    // source delivers them; no model runs).
    let shipped = repo_root().join("engine/models/ped2-bdfi");

    // 1. collect two clips of 30 frames from "the user's camera"
    let footage = d.join("footage");
    let collect_cfg = config(d, 1883, &shipped, &camera, 80);
    run_ok(
        Command::new(vigil_bin())
            .args([
                "calib",
                "collect",
                "--clips",
                "2",
                "--clip-frames",
                "30",
                "--skip",
                "10",
            ])
            .arg("--config")
            .arg(&collect_cfg)
            .arg("--out")
            .arg(&footage),
        "vigil calib collect",
    );
    for clip in ["000", "001"] {
        let n = std::fs::read_dir(footage.join("frames").join(clip))
            .unwrap()
            .count();
        assert_eq!(n, 30, "clip {clip} of the collected footage");
    }

    // 2. footage -> package + report, tiny schedule
    let pkg = d.join("yard-bdfi");
    let t_scene = Instant::now();
    let log = run_ok(
        Command::new(&python)
            .args([
                "-m",
                "vigil_zoo",
                "scene",
                "--model",
                "bdfi",
                "--schedule",
                "tiny",
            ])
            .arg("--frames")
            .arg(&footage)
            .arg("--out")
            .arg(&pkg)
            .arg("--vigil")
            .arg(vigil_bin())
            .args(["--device", "cpu", "--threads", "2"])
            .current_dir(repo_root()),
        "vigil-zoo scene (no vigil_zoo? `bash tests/bootstrap.sh test` installs it into .venv)",
    );
    let scene_s = t_scene.elapsed().as_secs_f64();
    for f in ["model.onnx", "model.toml"] {
        assert!(pkg.join(f).is_file(), "the package has no {f}:\n{log}");
    }
    let toml = std::fs::read_to_string(pkg.join("model.toml")).unwrap();
    assert!(
        toml.contains("[calibration]"),
        "the package is not calibrated:\n{toml}"
    );
    let report_dir = d.join("yard-bdfi-report");
    assert!(
        report_dir.join("report.md").is_file(),
        "no report.md:\n{log}"
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report_dir.join("report.json")).expect("report.json"),
    )
    .unwrap();
    // validation = the second clip, never trained on; the epoch chosen on it
    assert_eq!(report["footage"]["val_clips"], serde_json::json!(["001"]));
    assert_eq!(report["footage"]["train_frames"], 30);
    let curve = report["selection"]["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 2, "two epochs in the tiny schedule: {curve:?}");
    for e in curve {
        assert!(e["val_loss"].as_f64().is_some_and(f64::is_finite), "{e}");
        // bdfi is rated on pseudo-anomalies made from the held-out clip
        let auc = e["pseudo_auc"].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&auc), "pseudo-anomaly AUC of {e}");
    }
    // the exported weights are the chosen epoch's, in the package's [params]
    let chosen = report["selection"]["chosen_epoch"].as_u64().unwrap();
    let best = curve
        .iter()
        .filter_map(|e| e["pseudo_auc"].as_f64())
        .fold(f64::MIN, f64::max);
    let rec = curve.iter().find(|e| e["epoch"] == chosen).unwrap();
    assert_eq!(rec["pseudo_auc"].as_f64(), Some(best), "{curve:?}");
    let manifest: toml::Table = std::fs::read_to_string(pkg.join("model.toml"))
        .unwrap()
        .parse()
        .unwrap();
    for k in ["alpha", "flow_weight"] {
        assert_eq!(
            manifest["params"][k].as_float(),
            rec["pseudo_params"][k].as_f64(),
            "[params] {k}"
        );
    }
    assert!(report["validation"]["frames"].as_u64().unwrap() >= 25);
    for q in ["mean", "p50", "p99", "p999", "max"] {
        let s = finite(&report, &["validation", "score", q]);
        assert!((0.0..=1.0).contains(&s), "published score {q} = {s}");
        finite(&report, &["validation", "raw", q]);
    }
    let on = finite(&report, &["threshold", "on"]);
    assert!((0.5..1.0).contains(&on), "recommended on = {on}");
    finite(&report, &["threshold", "raw"]);
    finite(&report, &["false_alarms", "per_hour"]);
    assert_eq!(
        report["false_alarms"]["simulated_at_default"], report["false_alarms"]["events"],
        "the report's hysteresis disagrees with the daemon's events"
    );

    // 3. the package in a configuration: `vigil check`, then `vigil run` into mosquitto
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port(), "vigil/#");
    let cfg = config(d, broker.port(), &pkg, &camera, 40);
    run_ok(
        Command::new(vigil_bin())
            .arg("check")
            .arg("--config")
            .arg(&cfg),
        "vigil check",
    );
    let run_log = run_ok(
        Command::new(vigil_bin())
            .args(["run", "--config"])
            .arg(&cfg)
            .env("VIGIL_LOG", "info"),
        "vigil run",
    );
    sub.wait_for(
        |ms| {
            ms.iter().any(|m| m.topic == "vigil/scene-box/health")
                && ms
                    .iter()
                    .any(|m| m.topic == "vigil/scene-box/status" && m.payload == "stopped")
        },
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("no health and final status: {e}\nvigil log:\n{run_log}"));
    let msgs = sub.messages();
    let health_schema = repo_root().join("docs/schemas/vigil.health-1.schema.json");
    let health: Vec<_> = msgs
        .iter()
        .filter(|m| m.topic == "vigil/scene-box/health")
        .map(|m| m.json())
        .collect();
    for h in &health {
        validate_against_schema(&health_schema, h).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        health.iter().any(|h| h["cameras"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["camera"] == "yard"))),
        "no health message names the camera: {health:?}"
    );
    let status: Vec<_> = msgs
        .iter()
        .filter(|m| m.topic == "vigil/scene-box/status")
        .map(|m| m.payload.as_str())
        .collect();
    assert_eq!(status.first(), Some(&"online"), "status: {status:?}");
    assert_eq!(status.last(), Some(&"stopped"), "status: {status:?}");
    eprintln!(
        "own scene: vigil-zoo scene {scene_s:.0} s, whole test {:.0} s",
        t0.elapsed().as_secs_f64()
    );
}
