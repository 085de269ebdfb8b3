//! The files in systemd/ checked by systemd's own tools: the units pass `systemd-analyze verify`
//! (with ExecStart pointed at the binary built here, since /usr/bin/vigil is not installed on a
//! build machine), the hardening scores "OK" or better in `systemd-analyze security`, and the
//! sysusers/tmpfiles snippets create the vigil user (in group video) and its state directories
//! in a throwaway root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vigil_tests::{repo_root, vigil_bin};

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} not found: install Debian's `systemd` package (bash tests/bootstrap.sh test does)"
    );
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The units with /usr/bin/vigil replaced by the built binary, in a temporary directory.
fn units_here() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bin = vigil_bin();
    for unit in ["vigil.service", "vigil@.service"] {
        let text = std::fs::read_to_string(repo_root().join("systemd").join(unit)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/bin/vigil run"),
            "{unit}: ExecStart moved?"
        );
        std::fs::write(
            dir.path().join(unit),
            text.replace("/usr/bin/vigil", &bin.display().to_string()),
        )
        .unwrap();
    }
    dir
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = units_here();
    let out = run(Command::new(tool("systemd-analyze"))
        .args(["verify", "--man=no", "vigil.service", "vigil@.service"])
        .current_dir(dir.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("vigil"),
        "verify warned about our units:\n{stderr}"
    );
}

#[test]
fn hardening_exposure_is_ok_or_better() {
    let dir = units_here();
    for unit in ["vigil.service", "vigil@.service"] {
        let out = run(Command::new(tool("systemd-analyze"))
            .args(["security", "--offline=true", "--no-pager", unit])
            .current_dir(dir.path()));
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no exposure line:\n{text}"));
        println!("{line}");
        // "... for vigil.service: 1.5 OK 🙂": levels are SAFE, OK, MEDIUM, EXPOSED, UNSAFE.
        assert!(
            line.contains(" OK") || line.contains(" SAFE"),
            "{unit}: {line}"
        );
    }
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_and_state_dirs() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nvideo:x:44:\n").unwrap();
    let sysd = repo_root().join("systemd");
    run(Command::new(tool("systemd-sysusers"))
        .arg(format!("--root={}", root.path().display()))
        .arg(sysd.join("vigil.sysusers")));
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("vigil:"))
        .unwrap_or_else(|| panic!("no vigil user:\n{passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!(fields[5], "/var/lib/vigil", "{user}");
    assert!(
        fields[6].ends_with("nologin"),
        "a system user without a shell: {user}"
    );
    let uid: u32 = fields[2].parse().unwrap();
    let group = std::fs::read_to_string(etc.join("group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("video:") && l.ends_with(":vigil")),
        "{group}"
    );

    run(Command::new(tool("systemd-tmpfiles"))
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(sysd.join("vigil.tmpfile")));
    for d in [
        "var/lib/vigil",
        "var/lib/vigil/outbox",
        "var/lib/vigil/engines",
    ] {
        let m = std::fs::metadata(root.path().join(d)).unwrap_or_else(|e| panic!("{d}: {e}"));
        assert!(m.is_dir(), "{d}");
        assert_eq!(m.permissions().mode() & 0o777, 0o750, "{d}");
        assert_eq!(m.uid(), uid, "{d} owned by vigil");
    }
}
