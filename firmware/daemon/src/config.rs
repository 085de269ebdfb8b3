//! The daemon's TOML configuration (`/etc/vigil/vigil.toml`).
//!
//! Every mistake is reported with the file, the key and, where it can be found, the line:
//! syntax errors, unknown keys and wrong types come from the TOML parser with their position;
//! range and consistency checks run after parsing and point back at the key's line.

use crate::mqtt::MqttConfig;
use crate::source::SourceConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vigil_engine::scoring::NormalizerConfig;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config {path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}{}: `{key}` {problem}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        key: String,
        line: Option<usize>,
        problem: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Broker connection; `vigil run` needs it, `vigil demo` brings its own broker.
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub engines: EnginesConfig,
    #[serde(rename = "camera")]
    pub cameras: Vec<CameraConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnginesConfig {
    /// TensorRT engine cache; must be writable when a camera uses the TensorRT backend.
    #[serde(default = "default_engine_dir")]
    pub dir: PathBuf,
}

impl Default for EnginesConfig {
    fn default() -> Self {
        Self {
            dir: default_engine_dir(),
        }
    }
}

fn default_engine_dir() -> PathBuf {
    PathBuf::from(crate::backend::DEFAULT_ENGINE_DIR)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Where events wait for the broker's acknowledgement; must be writable and persistent.
    #[serde(default = "default_outbox_dir")]
    pub dir: PathBuf,
    /// Oldest events are dropped (and counted in health) beyond this many.
    #[serde(default = "default_outbox_max")]
    pub max_messages: usize,
    /// Most disk space the journal may take, in MiB (oldest segment dropped beyond it).
    #[serde(default = "default_outbox_max_mb")]
    pub max_mb: u64,
    /// `"always"`: every event is on the storage device before it is sent (default);
    /// `"never"`: leave flushing to the kernel (less flash wear; a power cut may lose the
    /// last seconds of events). docs/reliability.md.
    #[serde(default)]
    pub fsync: crate::mqtt::FsyncPolicy,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            dir: default_outbox_dir(),
            max_messages: default_outbox_max(),
            max_mb: default_outbox_max_mb(),
            fsync: Default::default(),
        }
    }
}

impl OutboxConfig {
    pub fn options(&self) -> crate::mqtt::OutboxOptions {
        crate::mqtt::OutboxOptions {
            max_messages: self.max_messages,
            max_bytes: self.max_mb.saturating_mul(1024 * 1024),
            fsync: self.fsync,
        }
    }
}

fn default_outbox_dir() -> PathBuf {
    PathBuf::from("/var/lib/vigil/outbox")
}
fn default_outbox_max() -> usize {
    10_000
}
fn default_outbox_max_mb() -> u64 {
    64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Seconds between health messages (0 disables them).
    #[serde(default = "default_health_interval")]
    pub interval_s: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval_s: default_health_interval(),
        }
    }
}
fn default_health_interval() -> u64 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Topic part: `vigil/<device>/<name>/events`.
    pub name: String,
    /// Model package directory.
    pub model: PathBuf,
    pub source: SourceConfig,
    /// Where the model runs: `{ kind = "cpu" }` (tract, default),
    /// `{ kind = "onnxruntime", threads = 1 }` (docs/onnxruntime.md) or
    /// `{ kind = "tensorrt", precision = "fp16", dla = 0 }` (docs/tensorrt.md).
    #[serde(default)]
    pub backend: crate::backend::BackendConfig,
    /// Largest tolerated jump in frame numbers before the recipe's window restarts
    /// (1 = every frame must follow its predecessor).
    #[serde(default = "one")]
    pub max_gap: u64,
    /// Block capture instead of dropping when inference is behind, so every frame is scored.
    /// Defaults to true for a directory replay (a recording is scored frame by frame, and the
    /// same replay raises the same events on every run, however fast the machine) and false
    /// for a live camera, which cannot be paused: there the oldest frame is dropped, counted.
    /// `lossless = false` on a paced replay imitates a live camera.
    #[serde(default)]
    pub lossless: Option<bool>,
    /// Defaults to the warm baseline of the package's calibration
    /// (`vigil_engine::scoring::default_normalizer`).
    #[serde(default)]
    pub normalizer: Option<NormalizerConfig>,
    /// `on`/`off`, or `false_alarms_per_hour` (crate::thresholds).
    #[serde(default)]
    pub events: crate::thresholds::EventsConfig,
    /// Regions reported with an event: patches whose normalised error exceeds this fraction of
    /// the frame's maximum.
    #[serde(default = "default_region_fraction")]
    pub region_fraction: f32,
}

