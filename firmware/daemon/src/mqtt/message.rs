//! Wire types of the MQTT contract (`docs/mqtt.md`, `docs/schemas/*.schema.json`) and the topic
//! builders.
//!
//! Every JSON payload carries a `schema` field (`vigil.event/1`, `vigil.health/1`) so that a
//! consumer can tell which contract a message follows without guessing from its shape; a
//! breaking change bumps the number and gets a new schema file, it never silently changes `/1`.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The `schema` value of an [`EventMessage`].
pub const EVENT_SCHEMA: &str = "vigil.event/1";
/// The `schema` value of a [`Health`] message.
pub const HEALTH_SCHEMA: &str = "vigil.health/1";

/// Payload of the retained status topic while the device is connected.
pub const STATUS_ONLINE: &str = "online";
/// Payload of the retained status topic set by the broker (last will) when the connection died.
pub const STATUS_OFFLINE: &str = "offline";
/// Payload of the retained status topic after a clean stop.
pub const STATUS_STOPPED: &str = "stopped";

/// Longest device or camera name accepted in a topic. Short names keep topics readable in
/// dashboards and far below any broker's topic length limit.
pub const MAX_TOPIC_PART_LEN: usize = 64;

/// A device or camera name that cannot be used as one level of an MQTT topic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{part} name {value:?} cannot be used in an MQTT topic: {reason}; {fix}")]
pub struct TopicError {
    /// Which part of the topic was rejected ("device" or "camera").
    pub part: &'static str,
    /// The rejected value.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
    /// What to do about it.
    pub fix: String,
}

/// Checks one level of a topic (a device or camera name).
///
/// MQTT gives '/' (level separator), '+' and '#' (wildcards) special meaning, and NUL is
/// forbidden in UTF-8 strings of the protocol; any of them in a name would either break the
/// topic tree or make the broker drop the connection, so they are refused when the topic is
/// built, with a message that says which name to change.
pub fn validate_topic_part(part: &'static str, value: &str) -> Result<(), TopicError> {
    let err = |reason: String| TopicError {
        part,
        value: value.to_owned(),
        reason,
        fix: format!(
            "rename the {part} in the configuration to 1-{MAX_TOPIC_PART_LEN} characters without \
             '/', '+', '#' or NUL (letters, digits, '-' and '_' are safe everywhere)"
        ),
    };
    if value.is_empty() {
        return Err(err("it is empty".into()));
    }
    let chars = value.chars().count();
    if chars > MAX_TOPIC_PART_LEN {
        return Err(err(format!(
            "it is {chars} characters long, at most {MAX_TOPIC_PART_LEN} are allowed"
        )));
    }
    for (c, what) in [
        ('/', "'/' (the MQTT level separator)"),
        ('+', "'+' (an MQTT wildcard)"),
        ('#', "'#' (an MQTT wildcard)"),
        ('\0', "a NUL character"),
    ] {
        if value.contains(c) {
            return Err(err(format!("it contains {what}")));
        }
    }
    Ok(())
}

/// `vigil/<device>/status`: retained `online` / `offline` (last will) / `stopped`.
pub fn status_topic(device: &str) -> Result<String, TopicError> {
    validate_topic_part("device", device)?;
    Ok(format!("vigil/{device}/status"))
}

/// `vigil/<device>/health`: retained [`Health`] JSON.
pub fn health_topic(device: &str) -> Result<String, TopicError> {
    validate_topic_part("device", device)?;
    Ok(format!("vigil/{device}/health"))
}

/// `vigil/<device>/<camera>/events`: [`EventMessage`] JSON, QoS 1, not retained.
pub fn events_topic(device: &str, camera: &str) -> Result<String, TopicError> {
    validate_topic_part("device", device)?;
    validate_topic_part("camera", camera)?;
    Ok(format!("vigil/{device}/{camera}/events"))
}

