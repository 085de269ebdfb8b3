//! `--backend`, `--threads`, `--onnxruntime-lib`: which backend the offline commands (`eval`,
//! `bench`, `calib scores`) run the network on, the same choice a camera makes with its
//! `backend` table.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use vigil_daemon::backend::{BackendConfig, DEFAULT_ENGINE_DIR};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::package::ModelPackage;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Pure Rust, nothing to install (the default).
    Tract,
    /// ONNX Runtime's CPU kernels, from the libonnxruntime the machine provides.
    Onnxruntime,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// Backend that runs the network (`bench` takes a comma-separated list and compares them).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tract")]
    pub backend: Vec<BackendKind>,
    /// ONNX Runtime intra-op threads (tract runs on one thread).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// libonnxruntime.so for `--backend onnxruntime` (default: ORT_DYLIB_PATH, then the dynamic
    /// loader's search path).
    #[arg(long)]
    pub onnxruntime_lib: Option<PathBuf>,
}

impl BackendArgs {
    /// The one backend of a command that runs one.
    pub fn single(&self) -> Result<BackendConfig> {
        match self.backend.as_slice() {
            [kind] => Ok(self.config(*kind)),
            _ => bail!("--backend takes one backend here (only `vigil bench` compares several)"),
        }
    }

    pub fn config(&self, kind: BackendKind) -> BackendConfig {
        match kind {
            BackendKind::Tract => BackendConfig::Cpu,
            BackendKind::Onnxruntime => BackendConfig::Onnxruntime {
                threads: self.threads,
                library: self.onnxruntime_lib.clone(),
                providers: Vec::new(),
            },
        }
    }
}

/// The analyzer for `pkg` on a CPU backend (the engine cache is only for TensorRT, which the
/// offline commands do not take here).
pub fn analyzer(pkg: &ModelPackage, backend: &BackendConfig, max_gap: u64) -> Result<Analyzer> {
    vigil_daemon::backend::analyzer(pkg, backend, Path::new(DEFAULT_ENGINE_DIR), max_gap)
}
