//! TensorRT's INT8 calibration cache: a text file TensorRT reads back through its calibrator
//! instead of running calibration batches.
//!
//! ```text
//! TRT-8602-EntropyCalibration2
//! images: 3c010204
//! input_1:0: 3d0b7086
//! ```
//!
//! Line 1: `TRT-<version>-<algorithm>`. Then one line per tensor: the name, `: `, and the f32
//! scale as 8 lowercase hex digits of its big-endian IEEE-754 bits (dynamic range = scale *
//! 127). The scale follows the *last* colon, because names such as `input_1:0` contain colons.
//!
//! `<version>` is TensorRT's integer version, `NV_TENSORRT_VERSION`, whose encoding changed
//! with TensorRT 10: 8.x headers define it as `major * 1000 + minor * 100 + patch`
//! (`8.6.1` -> `8601`; caches written by TensorRT 8.6.1 begin `TRT-8601-EntropyCalibration2`),
//! TensorRT 10's `NvInferRuntimeBase.h` as `NV_TENSORRT_VERSION_INT(major, minor, patch) =
//! major * 10000 + minor * 100 + patch` (`10.3.0` -> `100300`; published caches from
//! TensorRT 10.3 begin `TRT-100300-EntropyCalibration2`). TensorRT compares the header with its
//! own version and calibrator, so write the version of the TensorRT on the target box.
//!
//! Writing is strict (sorted by name, lowercase, zero-padded, trailing newline); reading
//! accepts what TensorRT and other tools write: any entry order, upper-case or unpadded hex,
//! `\r\n` line ends and blank lines. Entries are kept sorted by name (byte order), so a cache
//! written from the same scales is byte-identical and diffs stay readable.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::scale::{Scale, TensorCalibration};
use super::{check_tensor_name, Int8Error};

/// TensorRT's integer version as it appears in the cache header (`NV_TENSORRT_VERSION`, in the
/// encoding of that release; see the module docs). Not the version a running TensorRT reports,
/// which is `vigil_tensorrt::TrtVersion`: this is a code in a file, which may use an encoding
/// this code does not know ([`CacheVersion::from_encoded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheVersion(u32);

impl CacheVersion {
    /// TensorRT 8.5.2, JetPack 5.1.x (Xavier and Orin).
    pub const TRT_8_5_2: CacheVersion = CacheVersion(8502);
    /// TensorRT 8.6.2, JetPack 6.0.
    pub const TRT_8_6_2: CacheVersion = CacheVersion(8602);
    /// TensorRT 10.3.0, JetPack 6.1 and 6.2.
    pub const TRT_10_3_0: CacheVersion = CacheVersion(100_300);

    /// Encodes `major.minor.patch` the way that TensorRT release does (see the module docs).
    pub fn new(major: u32, minor: u32, patch: u32) -> Result<Self, Int8Error> {
        let err = |reason| Int8Error::InvalidVersion {
            major,
            minor,
            patch,
            reason,
        };
        if patch > 99 {
            return Err(err("the patch number has two digits"));
        }
        match major {
            0 => Err(err("there is no TensorRT 0")),
            1..=9 if minor > 9 => Err(err("before TensorRT 10 the minor number has one digit")),
            1..=9 => Ok(Self(major * 1000 + minor * 100 + patch)),
            _ if minor > 99 => Err(err("the minor number has two digits")),
            _ => major
                .checked_mul(10_000)
                .and_then(|m| m.checked_add(minor * 100 + patch))
                .map(Self)
                .ok_or(err("the major number is too large")),
        }
    }

    /// A version number exactly as written in a header, not interpreted.
    pub const fn from_encoded(encoded: u32) -> Self {
        Self(encoded)
    }

    pub fn encoded(self) -> u32 {
        self.0
    }

