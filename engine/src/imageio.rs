//! Still-image files (JPEG, PNG, TIFF) to frames: used by the directory replay source, dataset
//! export and evaluation, so all three see exactly the same pixels.

use crate::frame::{Frame, FrameError, Geometry, PixelLayout};
use image::DynamicImage;
use std::cmp::Ordering;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImageIoError {
    #[error("cannot read image {path}: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("image {path} has an unusable size: {source}")]
    Geometry {
        path: PathBuf,
        #[source]
        source: FrameError,
    },
}

/// File extensions treated as frames when scanning a directory.
pub const FRAME_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "tif", "tiff"];

pub fn is_frame_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| FRAME_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        .unwrap_or(false)
}

/// Decodes an image file into `into`, reusing its buffer. Gray images stay one channel; images
/// with colour (or alpha, which is dropped) become RGB.
pub fn load_into(path: &Path, into: &mut Frame) -> Result<(), ImageIoError> {
    let img = image::open(path).map_err(|source| ImageIoError::Decode {
        path: path.to_owned(),
        source,
    })?;
    let (width, height) = (img.width(), img.height());
    let (layout, bytes) = match img {
        DynamicImage::ImageLuma8(g) => (PixelLayout::Gray8, g.into_raw()),
        other => (PixelLayout::Rgb8, other.into_rgb8().into_raw()),
    };
    let geometry =
        Geometry::new(width, height, layout).map_err(|source| ImageIoError::Geometry {
            path: path.to_owned(),
            source,
        })?;
    into.reshape(geometry);
    into.data_mut().copy_from_slice(&bytes);
    Ok(())
}

/// Decodes an image file into a new frame with the given stream index.
pub fn load(path: &Path, index: u64) -> Result<Frame, ImageIoError> {
    let mut f =
        Frame::blank(Geometry::new(1, 1, PixelLayout::Gray8).expect("1x1 is a valid geometry"));
    load_into(path, &mut f)?;
    f.index = index;
    Ok(f)
}

/// Natural order of file names: digit runs compare by numeric value, everything else
/// byte-wise; ties (e.g. `007` vs `7`) fall back to plain byte order so the order is total.
pub fn natural_cmp(a: &OsStr, b: &OsStr) -> Ordering {
    let (sa, sb) = (a.as_encoded_bytes(), b.as_encoded_bytes());
    let (mut i, mut j) = (0, 0);
    while i < sa.len() && j < sb.len() {
        if sa[i].is_ascii_digit() && sb[j].is_ascii_digit() {
            let ei = i + sa[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            let ej = j + sb[j..].iter().take_while(|c| c.is_ascii_digit()).count();
            // Compare without parsing (no overflow on long digit runs): strip leading zeros,
            // then the longer number is larger, then digit by digit.
            let na = trim_zeros(&sa[i..ei]);
            let nb = trim_zeros(&sb[j..ej]);
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
            i = ei;
            j = ej;
        } else {
            let ord = sa[i].cmp(&sb[j]);
            if ord != Ordering::Equal {
                return ord;
            }
            i += 1;
            j += 1;
        }
    }
    (sa.len() - i).cmp(&(sb.len() - j)).then_with(|| sa.cmp(sb))
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    &digits[first..]
}

#[cfg(test)]
mod natural_tests {
    use super::natural_cmp;
    use std::cmp::Ordering;
    use std::ffi::OsStr;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn natural_order() {
        let mut names = vec![
            "10.jpg",
            "2.jpg",
            "1.jpg",
            "frame_100.png",
            "frame_20.png",
            "007.jpg",
            "7.jpg",
            "a.jpg",
        ];
        names.sort_by(|a, b| natural_cmp(os(a), os(b)));
        assert_eq!(
            names,
            vec![
                "1.jpg",
                "2.jpg",
                "007.jpg",
                "7.jpg",
                "10.jpg",
                "a.jpg",
                "frame_20.png",
                "frame_100.png"
            ]
        );
        // Digit runs longer than any integer type still compare.
        assert_eq!(
            natural_cmp(
                os("99999999999999999999999.jpg"),
                os("100000000000000000000000.jpg")
            ),
            Ordering::Less
        );
        assert_eq!(natural_cmp(os("x"), os("x")), Ordering::Equal);
    }
}
