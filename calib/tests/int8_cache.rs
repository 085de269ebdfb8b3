//! TensorRT calibration cache: writer, parser and their errors.

use vigil_calib::{
    CacheParseError, CacheVersion, CalibrationCache, CalibrationMethod, Int8Error, Scale,
};

fn scale(bits: u32) -> Scale {
    Scale::from_bits(bits).unwrap()
}

fn parse_err(text: &str) -> CacheParseError {
    CalibrationCache::parse(text).expect_err(text)
}

#[test]
fn versions_follow_tensorrts_two_encodings() {
    assert_eq!(CacheVersion::new(8, 6, 1).unwrap().encoded(), 8601);
    assert_eq!(CacheVersion::new(8, 6, 2).unwrap(), CacheVersion::TRT_8_6_2);
    assert_eq!(CacheVersion::new(8, 5, 2).unwrap(), CacheVersion::TRT_8_5_2);
    assert_eq!(
        CacheVersion::new(10, 3, 0).unwrap(),
        CacheVersion::TRT_10_3_0
    );
    assert_eq!(CacheVersion::new(10, 13, 2).unwrap().encoded(), 101302);
    assert_eq!(CacheVersion::new(7, 1, 3).unwrap().encoded(), 7103);
    assert_eq!(CacheVersion::TRT_10_3_0.parts(), Some((10, 3, 0)));
    assert_eq!(CacheVersion::from_encoded(8601).parts(), Some((8, 6, 1)));
    assert_eq!(CacheVersion::from_encoded(42).parts(), None);
    assert_eq!(CacheVersion::TRT_10_3_0.to_string(), "10.3.0");
    for (a, b, c) in [
        (8, 10, 0),
        (10, 100, 0),
        (8, 6, 100),
        (0, 1, 0),
        (500_000, 0, 0),
    ] {
        assert!(
            matches!(
                CacheVersion::new(a, b, c),
                Err(Int8Error::InvalidVersion { .. })
            ),
            "{a}.{b}.{c}"
        );
    }
}

#[test]
fn writes_the_tensorrt_format_sorted_by_name() {
    let mut cache = CalibrationCache::new(
        CacheVersion::TRT_8_6_2,
        CalibrationMethod::EntropyCalibration2,
    );
    cache.insert("output", scale(0x40b7_daf4)).unwrap();
    cache.insert("images", Scale::FALLBACK).unwrap();
    cache.insert("input_1:0", scale(0x0000_0001)).unwrap();
    cache
        .insert("(Unnamed Layer* 3) [Shuffle]_output", scale(0x3d0b_7086))
        .unwrap();
    assert_eq!(
        cache.to_string(),
        "TRT-8602-EntropyCalibration2\n\
         (Unnamed Layer* 3) [Shuffle]_output: 3d0b7086\n\
         images: 3c010204\n\
         input_1:0: 00000001\n\
         output: 40b7daf4\n"
    );
    // 0x3c010204 is 1/127 in f32: dynamic range 1.0.
    assert_eq!(cache.get("images").unwrap().dynamic_range(), 1.0);
}

#[test]
fn every_header_round_trips() {
    for method in CalibrationMethod::ALL {
        for version in [CacheVersion::TRT_8_5_2, CacheVersion::TRT_10_3_0] {
            let mut cache = CalibrationCache::new(version, method);
            cache.insert("a", scale(0x3f80_0000)).unwrap();
            cache.insert("b:0", scale(0x7f7f_ffff)).unwrap();
            let text = cache.to_string();
            assert!(text.starts_with(&format!("TRT-{}-{method}\n", version.encoded())));
            let back: CalibrationCache = text.parse().unwrap();
            assert_eq!(back, cache);
            assert_eq!(back.to_string(), text);
        }
    }
    let empty = CalibrationCache::new(
        CacheVersion::TRT_8_6_2,
        CalibrationMethod::MinMaxCalibration,
    );
    assert_eq!(empty.to_string(), "TRT-8602-MinMaxCalibration\n");
    assert_eq!(CalibrationCache::parse(&empty.to_string()).unwrap(), empty);
}

#[test]
fn reads_what_other_writers_produce() {
    // Unsorted, upper case and unpadded hex, CRLF, blank lines, no final newline.
    let text = "TRT-8601-EntropyCalibration2\r\n\
                zeta: 3C010A14\r\n\
                \r\n\
                input_1:0: 3d0b7086\r\n\
                alpha: 1";
    let cache = CalibrationCache::parse(text).unwrap();
    assert_eq!(cache.version(), CacheVersion::from_encoded(8601));
    assert_eq!(cache.method(), CalibrationMethod::EntropyCalibration2);
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get("zeta"), Some(scale(0x3c01_0a14)));
    assert_eq!(cache.get("input_1:0"), Some(scale(0x3d0b_7086)));
    assert_eq!(cache.get("alpha"), Some(scale(1)));
    let names: Vec<&str> = cache.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["alpha", "input_1:0", "zeta"]);
    assert_eq!(
        cache.to_string(),
        "TRT-8601-EntropyCalibration2\nalpha: 00000001\ninput_1:0: 3d0b7086\nzeta: 3c010a14\n"
    );
}

