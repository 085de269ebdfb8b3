//! Model packages: a directory holding `model.toml` (manifest) and `model.onnx`, validated as a
//! unit on load so a wrong or damaged package fails at start with a message that says what to do,
//! never later with a shape error in the middle of the night.

use crate::backend::onnx::read_interface;
use crate::backend::TensorSpec;
use crate::flow::FarnebackParams;
use crate::objects::{DetectorSpec, ObjectParams};
use crate::preprocess::InputGeometry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const MANIFEST: &str = "model.toml";
pub const SCHEMA: &str = "vigil.model/1";
/// The INT8 calibration cache inside a package (TensorRT's calibration-cache format).
pub const CALIB_CACHE_FILE: &str = "calib.cache";

#[derive(Debug, Error)]
pub enum PackageError {
    #[error("model package {dir}: {MANIFEST} not found; a package is a directory with {MANIFEST} and model.onnx (see docs/model-package.md)")]
    NoManifest { dir: PathBuf },
    #[error("model package {path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model package {path}: invalid manifest: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("model package {dir}: {reason}")]
    Invalid { dir: PathBuf, reason: String },
    #[error("model package {dir}: {file} has sha256 {actual} but the manifest says {expected}; the file was replaced or damaged: {fix}")]
    Checksum {
        dir: PathBuf,
        file: String,
        expected: String,
        actual: String,
        /// What makes the package whole again, for this file.
        fix: &'static str,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: String,
    pub name: String,
    /// Recipe name: "bdfi", ...
    pub recipe: String,
    #[serde(default)]
    pub description: String,
    pub input: InputGeometry,
    pub onnx: OnnxSection,
    /// Recipe-specific parameters; each recipe parses and validates its own table.
    #[serde(default)]
    pub params: toml::Table,
    #[serde(default)]
    pub scoring: ScoringSection,
    /// Optical flow the recipe needs at run time (maam-net, stm-ae, hf2vad), computed by the
    /// engine with these parameters, exactly as `vigil dataset export --flow` computed the
    /// training flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowSection>,
    /// Foreground objects an object-centric recipe (hf2vad) scores, found by the engine with
    /// these parameters, exactly as `vigil dataset export --objects` found the training objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectsSection>,
    /// A detector ONNX whose boxes join the motion boxes of `[objects]` (docs/model-package.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<DetectorSpec>,
    /// Statistics of the recipe's scores on normal training frames (`vigil calib scores`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// The INT8 calibration cache the package carries and how it was made (`vigil calib int8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<Int8Section>,
    #[serde(default)]
    pub provenance: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OnnxSection {
    pub file: String,
    pub sha256: String,
    #[serde(default)]
    pub opset: Option<i64>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// `[flow]`: which estimator and its parameters.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum FlowSection {
    Farneback(FarnebackParams),
}

impl FlowSection {
    pub fn farneback(&self) -> FarnebackParams {
        match self {
            FlowSection::Farneback(p) => *p,
        }
    }
}

/// `[objects]`: which extractor and its parameters (the built-in motion extractor; a detector
/// ONNX, `[detector]`, adds its boxes to the motion boxes).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum ObjectsSection {
    Motion(ObjectParams),
}

impl ObjectsSection {
    pub fn params(&self) -> ObjectParams {
        match self {
            ObjectsSection::Motion(p) => *p,
        }
    }
}

/// Localisation defaults for the patch detector, at model resolution.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoringSection {
    /// `[height, width]`
    pub patch: [usize; 2],
    /// `[y, x]`
    pub stride: [usize; 2],
}