fn one() -> u64 {
    1
}
fn default_region_fraction() -> f32 {
    0.7
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        cfg.validate(text, path)?;
        Ok(cfg)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            line: locate(text, key),
            problem,
        };
        self.mqtt
            .validate()
            .map_err(|e| invalid("mqtt", e.to_string()))?;
        if self.outbox.max_messages == 0 {
            return Err(invalid("outbox.max_messages", "must be at least 1".into()));
        }
        if self.outbox.max_mb == 0 || self.outbox.max_mb > 1024 * 1024 {
            return Err(invalid(
                "outbox.max_mb",
                format!(
                    "{} is out of range: give 1 to 1048576 MiB",
                    self.outbox.max_mb
                ),
            ));
        }
        if self.cameras.is_empty() {
            return Err(invalid(
                "camera",
                "at least one [[camera]] table is needed".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.cameras.iter().enumerate() {
            let key = |k: &str| format!("camera[{i}].{k}");
            crate::mqtt::message::validate_topic_part("camera name", &c.name)
                .map_err(|e| invalid(&key("name"), e.to_string()))?;
            if !names.insert(c.name.as_str()) {
                return Err(invalid(
                    &key("name"),
                    format!("`{}` is used by two cameras; names must be unique", c.name),
                ));
            }
            if !c.model.join(vigil_engine::package::MANIFEST).is_file() {
                return Err(invalid(
                    &key("model"),
                    format!(
                        "{} is not a model package (no model.toml there); {}",
                        c.model.display(),
                        model_hint(&c.model)
                    ),
                ));
            }
            if !(c.region_fraction > 0.0 && c.region_fraction <= 1.0) {
                return Err(invalid(
                    &key("region_fraction"),
                    format!("{} must be in (0, 1]", c.region_fraction),
                ));
            }
            c.events
                .validate()
                .map_err(|e| invalid(&key("events"), e.to_string()))?;
            if let Some(n) = &c.normalizer {
                vigil_engine::scoring::Normalizer::from_config(n)
                    .map_err(|e| invalid(&key("normalizer"), e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// Best-effort line of a dotted key (`camera[0].events`): the line of its last component's
/// assignment or table header, searched after the line of the enclosing array element.
fn locate(text: &str, key: &str) -> Option<usize> {
    let mut start = 0usize;
    let mut last = key;
    for part in key.split('.') {
        last = part;
        if let Some((name, idx)) = part.strip_suffix(']').and_then(|p| p.split_once('[')) {
            let idx: usize = idx.parse().ok()?;
            let header = format!("[[{name}]]");
            let line = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with(&header))
                .nth(idx)?
                .0;
            start = line;
            last = name;
        }
    }
    text.lines()
        .enumerate()
        .skip(start)
        .find(|(_, l)| {
            let t = l.trim_start();
            t.strip_prefix(last)
                .is_some_and(|r| r.trim_start().starts_with('='))
                || t.starts_with(&format!("[{last}]"))
                || t.contains(&format!(".{last}]"))
                || t.starts_with(&format!("[[{last}]]"))
        })
        .map(|(i, _)| i + 1)
}

/// Where the shipped model packages are: installed by the .deb, or in the checkout the running
/// binary was built in (`target/<profile>/vigil` -> `engine/models`).
fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/share/vigil/models")];
    if let Some(repo) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
    {
        dirs.push(repo.join("engine/models"));
    }
    dirs
}

/// The fix for a `model` that is not a package: a package that exists (preferring one named
/// like the rejected path), never the rejected path itself.
fn model_hint(rejected: &Path) -> String {
    let wanted = rejected.file_name();
    let mut found: Vec<PathBuf> = model_dirs()
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(vigil_engine::package::MANIFEST).is_file() && p != rejected)
        .collect();
    found.sort_by_key(|p| (p.file_name() != wanted, p.clone()));
    match found.first() {
        Some(p) => format!("point it at a package directory, e.g. {}", p.display()),
        None => "point it at a package directory (the vigil .deb installs them under \
                 /usr/share/vigil/models; `engine/zoo` exports new ones)"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir() -> String {
        format!(
            "{}/../../engine/models/ped2-bdfi",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn good() -> String {
        format!(
            r#"
[mqtt]
host = "127.0.0.1"
device = "box1"

[outbox]
dir = "/tmp/vigil-outbox"

[[camera]]
name = "cam0"
model = "{}"
source = {{ kind = "synthetic", width = 360, height = 240, fps = 10.0, seed = 1 }}
events = {{ on = 0.6, off = 0.4 }}
"#,
            model_dir()
        )
    }

    #[test]
    fn parses_a_good_config() {
        let c = Config::parse(&good(), Path::new("t.toml")).unwrap();
        assert_eq!(c.cameras.len(), 1);
        assert_eq!(c.cameras[0].events.on, Some(0.6));
        assert_eq!(c.health.interval_s, 10);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = good().replace("[outbox]", "[outbox]\nsize = 3");
        let e = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("size") && e.contains("line 7"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let text = good().replace(
            "dir = \"/tmp/vigil-outbox\"",
            "dir = \"/tmp/x\"\nmax_messages = \"many\"",
        );
        let e = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_messages") || e.contains("line 8"), "{e}");
        assert!(e.contains("line 8"), "{e}");
    }

    #[test]
    fn out_of_range_value_names_key_and_line() {
        let text = good().replace("off = 0.4", "off = 0.9");
        let e = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("camera[0].events") && e.contains("line 13"),
            "{e}"
        );
    }

    #[test]
    fn missing_model_is_explained() {
        let text = good().replace(&model_dir(), "/nonexistent/model");
        let e = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a model package") && e.contains("line 11"),
            "{e}"
        );
    }

    #[test]
    fn topic_injection_in_camera_name_is_rejected() {
        let text = good().replace("name = \"cam0\"", "name = \"cam/#\"");
        let e = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("camera[0].name"), "{e}");
    }
}
