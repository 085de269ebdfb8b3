//! Engine builds from ONNX through the shim, and the equivalent `trtexec` command line.

use crate::error::{call, TrtError};
use crate::ffi;
use crate::runtime::{Blob, TrtRuntime};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::ffi::{c_char, c_void, CStr, CString};
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Layer precisions the builder may choose from (FP32 is always allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
    /// INT8 with FP32 fallback; needs the package's calibration cache.
    Int8,
    /// FP16 and INT8: whichever is fastest per layer; needs the calibration cache.
    Best,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Fp16 => "fp16",
            Self::Int8 => "int8",
            Self::Best => "best",
        }
    }
    pub fn fp16(self) -> bool {
        matches!(self, Self::Fp16 | Self::Best)
    }
    pub fn int8(self) -> bool {
        matches!(self, Self::Int8 | Self::Best)
    }
    /// Whether the calibration cache influences the engine (and so belongs in its cache key).
    pub fn uses_calibration(self) -> bool {
        self.int8()
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" => Ok(Self::Fp32),
            "fp16" => Ok(Self::Fp16),
            "int8" => Ok(Self::Int8),
            "best" => Ok(Self::Best),
            other => Err(format!(
                "unknown precision `{other}` (expected fp32, fp16, int8 or best)"
            )),
        }
    }
}

/// What to build. The calibration cache is a path because both the engine cache key (its
/// sha256) and `trtexec --calib` need the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub onnx: PathBuf,
    pub precision: Precision,
    /// TensorRT calibration cache (a package's `calib.cache`); required for int8/best.
    pub calib_cache: Option<PathBuf>,
    /// Run on this DLA core (Orin and Xavier have two) instead of the GPU.
    pub dla_core: Option<u32>,
    /// With a DLA core: let layers DLA cannot run fall back to the GPU.
    pub gpu_fallback: bool,
    /// Builder workspace limit; `None` keeps TensorRT's default (the device's memory).
    pub workspace_mb: Option<u64>,
}

impl BuildOptions {
    pub fn new(onnx: impl Into<PathBuf>, precision: Precision) -> Self {
        Self {
            onnx: onnx.into(),
            precision,
            calib_cache: None,
            dla_core: None,
            gpu_fallback: true,
            workspace_mb: None,
        }
    }

    /// Checks what can be checked without TensorRT, so a bad command line fails in
    /// milliseconds rather than after the ONNX parse.
    pub fn validate(&self) -> Result<(), TrtError> {
        let bad = |reason: String| Err(TrtError::Config { reason });
        if self.precision.uses_calibration() && self.calib_cache.is_none() {
            return bad(format!(
                "precision {} needs an INT8 calibration cache (run `vigil calib int8` to add calib.cache to the package)",
                self.precision
            ));
        }
        if self.dla_core.is_some() && self.precision == Precision::Fp32 {
            return bad(
                "DLA runs FP16 and INT8 layers only; use --precision fp16 or int8 with --dla"
                    .to_owned(),
            );
        }
        if self.workspace_mb == Some(0) {
            return bad("a workspace of 0 MiB cannot hold any tactic".to_owned());
        }
        Ok(())
    }
}

/// Build progress. TensorRT 10 reports its own nested phases (and steps); the shim adds the
/// coarse `parse` and `build` phases, which are all TensorRT 8.6 can offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent<'a> {
    PhaseStart {
        phase: &'a str,
        parent: Option<&'a str>,
        steps: i32,
    },
    Step {
        phase: &'a str,
        step: i32,
    },
    PhaseEnd {
        phase: &'a str,
    },
}

/// A built engine and the builder's updated timing cache.
#[derive(Debug)]
pub struct BuildOutput {
    pub engine: Blob,
    pub timing_cache: Option<Blob>,
}

struct ProgressState<'a> {
    callback: &'a mut dyn FnMut(&BuildEvent<'_>) -> bool,
    panic: Option<Box<dyn Any + Send>>,
}

