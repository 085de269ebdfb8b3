//! Decoders checked against ffmpeg on real buffers.
//!
//! The fixtures in `firmware/daemon/tests/fixtures/pixfmt/` come from `gen.sh` there: a 160x120 crop
//! of Ped2 test video 01 frame 070 and ffmpeg's `testsrc` colour pattern, converted by ffmpeg
//! into YUYV, NV12, GREY and MJPEG, plus ffmpeg's own rgb24 and gray decode of each buffer.
//!
//! Tolerances (max absolute difference per byte, measured values in brackets):
//! * YUYV/NV12 -> RGB: <= 2 [1]. Both sides compute the same BT.601 limited-range matrix; they
//!   differ only in fixed-point rounding (ours is 8-bit, swscale's 15-bit).
//! * YUYV/NV12 -> Gray, GREY -> Gray/RGB: exact [0].
//! * MJPEG -> Gray: <= 2 [1], MJPEG -> RGB: <= 4 [3], mean <= 0.25 [0.12]. zune-jpeg and
//!   ffmpeg use different IDCTs and fixed-point colour conversions; the reference interpolates
//!   chroma bilinearly as JPEG decoders do (see gen.sh).
//! * RGB -> Gray: <= 1 [1] against ffmpeg's rgb24 -> gray.

use super::*;
use std::path::PathBuf;

const W: u32 = 160;
const H: u32 = 120;
const PICTURES: [&str; 2] = ["ped", "testsrc"];

/// Largest per-byte and mean difference accepted between our MJPEG decode and ffmpeg's (see
/// the module docs for the measured values).
const MJPEG_GRAY_MAX: u8 = 2;
const MJPEG_GRAY_MEAN: f64 = 0.1;
const MJPEG_RGB_MAX: u8 = 4;
const MJPEG_RGB_MEAN: f64 = 0.25;

fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "pixfmt",
        name,
    ]
    .iter()
    .collect();
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} unreadable ({e}); rebuild with gen.sh",
            path.display()
        )
    })
}

/// (max abs diff, mean abs diff) of two equally long byte slices.
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let mut max = 0u8;
    let mut sum = 0u64;
    for (&x, &y) in a.iter().zip(b) {
        let d = x.abs_diff(y);
        max = max.max(d);
        sum += u64::from(d);
    }
    (max, sum as f64 / a.len() as f64)
}

fn decode(raw: RawGeometry, layout: PixelLayout, buf: &[u8]) -> Result<Frame, PixFmtError> {
    let mut dec = PixelDecoder::new(raw, layout)?;
    let mut frame = Frame::placeholder();
    dec.decode(buf, &mut frame)?;
    Ok(frame)
}

/// Copies `rows` rows of `row_bytes` into rows of `stride` bytes, filling the padding with a
/// byte pattern that would show up as garbage if a decoder read it.
fn pad_rows(src: &[u8], row_bytes: usize, rows: usize, stride: usize) -> Vec<u8> {
    let mut out = vec![0xA5; stride * rows];
    for r in 0..rows {
        out[r * stride..r * stride + row_bytes]
            .copy_from_slice(&src[r * row_bytes..(r + 1) * row_bytes]);
    }
    out
}

fn check(format: RawFormat, ext: &str, rgb_max: u8, gray_max: u8) {
    for pic in PICTURES {
        let buf = fixture(&format!("{pic}.{ext}"));
        let raw = RawGeometry::packed(format, W, H).unwrap();
        let rgb = decode(raw, PixelLayout::Rgb8, &buf).unwrap();
        let (max, mean) = diff(rgb.data(), &fixture(&format!("{pic}.{ext}.rgb")));
        assert!(
            max <= rgb_max,
            "{pic}.{ext} -> rgb: max diff {max} > {rgb_max} (mean {mean:.3})"
        );
        let gray = decode(raw, PixelLayout::Gray8, &buf).unwrap();
        let (max, mean) = diff(gray.data(), &fixture(&format!("{pic}.{ext}.gray")));
        assert!(
            max <= gray_max,
            "{pic}.{ext} -> gray: max diff {max} > {gray_max} (mean {mean:.3})"
        );
        assert_eq!(rgb.geometry().layout(), PixelLayout::Rgb8);
        assert_eq!((gray.geometry().width(), gray.geometry().height()), (W, H));
    }
}

