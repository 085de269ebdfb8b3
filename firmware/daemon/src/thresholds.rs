//! `[camera.events]` as a user writes it: raw `on`/`off` scores, or a false-alarm rate
//! (`false_alarms_per_hour`) that the thresholds are derived from, using the package's
//! calibration on normal footage and the camera's frame rate.
//!
//! The derivation (docs/configuration.md, "Events"): the calibration records the quantiles of
//! the raw score on normal training footage (p50, p99, p99.9, max). An event needs
//! `min_frames_on` frames at or above `on`, and no two events share those frames, so the events
//! per hour of normal footage are at most `3600 x fps x P(score >= on) / min_frames_on`. Above
//! p99 the tail is taken as exponential through p99 and p99.9 (the rarest quantile a few minutes
//! of footage measure) and `on` is set where this bound meets the target, never below the
//! largest normal score seen. That is an upper bound under the tail model, and it holds while the
//! scene stays as calibrated: the normaliser follows slow drift, so the rate is relative to the
//! scene's current level.

use anyhow::{bail, Result};
use serde::Deserialize;
use vigil_engine::package::ModelPackage;
use vigil_engine::scoring::{EventConfig, NormalizerConfig};

/// `[camera.events]`. Either `on` and `off`, or `false_alarms_per_hour`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    #[serde(default)]
    pub on: Option<f32>,
    #[serde(default)]
    pub off: Option<f32>,
    /// Target rate of events on normal footage; `on` and `off` are derived from it.
    #[serde(default)]
    pub false_alarms_per_hour: Option<f64>,
    #[serde(default = "one")]
    pub min_frames_on: u32,
    #[serde(default = "one")]
    pub min_frames_off: u32,
    #[serde(default)]
    pub cooldown_frames: u32,
    #[serde(default)]
    pub update_every_frames: u32,
}

fn one() -> u32 {
    1
}

/// `off` as a share of `on` when derived from a rate: the shipped defaults' hysteresis
/// (0.35 / 0.5).
const OFF_SHARE: f32 = 0.7;

impl Default for EventsConfig {
    /// What a camera without an `events` table gets (`vigil_engine::scoring::default_events`).
    fn default() -> Self {
        let d = vigil_engine::scoring::default_events();
        Self {
            on: Some(d.on),
            off: Some(d.off),
            false_alarms_per_hour: None,
            min_frames_on: d.min_frames_on,
            min_frames_off: d.min_frames_off,
            cooldown_frames: d.cooldown_frames,
            update_every_frames: d.update_every_frames,
        }
    }
}

/// The thresholds a camera runs with, and how they were obtained (for `vigil check`).
#[derive(Debug, Clone)]
pub struct ResolvedEvents {
    pub config: EventConfig,
    /// `None` for thresholds given as scores.
    pub derivation: Option<String>,
}

impl EventsConfig {
    fn with(&self, on: f32, off: f32) -> EventConfig {
        EventConfig {
            on,
            off,
            min_frames_on: self.min_frames_on,
            min_frames_off: self.min_frames_off,
            cooldown_frames: self.cooldown_frames,
            update_every_frames: self.update_every_frames,
        }
    }

    /// What can be checked without the package: one way of giving the thresholds, a sane rate,
    /// and (for scores) the detector's own rules.
    pub fn validate(&self) -> Result<()> {
        match (self.on, self.off, self.false_alarms_per_hour) {
            (Some(on), Some(off), None) => Ok(self.with(on, off).validate()?),
            (None, None, Some(r)) if r.is_finite() && r > 0.0 => {
                // The rest of the detector's rules, with placeholder thresholds.
                Ok(self.with(0.5, 0.35).validate()?)
            }
            (None, None, Some(r)) => {
                bail!("false_alarms_per_hour must be a positive number, got {r}")
            }
            (_, _, Some(_)) => bail!(
                "give either false_alarms_per_hour or on and off, not both: the rate derives on and off"
            ),
            _ => bail!(
                "give on and off (scores in [0, 1]), or false_alarms_per_hour (e.g. 1) to derive them from the package's calibration"
            ),
        }
    }

