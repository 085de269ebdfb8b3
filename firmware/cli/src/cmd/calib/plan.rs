//! The INT8 precision plan: which activations stay out of the calibration cache, so that the
//! layers reading them run FP16 (`--precision best`) or FP32 on the box, chosen by what
//! quantising each one does to the score of held-out *training* windows. No test label is
//! read: the criterion is how much noise INT8 adds to the score of normal frames (and of the
//! same frames played at triple speed, a pseudo-anomaly made from training data, so that the
//! plan also protects the score where it is high), measured in standard deviations of the
//! normal score. Noise, not change: an offset or a gain between the FP32 and INT8 scores
//! reorders no frame and the rolling normaliser absorbs it, so only what is left after the best
//! affine fit counts ([`noise`]).
//!
//! 1. FP32 scores of the validation windows.
//! 2. Every INT8-read activation quantised: if the noise is within the budget, nothing is kept
//!    float.
//! 3. Otherwise each activation quantised alone, ranked by its noise; then the most sensitive
//!    are kept float one by one, re-measuring with all the others quantised, until the noise is
//!    within the budget.

use super::int8::{run_windows, WindowAt};
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use vigil_engine::analyzer::Analyzer;
use vigil_engine::backend::probe::{fake_quantize, Activation, ActivationHook};
use vigil_engine::dataset::Dataset;

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Precision plan budget: the noise INT8 may add to the score of validation windows (rms,
    /// after the best affine fit to FP32), in standard deviations of the normal score; the most
    /// sensitive tensors stay float until the noise is within it.
    #[arg(long, default_value_t = 0.05)]
    pub budget: f32,
    /// Validation windows for the plan (two thirds normal, one third at triple speed), taken
    /// from the training videos between the calibration windows.
    #[arg(long, default_value_t = 48)]
    pub validation_windows: usize,
    /// Skip the plan: every activation the calibration measured goes into the cache (except
    /// --keep-float).
    #[arg(long)]
    pub no_plan: bool,
}

/// Quantise-dequantises, at its scale, every INT8-read activation named in the map; the map can
/// be swapped between runs, so one network serves every configuration the plan measures.
#[derive(Clone, Default)]
pub struct Quantiser(Arc<Mutex<HashMap<String, f32>>>);

impl Quantiser {
    pub fn new(scales: HashMap<String, f32>) -> Self {
        Self(Arc::new(Mutex::new(scales)))
    }

    fn set(&self, scales: HashMap<String, f32>) {
        if let Ok(mut g) = self.0.lock() {
            *g = scales;
        }
    }
}

impl ActivationHook for Quantiser {
    fn visit(&mut self, act: &Activation, data: &mut [f32]) {
        if !act.int8 {
            return;
        }
        let Ok(g) = self.0.lock() else { return };
        if let Some(&s) = g.get(&act.name) {
            fake_quantize(data, s);
        }
    }
}

/// A tensor the plan keeps float, with the noise it adds when quantised alone.
#[derive(Debug, Clone)]
pub struct Kept {
    pub name: String,
    pub noise_alone: f32,
    pub rank: usize,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub kept: Vec<Kept>,
    pub candidates: usize,
    pub windows: usize,
    pub noise_all_int8: f32,
    pub noise: f32,
}

/// Validation windows: `n` positions of the training videos that are not calibration windows,
/// two thirds at normal speed, one third at triple speed (every third frame).
pub fn validation_windows(
    ds: &Dataset,
    window: usize,
    n: usize,
    calibration: &[WindowAt],
) -> Vec<WindowAt> {
    let taken: std::collections::HashSet<(usize, usize)> =
        calibration.iter().map(|w| (w.video, w.end)).collect();
    let fast = n / 3;
    let mut out = Vec::with_capacity(n);
    for (stride, count) in [(1, n - fast), (3, fast)] {
        let usable: Vec<WindowAt> = ds
            .videos
            .iter()
            .enumerate()
            .flat_map(|(video, v)| {
                ((window - 1) * stride..v.frames.len()).map(move |end| WindowAt {
                    video,
                    end,
                    stride,
                })
            })
            .filter(|w| !taken.contains(&(w.video, w.end)))
            .collect();
        if usable.is_empty() || count == 0 {
            continue;
        }
        let count = count.min(usable.len());
        // Offset by half a step, so the windows fall between the calibration windows.
        out.extend((0..count).map(|i| usable[(2 * i + 1) * usable.len() / (2 * count)]));
    }
    out
}

/// How much of the INT8 score `q` is noise, in FP32 score units per `sd`: the rms residual of
/// the least-squares fit `q ~ a * f + b` on the FP32 scores `f`, divided by `a`. An offset or
/// a gain is not counted, because neither changes which frames score higher (the AUC) and the
/// rolling normaliser absorbs both at run time; reordering is what INT8 must not do. A fit with
/// no positive gain (the score no longer follows FP32 at all) counts as infinitely noisy.
fn noise(q: &[f32], f: &[f32], sd: f32) -> f32 {
    let n = f.len().max(1) as f64;
    let mf = f.iter().map(|&x| x as f64).sum::<f64>() / n;
    let mq = q.iter().map(|&x| x as f64).sum::<f64>() / n;
    let (mut sff, mut sfq) = (0.0, 0.0);
    for (&x, &y) in f.iter().zip(q) {
        sff += (x as f64 - mf).powi(2);
        sfq += (x as f64 - mf) * (y as f64 - mq);
    }
    if sff == 0.0 {
        return 0.0;
    }
    let a = sfq / sff;
    if a.is_nan() || a <= 1e-6 {
        return f32::INFINITY;
    }
    let b = mq - a * mf;
    let rss: f64 = f
        .iter()
        .zip(q)
        .map(|(&x, &y)| (y as f64 - (a * x as f64 + b)).powi(2))
        .sum();
    ((rss / n).sqrt() / a / sd as f64) as f32
}

