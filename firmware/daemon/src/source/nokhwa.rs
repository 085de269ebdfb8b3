//! Capture through nokhwa 0.10 (feature `nokhwa`): a second camera backend for developer
//! laptops and cameras whose V4L2 quirks the `v4l` source does not handle.
//!
//! nokhwa negotiates the format (we ask for the closest to the configured size and rate, MJPEG
//! preferred) and decodes to RGB itself; gray output is then computed with [`rgb_to_gray`] so
//! that a gray frame means BT.601 luma whichever backend produced it. nokhwa allocates a buffer
//! per frame internally (its `Buffer` owns the bytes); the production path on Jetson boxes is
//! the `v4l` source, which does not.
//!
//! Verified here: compilation only. There is no camera on the development machines, and
//! nokhwa gives no seam to feed it recorded buffers.

use std::time::Instant;

use ::nokhwa::pixel_format::RgbFormat;
use ::nokhwa::utils::{
    CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
};
use ::nokhwa::Camera;
use log::info;
use vigil_engine::frame::{Frame, Geometry, PixelLayout};

use super::pixfmt::rgb_to_gray;
use super::{check_camera_size, FrameSource, Next, NokhwaConfig, SourceError};

/// A nokhwa camera; see the module docs.
pub struct NokhwaSource {
    camera: Camera,
    index: u32,
    layout: PixelLayout,
    /// RGB staging for gray output; sized once, reused.
    rgb: Vec<u8>,
    fps: Option<f32>,
    frames: u64,
    started: Instant,
    describe: String,
}

impl NokhwaSource {
    pub fn open(config: &NokhwaConfig) -> Result<Self, SourceError> {
        check_camera_size(config.width, config.height, config.fps)?;
        let index = config.index;
        let err = |what: &str, e: ::nokhwa::NokhwaError| {
            SourceError::Nokhwa {
            index,
            message: format!("{what}: {e} (list cameras with `v4l2-ctl --list-devices`, then set the camera's source.index)"),
        }
        };
        let wanted = CameraFormat::new(
            Resolution::new(config.width, config.height),
            FrameFormat::MJPEG,
            config.fps,
        );
        let requested = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
        let mut camera = Camera::new(CameraIndex::Index(index), requested)
            .map_err(|e| err("cannot open camera", e))?;
        camera
            .open_stream()
            .map_err(|e| err("cannot start streaming", e))?;
        let format = camera.camera_format();
        let describe = format!(
            "nokhwa #{index} ({}) {}x{} {}@{} -> {}",
            camera.info().human_name(),
            format.width(),
            format.height(),
            format.format(),
            format.frame_rate(),
            match config.output.layout() {
                PixelLayout::Gray8 => "gray",
                PixelLayout::Rgb8 => "rgb",
            }
        );
        info!("opened {describe}");
        Ok(Self {
            camera,
            index,
            layout: config.output.layout(),
            rgb: Vec::new(),
            fps: (format.frame_rate() > 0).then_some(format.frame_rate() as f32),
            frames: 0,
            started: Instant::now(),
            describe,
        })
    }

    fn glitch(&self, message: String) -> SourceError {
        SourceError::Glitch {
            source_name: format!("nokhwa camera #{}", self.index),
            message,
        }
    }
}

impl FrameSource for NokhwaSource {
    fn next_into(&mut self, frame: &mut Frame) -> Result<Next, SourceError> {
        // nokhwa reports a failed read and a failed decode the same way; both are treated as a
        // lost frame. A camera that is gone keeps failing, and the capture loop's limit on
        // consecutive transient errors turns that into a stop.
        let buffer = self
            .camera
            .frame()
            .map_err(|e| self.glitch(format!("no frame: {e}")))?;
        let res = buffer.resolution();
        let geometry = Geometry::new(res.width(), res.height(), self.layout)
            .map_err(|e| self.glitch(format!("unusable frame size: {e}")))?;
        match self.layout {
            PixelLayout::Rgb8 => {
                frame.reshape(geometry);
                buffer
                    .decode_image_to_buffer::<RgbFormat>(frame.data_mut())
                    .map_err(|e| self.glitch(format!("cannot decode frame: {e}")))?;
            }
            PixelLayout::Gray8 => {
                let len = geometry.byte_len() * 3;
                // resize keeps the capacity: allocates only when the size first grows.
                self.rgb.resize(len, 0);
                let decoded = buffer.decode_image_to_buffer::<RgbFormat>(&mut self.rgb);
                decoded.map_err(|e| self.glitch(format!("cannot decode frame: {e}")))?;
                frame.reshape(geometry);
                rgb_to_gray(&self.rgb, frame.data_mut());
            }
        }
        frame.index = self.frames;
        self.frames += 1;
        // nokhwa does not expose the driver's capture timestamp; arrival time is the next best.
        frame.timestamp = self.started.elapsed();
        Ok(Next::Frame)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn nominal_fps(&self) -> Option<f32> {
        self.fps
    }
}