    /// `(major, minor, patch)`, when the number follows one of the two known encodings.
    pub fn parts(self) -> Option<(u32, u32, u32)> {
        let v = self.0;
        match v {
            1000..=9999 => Some((v / 1000, v / 100 % 10, v % 100)),
            100_000.. => Some((v / 10_000, v / 100 % 100, v % 100)),
            _ => None,
        }
    }
}

impl fmt::Display for CacheVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parts() {
            Some((a, b, c)) => write!(f, "{a}.{b}.{c}"),
            None => write!(f, "{}", self.0),
        }
    }
}

/// The calibrator named in the header. TensorRT reads a cache only through a calibrator of
/// the same algorithm, so this says which calibrator class the engine builder must present,
/// not merely how the scales were computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CalibrationMethod {
    EntropyCalibration2,
    EntropyCalibration,
    MinMaxCalibration,
    LegacyCalibration,
}

impl CalibrationMethod {
    pub const ALL: [CalibrationMethod; 4] = [
        CalibrationMethod::EntropyCalibration2,
        CalibrationMethod::EntropyCalibration,
        CalibrationMethod::MinMaxCalibration,
        CalibrationMethod::LegacyCalibration,
    ];

    /// The name as it appears in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            CalibrationMethod::EntropyCalibration2 => "EntropyCalibration2",
            CalibrationMethod::EntropyCalibration => "EntropyCalibration",
            CalibrationMethod::MinMaxCalibration => "MinMaxCalibration",
            CalibrationMethod::LegacyCalibration => "LegacyCalibration",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl fmt::Display for CalibrationMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a calibration cache could not be read. Lines are numbered from 1.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CacheParseError {
    #[error(
        "the calibration cache is empty; expected a header like `TRT-8602-EntropyCalibration2`"
    )]
    Empty,
    #[error("line {line}: bad header `{found}`: {reason}")]
    BadHeader {
        line: usize,
        found: String,
        reason: String,
    },
    #[error("line {line}: expected `<tensor name>: <hex scale>`, found `{found}` (no colon)")]
    MissingColon { line: usize, found: String },
    #[error("line {line}: bad tensor name {name:?}: {reason}")]
    BadName {
        line: usize,
        name: String,
        reason: &'static str,
    },
    #[error("line {line}: tensor `{name}`: scale `{found}` is not 1 to 8 hex digits")]
    BadHex {
        line: usize,
        name: String,
        found: String,
    },
    #[error(
        "line {line}: tensor `{name}`: scale {value} (bits {bits:08x}) is not a finite number > 0"
    )]
    BadScale {
        line: usize,
        name: String,
        bits: u32,
        value: f32,
    },
    #[error("line {line}: tensor `{name}` appears again (first on line {first})")]
    DuplicateTensor {
        line: usize,
        name: String,
        first: usize,
    },
}

/// A TensorRT calibration cache: header plus one scale per tensor, sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationCache {
    version: CacheVersion,
    method: CalibrationMethod,
    scales: BTreeMap<String, Scale>,
}

impl CalibrationCache {
    pub fn new(version: CacheVersion, method: CalibrationMethod) -> Self {
        Self {
            version,
            method,
            scales: BTreeMap::new(),
        }
    }

