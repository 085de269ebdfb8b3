//! Recipes: what each paper feeds its network and how it turns the network's output into a
//! score. A recipe owns no backend; the pipeline moves tensors between the two so the same recipe
//! serves tract on a laptop and TensorRT on a Jetson.

pub mod bdfi;
pub mod hf2vad;
pub mod maam_net;
pub mod stm_ae;
pub mod ustn_dsc;

use crate::package::ModelPackage;
use crate::scoring::errormap::ErrorMap;
use crate::tensor::Tensor;
use crate::window::FrameWindow;
use std::time::Duration;
use thiserror::Error;

/// Most score components any recipe reports (HF2-VAD: score, S_r, S_p, objects).
pub const MAX_COMPONENTS: usize = 4;

#[derive(Debug, Error)]
pub enum RecipeError {
    #[error("model package `{package}` names recipe `{recipe}`; this vigil knows: {known}")]
    Unknown {
        package: String,
        recipe: String,
        known: &'static str,
    },
    #[error("model package `{package}`, [params] {key}: {reason}")]
    Param {
        package: String,
        key: String,
        reason: String,
    },
    #[error("model package `{package}`: {reason}")]
    Package { package: String, reason: String },
    #[error("recipe needs a full window of {needed} frames, has {have}")]
    Window { needed: usize, have: usize },
    #[error(
        "network output `{name}` contains non-finite values; the model or its input is broken"
    )]
    NonFinite { name: String },
    /// A scoring stage rejected a map; the recipe sized them all from the package, so this is
    /// a bug, reported rather than panicking.
    #[error("scoring: {0}")]
    Scoring(#[from] crate::scoring::ScoringError),
}

pub const KNOWN_RECIPES: &str = "bdfi, hf2vad, maam-net, stm-ae, ustn-dsc";

/// One scored frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Index of the frame the score refers to (older than the newest frame by `latency_frames`).
    pub frame_index: u64,
    pub timestamp: Duration,
    /// Streaming score, higher = more anomalous: components fused with training statistics when
    /// the package is calibrated, the plain weighted sum otherwise.
    pub raw: f32,
    /// Raw components in the order of [`Recipe::component_names`].
    pub components: [f32; MAX_COMPONENTS],
}

pub trait Recipe: Send {
    fn name(&self) -> &'static str;
    /// Frames the recipe needs before it can score.
    fn window_len(&self) -> usize;
    /// How many frames behind the newest frame the scored frame is.
    fn latency_frames(&self) -> u32;
    fn component_names(&self) -> &'static [&'static str];
    /// Fills the network inputs from a full window.
    fn prepare(&mut self, window: &FrameWindow, inputs: &mut [Tensor]) -> Result<(), RecipeError>;
    /// Scores the window's target frame from the network outputs; the localisation error map
    /// (model resolution) is then available from [`Recipe::error_map`].
    fn score(&mut self, window: &FrameWindow, outputs: &[Tensor]) -> Result<Scored, RecipeError>;
    fn error_map(&self) -> &ErrorMap;
    /// The streaming score from raw components (what `score` puts in `Scored::raw`); exposed so
    /// calibration can recompute it after changing the package's statistics.
    fn fuse(&self, components: &[f32; MAX_COMPONENTS]) -> f32;
    /// The paper's evaluation protocol: frame scores of one whole video from the per-frame
    /// component series (`components[c][t]`). Not causal (papers normalise per video).
    fn paper_scores(&self, components: &[Vec<f32>]) -> Vec<f32>;
    /// The paper's own score formula on the same components, where the package's `[params]`
    /// make [`Recipe::paper_scores`] something else (a documented extension term or other
    /// weights); `None` when the two are the same, so evaluations report both only when they differ.
    fn paper_formula_scores(&self, _components: &[Vec<f32>]) -> Option<Vec<f32>> {
        None
    }
}

/// Builds the recipe a package names, validating its `[params]`.
pub fn build(pkg: &ModelPackage) -> Result<Box<dyn Recipe>, RecipeError> {
    match pkg.manifest.recipe.as_str() {
        "bdfi" => Ok(Box::new(bdfi::Bdfi::new(pkg)?)),
        "hf2vad" => Ok(Box::new(hf2vad::Hf2Vad::new(pkg)?)),
        "maam-net" => Ok(Box::new(maam_net::MaamNet::new(pkg)?)),
        "stm-ae" => Ok(Box::new(stm_ae::StmAe::new(pkg)?)),
        "ustn-dsc" => Ok(Box::new(ustn_dsc::UstnDsc::new(pkg)?)),
        other => Err(RecipeError::Unknown {
            package: pkg.manifest.name.clone(),
            recipe: other.to_owned(),
            known: KNOWN_RECIPES,
        }),
    }
}

