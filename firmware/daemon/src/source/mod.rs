//! Frame sources: where pictures come from before they enter the [`ring::FrameRing`].
//!
//! Four kinds, chosen by `[camera] kind` in the configuration:
//!
//! * `v4l` — a V4L2 camera (USB/UVC or CSI through a V4L2 bridge), the production path on
//!   Jetson boxes ([`v4l`], feature `v4l`, on by default, Linux only).
//! * `nokhwa` — the nokhwa camera library, for laptops and cameras V4L2 handling trips over
//!   ([`nokhwa`], feature `nokhwa`).
//! * `dir` — replay of a directory of image files, e.g. a Ped2 test video ([`dir`]).
//! * `synthetic` — generated frames with an optional anomaly, for demos and tests ([`synthetic`]).
//!
//! Every source fills a caller-provided, recycled [`Frame`] so that steady-state capture
//! allocates nothing; camera buffers are converted by [`pixfmt`].
//!
//! Errors say whether they are transient ([`SourceError::is_transient`]): a timeout or a
//! corrupt frame costs one frame and the capture loop carries on (counting it); anything else
//! means the source is unusable as configured and the loop should stop and report.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use vigil_engine::frame::{Frame, PixelLayout};
use vigil_engine::imageio::ImageIoError;

pub mod dir;
#[cfg(feature = "nokhwa")]
pub mod nokhwa;
pub mod pixfmt;
pub mod ring;
pub mod synthetic;
#[cfg(all(feature = "v4l", target_os = "linux"))]
pub mod v4l;

pub use pixfmt::PixFmtError;

/// What a successful [`FrameSource::next_into`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The frame was filled.
    Frame,
    /// The source has no more frames (a replayed directory without `loop`); the frame is
    /// unchanged.
    EndOfStream,
}

/// A stream of frames.
pub trait FrameSource {
    /// Fills `frame` with the next picture, reusing its buffer, and sets its `index` and
    /// `timestamp`. Blocks until a frame is available (or a camera timeout passes).
    fn next_into(&mut self, frame: &mut Frame) -> Result<Next, SourceError>;

    /// One line for logs and the health topic, e.g. `v4l /dev/video0 640x480 YUYV@30 -> gray`.
    fn describe(&self) -> String;

    /// The rate at which the stream's timestamps advance, when the source knows it.
    fn nominal_fps(&self) -> Option<f32>;
}

/// Why a source could not open or deliver a frame. Messages name the device or path and say
/// what to do, because they end up in a journal read by someone standing next to the box.
#[derive(Debug, Error)]
pub enum SourceError {
    // --- configuration and opening: fatal ---
    #[error("invalid [camera] configuration: {0}")]
    Config(String),
    #[error("camera {device} does not exist: check the cable and `v4l2-ctl --list-devices`, or set the camera's source.device")]
    DeviceMissing { device: PathBuf },
    #[error("{device} is {what}, not a camera: set the camera's source.device to a V4L2 node such as /dev/video0 (see `v4l2-ctl --list-devices`)")]
    NotACamera { device: PathBuf, what: String },
    #[error("permission denied opening camera {device}: add the vigil user to the `video` group (the udev rule shipped in systemd/ does this) or fix the node's permissions")]
    PermissionDenied { device: PathBuf },
    #[error("camera {device} is busy: another program is streaming from it (find it with `fuser {device}`)")]
    DeviceBusy { device: PathBuf },
    #[error("cannot open camera {device}: {source}")]
    Open {
        device: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{device} ({card}) cannot stream video: UVC cameras expose a second, metadata-only node; use the other /dev/videoN of this camera")]
    NotCapture { device: PathBuf, card: String },
    #[error("camera {device} offers none of the formats vigil decodes (YUYV, MJPG, GREY, NV12); it offers: {offered}")]
    NoUsableFormat { device: PathBuf, offered: String },
    #[error("camera {device}: {operation} failed: {source}")]
    Ioctl {
        device: PathBuf,
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("camera {device} disappeared (unplugged, or its USB hub reset): check the cable; vigil reopens it with backoff until it is back")]
    Disconnected { device: PathBuf },
    #[error("camera backend `{backend}` is not available in this build: {hint}")]
    BackendUnavailable { backend: &'static str, hint: String },
    #[error("nokhwa camera {index}: {message}")]
    Nokhwa { index: u32, message: String },
    #[error("frame directory {path} does not exist: set the camera's source.path to a directory of .jpg/.png/.tif frames")]
    DirMissing { path: PathBuf },
    #[error(
        "{path} is not a directory: set the camera's source.path to a directory of .jpg/.png/.tif frames"
    )]
    NotADirectory { path: PathBuf },
    #[error("cannot list frame directory {path}: {source}")]
    DirUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("frame directory {path} holds no image files (.jpg, .jpeg, .png, .tif, .tiff): check the camera's source.path")]
    DirEmpty { path: PathBuf },

    // --- per frame: transient ---
    #[error("no frame from {source_name} within {} ms: the camera stalled (bad USB link or too little light for the exposure?); retrying", .after.as_millis())]
    Timeout {
        source_name: String,
        after: Duration,
    },
    #[error("corrupt frame from {source_name}, skipped: {reason}")]
    CorruptFrame {
        source_name: String,
        #[source]
        reason: PixFmtError,
    },
    #[error("replayed frame skipped: {source}")]
    UnreadableFrame {
        path: PathBuf,
        #[source]
        source: ImageIoError,
    },
    #[error("capture glitch on {source_name}, frame skipped: {message}")]
    Glitch {
        source_name: String,
        message: String,
    },
}

