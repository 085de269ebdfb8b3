//! Still-image files (JPEG, PNG, TIFF) to frames: used by the directory replay source, dataset
//! export and evaluation, so all three see exactly the same pixels.

use crate::frame::{Frame, FrameError, Geometry, PixelLayout, MAX_SIDE};
use image::DynamicImage;
use std::cmp::Ordering;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImageIoError {
    #[error("cannot read image {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image {path} is empty (0 bytes)")]
    Empty { path: PathBuf },
    #[error("image {path} is corrupt: {damage}")]
    Corrupt { path: PathBuf, damage: JpegDamage },
    // Decoder messages may end in a newline (zune-jpeg's do), which would split a log line.
    #[error("cannot decode image {path}: {}", one_line(source))]
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

/// `e`'s message on one line.
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// File extensions treated as frames when scanning a directory.
pub const FRAME_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "tif", "tiff"];

pub fn is_frame_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| FRAME_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        .unwrap_or(false)
}

/// Why bytes that claim to be a JPEG are not a whole one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum JpegDamage {
    #[error("no JPEG start-of-image marker")]
    NoStart,
    #[error("no JPEG end-of-image marker: the image was cut short (a truncated file or buffer)")]
    NoEnd,
}

/// The bytes of a whole JPEG: `bytes` without trailing zero padding, or why it is not one.
///
/// The JPEG decoders (zune-jpeg inside `image`, like libjpeg) fill a truncated entropy stream
/// with grey and return a picture without an error, so a file cut short by a crashed writer or
/// an MJPEG buffer that lost USB packets would be scored as if it were a frame. A whole JPEG
/// starts with SOI (`FF D8`) and ends with EOI (`FF D9`); inside the entropy-coded data `FF` is
/// always followed by `00` or a restart marker, so the last two bytes are EOI only when the
/// stream is complete. Camera drivers may pad a buffer after EOI with zeros, hence the trim.
pub fn whole_jpeg(bytes: &[u8]) -> Result<&[u8], JpegDamage> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(JpegDamage::NoStart);
    }
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    if end < 4 || bytes[end - 2] != 0xFF || bytes[end - 1] != 0xD9 {
        return Err(JpegDamage::NoEnd);
    }
    Ok(&bytes[..end])
}

/// Decodes an image file into `into`, reusing its buffer. Gray images stay one channel; images
/// with colour (or alpha, which is dropped) become RGB. The format is taken from the content,
/// not the name; empty files and truncated JPEGs are refused (see [`whole_jpeg`]).
pub fn load_into(path: &Path, into: &mut Frame) -> Result<(), ImageIoError> {
    let bytes = std::fs::read(path).map_err(|source| ImageIoError::Read {
        path: path.to_owned(),
        source,
    })?;
    decode_into(&bytes, path, into)
}

/// [`load_into`] for bytes already in memory; `path` only names them in errors.
pub fn decode_into(bytes: &[u8], path: &Path, into: &mut Frame) -> Result<(), ImageIoError> {
    if bytes.is_empty() {
        return Err(ImageIoError::Empty {
            path: path.to_owned(),
        });
    }
    let decode_err = |source| ImageIoError::Decode {
        path: path.to_owned(),
        source,
    };
    let format = image::guess_format(bytes).map_err(decode_err)?;
    let bytes = if format == image::ImageFormat::Jpeg {
        whole_jpeg(bytes).map_err(|damage| ImageIoError::Corrupt {
            path: path.to_owned(),
            damage,
        })?
    } else {
        bytes
    };
    // A frame larger than any Frame can hold is refused from its header, before the decoder
    // allocates for it (a corrupt or hostile file can declare 65535 x 65535).
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    let img = reader.decode().map_err(decode_err)?;
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
    let mut f = Frame::placeholder();
    load_into(path, &mut f)?;
    f.index = index;
    Ok(f)
}

/// The frame files of a directory (see [`is_frame_file`]; symlinks to files count), in
/// [`natural_cmp`] order of their names: the order a camera recorded them in.
pub fn frame_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_frame_file(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| {
        natural_cmp(
            a.file_name().unwrap_or_default(),
            b.file_name().unwrap_or_default(),
        )
    });
    Ok(files)
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

#[cfg(test)]
mod damage_tests {
    use super::*;

    fn ped2_frame_bytes() -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/datasets/ped2/testing/frames/01/050.jpg");
        std::fs::read(&p).unwrap_or_else(|e| {
            panic!(
                "Ped2 frame expected at {} (the shared dataset): {e}",
                p.display()
            )
        })
    }

    fn blank() -> Frame {
        Frame::placeholder()
    }

    #[test]
    fn a_whole_jpeg_decodes_and_zero_padding_after_eoi_is_accepted() {
        let bytes = ped2_frame_bytes();
        let mut a = blank();
        decode_into(&bytes, Path::new("050.jpg"), &mut a).unwrap();
        assert_eq!((a.geometry().width(), a.geometry().height()), (360, 240));
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 37]);
        let mut b = blank();
        decode_into(&padded, Path::new("padded.jpg"), &mut b).unwrap();
        assert_eq!(a.data(), b.data());
    }

    #[test]
    fn truncated_empty_and_foreign_files_are_refused_with_their_name() {
        let bytes = ped2_frame_bytes();
        let mut f = blank();
        // Cut anywhere after the header: the decoder alone would return a grey-bottomed frame.
        for cut in [bytes.len() / 2, bytes.len() - 1, bytes.len() - 2, 700] {
            let err = decode_into(&bytes[..cut], Path::new("cut.jpg"), &mut f).unwrap_err();
            assert!(
                matches!(
                    err,
                    ImageIoError::Corrupt {
                        damage: JpegDamage::NoEnd,
                        ..
                    }
                ),
                "cut at {cut}: {err}"
            );
            assert!(err.to_string().contains("cut.jpg"), "{err}");
            assert!(err.to_string().contains("cut short"), "{err}");
        }
        let err = decode_into(&[], Path::new("empty.jpg"), &mut f).unwrap_err();
        assert!(matches!(err, ImageIoError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("empty.jpg"), "{err}");
        let err = decode_into(b"not a picture\n", Path::new("notes.jpg"), &mut f).unwrap_err();
        assert!(matches!(err, ImageIoError::Decode { .. }), "{err}");
        assert!(err.to_string().contains("notes.jpg"), "{err}");
        // A JPEG header followed by text is caught by the marker check, not the decoder.
        assert_eq!(whole_jpeg(b"\xFF\xD8hello"), Err(JpegDamage::NoEnd));
        assert_eq!(whole_jpeg(b"\xFF\xD9"), Err(JpegDamage::NoStart));
    }

    #[test]
    fn a_truncated_png_is_refused_by_its_decoder() {
        let mut f = blank();
        decode_into(&ped2_frame_bytes(), Path::new("050.jpg"), &mut f).unwrap();
        let img = image::GrayImage::from_raw(360, 240, f.data().to_vec())
            .unwrap_or_else(|| image::GrayImage::new(360, 240));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let mut g = blank();
        decode_into(&png, Path::new("whole.png"), &mut g).unwrap();
        let err = decode_into(&png[..png.len() / 2], Path::new("cut.png"), &mut g).unwrap_err();
        assert!(matches!(err, ImageIoError::Decode { .. }), "{err}");
    }
}
