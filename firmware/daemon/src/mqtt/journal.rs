//! The outbox's on-disk format: append-only segment files of length- and CRC-framed records.
//!
//! A segment starts with an 8-byte header (`VGOB`, format version as u32 LE) followed by
//! records, each `len: u32 LE | crc32(body): u32 LE | body`, where the body is
//!
//! * `1 | seq: u64 LE | topic_len: u16 LE | topic | payload` for an event message, or
//! * `2 | seq: u64 LE` for "done": acknowledged by the broker or evicted, never to be re-sent.
//!
//! Decoding is pure (bytes in, records out) so it can be fuzzed, and it never trusts a length:
//! the first record that does not fit, fails its CRC or does not parse ends the valid prefix.
//! That is exactly what a torn write (power cut mid-append) or a flipped bit looks like, and the
//! caller keeps the prefix.

use std::fmt;

pub const MAGIC: &[u8; 4] = b"VGOB";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 8;
/// Frame overhead of a record: length and CRC.
pub const FRAME_LEN: usize = 8;
/// No Vigil message comes near this; a larger length field is corruption, not a big message.
pub const MAX_BODY: usize = 1 << 20;

const KIND_EVENT: u8 = 1;
const KIND_DONE: u8 = 2;

/// One decoded record, borrowing from the segment's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Event {
        seq: u64,
        topic: &'a str,
        payload: &'a [u8],
    },
    Done {
        seq: u64,
    },
}

/// Why decoding stopped before the end of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Not a segment of this format (or of a newer version): nothing in it is trusted.
    BadHeader,
    /// A record starting at `offset` is cut short: the classic torn final append.
    Truncated { offset: usize },
    /// A record starting at `offset` has a length, CRC or body that is wrong.
    Corrupt { offset: usize, reason: &'static str },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::BadHeader => write!(f, "not a Vigil outbox segment (bad header)"),
            Damage::Truncated { offset } => write!(f, "record at byte {offset} is cut short"),
            Damage::Corrupt { offset, reason } => {
                write!(f, "record at byte {offset} is corrupt ({reason})")
            }
        }
    }
}

/// The result of reading a segment: its valid records and where the valid prefix ends.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub records: Vec<Record<'a>>,
    /// Bytes of the valid prefix (header included); the segment may be truncated to this.
    pub valid_len: usize,
    pub damage: Option<Damage>,
}

pub fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(MAGIC);
    h[4..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Appends the framed record to `out`. `None` if the topic is too long to frame (the caller
/// validates topics long before this, so it is a refusal rather than a panic).
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) -> Option<()> {
    if let Record::Event { topic, .. } = record {
        u16::try_from(topic.len()).ok()?;
    }
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_LEN]);
    match *record {
        Record::Event {
            seq,
            topic,
            payload,
        } => {
            // Checked above.
            let topic_len = topic.len() as u16;
            out.push(KIND_EVENT);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&topic_len.to_le_bytes());
            out.extend_from_slice(topic.as_bytes());
            out.extend_from_slice(payload);
        }
        Record::Done { seq } => {
            out.push(KIND_DONE);
            out.extend_from_slice(&seq.to_le_bytes());
        }
    }
    let body = &out[start + FRAME_LEN..];
    if body.len() > MAX_BODY {
        out.truncate(start);
        return None;
    }
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Some(())
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn parse_body(body: &[u8]) -> Result<Record<'_>, &'static str> {
    let (&kind, rest) = body.split_first().ok_or("empty body")?;
    let seq = u64_at(rest, 0).ok_or("short sequence number")?;
    match kind {
        KIND_EVENT => {
            let topic_len = rest
                .get(8..10)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                .ok_or("short topic length")?;
            let topic = rest.get(10..10 + topic_len).ok_or("topic overruns body")?;
            let topic = std::str::from_utf8(topic).map_err(|_| "topic is not UTF-8")?;
            if topic.is_empty() {
                return Err("empty topic");
            }
            Ok(Record::Event {
                seq,
                topic,
                payload: &rest[10 + topic_len..],
            })
        }
        KIND_DONE if rest.len() == 8 => Ok(Record::Done { seq }),
        KIND_DONE => Err("done record of the wrong length"),
        _ => Err("unknown record kind"),
    }
}