impl SourceError {
    /// True when the capture loop should skip this frame (and count it) and carry on; false
    /// when the source is unusable and the loop should stop and report.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Timeout { .. }
            | SourceError::UnreadableFrame { .. }
            | SourceError::Glitch { .. } => true,
            SourceError::CorruptFrame { reason, .. } => reason.is_transient(),
            _ => false,
        }
    }

    /// A frame that arrived but was refused before the model (a corrupt or truncated JPEG, a
    /// short raw buffer, an unreadable file, a buffer the driver flagged): counted per camera
    /// as `frames_rejected` in health. Timeouts are not frames and are not counted here.
    pub fn is_rejected_frame(&self) -> bool {
        matches!(
            self,
            SourceError::CorruptFrame { .. }
                | SourceError::UnreadableFrame { .. }
                | SourceError::Glitch { .. }
        )
    }

    /// A per-frame failure that comes from the camera (not from a replayed file): many in a row
    /// mean the device needs reopening.
    pub fn is_device_fault(&self) -> bool {
        matches!(
            self,
            SourceError::Timeout { .. }
                | SourceError::CorruptFrame { .. }
                | SourceError::Glitch { .. }
        )
    }

    /// True when the device itself went away or broke (unplugged, USB reset, busy after a
    /// reset): the capture loop closes the source and reopens it with backoff, instead of
    /// giving up on the camera. Configuration mistakes are not among these: retrying them
    /// would only hide the message.
    pub fn needs_reopen(&self) -> bool {
        matches!(
            self,
            SourceError::Disconnected { .. }
                | SourceError::DeviceMissing { .. }
                | SourceError::DeviceBusy { .. }
                | SourceError::Open { .. }
                | SourceError::Ioctl { .. }
                | SourceError::Nokhwa { .. }
        )
    }
}

/// The colour frames leave a camera source in; it must match the model's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputColor {
    Gray,
    #[default]
    Rgb,
}

impl OutputColor {
    pub const fn layout(self) -> PixelLayout {
        match self {
            OutputColor::Gray => PixelLayout::Gray8,
            OutputColor::Rgb => PixelLayout::Rgb8,
        }
    }
}

/// Camera pixel format to request from a V4L2 device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum V4lFormat {
    /// Let vigil choose among what the camera offers (YUYV, MJPEG, GREY, NV12, in that order).
    #[default]
    Auto,
    Yuyv,
    Mjpeg,
    Grey,
    Nv12,
}

