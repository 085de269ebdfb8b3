//! Frames: 8-bit images that know their own geometry.
//!
//! A `Frame` can only be built with a buffer whose length matches its geometry, so every stage
//! downstream can index pixels without re-checking. Buffers are reused (`Frame::reshape` keeps
//! the allocation) so that steady-state capture allocates nothing per frame.

use std::time::Duration;
use thiserror::Error;

/// Largest frame side accepted from any source. 8K is well beyond what an edge camera sends;
/// anything larger is a corrupt header, not a picture, and must not make us allocate gigabytes.
pub const MAX_SIDE: u32 = 8192;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame geometry {width}x{height} is invalid: each side must be between 1 and {MAX_SIDE} pixels")]
    BadGeometry { width: u32, height: u32 },
    #[error(
        "frame buffer holds {got} bytes but a {width}x{height} {layout:?} frame needs {expected}"
    )]
    BufferSize {
        width: u32,
        height: u32,
        layout: PixelLayout,
        expected: usize,
        got: usize,
    },
}

/// How the bytes of a frame are laid out. Sources convert whatever the camera sends (YUYV,
/// MJPEG, NV12, ...) into one of these two before a frame enters the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelLayout {
    /// One byte of luma per pixel.
    Gray8,
    /// Three bytes per pixel, R, G, B.
    Rgb8,
}

impl PixelLayout {
    pub const fn bytes_per_pixel(self) -> usize {
        match self {
            PixelLayout::Gray8 => 1,
            PixelLayout::Rgb8 => 3,
        }
    }
}

/// Width, height and layout of a frame; constructible only with sane sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    width: u32,
    height: u32,
    layout: PixelLayout,
}

impl Geometry {
    /// One grey pixel: the geometry of [`Frame::placeholder`].
    pub const ONE_GRAY: Geometry = Geometry {
        width: 1,
        height: 1,
        layout: PixelLayout::Gray8,
    };

    pub fn new(width: u32, height: u32, layout: PixelLayout) -> Result<Self, FrameError> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(FrameError::BadGeometry { width, height });
        }
        Ok(Self {
            width,
            height,
            layout,
        })
    }
    pub const fn width(&self) -> u32 {
        self.width
    }
    pub const fn height(&self) -> u32 {
        self.height
    }
    pub const fn layout(&self) -> PixelLayout {
        self.layout
    }
    /// Bytes one frame of this geometry occupies.
    pub const fn byte_len(&self) -> usize {
        self.width as usize * self.height as usize * self.layout.bytes_per_pixel()
    }
}

/// One captured picture plus where it sits in its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    geometry: Geometry,
    data: Vec<u8>,
    /// Position in the source's stream (0-based; for a replayed video: the file's frame number).
    pub index: u64,
    /// Capture time on the source's clock, relative to the start of the stream.
    pub timestamp: Duration,
}

impl Frame {
    pub fn new(geometry: Geometry, data: Vec<u8>, index: u64) -> Result<Self, FrameError> {
        check_len(geometry, data.len())?;
        Ok(Self {
            geometry,
            data,
            index,
            timestamp: Duration::ZERO,
        })
    }

    /// An all-black frame, used to preallocate ring slots.
    pub fn blank(geometry: Geometry) -> Self {
        Self {
            geometry,
            data: vec![0; geometry.byte_len()],
            index: 0,
            timestamp: Duration::ZERO,
        }
    }

    /// A 1x1 grey frame to decode into: decoders (`imageio::load_into`, the sources) give it
    /// the image's geometry, reusing its buffer from then on.
    pub fn placeholder() -> Self {
        Self {
            geometry: Geometry::ONE_GRAY,
            data: vec![0],
            index: 0,
            timestamp: Duration::ZERO,
        }
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Changes the geometry, reusing the allocation when it is large enough. Sources call this
    /// before decoding into a recycled frame, so a camera that keeps its format never allocates.
    pub fn reshape(&mut self, geometry: Geometry) {
        self.geometry = geometry;
        self.data.resize(geometry.byte_len(), 0);
    }

    /// Copies `other`'s pixels and metadata into this frame, reusing this frame's buffer.
    pub fn copy_from(&mut self, other: &Frame) {
        self.reshape(other.geometry);
        self.data.copy_from_slice(&other.data);
        self.index = other.index;
        self.timestamp = other.timestamp;
    }
}

fn check_len(geometry: Geometry, got: usize) -> Result<(), FrameError> {
    let expected = geometry.byte_len();
    if got != expected {
        return Err(FrameError::BufferSize {
            width: geometry.width,
            height: geometry.height,
            layout: geometry.layout,
            expected,
            got,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_rejects_zero_and_huge_sides() {
        assert!(Geometry::new(0, 10, PixelLayout::Gray8).is_err());
        assert!(Geometry::new(10, MAX_SIDE + 1, PixelLayout::Rgb8).is_err());
        assert_eq!(
            Geometry::new(4, 2, PixelLayout::Rgb8).unwrap().byte_len(),
            24
        );
    }

    #[test]
    fn frame_checks_buffer_length() {
        let g = Geometry::new(4, 2, PixelLayout::Gray8).unwrap();
        assert!(Frame::new(g, vec![0; 8], 0).is_ok());
        let err = Frame::new(g, vec![0; 7], 0).unwrap_err();
        assert!(err.to_string().contains("needs 8"), "{err}");
    }

    #[test]
    fn reshape_keeps_capacity_for_smaller_frames() {
        let big = Geometry::new(64, 64, PixelLayout::Rgb8).unwrap();
        let small = Geometry::new(8, 8, PixelLayout::Gray8).unwrap();
        let mut f = Frame::blank(big);
        let cap = f.data.capacity();
        f.reshape(small);
        f.reshape(big);
        assert_eq!(f.data.capacity(), cap);
        assert_eq!(f.data().len(), big.byte_len());
    }
}
