//! V4L2 capture through the `v4l` crate: mmap streaming with 4 buffers.
//!
//! Opening a camera:
//! 1. the configured path is checked *before any ioctl*: it must exist and be a character
//!    device (a typo, an unplugged camera or a regular file give a message naming the path);
//! 2. `VIDIOC_QUERYCAP`: the node must capture and stream video (UVC cameras also create a
//!    metadata-only node, a common wrong pick);
//! 3. format negotiation: the requested fourcc if the camera lists it, otherwise the first of
//!    YUYV, MJPG, GREY, NV12 that it lists ([`choose_format`]); the size the driver actually
//!    set and its `bytesperline` are used from then on;
//! 4. the frame rate via `VIDIOC_S_PARM` when the driver supports a time-per-frame setting;
//! 5. 4 mmap buffers; every dequeue waits at most `timeout_ms`, so a stalled camera becomes a
//!    transient [`SourceError::Timeout`] instead of a hung capture thread.
//!
//! What is and is not verified on the development machines: there is no `/dev/video*` device
//! there. The tests cover the path checks (missing device, a regular file, a directory),
//! format choice, configuration checks and, through `pixfmt`, the conversion of every format
//! against ffmpeg. The ioctl sequence itself (steps 2-5 and `next_into`) has only been compiled;
//! it is kept short and follows the v4l crate's own capture example, and needs a camera
//! (a UVC webcam, or `v4l2loopback` fed by ffmpeg) to be exercised.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ::v4l::buffer::{Flags as BufferFlags, Type as BufferType};
use ::v4l::capability::Flags as CapFlags;
use ::v4l::io::mmap::Stream;
use ::v4l::io::traits::CaptureStream;
use ::v4l::parameters::Capabilities as ParamCaps;
use ::v4l::video::capture::Parameters;
use ::v4l::video::Capture;
use ::v4l::{Device, Format, FourCC};
use log::{debug, info, warn};
use vigil_engine::frame::Frame;

use super::pixfmt::{PixelDecoder, RawFormat, RawGeometry};
use super::{check_camera_size, FrameSource, Next, SourceError, V4lConfig};

/// Buffers shared with the driver: enough to ride out one slow conversion without the driver
/// dropping frames, few enough to keep latency at a frame or two.
const BUFFERS: u32 = 4;

/// Order in which formats are picked when the configured one is unavailable (or `auto`):
/// YUYV costs no decode and is exact; MJPEG is what UVC cameras offer at high resolutions;
/// GREY suits monochrome sensors; NV12 is what some CSI bridges offer.
pub const PREFERENCE: [RawFormat; 4] = [
    RawFormat::Yuyv,
    RawFormat::Mjpeg,
    RawFormat::Grey,
    RawFormat::Nv12,
];

/// `poll(2)`'s `POLLIN` (0x001 on every Linux architecture).
const POLLIN: i16 = 0x001;

/// Checks, without opening it, that `device` is a character device. Follows symlinks, so
/// `/dev/v4l/by-id/...` links work.
pub fn check_device_path(device: &Path) -> Result<(), SourceError> {
    let meta = std::fs::metadata(device).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SourceError::DeviceMissing {
            device: device.to_owned(),
        },
        io::ErrorKind::PermissionDenied => SourceError::PermissionDenied {
            device: device.to_owned(),
        },
        _ => SourceError::Open {
            device: device.to_owned(),
            source: e,
        },
    })?;
    let ft = meta.file_type();
    if ft.is_char_device() {
        return Ok(());
    }
    let what = if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a device"
    };
    Err(SourceError::NotACamera {
        device: device.to_owned(),
        what: what.to_owned(),
    })
}

/// The format to negotiate: `requested` if the camera offers it, else the first of
/// [`PREFERENCE`] it offers.
pub fn choose_format(requested: Option<RawFormat>, offered: &[[u8; 4]]) -> Option<RawFormat> {
    let offers = |f: RawFormat| {
        offered
            .iter()
            .any(|code| RawFormat::from_fourcc(code) == Some(f))
    };
    if let Some(r) = requested {
        if offers(r) {
            return Some(r);
        }
    }
    PREFERENCE.into_iter().find(|&f| offers(f))
}

