//! `backend = { kind = "onnxruntime" }` and `--backend onnxruntime` as a user meets them: with
//! the real library (the virtualenv's `onnxruntime` wheel, or ORT_DYLIB_PATH), and without it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The library the tests load; missing, they fail and say how to get it.
fn library() -> PathBuf {
    let venv = repo().join(".venv");
    vigil_onnxruntime::library::from_env_or_python_env(&venv).unwrap_or_else(|| {
        panic!(
            "no ONNX Runtime library in {}: run `bash tests/bootstrap.sh test` or set ORT_DYLIB_PATH",
            venv.display()
        )
    })
}

fn ped2() -> PathBuf {
    let p = std::env::var_os("VIGIL_PED2")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/datasets/ped2"));
    assert!(
        p.join("testing/frames/01").is_dir(),
        "UCSD Ped2 not found at {} (set VIGIL_PED2)",
        p.display()
    );
    p
}

fn config(dir: &Path, backend: &str) -> PathBuf {
    let path = dir.join("vigil.toml");
    std::fs::write(
        &path,
        format!(
            "[mqtt]\nhost = \"127.0.0.1\"\ndevice = \"box\"\n\n[outbox]\ndir = \"{}\"\n\n\
             [[camera]]\nname = \"cam0\"\nmodel = \"{}\"\nsource = {{ kind = \"dir\", path = \"{}\" }}\n\
             backend = {backend}\n",
            dir.join("outbox").display(),
            repo().join("engine/models/ped2-bdfi").display(),
            repo().join("firmware/cli/assets/demo/ped2-test01").display(),
        ),
    )
    .unwrap();
    path
}

fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run vigil");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_loads_the_library_a_camera_names() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library();
    let cfg = config(
        dir.path(),
        &format!(
            "{{ kind = \"onnxruntime\", threads = 1, library = \"{}\" }}",
            lib.display()
        ),
    );
    let (ok, out, err) = output(vigil().args(["check", "--config"]).arg(&cfg));
    assert!(ok, "{err}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn a_missing_library_is_refused_with_the_key_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("lib/libonnxruntime.so.1.32.0");
    let cfg = config(
        dir.path(),
        &format!(
            "{{ kind = \"onnxruntime\", library = \"{}\" }}",
            missing.display()
        ),
    );
    let (ok, _, err) = output(vigil().args(["check", "--config"]).arg(&cfg));
    assert!(!ok, "check accepted a missing library");
    assert!(
        err.contains(&missing.display().to_string())
            && err.contains("no such file")
            && err.contains("backend.library")
            && err.contains("pip install onnxruntime"),
        "{err}"
    );
    // The same from the command line, where the flag is the fix.
    let (ok, _, err) = output(
        vigil()
            .args(["bench", "--backend", "onnxruntime", "--model"])
            .arg(repo().join("engine/models/ped2-bdfi"))
            .arg("--frames")
            .arg(repo().join("firmware/cli/assets/demo/ped2-test01"))
            .arg("--onnxruntime-lib")
            .arg(&missing),
    );
    assert!(!ok && err.contains("--onnxruntime-lib"), "{err}");
    let (ok, _, err) = output(vigil().args(["bench", "--backend", "gpu"]));
    assert!(
        !ok && err.contains("tract") && err.contains("onnxruntime"),
        "{err}"
    );
}

/// `vigil eval` on ONNX Runtime gives tract's per-frame scores on a real Ped2 video.
#[test]
fn eval_on_onnxruntime_scores_like_tract() {
    let dir = tempfile::tempdir().unwrap();
    let eval = |backend: &str| -> (serde_json::Value, Vec<Vec<f64>>) {
        let csv = dir.path().join(format!("{backend}.csv"));
        let (ok, out, err) = output(
            vigil()
                .args(["eval", "--model"])
                .arg(repo().join("engine/models/ped2-bdfi"))
                .arg("--dataset")
                .arg(ped2())
                .args(["--videos", "01", "--json", "--backend", backend])
                .arg("--onnxruntime-lib")
                .arg(library())
                .arg("--scores-csv")
                .arg(&csv),
        );
        assert!(ok, "eval --backend {backend}: {err}");
        let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        // video,frame,anomalous,score_paper,score_stream,score_stream_continuous,score_raw
        let rows = std::fs::read_to_string(&csv)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                l.split(',')
                    .skip(3)
                    .map(|x| x.parse().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        (report, rows)
    };
    let ((t, t_rows), (o, o_rows)) = (eval("tract"), eval("onnxruntime"));
    assert_eq!(t["backend"], "tract");
    assert_eq!(o["backend"], "onnxruntime");
    assert_eq!(t_rows.len(), o_rows.len());
    assert!(t_rows.len() >= 170, "{} frames", t_rows.len());
    let mut worst = 0f64;
    for (a, b) in t_rows.iter().zip(&o_rows) {
        for (x, y) in a.iter().zip(b) {
            if x.is_nan() && y.is_nan() {
                continue; // a frame before the first score, on both
            }
            worst = worst.max((x - y).abs() / x.abs().max(1.0));
        }
    }
    assert!(worst <= 1e-4, "largest relative score difference {worst:e}");
    let (ta, oa) = (t["auc"].as_f64().unwrap(), o["auc"].as_f64().unwrap());
    assert!((ta - oa).abs() <= 1e-3, "auc {ta} vs {oa}");
    // The paper's own formula is reported beside the package's score exactly when they differ.
    let manifest: toml::Table =
        std::fs::read_to_string(repo().join("engine/models/ped2-bdfi/model.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let param = |k: &str| manifest["params"].get(k).and_then(|v| v.as_float());
    let papers = param("alpha").unwrap_or(0.3) == 0.3 && param("flow_weight").unwrap_or(0.0) == 0.0;
    match (
        t["auc_paper_formula"].as_f64(),
        o["auc_paper_formula"].as_f64(),
    ) {
        (None, None) => assert!(papers, "ped2-bdfi's weights differ from the paper's: {t}"),
        (Some(tp), Some(op)) => {
            assert!(
                !papers,
                "the package scores as the paper does, nothing to report beside it"
            );
            assert!((tp - op).abs() <= 1e-3, "auc_paper_formula {tp} vs {op}");
        }
        other => panic!("one backend reports the paper's formula, the other not: {other:?}"),
    }
}

#[test]
fn bench_compares_both_backends_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in 1..=8 {
        let name = format!("{i:03}.jpg");
        std::fs::copy(
            repo()
                .join("firmware/cli/assets/demo/ped2-test01")
                .join(&name),
            frames.join(&name),
        )
        .unwrap();
    }
    let (ok, out, err) = output(
        vigil()
            .args([
                "bench",
                "--passes",
                "1",
                "--json",
                "--backend",
                "tract,onnxruntime",
            ])
            .arg("--model")
            .arg(repo().join("engine/models/ped2-bdfi"))
            .arg("--frames")
            .arg(&frames)
            .arg("--onnxruntime-lib")
            .arg(library()),
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let b = v["backends"].as_array().expect("backends");
    assert_eq!(b.len(), 2, "{out}");
    assert_eq!(b[0]["backend"], "tract");
    assert_eq!(b[1]["backend"], "onnxruntime");
    assert!(
        b[1]["library"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{out}"
    );
    for x in b {
        assert!(x["network"]["samples"].as_u64().unwrap() >= 4, "{out}");
        assert!(x["network"]["mean_us"].as_f64().unwrap() > 0.0, "{out}");
    }
    assert!(v["peak_rss_mb"].as_f64().unwrap() > 10.0, "{out}");
}
