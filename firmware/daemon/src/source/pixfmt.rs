//! Camera pixel formats to [`Frame`]s.
//!
//! Cameras deliver YUYV (packed 4:2:2), NV12 (4:2:0, Y plane then interleaved UV), GREY or
//! MJPEG. The rest of the pipeline only knows `Gray8` and `Rgb8`, chosen by the caller to match
//! the model's colour, so every camera buffer goes through exactly one function here.
//!
//! Colour conventions (checked against ffmpeg's swscale on real buffers, see
//! `firmware/daemon/tests/fixtures/pixfmt/gen.sh` and the tests at the bottom of this file):
//!
//! * YUYV and NV12 are BT.601 *limited range* (Y 16..235, Cb/Cr 16..240), which is what V4L2
//!   drivers and UVC cameras send for these formats. RGB uses the usual 8-bit fixed-point
//!   approximation of the BT.601 matrix (coefficients scaled by 256):
//!   `R = (298(Y-16) + 409(V-128) + 128) >> 8`,
//!   `G = (298(Y-16) - 100(U-128) - 208(V-128) + 128) >> 8`,
//!   `B = (298(Y-16) + 516(U-128) + 128) >> 8`, clamped to 0..=255.
//!   Chroma is replicated (nearest sample), not interpolated: it is cheaper and, for a model
//!   that sees 8x8 patches, indistinguishable.
//! * Gray from YUYV/NV12 is the Y plane stretched from limited to full range,
//!   `round((Y-16) * 255/219)`: a gray frame then means the same thing whatever the camera's
//!   format (MJPEG and GREY are full range), and the models were trained on full-range JPEG luma.
//!   This matches ffmpeg's own `gray` conversion bit for bit.
//! * MJPEG is JFIF: full-range YCbCr. Gray output is the decoded Y channel, which by the JFIF
//!   definition is BT.601 luma `0.299 R + 0.587 G + 0.114 B`; RGB output is zune-jpeg's
//!   conversion.
//! * Gray from RGB (nokhwa hands us RGB) is BT.601 luma with 16-bit fixed-point coefficients
//!   `(19595 R + 38470 G + 7471 B + 32768) >> 16` (the libjpeg constants; they sum to 65536 so
//!   white stays 255).
//!
//! Nothing here allocates per frame: output goes into the caller's recycled [`Frame`]
//! (`Frame::reshape` keeps the allocation), and the MJPEG path's scratch buffer (used only for
//! frames without Huffman tables) is kept and reused. The one exception is inside zune-jpeg,
//! which builds its per-image component buffers on every decode; its API binds a decoder to
//! one input buffer, so that cannot be hoisted out. The decoded picture itself goes straight
//! into the frame.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use thiserror::Error;
use vigil_engine::frame::{Frame, Geometry, PixelLayout, MAX_SIDE};
use vigil_engine::imageio;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// A pixel format as a camera delivers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawFormat {
    /// Packed 4:2:2, `Y0 U Y1 V` per two pixels (V4L2 `YUYV`).
    Yuyv,
    /// 4:2:0: a Y plane, then one plane of interleaved `U V` at half resolution (V4L2 `NV12`).
    Nv12,
    /// 8-bit luma only (V4L2 `GREY`).
    Grey,
    /// One JPEG per frame (V4L2 `MJPG`).
    Mjpeg,
}

impl RawFormat {
    /// The V4L2 four-character code.
    pub const fn fourcc(self) -> [u8; 4] {
        match self {
            RawFormat::Yuyv => *b"YUYV",
            RawFormat::Nv12 => *b"NV12",
            RawFormat::Grey => *b"GREY",
            RawFormat::Mjpeg => *b"MJPG",
        }
    }