fn fourcc_text(code: &[u8; 4]) -> String {
    code.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// Maps an `open(2)` error on the device node to the message an operator needs.
fn open_error(device: &Path, e: io::Error) -> SourceError {
    let device = device.to_owned();
    match e.raw_os_error() {
        Some(2) | Some(6) | Some(19) => SourceError::DeviceMissing { device }, // ENOENT, ENXIO, ENODEV
        Some(13) | Some(1) => SourceError::PermissionDenied { device },        // EACCES, EPERM
        Some(16) => SourceError::DeviceBusy { device },                        // EBUSY
        _ => SourceError::Open { device, source: e },
    }
}

/// A V4L2 camera; see the module docs.
pub struct V4lSource {
    device_path: PathBuf,
    name: String,
    /// `None` after a streaming error: the next call restarts streaming (see `next_into`).
    stream: Option<Stream<'static>>,
    /// Whether `stream` has delivered a frame since it was (re)started.
    streaming: bool,
    device: Device,
    decoder: PixelDecoder,
    fps: Option<f32>,
    timeout: Duration,
    /// Driver sequence number and timestamp of the first frame, for index and timestamp.
    first: Option<(u32, Duration)>,
    started: Instant,
    describe: String,
}

impl V4lSource {
    pub fn open(config: &V4lConfig) -> Result<Self, SourceError> {
        check_camera_size(config.width, config.height, config.fps)?;
        // Upper bound: beyond minutes a "timeout" hides a dead camera, and the v4l crate
        // converts the value to an i32 of milliseconds with an unwrap.
        if config.timeout_ms == 0 || config.timeout_ms > 600_000 {
            return Err(SourceError::Config(format!(
                "timeout_ms = {}: must be between 1 and 600000 (10 minutes)",
                config.timeout_ms
            )));
        }
        let path = &config.device;
        check_device_path(path)?;
        let ioctl = |operation: &'static str| {
            let device = path.clone();
            move |source: io::Error| SourceError::Ioctl {
                device,
                operation,
                source,
            }
        };

        let device = Device::with_path(path).map_err(|e| open_error(path, e))?;
        let caps = device.query_caps().map_err(ioctl("VIDIOC_QUERYCAP"))?;
        if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE)
            || !caps.capabilities.contains(CapFlags::STREAMING)
        {
            return Err(SourceError::NotCapture {
                device: path.clone(),
                card: caps.card,
            });
        }

        let offered: Vec<[u8; 4]> = device
            .enum_formats()
            .map_err(ioctl("VIDIOC_ENUM_FMT"))?
            .iter()
            .map(|d| d.fourcc.repr)
            .collect();
        let requested = config.format.raw();
        let format =
            choose_format(requested, &offered).ok_or_else(|| SourceError::NoUsableFormat {
                device: path.clone(),
                offered: offered
                    .iter()
                    .map(fourcc_text)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if let Some(r) = requested.filter(|&r| r != format) {
            warn!(
                "camera {} does not offer {r}; using {format} instead",
                path.display()
            );
        }

        let want = Format::new(config.width, config.height, FourCC::new(&format.fourcc()));
        let got = device.set_format(&want).map_err(ioctl("VIDIOC_S_FMT"))?;
        // Drivers may substitute another format or size; decode what was actually set.
        let got_format = RawFormat::from_fourcc(&got.fourcc.repr).ok_or_else(|| {
            SourceError::NoUsableFormat {
                device: path.clone(),
                offered: format!(
                    "{} (set by the driver instead of {format})",
                    fourcc_text(&got.fourcc.repr)
                ),
            }
        })?;
        if (got.width, got.height) != (config.width, config.height) {
            warn!(
                "camera {} set {}x{} instead of the requested {}x{}",
                path.display(),
                got.width,
                got.height,
                config.width,
                config.height
            );
        }
        // Some drivers report bytesperline 0 for packed formats: that means "no padding".
        let stride = if got.stride == 0 {
            got_format.min_stride(got.width)
        } else {
            got.stride as usize
        };
        let raw =
            RawGeometry::new(got_format, got.width, got.height, stride).map_err(|reason| {
                SourceError::CorruptFrame {
                    source_name: path.display().to_string(),
                    reason,
                }
            })?;
        let decoder = PixelDecoder::new(raw, config.output.layout()).map_err(|reason| {
            SourceError::CorruptFrame {
                source_name: path.display().to_string(),
                reason,
            }
        })?;

        let fps = set_fps(&device, path, config.fps);

        let mut stream = Stream::with_buffers(&device, BufferType::VideoCapture, BUFFERS)
            .map_err(ioctl("VIDIOC_REQBUFS/mmap"))?;
        stream.set_timeout(start_timeout(Duration::from_millis(config.timeout_ms)));

        let describe = format!(
            "v4l {} ({}) {}x{} {}{} -> {}",
            path.display(),
            caps.card,
            got.width,
            got.height,
            got_format,
            fps.map(|f| format!("@{f}")).unwrap_or_default(),
            match config.output.layout() {
                vigil_engine::frame::PixelLayout::Gray8 => "gray",
                vigil_engine::frame::PixelLayout::Rgb8 => "rgb",
            }
        );
        info!("opened {describe}");
        Ok(Self {
            device_path: path.clone(),
            name: format!("v4l {}", path.display()),
            stream: Some(stream),
            streaming: false,
            device,
            decoder,
            fps,
            timeout: Duration::from_millis(config.timeout_ms),
            first: None,
            started: Instant::now(),
            describe,
        })
    }

    fn stream_error(&mut self, e: io::Error) -> SourceError {
        // After any failed dequeue the v4l crate's stream no longer knows which buffer it owns
        // (its next call would re-queue a queued buffer, EINVAL forever), so it is dropped
        // (STREAMOFF, unmap) and rebuilt on the next call.
        self.stream = None;
        self.streaming = false;
        match e.raw_os_error() {
            Some(19) | Some(6) => SourceError::Disconnected {
                device: self.device_path.clone(),
            },
            _ if e.kind() == io::ErrorKind::TimedOut => SourceError::Timeout {
                source_name: self.name.clone(),
                after: self.timeout,
            },
            _ => SourceError::Glitch {
                source_name: self.name.clone(),
                message: format!("dequeue failed ({e}); restarting the stream"),
            },
        }
    }
}

/// The first frame after STREAMON can take much longer than later ones (exposure settling,
/// USB bandwidth negotiation), so the first dequeue waits longer.
fn start_timeout(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(5))
}

