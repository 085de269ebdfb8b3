//! The inference backend a camera runs on: tract on the CPU, ONNX Runtime (CPU, or its GPU
//! providers), or a TensorRT engine.
//!
//! `backend = { kind = "onnxruntime", threads = 1 }` runs the model through the `libonnxruntime`
//! the box provides (crate `vigil-onnxruntime`): 2-5x tract's speed on one core, nothing
//! at build time, a refusal naming the library to install when it is absent.
//!
//! `backend = { kind = "tensorrt", precision = "fp16" }` in a camera's config runs its model as a
//! TensorRT engine (crate `vigil-tensorrt`, docs/tensorrt.md): the engine is taken from the
//! engine cache, or built once at start and cached. This needs a binary built with
//! `--features tensorrt` on a JetPack; other builds carry only the test double of the TensorRT
//! shim and refuse, with the fix, instead of pretending.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::package::ModelPackage;
use vigil_tensorrt::{
    load_or_build, BuildEvent, BuildOptions, EngineCache, Precision, TensorRtBackend, TrtRuntime,
};

/// Default engine cache directory (the unit's StateDirectory, systemd/vigil.tmpfile).
pub const DEFAULT_ENGINE_DIR: &str = "/var/lib/vigil/engines";

/// `[[camera]] backend = ...`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// tract on the CPU (any machine, nothing to install).
    #[default]
    #[serde(alias = "tract")]
    Cpu,
    /// ONNX Runtime, loaded at start from `library` (else ORT_DYLIB_PATH, else the loader's
    /// search path for libonnxruntime.so).
    Onnxruntime {
        /// Intra-op threads for this camera's network (1: on the camera's own thread).
        #[serde(default = "default_ort_threads")]
        threads: usize,
        /// Path of libonnxruntime.so (the `onnxruntime` wheel has it as
        /// onnxruntime/capi/libonnxruntime.so.1.*).
        #[serde(default)]
        library: Option<PathBuf>,
        /// Execution providers before the CPU, in order: "tensorrt", "cuda" (a GPU build of
        /// ONNX Runtime, e.g. JetPack's; unverified here, docs/onnxruntime.md).
        #[serde(default)]
        providers: Vec<vigil_onnxruntime::Provider>,
    },
    /// A TensorRT engine on the GPU or a DLA core.
    Tensorrt {
        #[serde(default = "default_precision")]
        precision: Precision,
        /// DLA core (Orin, Xavier); layers DLA cannot run fall back to the GPU.
        #[serde(default)]
        dla: Option<u32>,
        /// Builder workspace limit in MiB (default: TensorRT's).
        #[serde(default)]
        workspace_mb: Option<u64>,
    },
}

fn default_ort_threads() -> usize {
    1
}

fn default_precision() -> Precision {
    Precision::Fp16
}

/// Build options for a package: INT8 and best read the package's `calib.cache`
/// (`vigil calib int8`).
pub fn build_options(
    pkg: &ModelPackage,
    precision: Precision,
    dla: Option<u32>,
    workspace_mb: Option<u64>,
) -> Result<BuildOptions> {
    let mut o = BuildOptions::new(pkg.onnx_path(), precision);
    if precision.uses_calibration() {
        let cache = pkg.calib_cache_path();
        if !cache.is_file() {
            bail!(
                "precision {precision} needs the package's INT8 calibration cache {}, which is \
                 missing: create it with `vigil calib int8 {} --dataset DIR` (docs/tensorrt.md)",
                cache.display(),
                pkg.dir.display()
            );
        }
        o.calib_cache = Some(cache);
    }
    o.dla_core = dla;
    o.workspace_mb = workspace_mb;
    o.validate()?;
    Ok(o)
}

/// Refuses, with the fix, in a build without TensorRT (one that links the shim's test double).
pub fn require_native() -> Result<()> {
    if !vigil_tensorrt::NATIVE {
        bail!(
            "this vigil was built without TensorRT: build it on the Jetson with \
             `cargo build --release -p vigil --features tensorrt` (docs/tensorrt.md), use \
             `vigil engine build --print-trtexec` to build the engine with trtexec, or set the \
             camera's backend to {{ kind = \"cpu\" }}"
        );
    }
    Ok(())
}