    /// A cache holding the scales of `calibrations` (for instance
    /// [`crate::int8::HistogramPass::calibrate`]'s result).
    pub fn from_calibrations<'a, I>(
        version: CacheVersion,
        method: CalibrationMethod,
        calibrations: I,
    ) -> Result<Self, Int8Error>
    where
        I: IntoIterator<Item = (&'a String, &'a TensorCalibration)>,
    {
        let mut cache = Self::new(version, method);
        for (name, c) in calibrations {
            cache.insert(name, c.scale)?;
        }
        Ok(cache)
    }

    pub fn version(&self) -> CacheVersion {
        self.version
    }

    pub fn method(&self) -> CalibrationMethod {
        self.method
    }

    /// Adds a tensor. A name the format cannot carry, or one already present, is an error:
    /// a cache with two scales for one tensor has no meaning.
    pub fn insert(&mut self, name: &str, scale: Scale) -> Result<(), Int8Error> {
        check_tensor_name(name).map_err(|reason| Int8Error::InvalidTensorName {
            name: name.to_owned(),
            reason,
        })?;
        if self.scales.contains_key(name) {
            return Err(Int8Error::DuplicateTensor(name.to_owned()));
        }
        self.scales.insert(name.to_owned(), scale);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Scale> {
        self.scales.get(name).copied()
    }

    /// Entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Scale)> {
        self.scales.iter().map(|(k, &v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Reads a cache (see the module docs for what is accepted).
    pub fn parse(text: &str) -> Result<Self, CacheParseError> {
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .map(|(i, l)| (i + 1, l));
        let (version, method) = match lines.next() {
            Some((_, header)) if !header.trim().is_empty() => parse_header(header.trim_end())?,
            _ if text.trim().is_empty() => return Err(CacheParseError::Empty),
            _ => {
                return Err(CacheParseError::BadHeader {
                    line: 1,
                    found: String::new(),
                    reason: "the first line is blank".into(),
                })
            }
        };
        let mut cache = Self::new(version, method);
        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        for (line, text) in lines {
            let text = text.trim_end();
            if text.is_empty() {
                continue;
            }
            let (name, value) =
                text.rsplit_once(':')
                    .ok_or_else(|| CacheParseError::MissingColon {
                        line,
                        found: text.to_owned(),
                    })?;
            check_tensor_name(name).map_err(|reason| CacheParseError::BadName {
                line,
                name: name.to_owned(),
                reason,
            })?;
            let hex = value.trim_start();
            let bits = parse_hex_u32(hex).ok_or_else(|| CacheParseError::BadHex {
                line,
                name: name.to_owned(),
                found: hex.to_owned(),
            })?;
            let scale = Scale::from_bits(bits).map_err(|_| CacheParseError::BadScale {
                line,
                name: name.to_owned(),
                bits,
                value: f32::from_bits(bits),
            })?;
            if let Some(&first) = first_seen.get(name) {
                return Err(CacheParseError::DuplicateTensor {
                    line,
                    name: name.to_owned(),
                    first,
                });
            }
            first_seen.insert(name, line);
            cache.scales.insert(name.to_owned(), scale);
        }
        Ok(cache)
    }
}

fn parse_header(header: &str) -> Result<(CacheVersion, CalibrationMethod), CacheParseError> {
    let bad = |reason: String| CacheParseError::BadHeader {
        line: 1,
        found: header.to_owned(),
        reason,
    };
    let rest = header
        .strip_prefix("TRT-")
        .ok_or_else(|| bad("it does not start with `TRT-`".into()))?;
    let (version, method) = rest
        .split_once('-')
        .ok_or_else(|| bad("expected `TRT-<version>-<algorithm>`".into()))?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("version `{version}` is not a decimal number")));
    }
    let version = version
        .parse::<u32>()
        .map_err(|_| bad(format!("version `{version}` is too large")))?;
    let method = CalibrationMethod::from_name(method).ok_or_else(|| {
        bad(format!(
            "unknown calibration algorithm `{method}` (known: EntropyCalibration2, \
             EntropyCalibration, MinMaxCalibration, LegacyCalibration)"
        ))
    })?;
    Ok((CacheVersion::from_encoded(version), method))
}

/// 1 to 8 hex digits, nothing else (`u32::from_str_radix` alone would accept a leading `+`).
fn parse_hex_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

impl fmt::Display for CalibrationCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "TRT-{}-{}", self.version.encoded(), self.method)?;
        for (name, scale) in &self.scales {
            writeln!(f, "{name}: {:08x}", scale.to_bits())?;
        }
        Ok(())
    }
}

impl FromStr for CalibrationCache {
    type Err = CacheParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