#[test]
fn yuyv_matches_ffmpeg() {
    check(RawFormat::Yuyv, "yuyv", 2, 0);
}

#[test]
fn nv12_matches_ffmpeg() {
    check(RawFormat::Nv12, "nv12", 2, 0);
}

#[test]
fn grey_matches_ffmpeg_exactly() {
    check(RawFormat::Grey, "grey", 0, 0);
}

#[test]
fn the_colour_pattern_really_exercises_chroma() {
    // Guards the fixtures themselves: if testsrc were gray, the RGB tests would prove nothing
    // about U/V handling. Swapping U and V must be caught.
    let buf = fixture("testsrc.yuyv");
    let mut swapped = buf.clone();
    for px in swapped.chunks_exact_mut(4) {
        px.swap(1, 3);
    }
    let raw = RawGeometry::packed(RawFormat::Yuyv, W, H).unwrap();
    let bad = decode(raw, PixelLayout::Rgb8, &swapped).unwrap();
    let (max, _) = diff(bad.data(), &fixture("testsrc.yuyv.rgb"));
    assert!(max > 50, "U/V swap changed RGB by only {max}");
}

#[test]
fn strides_with_padding_give_the_same_pixels() {
    for pic in PICTURES {
        for layout in [PixelLayout::Gray8, PixelLayout::Rgb8] {
            let w = W as usize;
            let h = H as usize;

            let yuyv = fixture(&format!("{pic}.yuyv"));
            let packed = decode(
                RawGeometry::packed(RawFormat::Yuyv, W, H).unwrap(),
                layout,
                &yuyv,
            )
            .unwrap();
            let stride = w * 2 + 64;
            let padded = pad_rows(&yuyv, w * 2, h, stride);
            let got = decode(
                RawGeometry::new(RawFormat::Yuyv, W, H, stride).unwrap(),
                layout,
                &padded,
            )
            .unwrap();
            assert_eq!(
                got.data(),
                packed.data(),
                "yuyv {pic} {layout:?} stride {stride}"
            );

            let nv12 = fixture(&format!("{pic}.nv12"));
            let packed = decode(
                RawGeometry::packed(RawFormat::Nv12, W, H).unwrap(),
                layout,
                &nv12,
            )
            .unwrap();
            let stride = w + 32;
            // Y plane rows then UV plane rows, both padded to the same stride (V4L2 NV12).
            let padded = pad_rows(&nv12, w, h + h / 2, stride);
            let got = decode(
                RawGeometry::new(RawFormat::Nv12, W, H, stride).unwrap(),
                layout,
                &padded,
            )
            .unwrap();
            assert_eq!(
                got.data(),
                packed.data(),
                "nv12 {pic} {layout:?} stride {stride}"
            );

            let grey = fixture(&format!("{pic}.grey"));
            let packed = decode(
                RawGeometry::packed(RawFormat::Grey, W, H).unwrap(),
                layout,
                &grey,
            )
            .unwrap();
            let stride = w + 3;
            let padded = pad_rows(&grey, w, h, stride);
            let got = decode(
                RawGeometry::new(RawFormat::Grey, W, H, stride).unwrap(),
                layout,
                &padded,
            )
            .unwrap();
            assert_eq!(
                got.data(),
                packed.data(),
                "grey {pic} {layout:?} stride {stride}"
            );

            // The last row's padding may be missing from what the driver reports as used.
            let short = &padded[..padded.len() - (stride - w)];
            assert!(decode(
                RawGeometry::new(RawFormat::Grey, W, H, stride).unwrap(),
                layout,
                short
            )
            .is_ok());
        }
    }
}