/// A message that must not be published because it breaks the contract (the JSON Schema would
/// reject it, or a consumer could not interpret it).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MessageError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("field `{field}` of a {schema} message is invalid: {reason}")]
    Field {
        schema: &'static str,
        field: String,
        reason: String,
    },
}

fn field_err(
    schema: &'static str,
    field: impl Into<String>,
    reason: impl Into<String>,
) -> MessageError {
    MessageError::Field {
        schema,
        field: field.into(),
        reason: reason.into(),
    }
}

/// Declares a zero-sized type that serialises as a fixed `schema` string and refuses any other
/// value when deserialising, so a consumer written in Rust cannot mistake `/2` for `/1`.
macro_rules! schema_tag {
    ($name:ident, $value:expr) => {
        #[doc = concat!("The `schema` field: always `\"", stringify!($value), "\"` on the wire.")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name;

        impl $name {
            /// The string this tag stands for.
            pub const fn as_str(&self) -> &'static str {
                $value
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                if s == $value {
                    Ok($name)
                } else {
                    Err(serde::de::Error::custom(format!(
                        "unsupported schema {s:?}, this reader understands {:?}",
                        $value
                    )))
                }
            }
        }
    };
}

schema_tag!(EventSchema, "vigil.event/1");
schema_tag!(HealthSchema, "vigil.health/1");

/// Which step of an anomaly event a message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The score crossed the `on` threshold for long enough: an anomaly began.
    Start,
    /// The anomaly is still going on (a new peak, or a periodic refresh).
    Update,
    /// The score stayed below the `off` threshold for long enough: the anomaly is over.
    End,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Start => "start",
            EventKind::Update => "update",
            EventKind::End => "end",
        })
    }
}

/// Why an anomaly ended; carried by `end` messages only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The score stayed below the `off` threshold for long enough: the anomaly is over.
    Score,
    /// The camera's stream ended or started afresh (a replay finished or looped, a camera was
    /// reopened) while the anomaly was open: it was last seen at `frame`.
    StreamEnd,
    /// Vigil was stopped (SIGTERM, `systemctl stop`) while the anomaly was open.
    Stop,
    /// Vigil died (crash, SIGKILL, power cut) while the anomaly was open; the next start closed
    /// it before publishing anything new. `frame` and `score` are the last ones published,
    /// `ended_at` is the time of that restart.
    Restart,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::Score => "score",
            EndReason::StreamEnd => "stream_end",
            EndReason::Stop => "stop",
            EndReason::Restart => "restart",
        })
    }
}

/// Where in the image the anomaly is, in normalised coordinates: (0,0) is the top-left
/// corner, (1,1) the bottom-right, so consumers need not know the camera's resolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    /// The region's own (normalised) score.
    pub score: f32,
}

/// One message on `vigil/<device>/<camera>/events` (schema `vigil.event/1`).
///
/// All messages of one anomaly share `id` (a ULID) and `started_at`; delivery is at least
/// once, so consumers de-duplicate on (`id`, `type`, `frame`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMessage {
    pub schema: EventSchema,
    /// ULID of the anomaly event (26 characters, Crockford base32, sortable by start time).
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub device: String,
    pub camera: String,
    /// Name of the model package that produced the score.
    pub model: String,
    /// RFC 3339 UTC timestamp (`...Z`) of the first anomalous frame.
    pub started_at: String,
    /// RFC 3339 UTC timestamp of the end; `null` unless `type` is `end`.
    pub ended_at: Option<String>,
    /// Index of the frame this message refers to (the model's latency is explicit:
    /// it is `latency_frames` behind the newest captured frame).
    pub frame: u64,
    /// Normalised anomaly score of `frame`.
    pub score: f32,
    /// Highest score since `started_at`.
    pub peak_score: f32,
    /// The `on` threshold in force.
    pub threshold: f32,
    /// How many frames the model's window lags behind capture.
    pub latency_frames: u32,
    pub regions: Vec<Region>,
    /// Why the anomaly ended: present in `end` messages only (absent from the `end` messages of
    /// boxes built before it was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
}