impl V4lFormat {
    /// The concrete format, or `None` for `auto`.
    pub const fn raw(self) -> Option<pixfmt::RawFormat> {
        match self {
            V4lFormat::Auto => None,
            V4lFormat::Yuyv => Some(pixfmt::RawFormat::Yuyv),
            V4lFormat::Mjpeg => Some(pixfmt::RawFormat::Mjpeg),
            V4lFormat::Grey => Some(pixfmt::RawFormat::Grey),
            V4lFormat::Nv12 => Some(pixfmt::RawFormat::Nv12),
        }
    }
}

fn default_device() -> PathBuf {
    PathBuf::from("/dev/video0")
}
const fn default_width() -> u32 {
    640
}
const fn default_height() -> u32 {
    480
}
const fn default_camera_fps() -> u32 {
    30
}
const fn default_timeout_ms() -> u64 {
    2000
}

/// `[camera] kind = "v4l"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4lConfig {
    /// The V4L2 node; a stable `/dev/v4l/by-id/...` link survives re-enumeration.
    #[serde(default = "default_device")]
    pub device: PathBuf,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_camera_fps")]
    pub fps: u32,
    #[serde(default)]
    pub format: V4lFormat,
    #[serde(default)]
    pub output: OutputColor,
    /// How long to wait for a frame before reporting a (transient) timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// `[camera] kind = "nokhwa"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NokhwaConfig {
    #[serde(default)]
    pub index: u32,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_camera_fps")]
    pub fps: u32,
    #[serde(default)]
    pub output: OutputColor,
}

/// `[camera] kind = "dir"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirConfig {
    pub path: PathBuf,
    /// `None`: as fast as the consumer takes them; `Some(f)`: real-time pacing at `f` fps.
    #[serde(default)]
    pub fps: Option<f32>,
    /// Start again from the first frame after the last.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Skip this many files (in sorted order) first.
    #[serde(default)]
    pub start: Option<usize>,
    /// Play at most this many files.
    #[serde(default)]
    pub count: Option<usize>,
}

const fn default_synthetic_width() -> u32 {
    360
}
const fn default_synthetic_height() -> u32 {
    240
}
const fn default_synthetic_fps() -> f32 {
    10.0
}
const fn default_anomaly_frames() -> u64 {
    30
}
const fn default_synthetic_output() -> OutputColor {
    OutputColor::Gray
}

/// `[camera] kind = "synthetic"`. Defaults mimic Ped2 (360x240 gray at 10 fps).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    #[serde(default = "default_synthetic_width")]
    pub width: u32,
    #[serde(default = "default_synthetic_height")]
    pub height: u32,
    #[serde(default = "default_synthetic_fps")]
    pub fps: f32,
    #[serde(default)]
    pub seed: u64,
    /// Frame index at which a fast, large blob crosses the scene; `None`: never.
    #[serde(default)]
    pub anomaly_at: Option<u64>,
    /// How many frames the anomaly lasts.
    #[serde(default = "default_anomaly_frames")]
    pub anomaly_frames: u64,
    /// Gray (like Ped2) or RGB frames.
    #[serde(default = "default_synthetic_output")]
    pub output: OutputColor,
    /// Stop after this many frames; `None`: never.
    #[serde(default)]
    pub count: Option<u64>,
    /// Deliver frames at `fps` in real time, like a camera, instead of as fast as possible.
    #[serde(default)]
    pub realtime: bool,
    /// Fault injection: after this many frames the source hangs forever, like a camera driver
    /// stuck in a read, so a deployment can check that its systemd watchdog restarts vigil
    /// (docs/deploy.md). `None`: never.
    #[serde(default)]
    pub stall_after: Option<u64>,
}

/// The `[camera]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    V4l(V4lConfig),
    Nokhwa(NokhwaConfig),
    Dir(DirConfig),
    Synthetic(SyntheticConfig),
}

/// Opens the configured source.
pub fn open(config: &SourceConfig) -> Result<Box<dyn FrameSource + Send>, SourceError> {
    match config {
        SourceConfig::V4l(c) => open_v4l(c),
        SourceConfig::Nokhwa(c) => open_nokhwa(c),
        SourceConfig::Dir(c) => Ok(Box::new(dir::DirSource::open(c)?)),
        SourceConfig::Synthetic(c) => Ok(Box::new(synthetic::SyntheticSource::new(c)?)),
    }
}