/// Requests `fps` where the driver supports it; returns the rate in effect, if known.
fn set_fps(device: &Device, path: &Path, fps: u32) -> Option<f32> {
    let rate = |p: &Parameters| {
        (p.interval.numerator > 0)
            .then(|| p.interval.denominator as f32 / p.interval.numerator as f32)
    };
    let current = match device.params() {
        Ok(p) => p,
        Err(e) => {
            warn!(
                "camera {}: cannot read streaming parameters ({e}); frame rate left to the driver",
                path.display()
            );
            return None;
        }
    };
    if !current.capabilities.contains(ParamCaps::TIME_PER_FRAME) {
        warn!(
            "camera {} does not support setting the frame rate; it runs at its own rate",
            path.display()
        );
        return rate(&current);
    }
    match device.set_params(&Parameters::with_fps(fps)) {
        Ok(p) => {
            let got = rate(&p);
            if got.is_some_and(|g| (g - fps as f32).abs() > 0.5) {
                warn!(
                    "camera {} runs at {:?} fps instead of the requested {fps}",
                    path.display(),
                    got
                );
            }
            got
        }
        Err(e) => {
            warn!(
                "camera {}: setting {fps} fps failed ({e}); keeping {:?}",
                path.display(),
                rate(&current)
            );
            rate(&current)
        }
    }
}

