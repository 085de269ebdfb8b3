//! `vigil dataset collect`: a configured camera's footage into the dataset layout, events left
//! out, with the disk checked first. Real binary, real Ped2 frames, the shipped BDFI package.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn demo_frames() -> PathBuf {
    repo().join("firmware/cli/assets/demo/ped2-test01")
}

/// A configuration with one camera `cam0` reading `source` and scored by `model`.
fn config(dir: &Path, source: &str, model: &Path) -> PathBuf {
    let path = dir.join("vigil.toml");
    std::fs::write(
        &path,
        format!(
            "[mqtt]\nhost = \"127.0.0.1\"\ndevice = \"box\"\n\n[outbox]\ndir = \"{}\"\n\n\
             [[camera]]\nname = \"cam0\"\nmodel = \"{}\"\nsource = {source}\n",
            dir.join("outbox").display(),
            model.display()
        ),
    )
    .unwrap();
    path
}

fn bdfi() -> PathBuf {
    repo().join("engine/models/ped2-bdfi")
}

fn dir_source(path: &Path, extra: &str) -> String {
    format!("{{ kind = \"dir\", path = \"{}\"{extra} }}", path.display())
}

fn collect(cfg: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["dataset", "collect", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) {
    assert!(o.status.success(), "vigil failed:\n{}", text(o));
}

fn record(out: &Path) -> Value {
    let bytes = std::fs::read(out.join("collect.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Every saved frame, as (clip name, file name), in order.
fn saved(out: &Path) -> Vec<(String, String)> {
    let mut clips: Vec<_> = std::fs::read_dir(out.join("frames"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    clips.sort();
    let mut all = Vec::new();
    for c in clips {
        let mut files: Vec<_> = std::fs::read_dir(&c)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let name = c.file_name().unwrap().to_string_lossy().into_owned();
        all.extend(files.into_iter().map(|f| (name.clone(), f)));
    }
    all
}

fn clip_sizes(r: &Value) -> Vec<u64> {
    r["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["frames"].as_u64().unwrap())
        .collect()
}

/// `--rate` keeps frames by timestamp (a 30 fps stream at 10 keeps every third), `--frames`
/// stops the run, and `--clip-frames` cuts it into clip folders.
#[test]
fn rate_frames_and_clips() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "{ kind = \"synthetic\", width = 64, height = 48, fps = 30.0, count = 90, output = \"gray\" }",
        &bdfi(),
    );
    let out = dir.path().join("a");
    let o = collect(
        &cfg,
        &out,
        &["--keep-events", "--rate", "10", "--duration", "1h"],
    );
    ok(&o);
    let r = record(&out);
    assert_eq!(r["frames_read"], 90, "{r:#}");
    assert_eq!(r["frames_kept"], 30, "{r:#}");
    assert_eq!(r["frames_dropped_by_rate"], 60, "{r:#}");
    assert_eq!(r["frames_skipped_in_events"], 0, "{r:#}");
    assert_eq!(r["stopped"], "end of the camera's stream", "{r:#}");
    let clip = &r["clips"][0];
    assert_eq!(
        (clip["first_index"].as_u64(), clip["last_index"].as_u64()),
        (Some(0), Some(87))
    );
    assert_eq!(saved(&out).len(), 30);
    let bytes: u64 = saved(&out)
        .iter()
        .map(|(c, f)| {
            std::fs::metadata(out.join("frames").join(c).join(f))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(r["bytes_written"], bytes);
    assert!(
        text(&o).contains("30 frames kept in 1 clips"),
        "{}",
        text(&o)
    );

    let out = dir.path().join("b");
    ok(&collect(
        &cfg,
        &out,
        &["--keep-events", "--frames", "12", "--clip-frames", "5"],
    ));
    let r = record(&out);
    assert_eq!(r["frames_kept"], 12, "{r:#}");
    assert_eq!(r["stopped"], "--frames reached");
    assert_eq!(clip_sizes(&r), vec![5, 5, 2]);
    let files = saved(&out);
    assert_eq!(files[0].1, "0000.png");
    assert_eq!(files[5].1, "0000.png");
    assert_ne!(files[0].0, files[5].0);
    // The frames are the camera's, as delivered.
    let img = image::open(out.join("frames").join(&files[0].0).join(&files[0].1)).unwrap();
    assert_eq!((img.width(), img.height()), (64, 48));
    // An earlier collection is not overwritten.
    let o = collect(&cfg, &out, &["--keep-events", "--frames", "1"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("already holds a collection"),
        "{}",
        text(&o)
    );
}

/// `--duration` counts the stream's time (an unpaced dir replay's timestamps advance at 10 fps).
#[test]
fn duration_on_a_replayed_camera() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &dir_source(&demo_frames(), ", count = 40"),
        &bdfi(),
    );
    let out = dir.path().join("out");
    ok(&collect(&cfg, &out, &["--keep-events", "--duration", "2s"]));
    let r = record(&out);
    assert_eq!(r["frames_kept"], 20, "{r:#}");
    assert_eq!(r["stopped"], "--duration reached");
    assert_eq!(r["geometry"]["width"], 360);
    assert_eq!(r["camera"], "cam0");
    assert!(
        r["source"].as_str().unwrap().contains("ped2-test01"),
        "{r:#}"
    );
}

/// Frames scored inside an event by the camera's model are not saved, and the clip ends there;
/// `--keep-events` keeps them. Ped2 test video 01 from frame 100, looped: the cyclist (from
/// about frame 61) raises an event that lasts to the end of the video; the loop is a new stream,
/// so the event closes and a new clip starts with frame 100 again. Every pass is the same
/// stream, so every clip a pass ends by an event stops at the same frame.
#[test]
fn frames_inside_an_event_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &dir_source(&demo_frames(), ", start = 100, count = 80, loop = true"),
        &bdfi(),
    );
    let out = dir.path().join("out");
    let o = collect(&cfg, &out, &["--frames", "60"]);
    ok(&o);
    let r = record(&out);
    let skipped = r["frames_skipped_in_events"].as_u64().unwrap();
    let events = r["events"].as_u64().unwrap();
    assert!(events >= 1, "{r:#}\n{}", text(&o));
    assert_eq!(r["frames_kept"], 60, "{r:#}");
    let clips = r["clips"].as_array().unwrap();
    let index = |c: &Value, k: &str| c[k].as_u64().unwrap();
    // Each pass but the last stops where the event starts, inside the cyclist's episode; every
    // frame after it in that pass was left out; the loop starts the next clip.
    assert_eq!(clips.len() as u64, events + 1, "{r:#}");
    let last = index(&clips[0], "last_index");
    assert!((110..170).contains(&last), "{r:#}");
    for c in clips {
        assert_eq!(index(c, "first_index"), 100, "{r:#}");
    }
    for c in &clips[..clips.len() - 1] {
        assert_eq!(index(c, "last_index"), last, "{r:#}");
    }
    assert_eq!(skipped, events * (179 - last), "{r:#}");
    assert_eq!(saved(&out).len(), 60);
    assert_eq!(
        r["package"].as_str().map(|p| p.contains("ped2-bdfi")),
        Some(true)
    );

    let out = dir.path().join("all");
    ok(&collect(&cfg, &out, &["--frames", "80", "--keep-events"]));
    let all = record(&out);
    assert_eq!(all["frames_kept"], 80, "{all:#}");
    assert_eq!(all["frames_skipped_in_events"], 0);
    assert_eq!(all["events"], Value::Null);
    assert_eq!(clip_sizes(&all), vec![80]);
}

/// A run that would fill the disk is refused before anything is written, with the numbers and
/// the flags that shrink it.
#[test]
fn a_run_too_large_for_the_disk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &dir_source(&demo_frames(), ""), &bdfi());
    let out = dir.path().join("out");
    let o = collect(&cfg, &out, &["--keep-events", "--frames", "1000000000"]);
    assert!(!o.status.success());
    let t = text(&o);
    for want in [
        "not enough disk space",
        "1000000000 frames of 360x240",
        "--frames",
        "--duration",
        "--rate",
        "free",
    ] {
        assert!(t.contains(want), "missing {want:?}:\n{t}");
    }
    assert!(
        !out.join("frames").exists(),
        "frames written before the refusal"
    );
}

/// A disk that fills up mid-run (a tiny tmpfs, in a private mount namespace) stops the run with
/// a clear message and keeps every frame already written intact. The first frame is black (a
/// tiny PNG), so the estimate passes; the noisy frames after it do not fit.
#[test]
fn a_disk_that_fills_up_mid_run_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("cam");
    std::fs::create_dir_all(&frames).unwrap();
    let (w, h) = (256u32, 192u32);
    let mut seed = 7u32;
    for i in 0..30 {
        let px: Vec<u8> = (0..w * h)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if i == 0 {
                    0
                } else {
                    (seed >> 24) as u8
                }
            })
            .collect();
        image::save_buffer(
            frames.join(format!("{i:03}.png")),
            &px,
            w,
            h,
            image::ExtendedColorType::L8,
        )
        .unwrap();
    }
    let cfg = config(dir.path(), &dir_source(&frames, ""), &bdfi());
    let out = dir.path().join("small");
    std::fs::create_dir_all(&out).unwrap();
    // The tmpfs vanishes with the mount namespace, so the script lists what is left inside it.
    let script = format!(
        "set -e; mount -t tmpfs -o size=512k vigil-small '{out}'; set +e; \
         '{vigil}' dataset collect --config '{cfg}' --out '{out}' --keep-events --frames 30; \
         echo EXIT=$?; ls -R '{out}'; cat '{out}/collect.json'",
        out = out.display(),
        vigil = env!("CARGO_BIN_EXE_vigil"),
        cfg = cfg.display()
    );
    // Root can mount in a new mount namespace; anyone else needs a user namespace too.
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let o = Command::new("unshare")
        .args([if root { "-m" } else { "-rm" }, "sh", "-c", &script])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(
        !t.contains("mount: ") && !t.contains("unshare: "),
        "this test needs `unshare` (util-linux) and permission to mount a tmpfs in a private mount namespace:\n{t}"
    );
    assert!(
        t.contains("EXIT=1"),
        "a full disk did not fail the run:\n{t}"
    );
    assert!(
        t.contains("the disk is full") && t.contains("No space left"),
        "{t}"
    );
    assert!(t.contains("are complete"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    // collect.json was written after the failure, and lists exactly the frames on the disk.
    // (Its keys are sorted; stderr follows it in `t`.)
    let json = t.find("{\n  \"bytes_written\"").map(|i| &t[i..]);
    let json = json.unwrap_or_else(|| panic!("collect.json missing:\n{t}"));
    let r: Value = serde_json::Deserializer::from_str(json)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let kept = r["frames_kept"].as_u64().unwrap();
    assert!(kept > 0, "{r:#}");
    assert_eq!(
        t.lines().filter(|l| l.ends_with(".png")).count() as u64,
        kept,
        "{t}"
    );
    assert!(
        r["stopped"].as_str().unwrap().contains("disk is full"),
        "{r:#}"
    );
}

#[test]
fn an_unknown_camera_is_named_with_the_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &dir_source(&demo_frames(), ""), &bdfi());
    let o = collect(
        &cfg,
        &dir.path().join("out"),
        &["--camera", "gate", "--frames", "5"],
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("no camera named \"gate\"") && t.contains("cam0"),
        "{t}"
    );

    // Without a stop condition, the run is refused before the camera opens.
    let o = collect(&cfg, &dir.path().join("out"), &["--keep-events"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--frames N") && text(&o).contains("--duration"),
        "{}",
        text(&o)
    );
}