/// The FP32 scores of the validation windows and a network whose quantisation can be changed
/// between runs: every measurement of the plan (and of `--method auto`) is one run of it.
pub struct Planner<'a> {
    analyzer: Analyzer,
    quantiser: Quantiser,
    ds: &'a Dataset,
    windows: Vec<WindowAt>,
    fp32: Vec<f32>,
    sd: f32,
    bar: indicatif::ProgressBar,
}

impl<'a> Planner<'a> {
    /// `analyzer` runs a network hooked by `quantiser`; `normal_sd` is the standard deviation of
    /// the normal score (the package's `[calibration]`), else that of the validation scores.
    pub fn new(
        mut analyzer: Analyzer,
        quantiser: Quantiser,
        ds: &'a Dataset,
        windows: Vec<WindowAt>,
        normal_sd: Option<f32>,
    ) -> Result<Self> {
        if windows.is_empty() {
            bail!(
                "no window is left for the precision plan: every window of the videos went into calibration; use fewer --windows, more or longer clips, or --no-plan"
            );
        }
        let bar = indicatif::ProgressBar::new(windows.len() as u64);
        quantiser.set(HashMap::new());
        let fp32 = run_windows(&mut analyzer, ds, &windows, &bar)?;
        let sd = match normal_sd {
            Some(sd) if sd > 0.0 && sd.is_finite() => sd,
            _ => {
                let m = fp32.iter().sum::<f32>() / fp32.len() as f32;
                let v = fp32.iter().map(|x| (x - m).powi(2)).sum::<f32>() / fp32.len() as f32;
                if v > 0.0 {
                    v.sqrt()
                } else {
                    1.0
                }
            }
        };
        Ok(Self {
            analyzer,
            quantiser,
            ds,
            windows,
            fp32,
            sd,
            bar,
        })
    }

    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// The noise (sd of the normal score) of the validation scores with `scales` quantised.
    pub fn noise(&mut self, scales: &HashMap<String, f32>) -> Result<f32> {
        self.quantiser.set(scales.clone());
        self.bar.inc_length(self.windows.len() as u64);
        let q = run_windows(&mut self.analyzer, self.ds, &self.windows, &self.bar)?;
        Ok(noise(&q, &self.fp32, self.sd))
    }

    /// Chooses the plan for `candidates` (the INT8-read activations with their scales).
    pub fn choose(&mut self, candidates: &HashMap<String, f32>, budget: f32) -> Result<Plan> {
        let noise_all_int8 = self.noise(candidates)?;
        log::info!(
            "INT8 plan: with every one of the {} INT8-read tensors quantised, the validation score carries {noise_all_int8:.4} sd of noise (budget {budget})",
            candidates.len()
        );
        let mut plan = Plan {
            kept: Vec::new(),
            candidates: candidates.len(),
            windows: self.windows.len(),
            noise_all_int8,
            noise: noise_all_int8,
        };
        if noise_all_int8 <= budget {
            return Ok(plan);
        }
        let mut ranked = Vec::with_capacity(candidates.len());
        let mut names: Vec<&String> = candidates.keys().collect();
        names.sort();
        for name in names {
            let alone = self.noise(&HashMap::from([(name.clone(), candidates[name])]))?;
            log::info!("INT8 plan: `{name}` quantised alone: {alone:.4} sd");
            ranked.push((name.clone(), alone));
        }
        // Most noise first; ties by name, so the plan is reproducible.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut quantised = candidates.clone();
        for (rank, (name, alone)) in ranked.iter().enumerate() {
            quantised.remove(name);
            plan.kept.push(Kept {
                name: name.clone(),
                noise_alone: *alone,
                rank: rank + 1,
            });
            plan.noise = if quantised.is_empty() {
                0.0
            } else {
                self.noise(&quantised)?
            };
            log::info!(
                "INT8 plan: keeping `{name}` float (alone: {alone:.4} sd): {:.4} sd with the other {} quantised",
                plan.noise,
                quantised.len()
            );
            if plan.noise <= budget {
                break;
            }
        }
        Ok(plan)
    }
}

impl Drop for Planner<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::noise;

    #[test]
    fn noise_ignores_offset_and_gain_but_not_reordering() {
        let f: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let affine: Vec<f32> = f.iter().map(|x| 3.0 * x - 7.0).collect();
        assert!(noise(&affine, &f, 1.0) < 1e-5);
        let reversed: Vec<f32> = f.iter().map(|x| -x).collect();
        assert_eq!(noise(&reversed, &f, 1.0), f32::INFINITY);
        // Alternating +-0.1 on top of a gain of 2: 0.1 rms in INT8 units, 0.05 in FP32 units;
        // with a normal-score sd of 0.5 that is 0.1 sd.
        let noisy: Vec<f32> = f
            .iter()
            .enumerate()
            .map(|(i, x)| 2.0 * x + if i % 2 == 0 { 0.1 } else { -0.1 })
            .collect();
        let n = noise(&noisy, &f, 0.5);
        assert!((n - 0.1).abs() < 0.01, "{n}");
    }
}
