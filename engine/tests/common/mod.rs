#![allow(dead_code)] // each test binary uses a different subset
//! Paths the integration tests that run Python references share.

pub mod demo;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's Python (`.venv/`, made by `tests/bootstrap.sh test`; `VIGIL_PYTHON` overrides
/// it). Missing, the test fails and says how to create it: a skipped reference proves nothing.
pub fn python() -> PathBuf {
    let p = std::env::var_os("VIGIL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        p.is_file(),
        "{} not found: create the Python environment with `bash tests/bootstrap.sh test` (or set VIGIL_PYTHON)",
        p.display()
    );
    p
}