impl FrameSource for V4lSource {
    fn next_into(&mut self, frame: &mut Frame) -> Result<Next, SourceError> {
        if self.stream.is_none() {
            debug!("restarting stream on {}", self.device_path.display());
            let mut s = Stream::with_buffers(&self.device, BufferType::VideoCapture, BUFFERS)
                .map_err(|e| match e.raw_os_error() {
                    Some(19) | Some(6) => SourceError::Disconnected {
                        device: self.device_path.clone(),
                    },
                    _ => SourceError::Ioctl {
                        device: self.device_path.clone(),
                        operation: "VIDIOC_REQBUFS/mmap",
                        source: e,
                    },
                })?;
            s.set_timeout(start_timeout(self.timeout));
            self.stream = Some(s);
            self.first = None;
        }
        let Some(stream) = self.stream.as_mut() else {
            // Unreachable: set just above; an error keeps the no-panic promise.
            return Err(SourceError::Glitch {
                source_name: self.name.clone(),
                message: "no stream".to_owned(),
            });
        };
        if self.streaming {
            // Wait for a filled buffer ourselves: a timeout here leaves the stream's buffer
            // bookkeeping intact, unlike a timeout inside `next()`.
            let ms = i32::try_from(self.timeout.as_millis()).unwrap_or(i32::MAX);
            match stream.handle().poll(POLLIN, ms) {
                Ok(0) => {
                    return Err(SourceError::Timeout {
                        source_name: self.name.clone(),
                        after: self.timeout,
                    })
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    return Err(SourceError::Glitch {
                        source_name: self.name.clone(),
                        message: "wait interrupted by a signal".to_owned(),
                    })
                }
                Err(e) => return Err(self.stream_error(e)),
            }
        }
        let (buf, meta) = match CaptureStream::next(stream) {
            Ok(x) => x,
            Err(e) => return Err(self.stream_error(e)),
        };
        self.streaming = true;
        let (sequence, flags, bytesused) = (meta.sequence, meta.flags, meta.bytesused as usize);
        let ts = Duration::from_secs(meta.timestamp.sec.max(0) as u64)
            + Duration::from_micros(meta.timestamp.usec.max(0) as u64);
        if flags.contains(BufferFlags::ERROR) {
            return Err(SourceError::Glitch {
                source_name: self.name.clone(),
                message: "the driver flagged the frame as corrupted (V4L2_BUF_FLAG_ERROR)"
                    .to_owned(),
            });
        }
        // bytesused is what the driver filled; 0 from old drivers means "the whole buffer".
        let used = if bytesused == 0 || bytesused > buf.len() {
            buf.len()
        } else {
            bytesused
        };
        self.decoder
            .decode(&buf[..used], frame)
            .map_err(|reason| SourceError::CorruptFrame {
                source_name: self.name.clone(),
                reason,
            })?;
        // Index and timestamp relative to the first frame of this stream: the driver's
        // sequence counts frames it captured (gaps show frames it dropped), its timestamp is
        // the capture time on CLOCK_MONOTONIC. Fall back to our clock if it gives none.
        let (seq0, ts0) = *self.first.get_or_insert((sequence, ts));
        frame.index = u64::from(sequence.wrapping_sub(seq0));
        frame.timestamp = if ts.is_zero() {
            self.started.elapsed()
        } else {
            ts.saturating_sub(ts0)
        };
        Ok(Next::Frame)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn nominal_fps(&self) -> Option<f32> {
        self.fps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{OutputColor, V4lFormat};

    fn config(device: &Path) -> V4lConfig {
        V4lConfig {
            device: device.to_owned(),
            width: 640,
            height: 480,
            fps: 30,
            format: V4lFormat::Auto,
            output: OutputColor::Gray,
            timeout_ms: 2000,
        }
    }

    #[test]
    fn missing_device_is_named_with_advice() {
        let err = V4lSource::open(&config(Path::new("/dev/video-vigil-test-missing")))
            .err()
            .unwrap();
        assert!(matches!(err, SourceError::DeviceMissing { .. }), "{err}");
        assert!(!err.is_transient());
        let msg = err.to_string();
        assert!(msg.contains("/dev/video-vigil-test-missing"), "{msg}");
        assert!(
            msg.contains("v4l2-ctl --list-devices") && msg.contains("source.device"),
            "{msg}"
        );
    }

    #[test]
    fn a_regular_file_or_directory_is_not_a_camera() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("video0");
        std::fs::write(&file, b"not a device").unwrap();
        let err = V4lSource::open(&config(&file)).err().unwrap();
        assert!(
            matches!(&err, SourceError::NotACamera { what, .. } if what == "a regular file"),
            "{err}"
        );
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        let err = check_device_path(dir.path()).unwrap_err();
        assert!(
            matches!(&err, SourceError::NotACamera { what, .. } if what == "a directory"),
            "{err}"
        );
        // A character device that is not a camera passes the path check; the ioctls reject it.
        assert!(check_device_path(Path::new("/dev/null")).is_ok());
    }

    #[test]
    fn a_dangling_by_id_link_is_a_missing_camera() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("usb-Camera-video-index0");
        std::os::unix::fs::symlink("/dev/video-vigil-unplugged", &link).unwrap();
        let err = check_device_path(&link).unwrap_err();
        assert!(matches!(err, SourceError::DeviceMissing { .. }), "{err}");
    }