    /// The format for a V4L2 four-character code, if we can decode it. `JPEG` is accepted as
    /// MJPEG because some UVC drivers advertise it for the same payload.
    pub fn from_fourcc(code: &[u8; 4]) -> Option<Self> {
        match code {
            b"YUYV" => Some(RawFormat::Yuyv),
            b"NV12" => Some(RawFormat::Nv12),
            b"GREY" => Some(RawFormat::Grey),
            b"MJPG" | b"JPEG" => Some(RawFormat::Mjpeg),
            _ => None,
        }
    }

    /// Bytes of one row of the first plane without padding (0 for MJPEG, which has no rows).
    pub const fn min_stride(self, width: u32) -> usize {
        let w = width as usize;
        match self {
            // A YUYV macropixel covers two pixels; an odd width still needs the whole last one.
            RawFormat::Yuyv => w.div_ceil(2) * 4,
            RawFormat::Nv12 | RawFormat::Grey => w,
            RawFormat::Mjpeg => 0,
        }
    }
}

impl fmt::Display for RawFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.fourcc();
        // The fourccs above are ASCII by construction.
        f.write_str(std::str::from_utf8(&code).unwrap_or("????"))
    }
}

/// Errors turning a camera buffer into a frame.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PixFmtError {
    #[error("{format} frame size {width}x{height} is invalid: each side must be between 1 and {MAX_SIDE} pixels")]
    BadSize {
        format: RawFormat,
        width: u32,
        height: u32,
    },
    #[error("{format} row stride of {stride} bytes is shorter than one {width}-pixel row ({min} bytes): the driver reported an inconsistent format")]
    StrideTooSmall {
        format: RawFormat,
        width: u32,
        stride: usize,
        min: usize,
    },
    #[error("{format} buffer holds {got} bytes but a {width}x{height} frame needs {needed}: the frame was cut short")]
    Truncated {
        format: RawFormat,
        width: u32,
        height: u32,
        needed: usize,
        got: usize,
    },
    #[error("corrupt MJPEG frame ({len} bytes): {reason}")]
    CorruptJpeg { len: usize, reason: String },
    #[error(
        "MJPEG frame declares {got_width}x{got_height} but the camera negotiated {width}x{height}"
    )]
    JpegSizeMismatch {
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
    #[error("MJPEG frame declares {got_width}x{got_height}, beyond the {MAX_SIDE}-pixel limit: a corrupt header")]
    JpegTooLarge { got_width: u32, got_height: u32 },
}

impl PixFmtError {
    /// Whether skipping this one frame is the right reaction. A cut-short or corrupt frame is
    /// a glitch on the wire (USB bandwidth, a camera resync); a nonsensical negotiated format is
    /// a configuration problem that will not go away by waiting.
    pub fn is_transient(&self) -> bool {
        match self {
            PixFmtError::Truncated { .. }
            | PixFmtError::CorruptJpeg { .. }
            | PixFmtError::JpegSizeMismatch { .. }
            | PixFmtError::JpegTooLarge { .. } => true,
            PixFmtError::BadSize { .. } | PixFmtError::StrideTooSmall { .. } => false,
        }
    }
}

/// What a camera buffer looks like: format, picture size and the row stride of the first plane
/// (V4L2 `bytesperline`; NV12's UV plane uses the same stride and starts at `stride * height`,
/// as in V4L2's single-planar NV12). The stride is ignored for MJPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawGeometry {
    format: RawFormat,
    width: u32,
    height: u32,
    stride: usize,
}

