//! docs/configuration.md against the configuration structs: every key a struct accepts is in the
//! reference's table for it, and every example in the reference parses with the real parser.
//!
//! The keys are read from the structs themselves: they all refuse unknown keys, and serde's
//! refusal lists the keys it expected, so a key added to a struct without a row in the reference
//! fails this test.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use vigil_daemon::backend::BackendConfig;
use vigil_daemon::config::{CameraConfig, Config, EnginesConfig, HealthConfig, OutboxConfig};
use vigil_daemon::mqtt::security::TlsConfig;
use vigil_daemon::mqtt::MqttConfig;
use vigil_daemon::source::SourceConfig;
use vigil_daemon::thresholds::EventsConfig;
use vigil_engine::scoring::NormalizerConfig;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reference() -> String {
    let p = repo().join("docs/configuration.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The keys `T` accepts, from serde's refusal of an unknown one placed after `head` (which
/// selects the variant of a tagged enum).
fn keys<T: DeserializeOwned + std::fmt::Debug>(head: &str) -> Vec<String> {
    let text = format!("{head}zz_not_a_key = 1\n");
    let err = toml::from_str::<T>(&text)
        .expect_err("an unknown key must be refused")
        .to_string();
    let expected = err
        .split("expected")
        .nth(1)
        .unwrap_or_else(|| panic!("serde did not list the expected keys: {err}"));
    let keys: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!keys.is_empty(), "no keys in: {err}");
    keys
}

/// The part of the reference from `marker` (which must occur once) to the next marker.
fn section<'a>(doc: &'a str, marker: &str, markers: &[&str]) -> &'a str {
    assert_eq!(
        doc.matches(marker).count(),
        1,
        "docs/configuration.md must contain {marker:?} exactly once"
    );
    let start = doc.find(marker).unwrap_or(0);
    let end = markers
        .iter()
        .filter_map(|m| doc[start + marker.len()..].find(m))
        .min()
        .map_or(doc.len(), |i| start + marker.len() + i);
    &doc[start..end]
}

#[test]
fn every_key_of_every_struct_has_a_row_in_the_reference() {
    let doc = reference();
    let markers = [
        "## Top level",
        "## `[mqtt]`",
        "`tls`:",
        "## `[outbox]`",
        "## `[health]`",
        "## `[engines]`",
        "## `[[camera]]`",
        "`kind = \"v4l\"`:",
        "`kind = \"nokhwa\"`:",
        "`kind = \"dir\"`:",
        "`kind = \"synthetic\"`:",
        "### Backend",
        "### Events",
        "### Normalizer",
        "## Examples",
    ];
    let mut tenso = keys::<BackendConfig>("kind = \"tensorrt\"\n");
    tenso.extend(keys::<BackendConfig>("kind = \"onnxruntime\"\n"));
    tenso.push("kind".into());
    let mut norm = keys::<NormalizerConfig>("mode = \"baseline\"\n");
    norm.extend(keys::<NormalizerConfig>("mode = \"minmax\"\n"));
    norm.extend(keys::<NormalizerConfig>("mode = \"zscore\"\n"));
    norm.push("mode".into());
    let wanted: Vec<(&str, Vec<String>)> = vec![
        ("## Top level", keys::<Config>("")),
        ("## `[mqtt]`", keys::<MqttConfig>("")),
        ("`tls`:", keys::<TlsConfig>("")),
        ("## `[outbox]`", keys::<OutboxConfig>("")),
        ("## `[health]`", keys::<HealthConfig>("")),
        ("## `[engines]`", keys::<EnginesConfig>("")),
        ("## `[[camera]]`", keys::<CameraConfig>("")),
        (
            "`kind = \"v4l\"`:",
            keys::<SourceConfig>("kind = \"v4l\"\n"),
        ),
        (
            "`kind = \"nokhwa\"`:",
            keys::<SourceConfig>("kind = \"nokhwa\"\n"),
        ),
        (
            "`kind = \"dir\"`:",
            keys::<SourceConfig>("kind = \"dir\"\n"),
        ),
        (
            "`kind = \"synthetic\"`:",
            keys::<SourceConfig>("kind = \"synthetic\"\n"),
        ),
        ("### Backend", tenso),
        ("### Events", keys::<EventsConfig>("")),
        ("### Normalizer", norm),
    ];
    let mut missing = Vec::new();
    for (marker, keys) in &wanted {
        let text = section(&doc, marker, &markers);
        for k in keys {
            if !text.contains(&format!("| `{k}` |")) {
                missing.push(format!("{marker}: `{k}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys the configuration accepts but docs/configuration.md does not document:\n  {}",
        missing.join("\n  ")
    );
    // The camera section really is the camera's (a sanity check of the introspection).
    assert!(
        wanted[6].1.contains(&"lossless".to_owned()),
        "{:?}",
        wanted[6].1
    );
}

#[test]
fn every_example_in_the_reference_parses() {
    let doc = reference();
    let models = repo().join("engine/models");
    let mut n = 0;
    for (i, block) in doc.split("```toml\n").skip(1).enumerate() {
        let toml = block.split("```").next().unwrap_or_default();
        // The examples name the installed packages; this checkout has them elsewhere.
        let toml = toml.replace("/usr/share/vigil/models", &models.display().to_string());
        if let Err(e) = Config::parse(&toml, Path::new("example.toml")) {
            panic!("example {} of docs/configuration.md: {e}\n{toml}", i + 1);
        }
        n += 1;
    }
    assert!(n >= 3, "only {n} examples found");
}