unsafe extern "C" fn progress_trampoline(
    user: *mut c_void,
    event: i32,
    phase: *const c_char,
    parent: *const c_char,
    step: i32,
    nb_steps: i32,
) -> i32 {
    // SAFETY: `user` is the &mut ProgressState that build_engine passed for the duration of the
    // vtrt_build call, which is the only time this is called.
    let state = unsafe { &mut *user.cast::<ProgressState<'_>>() };
    if state.panic.is_some() {
        return 1;
    }
    let text = |p: *const c_char| {
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let phase = text(phase).unwrap_or_else(|| "?".to_owned());
    let parent = text(parent);
    let ev = match event {
        ffi::VTRT_PHASE_START => BuildEvent::PhaseStart {
            phase: &phase,
            parent: parent.as_deref(),
            steps: nb_steps,
        },
        ffi::VTRT_PHASE_STEP => BuildEvent::Step {
            phase: &phase,
            step,
        },
        _ => BuildEvent::PhaseEnd { phase: &phase },
    };
    // A panic must not unwind through C++; it cancels the build and is re-raised afterwards.
    match catch_unwind(AssertUnwindSafe(|| (state.callback)(&ev))) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(payload) => {
            state.panic = Some(payload);
            1
        }
    }
}

impl TrtRuntime {
    /// Builds an engine (minutes on a Jetson). `timing_cache` is a previously saved timing cache
    /// for this TensorRT version and device; `progress` sees every phase and may return `false`
    /// to cancel.
    pub fn build_engine(
        &self,
        opts: &BuildOptions,
        timing_cache: Option<&[u8]>,
        mut progress: impl FnMut(&BuildEvent<'_>) -> bool,
    ) -> Result<BuildOutput, TrtError> {
        opts.validate()?;
        let onnx = CString::new(opts.onnx.as_os_str().as_encoded_bytes()).map_err(|_| {
            TrtError::Config {
                reason: format!("ONNX path {} contains a NUL byte", opts.onnx.display()),
            }
        })?;
        let calib = match (&opts.calib_cache, opts.precision.uses_calibration()) {
            (Some(p), true) => {
                let bytes = std::fs::read(p).map_err(|e| TrtError::io(p, e))?;
                if bytes.is_empty() {
                    return Err(TrtError::Config {
                        reason: format!("calibration cache {} is empty", p.display()),
                    });
                }
                bytes
            }
            _ => Vec::new(),
        };
        let timing = timing_cache.unwrap_or(&[]);
        let raw_opts = ffi::vtrt_build_options {
            onnx_path: onnx.as_ptr(),
            fp16: opts.precision.fp16() as i32,
            int8: opts.precision.int8() as i32,
            calib_cache: if calib.is_empty() {
                std::ptr::null()
            } else {
                calib.as_ptr()
            },
            calib_cache_len: calib.len(),
            timing_cache: if timing.is_empty() {
                std::ptr::null()
            } else {
                timing.as_ptr()
            },
            timing_cache_len: timing.len(),
            dla_core: match opts.dla_core {
                None => -1,
                Some(c) => i32::try_from(c).map_err(|_| TrtError::Config {
                    reason: format!("DLA core {c}"),
                })?,
            },
            gpu_fallback: opts.gpu_fallback as i32,
            workspace_bytes: opts.workspace_mb.unwrap_or(0).saturating_mul(1 << 20),
        };
        let mut state = ProgressState {
            callback: &mut progress,
            panic: None,
        };
        let mut engine = std::ptr::null_mut();
        let mut timing_out = std::ptr::null_mut();
        let result = call("vtrt_build", |e, n| unsafe {
            ffi::vtrt_build(
                self.raw(),
                &raw_opts,
                Some(progress_trampoline),
                (&mut state as *mut ProgressState<'_>).cast(),
                &mut engine,
                &mut timing_out,
                e,
                n,
            )
        });
        // Take ownership before looking at the result, so nothing the shim returned leaks.
        let engine = Blob::from_raw(engine);
        let timing_cache = Blob::from_raw(timing_out);
        if let Some(payload) = state.panic.take() {
            resume_unwind(payload);
        }
        result?;
        let engine = engine.ok_or_else(|| TrtError::Shim {
            op: "vtrt_build",
            code: ffi::VTRT_OK,
            message: "reported success but returned no engine".to_owned(),
        })?;
        if engine.is_empty() {
            return Err(TrtError::Build {
                message: "the builder returned an empty engine".to_owned(),
            });
        }
        Ok(BuildOutput {
            engine,
            timing_cache,
        })
    }
}

/// The `trtexec` command that builds the same engine as [`TrtRuntime::build_engine`] with
/// `opts`: for people who want to build (or profile) outside vigil. Flag names are those of
/// trtexec in TensorRT 8.6 and 10.x; `--memPoolSize` takes MiB without a unit suffix in both
/// (10.x also accepts `M`, 8.6 does not). `Best` maps to `--fp16 --int8` rather than `--best`,
/// because TensorRT 10's `--best` also enables BF16/FP8 tactics that vigil does not.
pub fn trtexec_command(
    opts: &BuildOptions,
    engine_out: &Path,
    timing_cache: Option<&Path>,
) -> Vec<String> {
    let mut args = vec![
        "trtexec".to_owned(),
        format!("--onnx={}", opts.onnx.display()),
        format!("--saveEngine={}", engine_out.display()),
        // Build only; without it trtexec benchmarks the engine after building it.
        "--skipInference".to_owned(),
    ];
    if opts.precision.fp16() {
        args.push("--fp16".to_owned());
    }
    if opts.precision.int8() {
        args.push("--int8".to_owned());
        if let Some(c) = &opts.calib_cache {
            args.push(format!("--calib={}", c.display()));
        }
    }
    if let Some(core) = opts.dla_core {
        args.push(format!("--useDLACore={core}"));
        if opts.gpu_fallback {
            args.push("--allowGPUFallback".to_owned());
        }
    }
    if let Some(mb) = opts.workspace_mb {
        args.push(format!("--memPoolSize=workspace:{mb}"));
    }
    if let Some(t) = timing_cache {
        args.push(format!("--timingCacheFile={}", t.display()));
    }
    args
}

/// Joins arguments for a POSIX shell, quoting only where needed.
pub fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