    /// The thresholds for a camera: as given, or derived from the target rate with the
    /// package's calibration, the camera's normaliser and its frame rate.
    pub fn resolve(
        &self,
        pkg: &ModelPackage,
        normalizer: &NormalizerConfig,
        fps: Option<f32>,
    ) -> Result<ResolvedEvents> {
        self.validate()?;
        let rate = match (self.on, self.off, self.false_alarms_per_hour) {
            (Some(on), Some(off), _) => {
                return Ok(ResolvedEvents {
                    config: self.with(on, off),
                    derivation: None,
                })
            }
            (_, _, Some(rate)) => rate,
            _ => unreachable!("validate accepts on and off, or a rate"),
        };
        let Some(cal) = pkg.manifest.calibration.as_ref() else {
            bail!(
                "false_alarms_per_hour needs the package's calibration on normal footage, which {} lacks: run `vigil calib scores {} --dataset DIR`, or give on and off",
                pkg.manifest.name,
                pkg.dir.display()
            );
        };
        let Some(fps) = fps.filter(|f| f.is_finite() && *f > 0.0) else {
            bail!(
                "false_alarms_per_hour needs the camera's frame rate, and this source has none: set source.fps, or give on and off"
            );
        };
        if !matches!(normalizer, NormalizerConfig::Baseline { .. }) {
            bail!(
                "false_alarms_per_hour is derived for the baseline normaliser (the default); with this normaliser give on and off"
            );
        }
        let q = &cal.score;
        let frames_per_hour = 3600.0 * f64::from(fps);
        let p_target = rate * f64::from(self.min_frames_on) / frames_per_hour;
        let raw_on = tail_quantile(q.p99, q.p999, p_target).max(q.max);
        let Some(on) = score_of(normalizer, raw_on) else {
            bail!(
                "the package's calibration gives no usable threshold for {rate} false alarms per hour (raw {raw_on}); give on and off"
            );
        };
        let off = on * OFF_SHARE;
        let config = self.with(on, off);
        config.validate()?;
        Ok(ResolvedEvents {
            config,
            derivation: Some(format!(
                "on {on:.3} = raw {raw_on:.4} derived from {rate} false alarm(s) per hour at {fps} frames/s \
                 (per-frame exceedance {p_target:.2e} on normal footage with min_frames_on {}, \
                 exponential tail through p99 {:.4} and p99.9 {:.4}, floor the normal maximum {:.4}, \
                 calibration of {} frames); off {off:.3} = {OFF_SHARE} x on",
                self.min_frames_on, q.p99, q.p999, q.max, cal.frames
            )),
        })
    }
}

/// The raw score exceeded with probability `p` under an exponential tail through the p99 and
/// p99.9 quantiles (`p` above 1 % returns p99 itself: the tail model starts there).
fn tail_quantile(p99: f32, p999: f32, p: f64) -> f32 {
    if p >= 0.01 {
        return p99;
    }
    let beta = f64::from((p999 - p99).max(0.0)) / std::f64::consts::LN_10;
    (f64::from(p999) + beta * (1e-3 / p).ln()) as f32
}

/// The normalised score the normaliser gives `raw` at its starting level: the inverse of
/// `NormalizerConfig::raw_at`, found by bisection on (0, 1) (raw_at is increasing).
fn score_of(normalizer: &NormalizerConfig, raw: f32) -> Option<f32> {
    let (mut lo, mut hi) = (1e-6f32, 1.0 - 1e-6f32);
    if normalizer.raw_at(lo)? > raw || normalizer.raw_at(hi)? < raw {
        return None;
    }
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if normalizer.raw_at(mid)? < raw {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(0.5 * (lo + hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_passes_through_its_quantiles_and_falls_tenfold_per_step() {
        assert!((tail_quantile(1.0, 2.0, 1e-3) - 2.0).abs() < 1e-6);
        assert!((tail_quantile(1.0, 2.0, 1e-4) - 3.0).abs() < 1e-5);
        assert_eq!(tail_quantile(1.0, 2.0, 0.05), 1.0);
    }

    #[test]
    fn score_of_inverts_raw_at() {
        let n = NormalizerConfig::Baseline {
            median: 0.2,
            spread: 0.3,
            window: 6000,
            gate: 1.0,
            relearn: 3000,
        };
        for y in [0.1f32, 0.5, 0.9] {
            let raw = n.raw_at(y).unwrap();
            assert!((score_of(&n, raw).unwrap() - y).abs() < 1e-4, "{y}");
        }
    }

    #[test]
    fn exactly_one_way_of_giving_thresholds() {
        let parse = |s: &str| toml::from_str::<EventsConfig>(s).unwrap().validate();
        assert!(parse("on = 0.5\noff = 0.35").is_ok());
        assert!(parse("false_alarms_per_hour = 1").is_ok());
        let both = parse("on = 0.5\noff = 0.35\nfalse_alarms_per_hour = 1").unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let none = parse("min_frames_on = 3").unwrap_err();
        assert!(none.to_string().contains("false_alarms_per_hour"), "{none}");
        assert!(parse("false_alarms_per_hour = 0").is_err());
    }
}