impl Default for ScoringSection {
    fn default() -> Self {
        Self {
            patch: [16, 16],
            stride: [8, 8],
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    pub mean: f32,
    pub std: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Normal training frames the statistics were computed on.
    pub frames: usize,
    pub dataset: String,
    /// Videos of `dataset` kept out of the statistics (validation footage: false alarms are
    /// measured on it, so it must not be what "normal" was computed from).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_out: Vec<String>,
    /// Per score component (e.g. "int", "con" for BDFI): mean/std on normal frames.
    pub components: BTreeMap<String, Stats>,
    /// The recipe's fused streaming score on the same frames.
    pub score: ScoreQuantiles,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoreQuantiles {
    pub mean: f32,
    pub std: f32,
    pub p50: f32,
    pub p99: f32,
    pub p999: f32,
    pub max: f32,
}

/// `[int8]`: the package's calibration cache (`calib.cache`), tied to the exact ONNX it was
/// computed on, and the precision plan: which tensors were left out of the cache, so that the
/// layers reading them run FP16/FP32 on the box, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Int8Section {
    /// sha256 of `calib.cache`.
    pub sha256: String,
    /// sha256 of the ONNX file the scales were measured on: a re-exported model needs a new
    /// cache, because activation names and ranges move with the weights.
    pub onnx_sha256: String,
    /// TensorRT version named in the cache header (TensorRT ignores a cache of another version).
    pub trt: String,
    /// Scale method: entropy (TensorRT's EntropyCalibration2), minmax, percentile-P.
    pub method: String,
    /// With `--method auto`: each method tried and the noise its scales add to the validation
    /// score with every INT8-read tensor quantised (sd of the normal score); the least won.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub methods_tried: BTreeMap<String, f32>,
    /// Network runs the scales were measured on, and the normal frames they came from.
    pub windows: usize,
    pub dataset: String,
    /// Validation windows (normal frames, and the same frames at triple speed as
    /// pseudo-anomalies; none of them calibration windows) on which the plan was measured.
    #[serde(default)]
    pub validation_windows: usize,
    /// Noise INT8 adds to the score on those windows (rms after the best affine fit to FP32),
    /// in standard deviations of the normal score, with every INT8-read tensor quantised, and
    /// with the plan (`keep_float` left float).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_all_int8: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<f32>,
    /// Tensors left out of the cache, each with the reason.
    #[serde(default)]
    pub keep_float: BTreeMap<String, String>,
}

/// A loaded, validated package.
#[derive(Debug, Clone)]
pub struct ModelPackage {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl ModelPackage {
    pub fn load(dir: &Path) -> Result<Self, PackageError> {
        let manifest_path = dir.join(MANIFEST);
        if !manifest_path.is_file() {
            return Err(PackageError::NoManifest {
                dir: dir.to_owned(),
            });
        }
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| PackageError::Io {
            path: manifest_path.clone(),
            source,
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| PackageError::Manifest {
            path: manifest_path.clone(),
            reason: e.to_string().trim_end().to_owned(),
        })?;
        let pkg = Self {
            dir: dir.to_owned(),
            manifest,
        };
        pkg.validate()?;
        Ok(pkg)
    }

    /// A patch detector over model-resolution maps with the package's `[scoring]` patch and
    /// stride (patch means), the localisation every recipe and the detector share.
    pub fn patch_detector(
        &self,
    ) -> Result<crate::scoring::PatchDetector, crate::scoring::ScoringError> {
        let (m, g) = (&self.manifest.scoring, &self.manifest.input);
        crate::scoring::PatchDetector::new(
            crate::scoring::PatchConfig {
                height: m.patch[0],
                width: m.patch[1],
                stride_y: m.stride[0],
                stride_x: m.stride[1],
            },
            crate::scoring::PatchReduce::Mean,
            g.width as usize,
            g.height as usize,
        )
    }

    pub fn onnx_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.onnx.file)
    }

    /// The median and spread (p99.9 - p50) of the raw score on normal training frames, when
    /// the package is calibrated (`vigil calib scores`): where the default normaliser starts
    /// and its scale (see `scoring::default_normalizer`).
    pub fn normal_scores(&self) -> Option<crate::scoring::NormalScores> {
        let c = self.manifest.calibration.as_ref()?;
        Some(crate::scoring::NormalScores {
            median: c.score.p50,
            spread: c.score.p999 - c.score.p50,
        })
    }

    /// Where the package's INT8 calibration cache lives (`vigil calib int8` writes it; TensorRT's
    /// INT8 and best precisions read it). It may not exist.
    pub fn calib_cache_path(&self) -> PathBuf {
        self.dir.join(CALIB_CACHE_FILE)
    }

    fn invalid(&self, reason: String) -> PackageError {
        PackageError::Invalid {
            dir: self.dir.clone(),
            reason,
        }
    }

    fn validate(&self) -> Result<(), PackageError> {
        let m = &self.manifest;
        if m.schema != SCHEMA {
            return Err(self.invalid(format!(
                "manifest schema is `{}`, this vigil reads `{SCHEMA}`; upgrade vigil or re-export the package",
                m.schema
            )));
        }
        let g = &m.input;
        if g.channels != 1 && g.channels != 3 {
            return Err(self.invalid(format!(
                "[input] channels = {} must be 1 (gray) or 3 (RGB)",
                g.channels
            )));
        }
        if g.width == 0 || g.height == 0 || g.width > 4096 || g.height > 4096 {
            return Err(self.invalid(format!(
                "[input] {}x{} is not a usable model resolution",
                g.width, g.height
            )));
        }
        if g.pixel_range[0] >= g.pixel_range[1] || !g.pixel_range.iter().all(|v| v.is_finite()) {
            return Err(self.invalid(format!(
                "[input] pixel_range {:?} must be [low, high] with low < high",
                g.pixel_range
            )));
        }
        let [ph, pw] = m.scoring.patch;
        let [sy, sx] = m.scoring.stride;
        if ph == 0
            || pw == 0
            || sy == 0
            || sx == 0
            || ph > g.height as usize
            || pw > g.width as usize
        {
            return Err(self.invalid(format!(
                "[scoring] patch {:?} / stride {:?} must be non-zero and fit the {}x{} input",
                m.scoring.patch, m.scoring.stride, g.width, g.height
            )));
        }
        if let Some(f) = &m.flow {
            f.farneback()
                .validate()
                .map_err(|e| self.invalid(format!("{e}")))?;
        }
        if let Some(o) = &m.objects {
            o.params()
                .validate()
                .map_err(|e| self.invalid(format!("{e}")))?;
            if m.flow.is_none() {
                return Err(self.invalid(
                    "[objects] needs a [flow] table: object cubes carry the flow between their frames".into(),
                ));
            }
        }
        if let Some(d) = &m.detector {
            self.validate_detector(d)?;
        }
        if let Some(c) = &m.calibration {
            for (k, s) in &c.components {
                if s.std.is_nan() || s.std <= 0.0 || !s.mean.is_finite() {
                    return Err(self.invalid(format!(
                        "[calibration] component `{k}` has std {} (must be > 0); re-run `vigil calib scores`",
                        s.std
                    )));
                }
            }
        }
        let onnx = self.onnx_path();
        if !onnx.is_file() {
            return Err(self.invalid(format!(
                "{} is missing; the manifest names it in [onnx] file",
                m.onnx.file
            )));
        }
        let actual = sha256_file(&onnx).map_err(|source| PackageError::Io {
            path: onnx.clone(),
            source,
        })?;
        if !actual.eq_ignore_ascii_case(&m.onnx.sha256) {
            return Err(PackageError::Checksum {
                dir: self.dir.clone(),
                file: m.onnx.file.clone(),
                expected: m.onnx.sha256.clone(),
                actual,
                fix: "re-export the package or restore the file",
            });
        }
        if let Some(q) = &m.int8 {
            self.validate_int8(q)?;
        }
        let iface =
            read_interface(&onnx).map_err(|r| self.invalid(format!("{}: {r}", m.onnx.file)))?;
        check_io(&m.onnx.inputs, &iface.inputs, "input")
            .map_err(|r| self.invalid(format!("{}: {r}", m.onnx.file)))?;
        check_io(&m.onnx.outputs, &iface.outputs, "output")
            .map_err(|r| self.invalid(format!("{}: {r}", m.onnx.file)))?;
        for spec in &m.onnx.inputs {
            let s = &spec.shape;
            match m.objects.map(|o| o.params()) {
                // Every image input is [1, C*k, H, W]: batch 1, channels a multiple of the frame's.
                None if s.len() != 4
                    || s[0] != 1
                    || s[2] != g.height as usize
                    || s[3] != g.width as usize
                    || s[1] % g.channels as usize != 0 =>
                {
                    return Err(self.invalid(format!(
                        "input `{}` has shape {:?} but [input] says {}x{} with {} channel(s); expected [1, k*{}, {}, {}]",
                        spec.name, s, g.width, g.height, g.channels, g.channels, g.height, g.width
                    )));
                }
                // Object cubes: [slots, k, cube, cube].
                Some(o)
                    if s.len() != 4
                        || s[0] != o.slots as usize
                        || s[2] != o.cube as usize
                        || s[3] != o.cube as usize =>
                {
                    return Err(self.invalid(format!(
                        "input `{}` has shape {:?} but [objects] says {} slots of {}x{} cubes; expected [{}, k, {}, {}]",
                        spec.name, s, o.slots, o.cube, o.cube, o.slots, o.cube, o.cube
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `[int8]`: the cache present, unchanged, and computed on this very ONNX.
    fn validate_int8(&self, q: &Int8Section) -> Result<(), PackageError> {
        let redo = format!(
            "re-run `vigil calib int8 {} --dataset DIR` (normal frames of the scene)",
            self.dir.display()
        );
        if !q
            .onnx_sha256
            .eq_ignore_ascii_case(&self.manifest.onnx.sha256)
        {
            return Err(self.invalid(format!(
                "[int8] the calibration cache was computed on an ONNX with sha256 {} but {} has {}; its scales do not belong to this network: {redo}",
                q.onnx_sha256, self.manifest.onnx.file, self.manifest.onnx.sha256
            )));
        }
        let path = self.calib_cache_path();
        if !path.is_file() {
            return Err(self.invalid(format!(
                "{CALIB_CACHE_FILE} is missing but the manifest has an [int8] table: restore it or {redo}"
            )));
        }
        let actual = sha256_file(&path).map_err(|source| PackageError::Io {
            path: path.clone(),
            source,
        })?;
        if !actual.eq_ignore_ascii_case(&q.sha256) {
            return Err(PackageError::Checksum {
                dir: self.dir.clone(),
                file: CALIB_CACHE_FILE.into(),
                expected: q.sha256.clone(),
                actual,
                fix: "restore the file or re-run `vigil calib int8` on the package",
            });
        }
        Ok(())
    }

    /// `[detector]`: only beside `[objects]`, the file present, unchanged and a detector of the
    /// declared layout.
    fn validate_detector(&self, d: &DetectorSpec) -> Result<(), PackageError> {
        if self.manifest.objects.is_none() {
            return Err(self.invalid(
                "[detector] needs an [objects] table: detections join the motion boxes of an object-centric recipe (hf2vad)".into(),
            ));
        }
        let path = self.dir.join(&d.file);
        if !path.is_file() {
            return Err(self.invalid(format!(
                "{} is missing; the manifest names it in [detector] file",
                d.file
            )));
        }
        let actual = sha256_file(&path).map_err(|source| PackageError::Io {
            path: path.clone(),
            source,
        })?;
        if !actual.eq_ignore_ascii_case(&d.sha256) {
            return Err(PackageError::Checksum {
                dir: self.dir.clone(),
                file: d.file.clone(),
                expected: d.sha256.clone(),
                actual,
                fix: "restore the detector file, or put the new file's sha256 in [detector] sha256",
            });
        }
        let iface = read_interface(&path).map_err(|r| self.invalid(format!("{}: {r}", d.file)))?;
        d.check(&iface)
            .map_err(|e| self.invalid(format!("{}: {e}", d.file)))?;
        Ok(())
    }

    /// Rewrites the manifest (e.g. after calibration) atomically: temp file, fsync, rename.
    pub fn save_manifest(&self) -> Result<(), PackageError> {
        let path = self.dir.join(MANIFEST);
        let text = toml::to_string_pretty(&self.manifest).map_err(|e| PackageError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let io = |source| PackageError::Io {
            path: path.clone(),
            source,
        };
        write_atomically(&path, text.as_bytes()).map_err(io)
    }
}

/// Replaces `path` with `bytes` so that a reader (or a power cut) sees the old file or the new
/// one, never a torn mix: a temporary file in the same directory, fsync, rename. Used for the
/// manifest and for the calibration cache a package carries.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path names no file")
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn check_io(manifest: &[TensorSpec], graph: &[TensorSpec], what: &str) -> Result<(), String> {
    for m in manifest {
        match graph.iter().find(|g| g.name == m.name) {
            None => {
                return Err(format!(
                    "the manifest names {what} `{}` but the graph's {what}s are {}",
                    m.name,
                    names(graph)
                ))
            }
            Some(g) if g.shape != m.shape => {
                return Err(format!(
                    "{what} `{}` has shape {:?} in the graph but {:?} in the manifest (dynamic dimensions show as 0; export with static shapes)",
                    m.name, g.shape, m.shape
                ))
            }
            Some(_) => {}
        }
    }
    if manifest.len() != graph.len() {
        return Err(format!(
            "the graph has {what}s {} but the manifest lists {}",
            names(graph),
            names(manifest)
        ));
    }
    Ok(())
}

fn names(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("`{}`", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}