impl RawGeometry {
    /// Validates the size and stride once, so that per-frame decoding only checks lengths.
    pub fn new(
        format: RawFormat,
        width: u32,
        height: u32,
        stride: usize,
    ) -> Result<Self, PixFmtError> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(PixFmtError::BadSize {
                format,
                width,
                height,
            });
        }
        let min = format.min_stride(width);
        if stride < min {
            return Err(PixFmtError::StrideTooSmall {
                format,
                width,
                stride,
                min,
            });
        }
        Ok(Self {
            format,
            width,
            height,
            stride,
        })
    }

    /// A geometry without row padding.
    pub fn packed(format: RawFormat, width: u32, height: u32) -> Result<Self, PixFmtError> {
        Self::new(format, width, height, format.min_stride(width))
    }

    pub const fn format(&self) -> RawFormat {
        self.format
    }
    pub const fn width(&self) -> u32 {
        self.width
    }
    pub const fn height(&self) -> u32 {
        self.height
    }
    pub const fn stride(&self) -> usize {
        self.stride
    }

    /// Smallest buffer holding a complete frame. The last row need not carry its padding:
    /// some drivers report `bytesused` without it, and we never read it. MJPEG frames vary in
    /// size; the smallest conceivable JPEG (SOI + EOI) is 4 bytes.
    pub const fn min_len(&self) -> usize {
        let (w, h, s) = (self.width as usize, self.height as usize, self.stride);
        match self.format {
            RawFormat::Yuyv => s * (h - 1) + w.div_ceil(2) * 4,
            RawFormat::Grey => s * (h - 1) + w,
            RawFormat::Nv12 => s * h + s * (h.div_ceil(2) - 1) + w.div_ceil(2) * 2,
            RawFormat::Mjpeg => 4,
        }
    }
}

/// Decodes one negotiated camera format into frames of one layout.
#[derive(Debug, Clone)]
pub struct PixelDecoder {
    raw: RawGeometry,
    output: Geometry,
    mjpeg: MjpegDecoder,
}

impl PixelDecoder {
    pub fn new(raw: RawGeometry, output: PixelLayout) -> Result<Self, PixFmtError> {
        let output =
            Geometry::new(raw.width, raw.height, output).map_err(|_| PixFmtError::BadSize {
                format: raw.format,
                width: raw.width,
                height: raw.height,
            })?;
        Ok(Self {
            raw,
            output,
            mjpeg: MjpegDecoder::new(),
        })
    }

    pub fn raw(&self) -> RawGeometry {
        self.raw
    }

    /// Geometry of the frames this decoder produces.
    pub fn output(&self) -> Geometry {
        self.output
    }

    /// Decodes `buf` (exactly the bytes the driver filled) into `frame`, reusing its buffer.
    /// `frame.index` and `frame.timestamp` are left to the caller.
    pub fn decode(&mut self, buf: &[u8], frame: &mut Frame) -> Result<(), PixFmtError> {
        frame.reshape(self.output);
        let (w, h, s) = (self.raw.width, self.raw.height, self.raw.stride);
        let layout = self.output.layout();
        let dst = frame.data_mut();
        match self.raw.format {
            RawFormat::Yuyv => yuyv_into(buf, w, h, s, layout, dst),
            RawFormat::Nv12 => nv12_into(buf, w, h, s, layout, dst),
            RawFormat::Grey => grey_into(buf, w, h, s, layout, dst),
            RawFormat::Mjpeg => self.mjpeg.decode_into(buf, w, h, layout, dst),
        }
    }
}

#[inline]
fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Limited-range luma (16..235) to full range, `round((y - 16) * 255 / 219)`, as a table so the
/// per-pixel cost is one load. Computed at compile time: no global state, no lazy init.
const Y_TO_FULL: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut y = 0;
    while y < 256 {
        let v = if y <= 16 {
            0
        } else {
            ((y - 16) * 255 * 2 + 219) / (2 * 219)
        };
        t[y] = if v > 255 { 255 } else { v as u8 };
        y += 1;
    }
    t
};

/// BT.601 limited-range YCbCr to RGB, the 8-bit fixed-point form given in the module docs.
#[inline]
fn yuv_to_rgb(y: u8, u: u8, v: u8, out: &mut [u8]) {
    let c = 298 * (i32::from(y) - 16) + 128;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    out[0] = clamp8((c + 409 * e) >> 8);
    out[1] = clamp8((c - 100 * d - 208 * e) >> 8);
    out[2] = clamp8((c + 516 * d) >> 8);
}