impl EventMessage {
    /// A fresh event id (a ULID: unique without coordination, sortable by time).
    pub fn new_id() -> String {
        ulid::Ulid::new().to_string()
    }

    /// The topic this message is published on.
    pub fn topic(&self) -> Result<String, TopicError> {
        events_topic(&self.device, &self.camera)
    }

    /// One line for the log: `<type> <id> camera <camera> frame <n> score <s> peak <p>`, and
    /// the reason of an `end`. The fault tests read accepted events back from this form.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} {} camera {} frame {} score {:.3} peak {:.3}",
            self.kind, self.id, self.camera, self.frame, self.score, self.peak_score
        );
        if let Some(r) = self.reason {
            s.push_str(&format!(" reason {r}"));
        }
        s
    }

    /// Checks everything the JSON Schema checks that the Rust types cannot express, so that a
    /// message that would be rejected by consumers is refused before it is spooled, with a
    /// message naming the field.
    pub fn validate(&self) -> Result<(), MessageError> {
        const S: &str = EVENT_SCHEMA;
        validate_topic_part("device", &self.device)?;
        validate_topic_part("camera", &self.camera)?;
        if !is_ulid(&self.id) {
            return Err(field_err(
                S,
                "id",
                format!(
                    "{:?} is not a ULID (26 Crockford base32 characters)",
                    self.id
                ),
            ));
        }
        if self.model.is_empty() {
            return Err(field_err(S, "model", "is empty"));
        }
        if !is_rfc3339_utc(&self.started_at) {
            return Err(field_err(
                S,
                "started_at",
                format!(
                    "{:?} is not an RFC 3339 UTC timestamp like 2024-05-01T12:00:00.000Z",
                    self.started_at
                ),
            ));
        }
        match (&self.ended_at, self.kind) {
            (Some(t), EventKind::End) if !is_rfc3339_utc(t) => {
                return Err(field_err(
                    S,
                    "ended_at",
                    format!("{t:?} is not an RFC 3339 UTC timestamp"),
                ))
            }
            (None, EventKind::End) => {
                return Err(field_err(
                    S,
                    "ended_at",
                    "an `end` message must say when the event ended",
                ))
            }
            (Some(_), k @ (EventKind::Start | EventKind::Update)) => {
                return Err(field_err(
                    S,
                    "ended_at",
                    format!("must be null in a `{k}` message"),
                ))
            }
            _ => {}
        }
        if let (Some(_), k @ (EventKind::Start | EventKind::Update)) = (self.reason, self.kind) {
            return Err(field_err(
                S,
                "reason",
                format!("only `end` messages carry a reason, this is a `{k}`"),
            ));
        }
        for (name, v) in [
            ("score", self.score),
            ("peak_score", self.peak_score),
            ("threshold", self.threshold),
        ] {
            // serde_json writes NaN and infinities as `null`, which the schema rejects.
            if !v.is_finite() {
                return Err(field_err(S, name, format!("{v} is not a finite number")));
            }
        }
        for (i, r) in self.regions.iter().enumerate() {
            for (name, v) in [("x", r.x), ("y", r.y), ("w", r.w), ("h", r.h)] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(field_err(
                        S,
                        format!("regions[{i}].{name}"),
                        format!("{v} is outside the normalised range [0, 1]"),
                    ));
                }
            }
            if !r.score.is_finite() {
                return Err(field_err(
                    S,
                    format!("regions[{i}].score"),
                    "is not a finite number",
                ));
            }
        }
        Ok(())
    }
}

/// State of one camera as reported in [`Health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    Starting,
    Streaming,
    Stalled,
    Reconnecting,
    Ended,
    Failed,
}

/// Connection state of the MQTT client as reported in [`Health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerState {
    Connected,
    Disconnected,
}