#[cfg(all(feature = "v4l", target_os = "linux"))]
fn open_v4l(c: &V4lConfig) -> Result<Box<dyn FrameSource + Send>, SourceError> {
    Ok(Box::new(v4l::V4lSource::open(c)?))
}

#[cfg(not(all(feature = "v4l", target_os = "linux")))]
fn open_v4l(_: &V4lConfig) -> Result<Box<dyn FrameSource + Send>, SourceError> {
    Err(SourceError::BackendUnavailable {
        backend: "v4l",
        hint: if cfg!(target_os = "linux") {
            "rebuild vigil with `--features v4l` (it is on by default)".to_owned()
        } else {
            "V4L2 exists only on Linux; use kind = \"nokhwa\" on this system".to_owned()
        },
    })
}

#[cfg(feature = "nokhwa")]
fn open_nokhwa(c: &NokhwaConfig) -> Result<Box<dyn FrameSource + Send>, SourceError> {
    Ok(Box::new(nokhwa::NokhwaSource::open(c)?))
}

#[cfg(not(feature = "nokhwa"))]
fn open_nokhwa(_: &NokhwaConfig) -> Result<Box<dyn FrameSource + Send>, SourceError> {
    Err(SourceError::BackendUnavailable {
        backend: "nokhwa",
        hint: "rebuild vigil with `--features nokhwa`, or use kind = \"v4l\"".to_owned(),
    })
}

