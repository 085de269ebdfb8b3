//! Frame -> model input plane. The one preprocessing implementation: the runtime and
//! `vigil dataset export` (which produces the training tensors) both call `Preprocessor::run`,
//! so training and serving see bit-identical inputs.

use crate::frame::{Frame, PixelLayout};
use fast_image_resize as fir;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PreprocessError {
    #[error("cannot resize a {src_w}x{src_h} frame to {dst_w}x{dst_h}: {reason}")]
    Resize {
        src_w: u32,
        src_h: u32,
        dst_w: u32,
        dst_h: u32,
        reason: String,
    },
    #[error("output plane holds {got} values, the model input needs {expected}")]
    OutputLen { expected: usize, got: usize },
}

/// Resampling filter used when the camera's size differs from the model's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    Nearest,
    #[default]
    Bilinear,
}

/// What the network expects of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputGeometry {
    pub width: u32,
    pub height: u32,
    /// 1 = luma, 3 = RGB.
    pub channels: u32,
    /// 0..255 maps linearly onto [lo, hi].
    pub pixel_range: [f32; 2],
    #[serde(default)]
    pub resize: ResizeFilter,
}

impl InputGeometry {
    /// Values in one CHW plane set of one frame.
    pub fn plane_len(&self) -> usize {
        self.width as usize * self.height as usize * self.channels as usize
    }
    pub fn layout(&self) -> PixelLayout {
        if self.channels == 1 {
            PixelLayout::Gray8
        } else {
            PixelLayout::Rgb8
        }
    }
}

/// Converts frames of any size and layout into the model's CHW float plane.
/// Holds its scratch buffers so that `run` allocates nothing once the source size is stable.
pub struct Preprocessor {
    geo: InputGeometry,
    resizer: fir::Resizer,
    options: fir::ResizeOptions,
    /// Source converted to the model's colour, at source resolution.
    colour: Vec<u8>,
    /// Resized to model resolution, interleaved (HWC).
    resized: fir::images::Image<'static>,
    /// Lookup table 0..255 -> pixel range, so the affine map costs one load per pixel.
    lut: [f32; 256],
}

impl Preprocessor {
    pub fn new(geo: InputGeometry) -> Self {
        let pixel = if geo.channels == 1 {
            fir::PixelType::U8
        } else {
            fir::PixelType::U8x3
        };
        let alg = match geo.resize {
            ResizeFilter::Nearest => fir::ResizeAlg::Nearest,
            ResizeFilter::Bilinear => fir::ResizeAlg::Convolution(fir::FilterType::Bilinear),
        };
        let [lo, hi] = geo.pixel_range;
        let mut lut = [0f32; 256];
        for (i, v) in lut.iter_mut().enumerate() {
            *v = lo + (hi - lo) * (i as f32 / 255.0);
        }
        Self {
            geo,
            resizer: fir::Resizer::new(),
            options: fir::ResizeOptions::new().resize_alg(alg),
            colour: Vec::new(),
            resized: fir::images::Image::new(geo.width, geo.height, pixel),
            lut,
        }
    }

    pub fn geometry(&self) -> &InputGeometry {
        &self.geo
    }