fn check_len(raw: RawGeometry, got: usize) -> Result<(), PixFmtError> {
    let needed = raw.min_len();
    if got < needed {
        return Err(PixFmtError::Truncated {
            format: raw.format,
            width: raw.width,
            height: raw.height,
            needed,
            got,
        });
    }
    Ok(())
}

fn check_dst(layout: PixelLayout, width: u32, height: u32, dst: &[u8]) {
    // Internal contract (callers are this module and its tests); a debug assertion documents
    // it without adding a panic path to release builds, and slicing below stays in bounds
    // because we iterate over `dst` itself.
    debug_assert_eq!(
        dst.len(),
        width as usize * height as usize * layout.bytes_per_pixel()
    );
}

/// YUYV (stride `stride` bytes per row) into `dst`, a `width` x `height` frame of `layout`.
pub fn yuyv_into(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    layout: PixelLayout,
    dst: &mut [u8],
) -> Result<(), PixFmtError> {
    let raw = RawGeometry::new(RawFormat::Yuyv, width, height, stride)?;
    check_len(raw, src.len())?;
    check_dst(layout, width, height, dst);
    let w = width as usize;
    let bpp = layout.bytes_per_pixel();
    for (row, out_row) in dst.chunks_exact_mut(w * bpp).enumerate() {
        let line = &src[row * stride..row * stride + w.div_ceil(2) * 4];
        match layout {
            PixelLayout::Gray8 => {
                for (x, px) in out_row.iter_mut().enumerate() {
                    *px = Y_TO_FULL[usize::from(line[x * 2])];
                }
            }
            PixelLayout::Rgb8 => {
                for (pair, out) in line.chunks_exact(4).zip(out_row.chunks_mut(6)) {
                    let (y0, u, y1, v) = (pair[0], pair[1], pair[2], pair[3]);
                    yuv_to_rgb(y0, u, v, &mut out[0..3]);
                    // An odd width leaves a half macropixel: its second pixel is not ours.
                    if out.len() == 6 {
                        yuv_to_rgb(y1, u, v, &mut out[3..6]);
                    }
                }
            }
        }
    }
    Ok(())
}

/// NV12 (both planes with row stride `stride`, UV plane at `stride * height`) into `dst`.
pub fn nv12_into(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    layout: PixelLayout,
    dst: &mut [u8],
) -> Result<(), PixFmtError> {
    let raw = RawGeometry::new(RawFormat::Nv12, width, height, stride)?;
    check_len(raw, src.len())?;
    check_dst(layout, width, height, dst);
    let w = width as usize;
    let uv_base = stride * height as usize;
    let bpp = layout.bytes_per_pixel();
    for (row, out_row) in dst.chunks_exact_mut(w * bpp).enumerate() {
        let ys = &src[row * stride..row * stride + w];
        match layout {
            PixelLayout::Gray8 => {
                for (px, &y) in out_row.iter_mut().zip(ys) {
                    *px = Y_TO_FULL[usize::from(y)];
                }
            }
            PixelLayout::Rgb8 => {
                let uv_start = uv_base + (row / 2) * stride;
                let uvs = &src[uv_start..uv_start + w.div_ceil(2) * 2];
                for ((y2, out), uv) in ys
                    .chunks(2)
                    .zip(out_row.chunks_mut(6))
                    .zip(uvs.chunks_exact(2))
                {
                    yuv_to_rgb(y2[0], uv[0], uv[1], &mut out[0..3]);
                    if let (Some(&y1), true) = (y2.get(1), out.len() == 6) {
                        yuv_to_rgb(y1, uv[0], uv[1], &mut out[3..6]);
                    }
                }
            }
        }
    }
    Ok(())
}