/// Checks the geometry every camera config shares, so that a typo fails at start with the
/// field's name instead of as an ioctl error.
pub(crate) fn check_camera_size(width: u32, height: u32, fps: u32) -> Result<(), SourceError> {
    use vigil_engine::frame::MAX_SIDE;
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(SourceError::Config(format!(
            "width x height = {width}x{height}: each side must be between 1 and {MAX_SIDE}"
        )));
    }
    if fps == 0 || fps > 1000 {
        return Err(SourceError::Config(format!(
            "fps = {fps}: must be between 1 and 1000"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SourceConfig, toml::de::Error> {
        toml::from_str(s)
    }

    #[test]
    fn parses_every_kind_with_defaults() {
        let v = parse("kind = \"v4l\"").unwrap();
        let SourceConfig::V4l(v) = v else {
            panic!("{v:?}")
        };
        assert_eq!(v.device, PathBuf::from("/dev/video0"));
        assert_eq!((v.width, v.height, v.fps), (640, 480, 30));
        assert_eq!((v.format, v.output), (V4lFormat::Auto, OutputColor::Rgb));

        let v = parse("kind = \"v4l\"\ndevice = \"/dev/v4l/by-id/usb-cam\"\nformat = \"mjpeg\"\noutput = \"gray\"\nwidth = 1280\nheight = 720\nfps = 15").unwrap();
        let SourceConfig::V4l(v) = v else {
            panic!("{v:?}")
        };
        assert_eq!(v.format.raw(), Some(pixfmt::RawFormat::Mjpeg));
        assert_eq!(v.output.layout(), PixelLayout::Gray8);
        assert_eq!((v.width, v.height, v.fps), (1280, 720, 15));

        let n = parse("kind = \"nokhwa\"\nindex = 2\noutput = \"gray\"").unwrap();
        assert!(
            matches!(
                n,
                SourceConfig::Nokhwa(NokhwaConfig {
                    index: 2,
                    output: OutputColor::Gray,
                    ..
                })
            ),
            "{n:?}"
        );

        let d = parse(
            "kind = \"dir\"\npath = \"/data/ped2/testing/frames/01\"\nfps = 10.0\nloop = true\nstart = 5\ncount = 20",
        )
        .unwrap();
        let SourceConfig::Dir(d) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (d.fps, d.looping, d.start, d.count),
            (Some(10.0), true, Some(5), Some(20))
        );
        let d = parse("kind = \"dir\"\npath = \"x\"").unwrap();
        assert_eq!(
            d,
            SourceConfig::Dir(DirConfig {
                path: "x".into(),
                fps: None,
                looping: false,
                start: None,
                count: None
            })
        );

        let s =
            parse("kind = \"synthetic\"\nseed = 7\nanomaly_at = 50\nanomaly_frames = 12").unwrap();
        let SourceConfig::Synthetic(s) = s else {
            panic!("{s:?}")
        };
        assert_eq!(
            (s.width, s.height, s.seed, s.anomaly_at, s.anomaly_frames),
            (360, 240, 7, Some(50), 12)
        );
        assert_eq!(s.output, OutputColor::Gray);
    }

    #[test]
    fn rejects_unknown_fields_kinds_and_values() {
        for bad in [
            "kind = \"v4l\"\ndevcie = \"/dev/video0\"",
            "kind = \"dir\"\npath = \"x\"\nfsp = 3.0",
            "kind = \"synthetic\"\nanomaly = 3",
            "kind = \"webcam\"",
            "kind = \"v4l\"\nformat = \"h264\"",
            "kind = \"v4l\"\noutput = \"bgr\"",
            "kind = \"dir\"",
            "device = \"/dev/video0\"",
        ] {
            assert!(parse(bad).is_err(), "accepted: {bad}");
        }
        let err = parse("kind = \"v4l\"\ndevcie = \"/dev/video0\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("devcie"), "{err}");
    }

    #[test]
    fn transient_and_fatal_errors_are_told_apart() {
        let t = SourceError::Timeout {
            source_name: "v4l /dev/video0".into(),
            after: Duration::from_millis(2000),
        };
        assert!(t.is_transient());
        assert!(t.to_string().contains("2000 ms"), "{t}");
        let corrupt = SourceError::CorruptFrame {
            source_name: "cam".into(),
            reason: PixFmtError::CorruptJpeg {
                len: 10,
                reason: "x".into(),
            },
        };
        assert!(corrupt.is_transient());
        let bad_stride = SourceError::CorruptFrame {
            source_name: "cam".into(),
            reason: PixFmtError::StrideTooSmall {
                format: pixfmt::RawFormat::Yuyv,
                width: 4,
                stride: 2,
                min: 8,
            },
        };
        assert!(!bad_stride.is_transient());
        let missing = SourceError::DeviceMissing {
            device: "/dev/video7".into(),
        };
        assert!(!missing.is_transient());
        let msg = missing.to_string();
        assert!(
            msg.contains("/dev/video7") && msg.contains("v4l2-ctl --list-devices"),
            "{msg}"
        );
        assert!(!SourceError::DirEmpty { path: "/x".into() }.is_transient());
    }

    #[test]
    fn open_dispatches_and_reports_disabled_backends() {
        let s = open(&SourceConfig::Synthetic(
            toml::from_str("width = 32\nheight = 24").unwrap(),
        ))
        .unwrap();
        assert!(s.describe().starts_with("synthetic"), "{}", s.describe());
        let missing = open(&parse("kind = \"dir\"\npath = \"/nonexistent/vigil/frames\"").unwrap())
            .err()
            .unwrap();
        assert!(
            matches!(missing, SourceError::DirMissing { .. }),
            "{missing}"
        );
        #[cfg(not(feature = "nokhwa"))]
        {
            let err = open(&parse("kind = \"nokhwa\"").unwrap()).err().unwrap();
            assert!(
                matches!(
                    err,
                    SourceError::BackendUnavailable {
                        backend: "nokhwa",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("--features nokhwa"), "{err}");
        }
        #[cfg(all(feature = "v4l", target_os = "linux"))]
        {
            let err = open(&parse("kind = \"v4l\"\ndevice = \"/nonexistent/video9\"").unwrap())
                .err()
                .unwrap();
            assert!(matches!(err, SourceError::DeviceMissing { .. }), "{err}");
        }
    }

    #[test]
    fn camera_size_is_checked_before_any_device_access() {
        assert!(check_camera_size(640, 480, 30).is_ok());
        for (w, h, f) in [
            (0, 480, 30),
            (640, 0, 30),
            (9000, 480, 30),
            (640, 480, 0),
            (640, 480, 5000),
        ] {
            let err = check_camera_size(w, h, f).unwrap_err();
            assert!(
                matches!(err, SourceError::Config(_)) && !err.is_transient(),
                "{err}"
            );
        }
    }
}