/// One camera's entry in [`Health`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraHealth {
    pub camera: String,
    pub state: CameraState,
    /// Frames per second actually processed (after drops).
    pub fps: f32,
    /// Frames captured since start.
    pub frames: u64,
    /// Frames dropped because inference could not keep up.
    pub dropped_frames: u64,
    /// Frames waiting between capture and inference right now.
    pub queue_depth: u32,
    /// Frames refused before the model since start (corrupt or truncated JPEG, short raw
    /// buffer, unreadable file, a buffer the driver flagged).
    #[serde(default)]
    pub frames_rejected: u64,
    /// Why the latest rejected frame was refused (naming the file for a replay); absent until
    /// a frame has been rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rejection: Option<String>,
}

/// The retained JSON on `vigil/<device>/health` (schema `vigil.health/1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub schema: HealthSchema,
    pub device: String,
    /// RFC 3339 UTC time at which the message was built: with a retained message a consumer
    /// that subscribes later can tell how old the news is.
    pub sent_at: String,
    /// Seconds between health messages (`[health] interval_s`): no new one for three intervals
    /// means the box is gone, whatever the retained status says.
    pub interval_s: u64,
    pub uptime_s: u64,
    pub cameras: Vec<CameraHealth>,
    /// Event messages waiting on disk for the broker's acknowledgement.
    pub outbox_depth: u64,
    /// Event messages discarded (oldest first) because the outbox was full.
    pub outbox_dropped: u64,
    /// Damaged journal segments found (and cut back to their valid prefix) at start.
    #[serde(default)]
    pub outbox_corrupt: u64,
    /// Set while the outbox cannot write (disk full, read-only): events are then held in memory
    /// only. Absent when writing works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_error: Option<String>,
    pub broker: BrokerState,
}

impl Health {
    /// The topic this message is published on.
    pub fn topic(&self) -> Result<String, TopicError> {
        health_topic(&self.device)
    }

    /// Checks what the schema checks beyond the Rust types.
    pub fn validate(&self) -> Result<(), MessageError> {
        validate_topic_part("device", &self.device)?;
        if !is_rfc3339_utc(&self.sent_at) {
            return Err(field_err(
                HEALTH_SCHEMA,
                "sent_at",
                format!("{:?} is not an RFC 3339 UTC timestamp", self.sent_at),
            ));
        }
        if self.interval_s == 0 {
            return Err(field_err(
                HEALTH_SCHEMA,
                "interval_s",
                "must be at least 1 (health is not published when it is 0)",
            ));
        }
        for (i, c) in self.cameras.iter().enumerate() {
            validate_topic_part("camera", &c.camera)?;
            if !c.fps.is_finite() || c.fps < 0.0 {
                return Err(field_err(
                    HEALTH_SCHEMA,
                    format!("cameras[{i}].fps"),
                    format!("{} is not a finite, non-negative number", c.fps),
                ));
            }
        }
        Ok(())
    }
}