/// A model that cannot run here (TensorRT, which this build lacks) stops the collection, naming `--keep-events`, which collects
/// without it.
#[test]
fn a_model_that_cannot_run_names_keep_events() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &dir_source(&demo_frames(), ", count = 3"),
        &bdfi(),
    );
    // This test build has no TensorRT (and no GPU): the camera's model cannot run.
    let mut toml = std::fs::read_to_string(&cfg).unwrap();
    toml.push_str("backend = { kind = \"tensorrt\", precision = \"fp16\" }\n");
    std::fs::write(&cfg, toml).unwrap();
    let out = dir.path().join("out");
    let o = collect(&cfg, &out, &["--frames", "3"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--keep-events"), "{}", text(&o));
    ok(&collect(&cfg, &out, &["--frames", "3", "--keep-events"]));
    assert_eq!(record(&out)["frames_kept"], 3);
}

/// SIGTERM (as SIGINT) stops the run cleanly: what was written stays, collect.json says why.
#[test]
fn a_signal_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &dir_source(&demo_frames(), ", fps = 20.0"),
        &bdfi(),
    );
    let out = dir.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "dataset",
            "collect",
            "--keep-events",
            "--frames",
            "1000",
            "--config",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let k = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let o = child.wait_with_output().unwrap();
    ok(&o);
    let r = record(&out);
    assert_eq!(r["stopped"], "interrupted (SIGINT/SIGTERM)", "{r:#}");
    let kept = r["frames_kept"].as_u64().unwrap();
    assert!(kept > 0 && kept < 180, "{r:#}");
    assert_eq!(saved(&out).len() as u64, kept);
}