/// Opens the cache (an unwritable directory is an error here, at start, not a rebuild on every
/// boot), reuses or builds the engine, and wraps it in an analyzer.
pub fn analyzer(
    pkg: &ModelPackage,
    backend: &BackendConfig,
    engine_dir: &Path,
    max_gap: u64,
) -> Result<Analyzer> {
    let (precision, dla, workspace_mb) = match backend {
        BackendConfig::Cpu => return Ok(Analyzer::cpu(pkg, max_gap)?),
        BackendConfig::Onnxruntime {
            threads,
            library,
            providers,
        } => {
            let m = &pkg.manifest;
            let engine_cache = if providers.contains(&vigil_onnxruntime::Provider::Tensorrt) {
                let dir = engine_dir.join("onnxruntime");
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!(
                        "ONNX Runtime's TensorRT engine cache {} (under [engines] dir)",
                        dir.display()
                    )
                })?;
                Some(dir)
            } else {
                None
            };
            let opts = vigil_onnxruntime::OrtOptions {
                threads: *threads,
                library: library.clone(),
                providers: providers.clone(),
                engine_cache,
            };
            let backend = vigil_onnxruntime::OrtBackend::load(
                &pkg.onnx_path(),
                &m.onnx.inputs,
                &m.onnx.outputs,
                &opts,
            )?;
            if let Some(lib) = vigil_onnxruntime::library::loaded() {
                log::info!(
                    "model {}: ONNX Runtime {} ({}), {threads} thread(s){}",
                    m.name,
                    lib.version,
                    lib.path.display(),
                    if providers.is_empty() {
                        String::new()
                    } else {
                        format!(", providers {providers:?} then cpu")
                    }
                );
            }
            return Ok(Analyzer::with_backend(pkg, Box::new(backend), max_gap)?);
        }
        BackendConfig::Tensorrt {
            precision,
            dla,
            workspace_mb,
        } => (precision, dla, workspace_mb),
    };
    require_native()?;
    let opts = build_options(pkg, *precision, *dla, *workspace_mb)?;
    let rt = TrtRuntime::new(0)?;
    warn_parser_refusals(pkg, rt.info().trt_version);
    let cache = EngineCache::open(engine_dir)?;
    let prepared = load_or_build(&rt, &cache, &opts, log_progress)?;
    let m = &pkg.manifest;
    let backend = TensorRtBackend::new(&prepared.engine, &m.onnx.inputs, &m.onnx.outputs)?;
    log::info!(
        "model {}: TensorRT {} engine {} ({})",
        m.name,
        precision,
        prepared.path.display(),
        if prepared.built {
            "built now"
        } else {
            "cached"
        }
    );
    Ok(Analyzer::with_backend(pkg, Box::new(backend), max_gap)?)
}

/// Says, before minutes of engine building, which nodes the ONNX parser's operator table of
/// this TensorRT does not take (an INT64 cast on 8.x, an opset too new): the build would end in
/// a parser error far less clear than this.
fn warn_parser_refusals(pkg: &ModelPackage, version: vigil_tensorrt::TrtVersion) {
    let Some(table) = vigil_tensorrt::onnx_support::ParserTable::for_version(version) else {
        return;
    };
    match table.table().check_file(&pkg.onnx_path()) {
        Ok(r) if r.is_empty() => {}
        Ok(r) => log::warn!(
            "model {}: the ONNX parser of TensorRT {version} does not take {} node(s): {}; the engine build will likely fail: re-export the model without them (docs/tensorrt.md)",
            pkg.manifest.name,
            r.len(),
            r.join("; ")
        ),
        Err(e) => log::warn!("model {}: {e}", pkg.manifest.name),
    }
}

fn log_progress(ev: &BuildEvent) -> bool {
    if let BuildEvent::PhaseStart {
        phase,
        parent: None,
        ..
    } = ev
    {
        log::info!("TensorRT build: {phase}");
    }
    true
}