#[test]
fn header_errors() {
    assert_eq!(parse_err(""), CacheParseError::Empty);
    assert_eq!(parse_err(" \n\n"), CacheParseError::Empty);
    let bad = [
        "\nTRT-8602-EntropyCalibration2\n",
        "trt-8602-EntropyCalibration2\n",
        "TRT-8602\n",
        "TRT--EntropyCalibration2\n",
        "TRT-86a2-EntropyCalibration2\n",
        "TRT-+8602-EntropyCalibration2\n",
        "TRT-99999999999-EntropyCalibration2\n",
        "TRT-8602-EntropyCalibration3\n",
        "TRT-8602-entropycalibration2\n",
        "images: 3c010204\n",
    ];
    for text in bad {
        match parse_err(text) {
            CacheParseError::BadHeader { line: 1, .. } => {}
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let msg = parse_err("TRT-8602-Percentile\n").to_string();
    assert!(
        msg.contains("line 1") && msg.contains("unknown calibration algorithm `Percentile`"),
        "{msg}"
    );
}

#[test]
fn entry_errors_name_the_line() {
    let h = "TRT-100300-EntropyCalibration2\n";
    let e = parse_err(&format!("{h}a: 3c010204\nno colon here\n"));
    assert_eq!(
        e,
        CacheParseError::MissingColon {
            line: 3,
            found: "no colon here".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "line 3: expected `<tensor name>: <hex scale>`, found `no colon here` (no colon)"
    );

    for (entry, want_hex) in [
        ("a: xyz", "xyz"),
        ("a: 3c0102040", "3c0102040"),
        ("a: ", ""),
        ("a: +3c01", "+3c01"),
        ("a: 3c01 0204", "3c01 0204"),
        ("a: -1", "-1"),
    ] {
        match parse_err(&format!("{h}{entry}\n")) {
            CacheParseError::BadHex {
                line: 2,
                name,
                found,
            } => {
                assert_eq!(name, "a");
                assert_eq!(found, want_hex);
            }
            other => panic!("{entry:?}: {other:?}"),
        }
    }

    for (hex, bits) in [
        ("00000000", 0u32),
        ("80000000", 0x8000_0000),
        ("bf800000", 0xbf80_0000),
        ("7f800000", 0x7f80_0000),
        ("7fc00000", 0x7fc0_0000),
    ] {
        match parse_err(&format!("{h}ok: 3f800000\nt: {hex}\n")) {
            CacheParseError::BadScale {
                line: 3,
                name,
                bits: b,
                ..
            } => {
                assert_eq!(name, "t");
                assert_eq!(b, bits);
            }
            other => panic!("{hex}: {other:?}"),
        }
    }
    let msg = parse_err(&format!("{h}t: bf800000\n")).to_string();
    assert_eq!(
        msg,
        "line 2: tensor `t`: scale -1 (bits bf800000) is not a finite number > 0"
    );

    for entry in [": 3c010204", " a: 3c010204", "a : 3c010204"] {
        match parse_err(&format!("{h}{entry}\n")) {
            CacheParseError::BadName { line: 2, .. } => {}
            other => panic!("{entry:?}: {other:?}"),
        }
    }

    let e = parse_err(&format!("{h}a: 3c010204\nb: 3c010204\n\na: 3d000000\n"));
    assert_eq!(
        e,
        CacheParseError::DuplicateTensor {
            line: 5,
            name: "a".into(),
            first: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "line 5: tensor `a` appears again (first on line 2)"
    );
}

#[test]
fn insert_rejects_what_the_format_cannot_carry() {
    let mut cache = CalibrationCache::new(
        CacheVersion::TRT_8_6_2,
        CalibrationMethod::EntropyCalibration2,
    );
    for name in ["", "two\nlines", "cr\r", " lead", "trail ", "tab\there"] {
        assert!(
            matches!(
                cache.insert(name, Scale::FALLBACK),
                Err(Int8Error::InvalidTensorName { .. })
            ),
            "{name:?}"
        );
    }
    cache.insert("x", Scale::FALLBACK).unwrap();
    assert_eq!(
        cache.insert("x", Scale::FALLBACK),
        Err(Int8Error::DuplicateTensor("x".into()))
    );
    assert_eq!(cache.len(), 1);
}
