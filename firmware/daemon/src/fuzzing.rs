//! Entry points for the fuzz targets (`firmware/fuzz`, run with `cargo fuzz`): the places where
//! bytes from outside reach vigil. Each must return without panicking whatever it is
//! given, and checks the invariants a wrong answer would break. They live in the library so
//! that the regression test (`firmware/daemon/tests/fuzz_corpus.rs`) runs the same code over the saved
//! corpus and random inputs on every `cargo test`.

use std::path::Path;

use crate::config::Config;
use crate::mqtt::journal::{self, Record};
use crate::source::pixfmt::{PixelDecoder, RawFormat, RawGeometry};
use vigil_engine::frame::{Frame, PixelLayout};
use vigil_engine::imageio::{self, ImageIoError};

/// A configuration file: any text parses to a config or to an error naming the file.
pub fn config(data: &[u8]) {
    // Lossy, so that a mutation that breaks UTF-8 still exercises the parser.
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Config::parse(&text, Path::new("fuzz.toml")) {
        let msg = e.to_string();
        assert!(
            msg.contains("fuzz.toml"),
            "error without the file name: {msg}"
        );
    }
}

/// An outbox journal segment: decoding stops at the first damage, the valid prefix re-encodes
/// to exactly the same bytes, and decoding that prefix finds no damage.
pub fn outbox_journal(data: &[u8]) {
    let d = journal::decode(data);
    assert!(d.valid_len <= data.len());
    if d.valid_len == 0 {
        assert!(d.records.is_empty());
        return;
    }
    let mut again = journal::header().to_vec();
    for r in &d.records {
        let encoded = journal::encode(r, &mut again);
        assert!(encoded.is_some(), "a decoded record must encode: {r:?}");
    }
    assert_eq!(
        &again[..],
        &data[..d.valid_len],
        "prefix does not round-trip"
    );
    let prefix = journal::decode(&data[..d.valid_len]);
    assert!(prefix.damage.is_none());
    assert_eq!(prefix.records.len(), d.records.len());
    for r in &d.records {
        if let Record::Event { topic, .. } = r {
            assert!(!topic.is_empty());
        }
    }
}

/// A camera buffer: the first byte picks the format and output colour, the next four the size
/// (up to 1023 x 1023), the rest is the buffer. Decoding succeeds or returns an error; a success
/// fills a frame of the promised geometry.
pub fn camera_frame(data: &[u8]) {
    let [sel, w_lo, w_hi, h_lo, h_hi, buf @ ..] = data else {
        return;
    };
    let format = match sel & 3 {
        0 => RawFormat::Yuyv,
        1 => RawFormat::Nv12,
        2 => RawFormat::Grey,
        _ => RawFormat::Mjpeg,
    };
    let layout = if sel & 4 == 0 {
        PixelLayout::Gray8
    } else {
        PixelLayout::Rgb8
    };
    let width = u32::from(u16::from_le_bytes([*w_lo, *w_hi]) % 1024);
    let height = u32::from(u16::from_le_bytes([*h_lo, *h_hi]) % 1024);
    let mut frame = Frame::placeholder();
    let Ok(raw) = RawGeometry::packed(format, width, height) else {
        return;
    };
    let Ok(mut dec) = PixelDecoder::new(raw, layout) else {
        return;
    };
    if dec.decode(buf, &mut frame).is_ok() {
        assert_eq!(frame.geometry(), dec.output());
    }
}

/// A frame file of a directory replay (JPEG, PNG, TIFF, or anything named like one): it decodes
/// to a frame or is refused with an error naming the file. A JPEG is accepted only when it is
/// whole (SOI ... EOI), so a truncated file is never scored.
pub fn frame_file(data: &[u8]) {
    let mut frame = Frame::placeholder();
    let name = Path::new("fuzz.jpg");
    match imageio::decode_into(data, name, &mut frame) {
        Ok(()) => {
            let g = frame.geometry();
            assert_eq!(frame.data().len(), g.byte_len());
            if image::guess_format(data).ok() == Some(image::ImageFormat::Jpeg) {
                assert!(
                    imageio::whole_jpeg(data).is_ok(),
                    "a JPEG without its end marker was decoded"
                );
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("fuzz.jpg"),
                "error without the file name: {msg}"
            );
            assert!(
                !msg.contains('\n'),
                "a multi-line error would split a log line: {msg:?}"
            );
            if data.is_empty() {
                assert!(matches!(e, ImageIoError::Empty { .. }), "{e}");
            }
        }
    }
}