    #[test]
    fn a_non_camera_character_device_fails_cleanly() {
        // /dev/null is a character device that answers no V4L2 ioctl: opening must fail with
        // an error naming it, not panic.
        let err = V4lSource::open(&config(Path::new("/dev/null")))
            .err()
            .unwrap();
        assert!(!err.is_transient(), "{err}");
        assert!(err.to_string().contains("/dev/null"), "{err}");
    }

    #[test]
    fn config_is_checked_before_the_device() {
        let mut c = config(Path::new("/dev/video-vigil-test-missing"));
        c.width = 0;
        assert!(matches!(
            V4lSource::open(&c).err().unwrap(),
            SourceError::Config(_)
        ));
        let mut c = config(Path::new("/dev/video-vigil-test-missing"));
        c.timeout_ms = 0;
        assert!(matches!(
            V4lSource::open(&c).err().unwrap(),
            SourceError::Config(_)
        ));
        c.timeout_ms = u64::MAX;
        assert!(matches!(
            V4lSource::open(&c).err().unwrap(),
            SourceError::Config(_)
        ));
    }

    #[test]
    fn format_choice_follows_request_then_preference() {
        let uvc = [*b"MJPG", *b"YUYV"];
        assert_eq!(choose_format(None, &uvc), Some(RawFormat::Yuyv));
        assert_eq!(
            choose_format(Some(RawFormat::Mjpeg), &uvc),
            Some(RawFormat::Mjpeg)
        );
        assert_eq!(
            choose_format(Some(RawFormat::Nv12), &uvc),
            Some(RawFormat::Yuyv),
            "unavailable request falls back"
        );
        assert_eq!(
            choose_format(None, &[*b"NV12", *b"GREY"]),
            Some(RawFormat::Grey)
        );
        assert_eq!(
            choose_format(None, &[*b"H264", *b"JPEG"]),
            Some(RawFormat::Mjpeg)
        );
        assert_eq!(choose_format(None, &[*b"H264", *b"RG10"]), None);
        assert_eq!(choose_format(Some(RawFormat::Yuyv), &[]), None);
        assert_eq!(fourcc_text(&[b'H', b'2', 0, b'4']), "H2?4");
    }

    #[test]
    fn open_errors_map_to_advice() {
        let p = Path::new("/dev/video3");
        assert!(matches!(
            open_error(p, io::Error::from_raw_os_error(16)),
            SourceError::DeviceBusy { .. }
        ));
        assert!(matches!(
            open_error(p, io::Error::from_raw_os_error(13)),
            SourceError::PermissionDenied { .. }
        ));
        assert!(matches!(
            open_error(p, io::Error::from_raw_os_error(19)),
            SourceError::DeviceMissing { .. }
        ));
        let busy = open_error(p, io::Error::from_raw_os_error(16)).to_string();
        assert!(busy.contains("fuser /dev/video3"), "{busy}");
    }
}