/// Flow recipes are served the flow they were trained on, so their package must say which.
pub(crate) fn require_flow(pkg: &ModelPackage, recipe: &str) -> Result<(), RecipeError> {
    if pkg.manifest.flow.is_none() {
        return Err(RecipeError::Package {
            package: pkg.manifest.name.clone(),
            reason: format!(
                "recipe {recipe} needs a [flow] table (the estimator its training flows came from), e.g. method = \"farneback\""
            ),
        });
    }
    Ok(())
}

/// `(mean, std)` of one calibrated component, `None` for an uncalibrated package.
pub(crate) fn calibrated(
    pkg: &ModelPackage,
    component: &str,
) -> Result<Option<(f32, f32)>, RecipeError> {
    pkg.manifest
        .calibration
        .as_ref()
        .map(|c| {
            c.components
                .get(component)
                .map(|s| (s.mean, s.std))
                .ok_or_else(|| RecipeError::Package {
                    package: pkg.manifest.name.clone(),
                    reason: format!(
                        "[calibration] lacks component `{component}`; re-run `vigil calib scores`"
                    ),
                })
        })
        .transpose()
}

/// Streaming score of a PSNR component (stm-ae, ustn-dsc): lower PSNR = more anomalous, so
/// `-PSNR`, z-scored with the training statistics when calibrated.
pub(crate) fn fuse_psnr(stats: Option<(f32, f32)>, psnr: f32) -> f32 {
    match stats {
        Some((mean, std)) => (mean - psnr) / std,
        None => -psnr,
    }
}

/// The papers' score from a video's PSNR series: `1 - minmax(PSNR)`.
pub(crate) fn inverted_minmax(mut s: Vec<f32>) -> Vec<f32> {
    let _ = crate::scoring::metrics::minmax_normalize(&mut s);
    s.iter_mut().for_each(|v| *v = 1.0 - *v);
    s
}

/// Reads an optional float parameter from `[params]`, checking its range.
pub(crate) fn param_f32(
    pkg: &ModelPackage,
    key: &str,
    default: f32,
    range: (f32, f32),
) -> Result<f32, RecipeError> {
    let err = |reason: String| RecipeError::Param {
        package: pkg.manifest.name.clone(),
        key: key.to_owned(),
        reason,
    };
    let v = match pkg.manifest.params.get(key) {
        None => default,
        Some(toml::Value::Float(f)) => *f as f32,
        Some(toml::Value::Integer(i)) => *i as f32,
        Some(other) => {
            return Err(err(format!(
                "expected a number, found {}",
                other.type_str()
            )))
        }
    };
    if !(v >= range.0 && v <= range.1) {
        return Err(err(format!("{v} is outside [{}, {}]", range.0, range.1)));
    }
    Ok(v)
}

pub(crate) fn param_str<'a>(
    pkg: &'a ModelPackage,
    key: &str,
    default: &'a str,
    allowed: &[&str],
) -> Result<&'a str, RecipeError> {
    let v = match pkg.manifest.params.get(key) {
        None => default,
        Some(toml::Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(RecipeError::Param {
                package: pkg.manifest.name.clone(),
                key: key.to_owned(),
                reason: format!("expected a string, found {}", other.type_str()),
            })
        }
    };
    if !allowed.contains(&v) {
        return Err(RecipeError::Param {
            package: pkg.manifest.name.clone(),
            key: key.to_owned(),
            reason: format!("`{v}` is not one of {}", allowed.join(", ")),
        });
    }
    Ok(v)
}

/// Finds a tensor of the manifest by name, so recipes do not depend on graph order.
pub(crate) fn io_index(
    pkg: &ModelPackage,
    outputs: bool,
    name: &str,
) -> Result<usize, RecipeError> {
    let list = if outputs {
        &pkg.manifest.onnx.outputs
    } else {
        &pkg.manifest.onnx.inputs
    };
    list.iter()
        .position(|s| s.name == name)
        .ok_or_else(|| RecipeError::Package {
            package: pkg.manifest.name.clone(),
            reason: format!(
                "recipe `{}` needs an {} named `{name}`; the manifest has {}",
                pkg.manifest.recipe,
                if outputs { "output" } else { "input" },
                list.iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}