#[test]
fn short_raw_buffers_are_transient_errors() {
    for (format, ext) in [
        (RawFormat::Yuyv, "yuyv"),
        (RawFormat::Nv12, "nv12"),
        (RawFormat::Grey, "grey"),
    ] {
        let buf = fixture(&format!("ped.{ext}"));
        let raw = RawGeometry::packed(format, W, H).unwrap();
        for cut in [buf.len() - 1, buf.len() / 2, 0] {
            let err = decode(raw, PixelLayout::Rgb8, &buf[..cut]).unwrap_err();
            assert!(
                matches!(err, PixFmtError::Truncated { got, .. } if got == cut),
                "{format}: {err}"
            );
            assert!(err.is_transient());
        }
    }
}

#[test]
fn inconsistent_formats_are_fatal_errors() {
    let err = RawGeometry::new(RawFormat::Yuyv, W, H, W as usize).unwrap_err();
    assert!(
        matches!(err, PixFmtError::StrideTooSmall { min: 320, .. }),
        "{err}"
    );
    assert!(!err.is_transient());
    let err = RawGeometry::packed(RawFormat::Nv12, 0, H).unwrap_err();
    assert!(
        !err.is_transient() && err.to_string().contains("0x120"),
        "{err}"
    );
    assert!(RawGeometry::packed(RawFormat::Grey, MAX_SIDE + 1, 2).is_err());
}

#[test]
fn odd_sizes_decode_without_reading_past_the_buffer() {
    // 5x3 YUYV: three macropixels per row, the last one half used. Every pixel white.
    let (w, h) = (5u32, 3u32);
    let raw = RawGeometry::packed(RawFormat::Yuyv, w, h).unwrap();
    let buf = [235u8, 128].repeat(raw.min_len() / 2);
    let f = decode(raw, PixelLayout::Rgb8, &buf).unwrap();
    assert!(f.data().iter().all(|&b| b == 255), "{:?}", f.data());
    // 5x3 NV12: UV plane of 2 rows, 3 UV pairs each.
    let raw = RawGeometry::packed(RawFormat::Nv12, w, h).unwrap();
    assert_eq!(raw.min_len(), 15 + 5 + 6);
    let mut buf = vec![16u8; 15];
    buf.extend([128u8; 11]);
    let f = decode(raw, PixelLayout::Rgb8, &buf).unwrap();
    assert!(f.data().iter().all(|&b| b == 0), "{:?}", f.data());
}

#[test]
fn limited_range_extremes() {
    // Black, white and the limited-range primaries, by the BT.601 formula.
    let mut px = [0u8; 3];
    yuv_to_rgb(16, 128, 128, &mut px);
    assert_eq!(px, [0, 0, 0]);
    yuv_to_rgb(235, 128, 128, &mut px);
    assert_eq!(px, [255, 255, 255]);
    yuv_to_rgb(81, 90, 240, &mut px); // BT.601 red
    assert!(px[0] >= 254 && px[1] <= 1 && px[2] <= 1, "{px:?}");
    assert_eq!(Y_TO_FULL[16], 0);
    assert_eq!(Y_TO_FULL[235], 255);
    assert_eq!(Y_TO_FULL[0], 0);
    assert_eq!(Y_TO_FULL[255], 255);
    assert_eq!(Y_TO_FULL[126], 128); // round(110 * 255 / 219) = round(128.08)
}

#[test]
fn mjpeg_matches_ffmpeg() {
    for pic in ["ped", "testsrc", "testsrc-nodht"] {
        let buf = fixture(&format!("{pic}.mjpeg"));
        let raw = RawGeometry::packed(RawFormat::Mjpeg, W, H).unwrap();
        let gray = decode(raw, PixelLayout::Gray8, &buf).unwrap_or_else(|e| panic!("{pic}: {e}"));
        let (max, mean) = diff(gray.data(), &fixture(&format!("{pic}.mjpeg.gray")));
        assert!(
            max <= MJPEG_GRAY_MAX && mean <= MJPEG_GRAY_MEAN,
            "{pic} gray: max {max} mean {mean:.3}"
        );
        let rgb = decode(raw, PixelLayout::Rgb8, &buf).unwrap_or_else(|e| panic!("{pic}: {e}"));
        let (max, mean) = diff(rgb.data(), &fixture(&format!("{pic}.mjpeg.rgb")));
        assert!(
            max <= MJPEG_RGB_MAX && mean <= MJPEG_RGB_MEAN,
            "{pic} rgb: max {max} mean {mean:.3}"
        );
    }
}