/// Decodes a whole segment. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Decoded<'_> {
    let mut out = Decoded {
        records: Vec::new(),
        valid_len: 0,
        damage: None,
    };
    if bytes.len() < HEADER_LEN || bytes[..HEADER_LEN] != header() {
        // An empty file is what a crash right after creating the segment leaves: no damage.
        if !bytes.is_empty() {
            out.damage = Some(Damage::BadHeader);
        }
        return out;
    }
    let mut at = HEADER_LEN;
    out.valid_len = at;
    while at < bytes.len() {
        let (Some(len), Some(crc)) = (u32_at(bytes, at), u32_at(bytes, at + 4)) else {
            out.damage = Some(Damage::Truncated { offset: at });
            break;
        };
        let len = len as usize;
        if len > MAX_BODY {
            out.damage = Some(Damage::Corrupt {
                offset: at,
                reason: "length out of range",
            });
            break;
        }
        let Some(body) = bytes.get(at + FRAME_LEN..at + FRAME_LEN + len) else {
            out.damage = Some(Damage::Truncated { offset: at });
            break;
        };
        if crc32fast::hash(body) != crc {
            out.damage = Some(Damage::Corrupt {
                offset: at,
                reason: "CRC mismatch",
            });
            break;
        }
        match parse_body(body) {
            Ok(r) => out.records.push(r),
            Err(reason) => {
                out.damage = Some(Damage::Corrupt { offset: at, reason });
                break;
            }
        }
        at += FRAME_LEN + len;
        out.valid_len = at;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[Record<'_>]) -> Vec<u8> {
        let mut b = header().to_vec();
        for r in records {
            encode(r, &mut b).unwrap();
        }
        b
    }

    const A: Record<'static> = Record::Event {
        seq: 1,
        topic: "vigil/box/cam/events",
        payload: b"{\"a\":1}",
    };
    const B: Record<'static> = Record::Done { seq: 1 };
    const C: Record<'static> = Record::Event {
        seq: 2,
        topic: "t",
        payload: b"",
    };

    #[test]
    fn round_trips() {
        let b = segment(&[A, B, C]);
        let d = decode(&b);
        assert_eq!(d.records, vec![A, B, C]);
        assert_eq!(d.valid_len, b.len());
        assert_eq!(d.damage, None);
    }

    #[test]
    fn every_truncation_keeps_the_whole_records_before_it() {
        let b = segment(&[A, B, C]);
        let ends: Vec<usize> = {
            let mut v = vec![HEADER_LEN];
            let mut x = Vec::new();
            for r in [A, B, C] {
                encode(&r, &mut x).unwrap();
                v.push(HEADER_LEN + x.len());
            }
            v
        };
        for cut in HEADER_LEN..b.len() {
            let d = decode(&b[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            assert_eq!(d.records.len(), whole, "cut at {cut}");
            assert_eq!(d.valid_len, ends[whole], "cut at {cut}");
            let torn = !ends.contains(&cut);
            assert_eq!(
                matches!(d.damage, Some(Damage::Truncated { .. })),
                torn,
                "{cut}"
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_caught_and_the_prefix_kept() {
        let b = segment(&[A, C]);
        let first_end = {
            let mut x = Vec::new();
            encode(&A, &mut x).unwrap();
            HEADER_LEN + x.len()
        };
        for byte in 0..b.len() {
            for bit in 0..8 {
                let mut m = b.clone();
                m[byte] ^= 1 << bit;
                let d = decode(&m);
                assert!(d.damage.is_some(), "flip {byte}:{bit} went unnoticed");
                if byte < HEADER_LEN {
                    assert_eq!(d.damage, Some(Damage::BadHeader));
                    assert!(d.records.is_empty());
                } else if byte < first_end {
                    assert!(d.records.is_empty(), "{byte}:{bit}");
                } else {
                    assert_eq!(d.records, vec![A], "{byte}:{bit}");
                }
            }
        }
    }

    #[test]
    fn hostile_lengths_and_kinds_are_damage_not_panics() {
        let mut b = header().to_vec();
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        assert!(matches!(
            decode(&b).damage,
            Some(Damage::Corrupt {
                reason: "length out of range",
                ..
            })
        ));
        for body in [
            &[][..],
            &[9, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[2, 1][..],
            &[1, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, b'a'][..],
        ] {
            let mut b = header().to_vec();
            b.extend_from_slice(&(body.len() as u32).to_le_bytes());
            b.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
            b.extend_from_slice(body);
            let d = decode(&b);
            assert!(matches!(d.damage, Some(Damage::Corrupt { .. })), "{body:?}");
            assert_eq!(d.valid_len, HEADER_LEN);
        }
        assert_eq!(decode(b"").damage, None);
        assert_eq!(decode(b"VGOB\x02\0\0\0").damage, Some(Damage::BadHeader));
    }

    #[test]
    fn oversized_records_are_refused_at_encode() {
        let big = vec![b'x'; MAX_BODY];
        let mut out = vec![7u8];
        let r = Record::Event {
            seq: 1,
            topic: "t",
            payload: &big,
        };
        assert!(encode(&r, &mut out).is_none());
        assert_eq!(out, vec![7u8]);
        let long_topic = "t".repeat(70_000);
        let r = Record::Event {
            seq: 1,
            topic: &long_topic,
            payload: b"",
        };
        assert!(encode(&r, &mut out).is_none());
    }
}
