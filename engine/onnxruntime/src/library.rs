//! Finding and loading `libonnxruntime`.
//!
//! The dynamic library is process-wide by nature (`dlopen` once, one `OrtApi` table), and `ort`
//! keeps it in a process-wide slot; [`OrtLibrary`] mirrors that slot so that a second camera asking
//! for a different file gets an error instead of silently running on the first one's library.

use crate::OrtError;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The names the dynamic loader is asked for when no path is configured: the unversioned
/// development link first, then the soname that runtime-only packages install.
const DEFAULT_NAMES: [&str; 2] = ["libonnxruntime.so", "libonnxruntime.so.1"];

/// The environment variable `ort` itself reads; honoured so that one setting serves both.
pub const ENV_PATH: &str = "ORT_DYLIB_PATH";

/// The library this process has loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedLibrary {
    /// What was asked of the loader: a path, or a bare name it searched for.
    pub path: PathBuf,
    /// ONNX Runtime's own version string (`1.32.0`).
    pub version: String,
}

/// The loaded library and the environment every session is created in.
pub struct OrtLibrary {
    pub loaded: LoadedLibrary,
    /// The one ONNX Runtime environment of the process (logging, default thread pools), created
    /// with the library.
    pub env: ort::environment::Environment,
}

static LIBRARY: OnceLock<OrtLibrary> = OnceLock::new();
/// Serialises first loads, so two cameras starting together cannot both pass the "not yet
/// loaded" check with different files.
static LOADING: Mutex<()> = Mutex::new(());

/// The candidates, in order: the configured path, `ORT_DYLIB_PATH`, then the loader's search
/// (LD_LIBRARY_PATH, the ldconfig cache) for the default names.
pub fn candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = configured {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = std::env::var_os(ENV_PATH).filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    DEFAULT_NAMES.iter().map(PathBuf::from).collect()
}

/// Loads ONNX Runtime once per process (later calls return the same library, or refuse a
/// different explicit path).
pub fn load(configured: Option<&Path>) -> Result<&'static OrtLibrary, OrtError> {
    let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(lib) = LIBRARY.get() {
        if let Some(want) = configured {
            if want != lib.loaded.path {
                return Err(OrtError::Conflict {
                    loaded: lib.loaded.path.display().to_string(),
                    requested: want.display().to_string(),
                });
            }
        }
        return Ok(lib);
    }
    let mut tried = Vec::new();
    for path in candidates(configured) {
        if path.components().count() > 1 && !path.exists() {
            tried.push(format!("{} (no such file)", path.display()));
            continue;
        }
        match ort::init_from(&path) {
            Ok(builder) => {
                let env = builder
                    .with_name("vigil")
                    .build()
                    .map_err(|e| OrtError::Environment(e.to_string()))?;
                let version = version_of(&path);
                log::info!("ONNX Runtime {version} loaded from {}", path.display());
                let lib = OrtLibrary {
                    loaded: LoadedLibrary { path, version },
                    env,
                };
                return Ok(LIBRARY.get_or_init(|| lib));
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(OrtError::NotFound {
        tried: tried.join("; "),
    })
}

/// The library this process loaded, if any.
pub fn loaded() -> Option<&'static LoadedLibrary> {
    LIBRARY.get().map(|l| &l.loaded)
}

/// The library inside a Python environment's `onnxruntime` wheel
/// (`<venv>/lib/python3.*/site-packages/onnxruntime/capi/libonnxruntime.so.1.*`), if one is
/// installed there: a developer's machine often has ONNX Runtime only this way.
pub fn in_python_env(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    let mut found: Vec<PathBuf> = lib
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .filter_map(|e| std::fs::read_dir(e.path().join("site-packages/onnxruntime/capi")).ok())
        .flat_map(|d| d.flatten().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("libonnxruntime.so."))
                .unwrap_or(false)
        })
        .collect();
    found.sort();
    found.pop()
}

/// ORT_DYLIB_PATH when set, else the library of `venv`'s `onnxruntime` wheel: where the tests
/// and benchmarks of a checkout find ONNX Runtime (`tests/bootstrap.sh test` installs the wheel).
pub fn from_env_or_python_env(venv: &Path) -> Option<PathBuf> {
    std::env::var_os(ENV_PATH)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| in_python_env(venv))
}

/// ONNX Runtime's version: the release branch in its build info (`git-branch=rel-1.32.0`), else
/// the versioned file name the path resolves to.
fn version_of(path: &Path) -> String {
    version_from_build_info(ort::info())
        .or_else(|| version_from_file_name(path))
        .unwrap_or_else(|| "(version unknown)".into())
}

fn version_from_build_info(info: &str) -> Option<String> {
    let branch = info.split("git-branch=").nth(1)?;
    let v = branch.split([',', ' ']).next()?.strip_prefix("rel-")?;
    is_version(v).then(|| v.to_string())
}

fn is_version(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// `libonnxruntime.so.1.32.0` -> `1.32.0`.
fn version_from_file_name(path: &Path) -> Option<String> {
    let name = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()))?;
    let v = name.split_once(".so.")?.1;
    is_version(v).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_comes_from_a_versioned_file_name() {
        assert_eq!(
            version_from_file_name(Path::new("/x/libonnxruntime.so.1.32.0")).as_deref(),
            Some("1.32.0")
        );
        assert_eq!(
            version_from_file_name(Path::new("/x/libonnxruntime.so")),
            None
        );
    }

    #[test]
    fn version_comes_from_the_release_branch() {
        let info =
            "ORT Build Info: git-branch=rel-1.19.0, git-commit-id=26250ae, build type=Release";
        assert_eq!(version_from_build_info(info).as_deref(), Some("1.19.0"));
        assert_eq!(
            version_from_build_info("ORT Build Info: git-branch=main, x"),
            None
        );
    }

    #[test]
    fn a_configured_path_is_the_only_candidate() {
        let c = candidates(Some(Path::new("/opt/ort/libonnxruntime.so")));
        assert_eq!(c, vec![PathBuf::from("/opt/ort/libonnxruntime.so")]);
    }
}