#[test]
fn camera_style_mjpeg_without_huffman_tables_decodes_like_the_full_jpeg() {
    let raw = RawGeometry::packed(RawFormat::Mjpeg, W, H).unwrap();
    let full = decode(raw, PixelLayout::Rgb8, &fixture("testsrc.mjpeg")).unwrap();
    let nodht = decode(raw, PixelLayout::Rgb8, &fixture("testsrc-nodht.mjpeg")).unwrap();
    // Huffman coding is lossless, and the two files carry the same coefficients.
    assert_eq!(full.data(), nodht.data());
}

#[test]
fn huffman_table_detection() {
    assert!(has_huffman_tables(&fixture("testsrc.mjpeg")));
    assert!(has_huffman_tables(&fixture("ped.mjpeg")));
    assert!(!has_huffman_tables(&fixture("testsrc-nodht.mjpeg")));
    // Malformed headers are left to the decoder.
    assert!(has_huffman_tables(&[0xFF, 0xD8, 0x12, 0x34, 0x00, 0x00]));
    assert!(has_huffman_tables(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01]));
    assert_eq!(STANDARD_DHT[..4], [0xFF, 0xC4, 0x01, 0xA2]);
}

#[test]
fn mjpeg_with_driver_padding_after_eoi_decodes() {
    let mut buf = fixture("ped.mjpeg");
    let clean = decode(
        RawGeometry::packed(RawFormat::Mjpeg, W, H).unwrap(),
        PixelLayout::Gray8,
        &buf,
    )
    .unwrap();
    buf.extend([0u8; 1000]);
    let padded = decode(
        RawGeometry::packed(RawFormat::Mjpeg, W, H).unwrap(),
        PixelLayout::Gray8,
        &buf,
    )
    .unwrap();
    assert_eq!(clean.data(), padded.data());
}

#[test]
fn truncated_and_garbage_mjpeg_are_transient_errors() {
    let buf = fixture("testsrc.mjpeg");
    let raw = RawGeometry::packed(RawFormat::Mjpeg, W, H).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated to 60%", buf[..buf.len() * 6 / 10].to_vec()),
        ("truncated by 2 bytes", buf[..buf.len() - 2].to_vec()),
        ("headers only", buf[..700].to_vec()),
        ("empty", Vec::new()),
    ];
    // Deterministic pseudo-random garbage (an LCG; no RNG dependency needed for a test).
    let mut x = 0x1234_5678_u32;
    let garbage: Vec<u8> = (0..buf.len())
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    cases.push(("garbage", garbage.clone()));
    // Garbage between valid SOI and EOI markers gets past the marker check into the decoder.
    let mut framed = vec![0xFF, 0xD8];
    framed.extend(&garbage[..2000]);
    framed.extend([0xFF, 0xD9]);
    cases.push(("garbage between SOI and EOI", framed));
    // A valid header followed by an entropy stream of zero bytes: the SOS marker is found but
    // the data ends before the image does.
    let sos = buf.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut no_scan = buf[..sos].to_vec();
    no_scan.extend([0xFF, 0xD9]);
    cases.push(("headers then EOI, no scan", no_scan));
    for layout in [PixelLayout::Gray8, PixelLayout::Rgb8] {
        for (what, data) in &cases {
            let err = decode(raw, layout, data).expect_err(what);
            assert!(err.is_transient(), "{what}: {err} should be transient");
            assert!(
                matches!(err, PixFmtError::CorruptJpeg { .. }),
                "{what}: {err}"
            );
        }
    }
}

/// Rewrites the frame size in the SOF0 header of a baseline JPEG.
fn with_declared_size(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0 marker");
    // FF C0, length (2), precision (1), height (2), width (2)
    out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    out
}