/// Formats a time as an RFC 3339 UTC timestamp with millisecond precision
/// (`2024-05-01T12:00:00.123Z`), the form used in every Vigil message.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t).to_offset(time::UtcOffset::UTC);
    // Milliseconds are plenty for events and keep the strings short and fixed-width.
    let ms = dt.millisecond();
    let secs = dt.replace_nanosecond(0).unwrap_or(dt);
    let base = secs
        .format(&time::format_description::well_known::Rfc3339)
        // Rfc3339 formatting only fails for years outside 0..=9999, which SystemTime on these
        // boxes never produces; fall back to the epoch rather than panicking.
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned());
    // `base` ends in "Z" and has no fraction because nanoseconds were zeroed.
    let trimmed = base.trim_end_matches('Z');
    format!("{trimmed}.{ms:03}Z")
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, checked by hand (the `time` crate's parser is not
/// enabled in this build and a regex engine would be a heavy dependency for one pattern).
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return false;
    }
    let digit = |i: usize| b.get(i).is_some_and(|c| c.is_ascii_digit());
    let num = |i: usize, n: usize| -> Option<u32> {
        (i..i + n).all(digit).then(|| {
            b[i..i + n]
                .iter()
                .fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (Some(_y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        num(0, 4),
        num(5, 2),
        num(8, 2),
        num(11, 2),
        num(14, 2),
        num(17, 2),
    ) else {
        return false;
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return false;
    }
    let rest = &b[19..b.len() - 1];
    match rest {
        [] => true,
        [b'.', frac @ ..] => !frac.is_empty() && frac.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// 26 characters of Crockford base32, the first at most '7' (a ULID is 128 bits).
pub fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.as_bytes()[0] <= b'7'
        && s.bytes().all(|c| {
            c.is_ascii_digit()
                || (c.is_ascii_uppercase() && !matches!(c, b'I' | b'L' | b'O' | b'U'))
        })
}

/// Valid messages for the unit tests of this module and its siblings.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn event(device: &str, camera: &str) -> EventMessage {
        EventMessage {
            schema: EventSchema,
            id: EventMessage::new_id(),
            kind: EventKind::Start,
            device: device.into(),
            camera: camera.into(),
            model: "maam-net-ped2".into(),
            started_at: "2024-05-01T12:00:00.123Z".into(),
            ended_at: None,
            frame: 42,
            score: 0.8,
            peak_score: 0.8,
            threshold: 0.5,
            latency_frames: 1,
            regions: vec![Region {
                x: 0.1,
                y: 0.2,
                w: 0.3,
                h: 0.4,
                score: 0.9,
            }],
            reason: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn event() -> EventMessage {
        tests_support::event("box-1", "cam0")
    }

    #[test]
    fn event_json_has_contract_field_names() {
        let v = serde_json::to_value(event()).unwrap();
        assert_eq!(v["schema"], "vigil.event/1");
        assert_eq!(v["type"], "start");
        assert!(v["ended_at"].is_null());
        assert_eq!(
            v["regions"][0]["w"].as_f64().map(|w| (w * 10.0).round()),
            Some(3.0)
        );
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        for k in [
            "schema",
            "id",
            "type",
            "device",
            "camera",
            "model",
            "started_at",
            "ended_at",
            "frame",
            "score",
            "peak_score",
            "threshold",
            "latency_frames",
            "regions",
        ] {
            assert!(keys.contains(&k.to_string()), "missing {k}");
        }
        assert_eq!(keys.len(), 14);
    }

    #[test]
    fn event_round_trips_and_rejects_other_schema_versions() {
        let e = event();
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<EventMessage>(&s).unwrap(), e);
        let v2 = s.replace("vigil.event/1", "vigil.event/2");
        let err = serde_json::from_str::<EventMessage>(&v2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("vigil.event/2"), "{err}");
    }

    #[test]
    fn validate_catches_what_the_schema_rejects() {
        assert_eq!(event().validate(), Ok(()));
        let mut e = event();
        e.score = f32::NAN;
        assert!(matches!(e.validate(), Err(MessageError::Field { field, .. }) if field == "score"));
        let mut e = event();
        e.id = "not-a-ulid".into();
        assert!(e.validate().is_err());
        let mut e = event();
        e.regions[0].x = 1.5;
        let msg = e.validate().unwrap_err().to_string();
        assert!(msg.contains("regions[0].x"), "{msg}");
        let mut e = event();
        e.kind = EventKind::End;
        assert!(e.validate().is_err(), "end without ended_at");
        e.ended_at = Some("2024-05-01T12:00:03.000Z".into());
        assert_eq!(e.validate(), Ok(()));
        e.reason = Some(EndReason::Restart);
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(serde_json::to_value(&e).unwrap()["reason"], "restart");
        let mut e = event();
        e.reason = Some(EndReason::Score);
        let msg = e.validate().unwrap_err().to_string();
        assert!(msg.contains("reason") && msg.contains("start"), "{msg}");
        let mut e = event();
        e.started_at = "2024-05-01 12:00:00".into();
        assert!(e.validate().is_err());
        let mut e = event();
        e.camera = "a/b".into();
        assert!(matches!(e.validate(), Err(MessageError::Topic(_))));
    }

    #[test]
    fn topics_are_built_and_parts_validated() {
        assert_eq!(status_topic("box-1").unwrap(), "vigil/box-1/status");
        assert_eq!(health_topic("box-1").unwrap(), "vigil/box-1/health");
        assert_eq!(
            events_topic("box-1", "cam0").unwrap(),
            "vigil/box-1/cam0/events"
        );
        for bad in ["", "a/b", "a+", "#", "nul\0", &"x".repeat(65)] {
            let err = events_topic("box-1", bad).unwrap_err();
            assert_eq!(err.part, "camera");
            let msg = err.to_string();
            assert!(msg.contains("camera") && msg.contains("rename"), "{msg}");
        }
        let err = status_topic("a/b").unwrap_err();
        assert_eq!(err.part, "device");
        assert!(err.to_string().contains("'/'"));
        assert!(events_topic(&"x".repeat(64), "é").is_ok());
    }

    #[test]
    fn rfc3339_formatting_and_checking() {
        let t = UNIX_EPOCH + Duration::from_millis(1_714_564_800_123);
        let s = rfc3339_utc(t);
        assert_eq!(s, "2024-05-01T12:00:00.123Z");
        assert!(is_rfc3339_utc(&s));
        assert!(is_rfc3339_utc("2024-05-01T12:00:00Z"));
        assert!(!is_rfc3339_utc("2024-05-01T12:00:00+02:00"));
        assert!(!is_rfc3339_utc("2024-13-01T12:00:00Z"));
        assert!(!is_rfc3339_utc("2024-05-01T12:00:00.Z"));
        assert!(!is_rfc3339_utc("yesterday"));
        assert!(is_rfc3339_utc(&rfc3339_utc(SystemTime::now())));
    }

    #[test]
    fn health_json_shape() {
        let h = Health {
            schema: HealthSchema,
            device: "box-1".into(),
            sent_at: "2024-05-01T12:00:00.123Z".into(),
            interval_s: 10,
            uptime_s: 5,
            cameras: vec![CameraHealth {
                camera: "cam0".into(),
                state: CameraState::Reconnecting,
                fps: 9.5,
                frames: 100,
                dropped_frames: 2,
                queue_depth: 1,
                frames_rejected: 1,
                last_rejection: Some("frame file 7.jpg skipped: empty".into()),
            }],
            outbox_depth: 0,
            outbox_dropped: 0,
            outbox_corrupt: 0,
            outbox_error: None,
            broker: BrokerState::Connected,
        };
        assert_eq!(h.validate(), Ok(()));
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["schema"], "vigil.health/1");
        assert_eq!(v["cameras"][0]["state"], "reconnecting");
        assert_eq!(v["broker"], "connected");
        assert_eq!(v["interval_s"], 10);
        assert_eq!(v["cameras"][0]["frames_rejected"], 1);
        let mut bad = h.clone();
        bad.cameras[0].fps = f32::INFINITY;
        assert!(bad.validate().is_err());
        let mut bad = h.clone();
        bad.sent_at = "now".into();
        assert!(bad.validate().is_err());
        let mut bad = h.clone();
        bad.interval_s = 0;
        assert!(bad.validate().is_err());
        // A camera that never rejected a frame carries no `last_rejection` at all.
        let mut quiet = h.clone();
        quiet.cameras[0].last_rejection = None;
        let v = serde_json::to_value(&quiet).unwrap();
        assert!(v["cameras"][0].get("last_rejection").is_none());
    }
}
