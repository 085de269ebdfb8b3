//! The `vigil` binary's command-line contract: exit codes and messages a user sees.

use std::path::PathBuf;
use std::process::Command;

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn version_prints_the_crate_version() {
    let out = vigil().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

fn write_config(dir: &std::path::Path, extra: &str) -> PathBuf {
    let path = dir.join("vigil.toml");
    std::fs::write(
        &path,
        format!(
            r#"[mqtt]
host = "127.0.0.1"
device = "box"

[outbox]
dir = "{}"

[[camera]]
name = "cam0"
model = "{}"
source = {{ kind = "dir", path = "{}" }}
{extra}"#,
            dir.join("outbox").display(),
            repo().join("engine/models/ped2-bdfi").display(),
            repo().join("firmware/assets/demo/ped2-test01").display(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_accepts_the_shipped_model() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let out = vigil()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_names_key_and_line_of_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "events = { on = 0.2, off = 0.5 }\n");
    let out = vigil()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("camera[0].events") && err.contains("line 12"),
        "{err}"
    );
}

#[test]
fn check_rejects_a_missing_config_file_clearly() {
    let out = vigil()
        .args(["check", "--config", "/nonexistent/vigil.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/vigil.toml") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn a_damaged_model_package_is_refused_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pkg");
    std::fs::create_dir(&pkg).unwrap();
    let src = repo().join("engine/models/ped2-bdfi");
    std::fs::copy(src.join("model.toml"), pkg.join("model.toml")).unwrap();
    let mut onnx = std::fs::read(src.join("model.onnx")).unwrap();
    onnx.truncate(onnx.len() / 2);
    std::fs::write(pkg.join("model.onnx"), onnx).unwrap();
    let cfg = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&src.display().to_string(), &pkg.display().to_string());
    std::fs::write(&cfg, text).unwrap();
    let out = vigil()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sha256") && err.contains("re-export"), "{err}");
}

#[test]
fn the_default_config_installed_to_etc_passes_check() {
    // systemd/vigil.toml as installed, with only its model path pointed at this checkout
    // (the package installs models under /usr/share/vigil/models).
    let text = std::fs::read_to_string(repo().join("systemd/vigil.toml")).unwrap();
    let shipped = "/usr/share/vigil/models/ped2-bdfi";
    assert!(text.contains(shipped), "the default config names {shipped}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    let here = repo().join("engine/models/ped2-bdfi");
    std::fs::write(&cfg, text.replace(shipped, &here.display().to_string())).unwrap();
    let out = vigil()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