/// GREY (full-range luma, row stride `stride`) into `dst`. Gray output is an exact copy; RGB
/// output repeats the value in all three channels.
pub fn grey_into(
    src: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    layout: PixelLayout,
    dst: &mut [u8],
) -> Result<(), PixFmtError> {
    let raw = RawGeometry::new(RawFormat::Grey, width, height, stride)?;
    check_len(raw, src.len())?;
    check_dst(layout, width, height, dst);
    let w = width as usize;
    let bpp = layout.bytes_per_pixel();
    for (row, out_row) in dst.chunks_exact_mut(w * bpp).enumerate() {
        let line = &src[row * stride..row * stride + w];
        match layout {
            PixelLayout::Gray8 => out_row.copy_from_slice(line),
            PixelLayout::Rgb8 => {
                for (out, &g) in out_row.chunks_exact_mut(3).zip(line) {
                    out.fill(g);
                }
            }
        }
    }
    Ok(())
}

/// RGB to BT.601 luma with the 16-bit coefficients given in the module docs. `dst` receives
/// one byte per RGB triple of `src` (a shorter `dst` converts only its length).
pub fn rgb_to_gray(src: &[u8], dst: &mut [u8]) {
    for (px, g) in src.chunks_exact(3).zip(dst.iter_mut()) {
        let y =
            19595 * u32::from(px[0]) + 38470 * u32::from(px[1]) + 7471 * u32::from(px[2]) + 32768;
        *g = (y >> 16) as u8;
    }
}

/// The JPEG bytes of an MJPEG buffer, or why it is not a whole JPEG: a camera that drops USB
/// packets produces frames cut short, which the decoder would pad with grey without an error
/// (the same check the directory replay applies to files, [`imageio::whole_jpeg`]).
fn jpeg_payload(src: &[u8]) -> Result<&[u8], PixFmtError> {
    imageio::whole_jpeg(src).map_err(|damage| PixFmtError::CorruptJpeg {
        len: src.len(),
        reason: damage.to_string(),
    })
}

/// The Huffman tables of JPEG Annex K.3 (ITU-T T.81), as one DHT segment: the tables every
/// MJPEG camera that omits DHT uses. Each table: class/id byte, 16 code-length counts, values.
const STANDARD_DHT: [u8; 420] = {
    const DC_BITS_LUMA: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    const DC_BITS_CHROMA: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
    const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    const AC_BITS_LUMA: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
    const AC_VALUES_LUMA: [u8; 162] = [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
        0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
        0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
        0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
        0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ];
    const AC_BITS_CHROMA: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
    const AC_VALUES_CHROMA: [u8; 162] = [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
        0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
        0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
        0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
        0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ];
    let mut out = [0u8; 420];
    out[0] = 0xFF;
    out[1] = 0xC4;
    // Segment length counts itself but not the marker: 420 - 2.
    out[2] = 0x01;
    out[3] = 0xA2;
    let mut pos = 4;
    // (class << 4 | id): DC luma, AC luma, DC chroma, AC chroma.
    let ids = [0x00u8, 0x10, 0x01, 0x11];
    let mut t = 0;
    while t < 4 {
        out[pos] = ids[t];
        pos += 1;
        let bits: &[u8; 16] = match t {
            0 => &DC_BITS_LUMA,
            1 => &AC_BITS_LUMA,
            2 => &DC_BITS_CHROMA,
            _ => &AC_BITS_CHROMA,
        };
        let values: &[u8] = match t {
            0 | 2 => &DC_VALUES,
            1 => &AC_VALUES_LUMA,
            _ => &AC_VALUES_CHROMA,
        };
        let mut i = 0;
        while i < 16 {
            out[pos] = bits[i];
            pos += 1;
            i += 1;
        }
        let mut i = 0;
        while i < values.len() {
            out[pos] = values[i];
            pos += 1;
            i += 1;
        }
        t += 1;
    }
    // Fails the build, not a frame, if the tables above were mistyped.
    assert!(pos == 420);
    out
};