#[test]
fn mjpeg_of_the_wrong_size_is_rejected_before_decoding() {
    let buf = fixture("ped.mjpeg");
    let raw = RawGeometry::packed(RawFormat::Mjpeg, W, H).unwrap();
    let err = decode(raw, PixelLayout::Rgb8, &with_declared_size(&buf, 176, 144)).unwrap_err();
    assert_eq!(
        err,
        PixFmtError::JpegSizeMismatch {
            width: W,
            height: H,
            got_width: 176,
            got_height: 144
        }
    );
    assert!(err.is_transient());
    // Beyond MAX_SIDE: refused on the header, never allocated.
    let err = decode(
        raw,
        PixelLayout::Rgb8,
        &with_declared_size(&buf, 60000, 40000),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PixFmtError::JpegTooLarge {
                got_width: 60000,
                got_height: 40000
            }
        ),
        "{err}"
    );
    assert!(err.is_transient());
    // A header declaring the negotiated size still decodes (the rewrite itself is harmless).
    assert!(decode(raw, PixelLayout::Rgb8, &with_declared_size(&buf, 160, 120)).is_ok());
}

#[test]
fn decoding_reuses_the_frame_buffer() {
    let formats = [
        (RawFormat::Yuyv, "ped.yuyv"),
        (RawFormat::Nv12, "ped.nv12"),
        (RawFormat::Grey, "ped.grey"),
        (RawFormat::Mjpeg, "ped.mjpeg"),
        (RawFormat::Mjpeg, "testsrc-nodht.mjpeg"),
    ];
    // A recycled ring frame starts with some other geometry; after the first decode its buffer
    // must never move again.
    let mut frame = Frame::blank(Geometry::new(W, H, PixelLayout::Rgb8).unwrap());
    let ptr = frame.data().as_ptr();
    for (format, name) in formats {
        let buf = fixture(name);
        for layout in [PixelLayout::Rgb8, PixelLayout::Gray8, PixelLayout::Rgb8] {
            let mut dec =
                PixelDecoder::new(RawGeometry::packed(format, W, H).unwrap(), layout).unwrap();
            dec.decode(&buf, &mut frame).unwrap();
            // The MJPEG scratch buffer (used for frames without Huffman tables) is sized by
            // the first such frame and reused from then on.
            let scratch = (dec.mjpeg.scratch.as_ptr(), dec.mjpeg.scratch.capacity());
            for _ in 0..3 {
                dec.decode(&buf, &mut frame).unwrap();
                assert_eq!(
                    frame.data().as_ptr(),
                    ptr,
                    "{format} {layout:?} reallocated"
                );
                assert_eq!(frame.geometry(), dec.output());
                assert_eq!(
                    (dec.mjpeg.scratch.as_ptr(), dec.mjpeg.scratch.capacity()),
                    scratch
                );
            }
        }
    }
}

#[test]
fn rgb_to_gray_is_bt601_luma() {
    let mut g = [0u8; 5];
    rgb_to_gray(
        &[0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255],
        &mut g,
    );
    // 0.299 * 255 = 76.2, 0.587 * 255 = 149.7, 0.114 * 255 = 29.1
    assert_eq!(g, [0, 255, 76, 150, 29]);
    // On real pictures, against ffmpeg's own RGB -> gray conversion.
    for pic in ["ped", "testsrc"] {
        let rgb = fixture(&format!("{pic}.mjpeg.rgb"));
        let mut gray = vec![0u8; rgb.len() / 3];
        rgb_to_gray(&rgb, &mut gray);
        let (max, mean) = diff(&gray, &fixture(&format!("{pic}.mjpeg.rgb.gray")));
        assert!(max <= 1, "{pic}: max {max} mean {mean:.4}");
    }
}

#[test]
fn fourcc_round_trip() {
    for f in [
        RawFormat::Yuyv,
        RawFormat::Nv12,
        RawFormat::Grey,
        RawFormat::Mjpeg,
    ] {
        assert_eq!(RawFormat::from_fourcc(&f.fourcc()), Some(f));
    }
    assert_eq!(RawFormat::from_fourcc(b"JPEG"), Some(RawFormat::Mjpeg));
    assert_eq!(RawFormat::from_fourcc(b"H264"), None);
    assert_eq!(RawFormat::Mjpeg.to_string(), "MJPG");
}