    /// Writes the model input for `frame` into `out` (CHW, `plane_len` values).
    pub fn run(&mut self, frame: &Frame, out: &mut [f32]) -> Result<(), PreprocessError> {
        let expected = self.geo.plane_len();
        if out.len() != expected {
            return Err(PreprocessError::OutputLen {
                expected,
                got: out.len(),
            });
        }
        let g = frame.geometry();
        let want = self.geo.layout();
        // Colour conversion first, at source resolution: converting after resizing would mix
        // chroma across pixels differently from what the training tensors saw.
        let src: &[u8] = if g.layout() == want {
            frame.data()
        } else {
            self.colour.resize(
                g.width() as usize * g.height() as usize * want.bytes_per_pixel(),
                0,
            );
            match (g.layout(), want) {
                (PixelLayout::Rgb8, PixelLayout::Gray8) => {
                    rgb_to_luma(frame.data(), &mut self.colour)
                }
                (PixelLayout::Gray8, PixelLayout::Rgb8) => {
                    gray_to_rgb(frame.data(), &mut self.colour)
                }
                _ => unreachable!("layouts differ, so one of the two arms above applies"),
            }
            &self.colour
        };
        let pixel = self.resized.pixel_type();
        let resize_err = |reason: String| PreprocessError::Resize {
            src_w: g.width(),
            src_h: g.height(),
            dst_w: self.geo.width,
            dst_h: self.geo.height,
            reason,
        };
        let plane: &[u8] = if g.width() == self.geo.width && g.height() == self.geo.height {
            src
        } else {
            let src_img = fir::images::ImageRef::new(g.width(), g.height(), src, pixel)
                .map_err(|e| resize_err(e.to_string()))?;
            self.resizer
                .resize(&src_img, &mut self.resized, &self.options)
                .map_err(|e| resize_err(e.to_string()))?;
            self.resized.buffer()
        };
        let c = self.geo.channels as usize;
        let hw = self.geo.width as usize * self.geo.height as usize;
        if c == 1 {
            for (o, &p) in out.iter_mut().zip(plane) {
                *o = self.lut[p as usize];
            }
        } else {
            // HWC -> CHW
            for (i, px) in plane.chunks_exact(c).enumerate() {
                for (ch, &p) in px.iter().enumerate() {
                    out[ch * hw + i] = self.lut[p as usize];
                }
            }
        }
        Ok(())
    }
}

/// BT.601 luma with 8-bit fixed-point weights (77, 150, 29)/256, the same weights the capture
/// decoders use, so a colour camera and a colour file yield the same gray frame.
pub fn rgb_to_luma(rgb: &[u8], out: &mut [u8]) {
    for (o, px) in out.iter_mut().zip(rgb.chunks_exact(3)) {
        *o = ((77 * px[0] as u32 + 150 * px[1] as u32 + 29 * px[2] as u32 + 128) >> 8) as u8;
    }
}

fn gray_to_rgb(gray: &[u8], out: &mut [u8]) {
    for (px, &g) in out.chunks_exact_mut(3).zip(gray) {
        px.fill(g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Geometry;

    fn geo(w: u32, h: u32, c: u32) -> InputGeometry {
        InputGeometry {
            width: w,
            height: h,
            channels: c,
            pixel_range: [-1.0, 1.0],
            resize: ResizeFilter::Bilinear,
        }
    }

    #[test]
    fn same_size_gray_is_an_affine_map() {
        let g = Geometry::new(3, 1, PixelLayout::Gray8).unwrap();
        let f = Frame::new(g, vec![0, 255, 51], 0).unwrap();
        let mut p = Preprocessor::new(geo(3, 1, 1));
        let mut out = vec![0.0; 3];
        p.run(&f, &mut out).unwrap();
        assert_eq!(out[0], -1.0);
        assert_eq!(out[1], 1.0);
        assert!((out[2] - (-0.6)).abs() < 1e-6);
    }

    #[test]
    fn rgb_is_converted_to_luma_before_resizing() {
        let g = Geometry::new(4, 2, PixelLayout::Rgb8).unwrap();
        // pure red everywhere: luma = (77*255+128)>>8 = 77
        let f = Frame::new(g, [255u8, 0, 0].repeat(8), 0).unwrap();
        let mut p = Preprocessor::new(InputGeometry {
            pixel_range: [0.0, 255.0],
            ..geo(2, 1, 1)
        });
        let mut out = vec![0.0; 2];
        p.run(&f, &mut out).unwrap();
        assert_eq!(out, vec![77.0, 77.0]);
    }

    #[test]
    fn gray_to_rgb_chw_layout() {
        let g = Geometry::new(2, 1, PixelLayout::Gray8).unwrap();
        let f = Frame::new(g, vec![0, 255], 0).unwrap();
        let mut p = Preprocessor::new(InputGeometry {
            pixel_range: [0.0, 1.0],
            ..geo(2, 1, 3)
        });
        let mut out = vec![9.0; 6];
        p.run(&f, &mut out).unwrap();
        assert_eq!(out, vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn wrong_output_length_is_an_error() {
        let g = Geometry::new(2, 1, PixelLayout::Gray8).unwrap();
        let f = Frame::new(g, vec![0, 255], 0).unwrap();
        let mut p = Preprocessor::new(geo(2, 1, 1));
        assert!(p.run(&f, &mut [0.0; 3]).is_err());
    }
}