/// Whether the JPEG's header segments (everything before the first start-of-scan) include a
/// Huffman table. Walks the segment lengths; a malformed header answers `true` so that the
/// decoder, not this check, reports the problem.
fn has_huffman_tables(jpeg: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return true;
        }
        match jpeg[i + 1] {
            0xC4 => return true,
            0xDA => return false,
            // Fill bytes before a marker.
            0xFF => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if len < 2 {
            return true;
        }
        i += 2 + len;
    }
    true
}

/// Decodes MJPEG frames. Holds a scratch buffer for frames that need the standard Huffman
/// tables spliced in; it grows to the largest such frame once and is reused afterwards.
#[derive(Debug, Clone, Default)]
pub struct MjpegDecoder {
    scratch: Vec<u8>,
}

impl MjpegDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An MJPEG frame into `dst`, a `width` x `height` frame of `layout`.
    ///
    /// The JPEG must declare exactly `width` x `height`: a camera that negotiated one size and
    /// sends another is corrupt or misconfigured, and a wrong-size frame must not reach a model
    /// whose window holds frames of the negotiated size. Many UVC cameras omit the Huffman
    /// tables (the JPEG spec's standard ones are implied); zune-jpeg only supplies them for
    /// frames tagged `AVI1`, so they are spliced in here when missing.
    pub fn decode_into(
        &mut self,
        src: &[u8],
        width: u32,
        height: u32,
        layout: PixelLayout,
        dst: &mut [u8],
    ) -> Result<(), PixFmtError> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(PixFmtError::BadSize {
                format: RawFormat::Mjpeg,
                width,
                height,
            });
        }
        check_dst(layout, width, height, dst);
        let mut data = jpeg_payload(src)?;
        if !has_huffman_tables(data) {
            self.scratch.clear();
            self.scratch.extend_from_slice(&data[..2]);
            self.scratch.extend_from_slice(&STANDARD_DHT);
            self.scratch.extend_from_slice(&data[2..]);
            data = &self.scratch;
        }
        decode_jpeg(data, src.len(), width, height, layout, dst)
    }
}

fn decode_jpeg(
    data: &[u8],
    src_len: usize,
    width: u32,
    height: u32,
    layout: PixelLayout,
    dst: &mut [u8],
) -> Result<(), PixFmtError> {
    let colorspace = match layout {
        PixelLayout::Gray8 => ColorSpace::Luma,
        PixelLayout::Rgb8 => ColorSpace::RGB,
    };
    // zune's own size limit is set to the JPEG maximum so that it only parses the header; our
    // MAX_SIDE check below then reports an oversized frame as such instead of as a generic
    // decode error. Nothing is allocated for the picture before that check.
    let options = DecoderOptions::default()
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .jpeg_set_out_colorspace(colorspace);
    let corrupt = |e: DecodeErrors| PixFmtError::CorruptJpeg {
        len: src_len,
        reason: format!("{e:?}"),
    };
    // A decoder bug on hostile input must cost one frame, not the capture thread: contain a
    // panic here and report it like any other corrupt frame. The decoder and `dst` are not
    // observed after a panic except to be overwritten by the next frame, so unwind safety holds.
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), options);
        decoder.decode_headers().map_err(corrupt)?;
        let (got_w, got_h) = decoder
            .dimensions()
            .ok_or_else(|| PixFmtError::CorruptJpeg {
                len: src_len,
                reason: "no frame header".to_owned(),
            })?;
        let (got_width, got_height) = (got_w as u32, got_h as u32);
        if got_width > MAX_SIDE || got_height > MAX_SIDE {
            return Err(PixFmtError::JpegTooLarge {
                got_width,
                got_height,
            });
        }
        if (got_width, got_height) != (width, height) {
            return Err(PixFmtError::JpegSizeMismatch {
                width,
                height,
                got_width,
                got_height,
            });
        }
        decoder.decode_into(dst).map_err(corrupt)
    }));
    match result {
        Ok(r) => r,
        Err(_) => Err(PixFmtError::CorruptJpeg {
            len: src_len,
            reason: "the JPEG decoder panicked on this frame".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
