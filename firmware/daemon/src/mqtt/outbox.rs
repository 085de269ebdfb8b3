//! The durable outbox: every event message sits here from before it is handed to MQTT until
//! the broker's PUBACK, so an outage, a crash or a power cut between detection and delivery
//! never loses an event.
//!
//! On disk it is an append-only journal ([`super::journal`]): segment files
//! `<20-digit id>.journal` of CRC-framed records, an *event* record written (and, with the
//! default `fsync = "always"`, fsync'd) before `push` returns, and a *done* record appended when
//! the broker acknowledges the message or it is evicted. Opening replays the segments in order;
//! a torn or corrupt tail is cut back to its valid prefix, counted in [`Outbox::corrupt`] and
//! reported, never fatal. Segments are deleted from the front once nothing in them is pending,
//! and the whole journal is deleted whenever the outbox drains, so in steady state it holds a
//! few hundred bytes.
//!
//! Bounds: at most `max_messages` pending messages (the oldest is dropped and counted), and at
//! most `max_bytes` of journal (the oldest segment goes, with whatever is still pending in it,
//! counted the same way). The newest events are the ones an operator acts on.
//!
//! A failed write (disk full, read-only remount, vanished mount) does not lose the event: it is
//! kept in memory, delivered as usual, counted in [`Outbox::write_failures`] and reported by
//! [`Outbox::last_error`] until a write succeeds again. Only a crash during that window loses it.
//!
//! The messages are also held in memory, so handing them to MQTT never waits for the disk.
//! Outboxes written by Vigil 0.1 (one `<seq>.json` file per message) are imported on open.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::{debug, error, info, warn};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::journal::{self, Damage, Record};

/// Failures of the outbox. Every variant names the directory, because the usual cause is the
/// disk (full, read-only, wrong permissions) and the operator has to know which one.
#[derive(Debug, Error)]
pub enum OutboxError {
    #[error(
        "outbox directory {dir}: cannot {action}: {source}; check that the disk is mounted \
             read-write, has free space, and that vigil may write there"
    )]
    Io {
        dir: PathBuf,
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("outbox directory {dir}: {what}")]
    Capacity { dir: PathBuf, what: String },
    #[error("outbox directory {dir}: topic must not be empty")]
    EmptyTopic { dir: PathBuf },
    #[error(
        "outbox directory {dir}: message for topic {topic:?} is too large to store \
         ({bytes} bytes; the limit is {} bytes)",
        journal::MAX_BODY
    )]
    TooLarge {
        dir: PathBuf,
        topic: String,
        bytes: usize,
    },
    #[error("outbox directory {dir}: sequence numbers are exhausted")]
    SequenceExhausted { dir: PathBuf },
}

/// When event records are forced to the storage device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// `fdatasync` after every event record, before `push` returns: an event survives a power
    /// cut the moment it is accepted. Events are rare (a few a minute), so this costs little.
    #[default]
    Always,
    /// Leave flushing to the kernel (typically within 30 s): fewer writes for flash that wears,
    /// at the price of losing the last seconds of events in a power cut (not in a crash of
    /// vigil itself: the data is in the page cache).
    Never,
}

/// Bounds and durability of an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxOptions {
    pub max_messages: usize,
    pub max_bytes: u64,
    pub fsync: FsyncPolicy,
}

/// The smallest journal that holds a useful number of events.
pub const MIN_BYTES: u64 = 16 * 1024;

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            max_messages: 10_000,
            max_bytes: 64 * 1024 * 1024,
            fsync: FsyncPolicy::Always,
        }
    }
}

impl OutboxOptions {
    /// Segments roll at a quarter of the byte bound, so evicting the oldest segment frees room
    /// without dropping most of the backlog at once.
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 4).max(4096)
    }
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry<'a> {
    /// Position in the outbox; strictly increasing in push order.
    pub seq: u64,
    pub topic: &'a str,
    pub payload: &'a [u8],
}

#[derive(Debug)]
struct Held {
    topic: String,
    payload: Vec<u8>,
    /// The segment holding its event record; `None` if writing it failed (memory only).
    segment: Option<u64>,
}

#[derive(Debug)]
struct Segment {
    bytes: u64,
    /// Pending messages whose event record is in this segment.
    live: usize,
}

#[derive(Debug)]
struct Active {
    id: u64,
    file: File,
}

/// The durable, ordered spool of unacknowledged event messages. See the module docs.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    opts: OutboxOptions,
    next_seq: u64,
    next_segment: u64,
    messages: BTreeMap<u64, Held>,
    segments: BTreeMap<u64, Segment>,
    active: Option<Active>,
    dropped: u64,
    corrupt: u64,
    write_failures: u64,
    last_error: Option<String>,
    buf: Vec<u8>,
}

const SEGMENT_EXT: &str = ".journal";
const CORRUPT_SUFFIX: &str = ".corrupt";
const ID_DIGITS: usize = 20;

fn segment_name(id: u64) -> String {
    format!("{id:0ID_DIGITS$}{SEGMENT_EXT}")
}

/// The number in a name `<20 digits><ext>`, else `None`.
fn numbered(name: &str, ext: &str) -> Option<u64> {
    let digits = name.strip_suffix(ext)?;
    if digits.len() != ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether an outbox could be opened in `dir`, without opening it: `vigil check` must not
/// replay (and cut back) the journal of a vigil that is running on the same directory. The
/// directory, or the nearest ancestor that exists (the rest would be created), must be a
/// directory this user can create files in.
pub fn check_writable(dir: &Path) -> Result<(), OutboxError> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    let io_err = |action: String, source| OutboxError::Io {
        dir: dir.to_owned(),
        action,
        source,
    };
    if !existing.is_dir() {
        return Err(io_err(
            format!("use {} as a directory", existing.display()),
            io::Error::new(io::ErrorKind::NotADirectory, "it is a file"),
        ));
    }
    let probe = existing.join(format!(".vigil-check-{}", std::process::id()));
    File::create(&probe)
        .map_err(|e| io_err(format!("create files in {}", existing.display()), e))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Vigil 0.1's file-per-message outbox, read once to import what an upgrade left behind.
mod legacy {
    use serde::Deserialize;

    pub const EXT: &str = ".json";
    pub const TMP: &str = ".json.tmp";

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Stored {
        pub topic: String,
        pub payload: String,
    }
}

impl Outbox {
    /// [`Outbox::open_with`] with the default bounds and fsync policy, and `max_messages`.
    pub fn open(dir: impl Into<PathBuf>, max_messages: usize) -> Result<Outbox, OutboxError> {
        Self::open_with(
            dir,
            OutboxOptions {
                max_messages,
                ..OutboxOptions::default()
            },
        )
    }

    /// Opens (creating if needed) the outbox in `dir`.
    ///
    /// The journal is replayed in order: every message written and not yet done is pending
    /// again, in its original order, and the sequence continues after the highest one seen.
    /// Damage (a torn tail, a flipped bit, a foreign file with our name) is cut off or set
    /// aside as `<name>.corrupt`, counted in [`Outbox::corrupt`] and reported with a warning
    /// naming the file and byte; opening still succeeds with everything before it.
    pub fn open_with(dir: impl Into<PathBuf>, opts: OutboxOptions) -> Result<Outbox, OutboxError> {
        let dir = dir.into();
        if opts.max_messages == 0 {
            return Err(OutboxError::Capacity {
                dir,
                what: "max_messages must be at least 1".into(),
            });
        }
        if opts.max_bytes < MIN_BYTES {
            return Err(OutboxError::Capacity {
                dir,
                what: format!(
                    "max_bytes must be at least {MIN_BYTES} (it is {})",
                    opts.max_bytes
                ),
            });
        }
        let io_err = |action: &str, source| OutboxError::Io {
            dir: dir.clone(),
            action: action.to_owned(),
            source,
        };
        fs::create_dir_all(&dir).map_err(|e| io_err("create the directory", e))?;
        let mut segment_ids = Vec::new();
        let mut legacy_seqs = Vec::new();
        let mut highest_name = 0u64;
        for entry in fs::read_dir(&dir).map_err(|e| io_err("list the directory", e))? {
            let entry = entry.map_err(|e| io_err("list the directory", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if let Some(id) = numbered(&name, SEGMENT_EXT) {
                segment_ids.push(id);
            } else if let Some(seq) = numbered(&name, legacy::EXT) {
                legacy_seqs.push(seq);
            } else if name.ends_with(legacy::TMP) {
                // A 0.1 push that crashed before its rename: never acknowledged to anyone.
                let _ = fs::remove_file(entry.path());
            } else if let Some(id) = name
                .strip_suffix(CORRUPT_SUFFIX)
                .and_then(|n| numbered(n, SEGMENT_EXT))
            {
                highest_name = highest_name.max(id);
            } else if !name.ends_with(CORRUPT_SUFFIX) {
                debug!("outbox {}: ignoring unrelated file {name}", dir.display());
            }
        }
        segment_ids.sort_unstable();
        legacy_seqs.sort_unstable();
        let mut outbox = Outbox {
            dir,
            opts,
            next_seq: 1,
            next_segment: 1,
            messages: BTreeMap::new(),
            segments: BTreeMap::new(),
            active: None,
            dropped: 0,
            corrupt: 0,
            write_failures: 0,
            last_error: None,
            buf: Vec::new(),
        };
        let mut highest_seq = 0u64;
        for &id in &segment_ids {
            highest_name = highest_name.max(id);
            outbox.replay_segment(id, &mut highest_seq)?;
        }
        outbox.next_seq =
            highest_seq
                .checked_add(1)
                .ok_or_else(|| OutboxError::SequenceExhausted {
                    dir: outbox.dir.clone(),
                })?;
        outbox.next_segment = highest_name.saturating_add(1);
        for (seq, held) in &outbox.messages {
            if let Some(seg) = held.segment.and_then(|id| outbox.segments.get_mut(&id)) {
                seg.live += 1;
            } else {
                debug!("outbox: message #{seq} without a segment after replay");
            }
        }
        outbox.trim_front();
        for seq in legacy_seqs {
            outbox.import_legacy(seq)?;
        }
        while outbox.messages.len() > outbox.opts.max_messages {
            outbox.evict_oldest();
        }
        outbox.enforce_bytes();
        debug!(
            "outbox {} opened: {} pending in {} segment(s), next sequence {}",
            outbox.dir.display(),
            outbox.messages.len(),
            outbox.segments.len(),
            outbox.next_seq
        );
        Ok(outbox)
    }

    fn replay_segment(&mut self, id: u64, highest_seq: &mut u64) -> Result<(), OutboxError> {
        let path = self.dir.join(segment_name(id));
        let bytes =
            fs::read(&path).map_err(|e| self.io_err(format!("read {}", path.display()), e))?;
        let decoded = journal::decode(&bytes);
        for record in &decoded.records {
            match *record {
                Record::Event {
                    seq,
                    topic,
                    payload,
                } => {
                    *highest_seq = (*highest_seq).max(seq);
                    self.messages.insert(
                        seq,
                        Held {
                            topic: topic.to_owned(),
                            payload: payload.to_vec(),
                            segment: Some(id),
                        },
                    );
                }
                Record::Done { seq } => {
                    *highest_seq = (*highest_seq).max(seq);
                    self.messages.remove(&seq);
                }
            }
        }
        match decoded.damage {
            None => {}
            Some(Damage::BadHeader) => {
                self.corrupt += 1;
                let aside = self
                    .dir
                    .join(format!("{}{CORRUPT_SUFFIX}", segment_name(id)));
                warn!(
                    "outbox {}: {} is not an outbox segment; moved it to {} and skipped it",
                    self.dir.display(),
                    path.display(),
                    aside.display()
                );
                fs::rename(&path, &aside)
                    .map_err(|e| self.io_err(format!("move {} aside", path.display()), e))?;
                return Ok(());
            }
            Some(damage) => {
                self.corrupt += 1;
                warn!(
                    "outbox {}: {}: {damage}; kept the {} record(s) before it and cut off the \
                     remaining {} byte(s) (a write interrupted by a crash or power cut, or a \
                     damaged disk)",
                    self.dir.display(),
                    path.display(),
                    decoded.records.len(),
                    bytes.len() - decoded.valid_len
                );
                let cut = OpenOptions::new().write(true).open(&path).and_then(|f| {
                    f.set_len(decoded.valid_len as u64)?;
                    f.sync_all()
                });
                cut.map_err(|e| self.io_err(format!("truncate {}", path.display()), e))?;
            }
        }
        self.segments.insert(
            id,
            Segment {
                bytes: decoded.valid_len as u64,
                live: 0,
            },
        );
        Ok(())
    }

    fn import_legacy(&mut self, seq: u64) -> Result<(), OutboxError> {
        let name = format!("{seq:0ID_DIGITS$}{}", legacy::EXT);
        let path = self.dir.join(&name);
        let parsed = fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<legacy::Stored>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(stored) if !stored.topic.is_empty() => {
                self.push(stored.payload.as_bytes(), &stored.topic)?;
                if let Err(e) = fs::remove_file(&path) {
                    warn!(
                        "outbox: imported {} but cannot delete it: {e}",
                        path.display()
                    );
                }
            }
            other => {
                self.corrupt += 1;
                let reason = other.err().unwrap_or_else(|| "empty topic".into());
                let aside = self.dir.join(format!("{name}{CORRUPT_SUFFIX}"));
                warn!(
                    "outbox {}: old-format message {} is unreadable ({reason}); moved it to {}",
                    self.dir.display(),
                    path.display(),
                    aside.display()
                );
                if let Err(e) = fs::rename(&path, &aside) {
                    warn!("outbox: cannot move {} aside: {e}", path.display());
                }
            }
        }
        Ok(())
    }

    fn io_err(&self, action: String, source: io::Error) -> OutboxError {
        OutboxError::Io {
            dir: self.dir.clone(),
            action,
            source,
        }
    }

    /// Stores a message and returns its sequence number.
    ///
    /// When the journal write succeeds (the normal case) the message survives a crash, and with
    /// `fsync = "always"` a power cut, from the moment this returns. When it fails (disk full,
    /// read-only), the message is still accepted and delivered from memory; the failure is
    /// logged, counted and shown by [`Outbox::last_error`]. Errors are returned only for
    /// messages that can never be stored (empty topic, oversized).
    pub fn push(&mut self, payload: &[u8], topic: &str) -> Result<u64, OutboxError> {
        if topic.is_empty() {
            return Err(OutboxError::EmptyTopic {
                dir: self.dir.clone(),
            });
        }
        let seq = self.next_seq;
        let record = Record::Event {
            seq,
            topic,
            payload,
        };
        self.buf.clear();
        if journal::encode(&record, &mut self.buf).is_none() {
            return Err(OutboxError::TooLarge {
                dir: self.dir.clone(),
                topic: topic.to_owned(),
                bytes: payload.len() + topic.len(),
            });
        }
        // Consume the number before writing: a record that reached the disk despite an error
        // must never share its number with the next one.
        self.next_seq = seq
            .checked_add(1)
            .ok_or_else(|| OutboxError::SequenceExhausted {
                dir: self.dir.clone(),
            })?;
        let segment = match self.append_buf(self.opts.fsync == FsyncPolicy::Always) {
            Ok(id) => {
                if let Some(seg) = self.segments.get_mut(&id) {
                    seg.live += 1;
                }
                if let Some(previous) = self.last_error.take() {
                    info!(
                        "outbox {}: writing works again (it failed with: {previous})",
                        self.dir.display()
                    );
                }
                Some(id)
            }
            Err(e) => {
                self.write_failures += 1;
                let msg = format!("cannot write event #{seq}: {e}");
                error!(
                    "outbox {}: {msg}; the event is kept in memory and will still be delivered, \
                     but it is lost if vigil stops before that (free space or fix the mount)",
                    self.dir.display()
                );
                self.last_error = Some(msg);
                None
            }
        };
        self.messages.insert(
            seq,
            Held {
                topic: topic.to_owned(),
                payload: payload.to_vec(),
                segment,
            },
        );
        while self.messages.len() > self.opts.max_messages {
            self.evict_oldest();
        }
        self.enforce_bytes();
        Ok(seq)
    }

    /// Appends `self.buf` to the active segment (creating one if needed) and returns its id.
    /// On failure the segment is cut back to where it was, so a later append never lands
    /// after a half-written record; if even that fails, the segment is abandoned (its torn
    /// tail is cut off at the next open) and the next append starts a new one.
    fn append_buf(&mut self, sync: bool) -> io::Result<u64> {
        if self.active.is_none() {
            self.active = Some(self.create_segment()?);
        }
        let Some(active) = self.active.as_mut() else {
            return Err(io::Error::other("no active segment"));
        };
        let id = active.id;
        let before = self.segments.get(&id).map_or(0, |s| s.bytes);
        let written = active.file.write_all(&self.buf).and_then(|()| {
            if sync {
                active.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            if active.file.set_len(before).is_err() {
                self.active = None;
            }
            return Err(e);
        }
        if let Some(seg) = self.segments.get_mut(&id) {
            seg.bytes += self.buf.len() as u64;
            if seg.bytes >= self.opts.segment_bytes() {
                self.active = None;
            }
        }
        Ok(id)
    }

    fn create_segment(&mut self) -> io::Result<Active> {
        let id = self.next_segment;
        let path = self.dir.join(segment_name(id));
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)?;
        // The id is spent even if the header write fails: the file may exist.
        self.next_segment += 1;
        let header = file.write_all(&journal::header()).and_then(|()| {
            if self.opts.fsync == FsyncPolicy::Always {
                file.sync_all()?;
                // The new file's name is only durable once the directory is.
                File::open(&self.dir)?.sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(e) = header {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.segments.insert(
            id,
            Segment {
                bytes: journal::HEADER_LEN as u64,
                live: 0,
            },
        );
        Ok(Active { id, file })
    }

    /// Records that `seq` will never be sent again (not fsync'd: losing it in a power cut
    /// only causes a duplicate, which consumers de-duplicate on the event id).
    fn write_done(&mut self, seq: u64) -> io::Result<()> {
        self.buf.clear();
        // A done record always encodes.
        let _ = journal::encode(&Record::Done { seq }, &mut self.buf);
        self.append_buf(false).map(|_| ())
    }

    /// Deletes segments from the front while nothing in them is pending. Only from the front:
    /// a later segment may hold the done records of an earlier one.
    fn trim_front(&mut self) {
        while let Some((&id, seg)) = self.segments.first_key_value() {
            if seg.live > 0 || self.active.as_ref().is_some_and(|a| a.id == id) {
                break;
            }
            self.delete_segment(id);
        }
    }

    fn delete_segment(&mut self, id: u64) {
        self.segments.remove(&id);
        if self.active.as_ref().is_some_and(|a| a.id == id) {
            self.active = None;
        }
        let path = self.dir.join(segment_name(id));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("outbox: cannot delete {}: {e}", path.display()),
        }
    }

    /// Marks a message done in memory and on disk; the caller decides whether it counts as
    /// delivered or dropped.
    fn finish(&mut self, seq: u64) -> Option<(Held, io::Result<()>)> {
        let held = self.messages.remove(&seq)?;
        if let Some(seg) = held.segment.and_then(|id| self.segments.get_mut(&id)) {
            seg.live = seg.live.saturating_sub(1);
        }
        if self.messages.is_empty() {
            // Drained: nothing on disk is needed any more.
            let ids: Vec<u64> = self.segments.keys().copied().collect();
            for id in ids {
                self.delete_segment(id);
            }
            return Some((held, Ok(())));
        }
        let written = match held.segment {
            Some(_) => self.write_done(seq),
            None => Ok(()),
        };
        self.trim_front();
        Some((held, written))
    }

    fn evict_oldest(&mut self) {
        let Some(&seq) = self.messages.keys().next() else {
            return;
        };
        if let Some((held, written)) = self.finish(seq) {
            self.dropped += 1;
            warn!(
                "outbox {} is full ({} messages): dropped the oldest message #{seq} for {}",
                self.dir.display(),
                self.opts.max_messages,
                held.topic
            );
            if let Err(e) = written {
                warn!("outbox: cannot record the drop of #{seq}: {e}");
            }
        }
    }

    /// Keeps the journal within `max_bytes` by deleting the oldest segment, dropping (and
    /// counting) whatever is still pending in it.
    fn enforce_bytes(&mut self) {
        loop {
            let total: u64 = self.segments.values().map(|s| s.bytes).sum();
            if total <= self.opts.max_bytes {
                return;
            }
            let Some(&oldest) = self.segments.keys().next() else {
                return;
            };
            if self.active.as_ref().is_some_and(|a| a.id == oldest) {
                // The only segment: start a new one so this one can go next time.
                self.active = None;
                if self.segments.len() == 1 {
                    return;
                }
            }
            let lost: Vec<u64> = self
                .messages
                .iter()
                .filter(|(_, h)| h.segment == Some(oldest))
                .map(|(&s, _)| s)
                .collect();
            for seq in &lost {
                self.messages.remove(seq);
            }
            self.dropped += lost.len() as u64;
            warn!(
                "outbox {} is over its {} byte bound: deleted its oldest segment, dropping {} \
                 pending message(s)",
                self.dir.display(),
                self.opts.max_bytes,
                lost.len()
            );
            self.delete_segment(oldest);
        }
    }

    /// The waiting messages, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = OutboxEntry<'_>> + '_ {
        self.messages.iter().map(to_entry)
    }

    /// The waiting messages with a sequence number greater than `seq`, oldest first (what a
    /// publisher that has already handed out everything up to `seq` needs next).
    pub fn pending_after(&self, seq: u64) -> impl Iterator<Item = OutboxEntry<'_>> + '_ {
        use std::ops::Bound::{Excluded, Unbounded};
        self.messages
            .range((Excluded(seq), Unbounded))
            .map(to_entry)
    }

    /// Removes a delivered message. Returns whether it was still waiting (it may have been
    /// evicted meanwhile, or acknowledged twice after a re-send). The message is forgotten even
    /// if its done record cannot be written (the error is returned): it was delivered, and the
    /// worst outcome is one duplicate after the next restart.
    pub fn ack(&mut self, seq: u64) -> Result<bool, OutboxError> {
        match self.finish(seq) {
            None => Ok(false),
            Some((_, Ok(()))) => Ok(true),
            Some((_, Err(e))) => Err(self.io_err(format!("record the delivery of #{seq}"), e)),
        }
    }

    /// Number of messages waiting.
    pub fn depth(&self) -> usize {
        self.messages.len()
    }

    /// Messages dropped because the outbox was full, since it was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Damaged segments or old-format files found (and cut back or set aside) when opening.
    pub fn corrupt(&self) -> u64 {
        self.corrupt
    }

    /// Event records that could not be written since opening (the events were kept in memory).
    pub fn write_failures(&self) -> u64 {
        self.write_failures
    }

    /// Pending messages held only in memory because their write failed.
    pub fn volatile(&self) -> usize {
        self.messages
            .values()
            .filter(|h| h.segment.is_none())
            .count()
    }

    /// The last write failure, until a later write succeeds.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Bytes of journal on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    /// The most messages held at once.
    pub fn max_messages(&self) -> usize {
        self.opts.max_messages
    }

    /// The directory holding the journal.
    /// When event records are forced to disk (the same policy applies to the record of open
    /// anomalies kept beside the journal).
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.opts.fsync
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // With `fsync = "never"` a clean stop still leaves the journal on the device.
        if let Some(active) = &self.active {
            if let Err(e) = active.file.sync_data() {
                warn!("outbox {}: final fsync failed: {e}", self.dir.display());
            }
        }
    }
}

fn to_entry<'a>((seq, held): (&'a u64, &'a Held)) -> OutboxEntry<'a> {
    OutboxEntry {
        seq: *seq,
        topic: &held.topic,
        payload: &held.payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(o: &Outbox) -> Vec<u64> {
        o.pending().map(|e| e.seq).collect()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        files(dir)
            .into_iter()
            .filter(|n| n.ends_with(SEGMENT_EXT))
            .map(|n| dir.join(n))
            .collect()
    }

    #[test]
    fn push_keeps_order_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        for i in 0..5 {
            let seq = o
                .push(format!("{{\"n\":{i}}}").as_bytes(), "vigil/d/c/events")
                .unwrap();
            assert_eq!(seq, i + 1);
        }
        assert_eq!(o.depth(), 5);
        assert_eq!(o.pending().next().unwrap().topic, "vigil/d/c/events");
        assert_eq!(
            o.pending_after(3).map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(files(dir.path()), vec![segment_name(1)]);
        assert!(o.ack(2).unwrap());
        assert!(o.ack(4).unwrap());
        drop(o);
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!(seqs(&o), vec![1, 3, 5]);
        let payloads: Vec<_> = o.pending().map(|e| e.payload.to_vec()).collect();
        assert_eq!(
            payloads,
            vec![
                b"{\"n\":0}".to_vec(),
                b"{\"n\":2}".to_vec(),
                b"{\"n\":4}".to_vec()
            ]
        );
        // Sequence numbers continue after everything ever written, acknowledged ones included.
        assert_eq!(o.push(b"x", "t").unwrap(), 6);
        assert_eq!(o.corrupt(), 0);
        drop(o);
        assert_eq!(
            seqs(&Outbox::open(dir.path(), 100).unwrap()),
            vec![1, 3, 5, 6]
        );
    }

    #[test]
    fn ack_is_idempotent_and_a_drained_outbox_leaves_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 10).unwrap();
        let a = o.push(b"a", "t").unwrap();
        let b = o.push(b"b", "t").unwrap();
        assert!(o.ack(a).unwrap());
        assert!(!o.ack(a).unwrap());
        assert!(!o.ack(999).unwrap());
        assert_eq!(seqs(&o), vec![b]);
        assert!(o.ack(b).unwrap());
        assert_eq!(o.depth(), 0);
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
        assert_eq!(o.disk_bytes(), 0);
        // And it keeps working after draining.
        let c = o.push(b"c", "t").unwrap();
        assert!(c > b);
        drop(o);
        assert_eq!(seqs(&Outbox::open(dir.path(), 10).unwrap()), vec![c]);
    }

    #[test]
    fn the_message_bound_drops_the_oldest_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 3).unwrap();
        for i in 0..5u8 {
            o.push(&[b'0' + i], "t").unwrap();
        }
        assert_eq!(o.depth(), 3);
        assert_eq!(o.dropped(), 2);
        assert_eq!(seqs(&o), vec![3, 4, 5]);
        drop(o);
        // Dropped messages are not resurrected by a restart with a larger bound.
        let o = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!(seqs(&o), vec![3, 4, 5]);
        assert_eq!(o.dropped(), 0);
        drop(o);
        let o = Outbox::open(dir.path(), 2).unwrap();
        assert_eq!(seqs(&o), vec![4, 5]);
        assert_eq!(o.dropped(), 1);
        assert!(Outbox::open(dir.path(), 0).is_err());
    }

    #[test]
    fn the_byte_bound_holds_and_drops_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let opts = OutboxOptions {
            max_bytes: MIN_BYTES,
            ..OutboxOptions::default()
        };
        let mut o = Outbox::open_with(dir.path(), opts).unwrap();
        let payload = vec![b'x'; 1000];
        for _ in 0..100 {
            o.push(&payload, "t").unwrap();
            assert!(o.disk_bytes() <= MIN_BYTES, "{}", o.disk_bytes());
        }
        let on_disk: u64 = segments(dir.path())
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(on_disk, o.disk_bytes());
        assert!(o.dropped() > 0);
        assert_eq!(o.dropped() as usize + o.depth(), 100);
        // What is left is the newest, without holes.
        let s = seqs(&o);
        assert_eq!(*s.last().unwrap(), 100);
        assert!(s.windows(2).all(|w| w[1] == w[0] + 1), "{s:?}");
        drop(o);
        assert_eq!(seqs(&Outbox::open_with(dir.path(), opts).unwrap()), s);
        assert!(Outbox::open_with(
            dir.path(),
            OutboxOptions {
                max_bytes: 100,
                ..opts
            }
        )
        .is_err());
    }

    #[test]
    fn a_torn_tail_keeps_the_valid_prefix_and_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut o = Outbox::open(dir.path(), 10).unwrap();
            for i in 0..3u8 {
                o.push(&[b'a' + i], "t").unwrap();
            }
        }
        let seg = &segments(dir.path())[0];
        let full = fs::metadata(seg).unwrap().len();
        // Cut the last record in half, as a power cut mid-append would.
        OpenOptions::new()
            .write(true)
            .open(seg)
            .unwrap()
            .set_len(full - 3)
            .unwrap();
        let mut o = Outbox::open(dir.path(), 10).unwrap();
        assert_eq!(o.corrupt(), 1);
        assert_eq!(seqs(&o), vec![1, 2]);
        assert!(
            fs::metadata(seg).unwrap().len() < full - 3,
            "tail was not cut off"
        );
        // The lost record's number is not reused (it may have reached the broker).
        assert_eq!(o.push(b"d", "t").unwrap(), 3);
        drop(o);
        let o = Outbox::open(dir.path(), 10).unwrap();
        assert_eq!(o.corrupt(), 0);
        assert_eq!(seqs(&o), vec![1, 2, 3]);
        assert_eq!(o.pending().last().unwrap().payload, b"d");
    }

    #[test]
    fn a_flipped_bit_and_a_foreign_file_are_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut o = Outbox::open(dir.path(), 10).unwrap();
            o.push(b"one", "t").unwrap();
            o.push(b"two", "t").unwrap();
        }
        let seg = segments(dir.path())[0].clone();
        let mut bytes = fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0x40; // inside the second record's payload
        fs::write(&seg, &bytes).unwrap();
        fs::write(dir.path().join(segment_name(500)), b"not a journal at all").unwrap();
        fs::write(dir.path().join("README"), b"not mine").unwrap();
        let mut o = Outbox::open(dir.path(), 10).unwrap();
        assert_eq!(o.corrupt(), 2);
        assert_eq!(seqs(&o), vec![1]);
        let names = files(dir.path());
        assert!(
            names.contains(&format!("{}.corrupt", segment_name(500))),
            "{names:?}"
        );
        assert!(names.contains(&"README".to_string()));
        // New segments are numbered past the one set aside.
        o.push(b"three", "t").unwrap();
        assert!(
            files(dir.path()).contains(&segment_name(501)),
            "{:?}",
            files(dir.path())
        );
    }

    #[test]
    fn an_old_file_per_message_outbox_is_imported_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let old = |seq: u64, body: &str| {
            fs::write(dir.path().join(format!("{seq:020}.json")), body).unwrap()
        };
        old(7, r#"{"topic":"vigil/a/b/events","payload":"{\"n\":7}"}"#);
        old(3, r#"{"topic":"vigil/a/b/events","payload":"{\"n\":3}"}"#);
        old(5, r#"{"topic":"t","payl"#);
        fs::write(dir.path().join(format!("{:020}.json.tmp", 9)), b"{}").unwrap();
        let o = Outbox::open(dir.path(), 10).unwrap();
        let got: Vec<_> = o.pending().map(|e| e.payload.to_vec()).collect();
        assert_eq!(got, vec![b"{\"n\":3}".to_vec(), b"{\"n\":7}".to_vec()]);
        assert_eq!(o.corrupt(), 1);
        let names = files(dir.path());
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".json") || n.ends_with(".tmp")),
            "{names:?}"
        );
        drop(o);
        assert_eq!(Outbox::open(dir.path(), 10).unwrap().depth(), 2);
    }

    #[test]
    fn a_failed_write_keeps_the_event_in_memory_and_reports_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("spool");
        let mut o = Outbox::open(&dir, 10).unwrap();
        // The directory vanishes from under the outbox, like a lost mount.
        fs::remove_dir_all(&dir).unwrap();
        let a = o.push(b"a", "t").unwrap();
        assert_eq!(o.write_failures(), 1);
        assert_eq!(o.volatile(), 1);
        let err = o.last_error().unwrap().to_owned();
        assert!(err.contains("#1"), "{err}");
        assert_eq!(seqs(&o), vec![a]);
        // It comes back: the next event is durable again and the error clears.
        fs::create_dir_all(&dir).unwrap();
        let b = o.push(b"b", "t").unwrap();
        assert!(o.last_error().is_none());
        assert_eq!(o.volatile(), 1);
        assert!(o.ack(a).unwrap());
        drop(o);
        assert_eq!(seqs(&Outbox::open(&dir, 10).unwrap()), vec![b]);
        // A file where the directory should be is an error naming it.
        let blocker = root.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let err = Outbox::open(&blocker, 10).unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
    }

    #[test]
    fn fsync_never_still_persists_on_a_clean_stop() {
        let dir = tempfile::tempdir().unwrap();
        let opts = OutboxOptions {
            fsync: FsyncPolicy::Never,
            ..OutboxOptions::default()
        };
        {
            let mut o = Outbox::open_with(dir.path(), opts).unwrap();
            o.push(b"a", "t").unwrap();
            o.push(b"b", "t").unwrap();
            o.ack(1).unwrap();
        }
        assert_eq!(seqs(&Outbox::open_with(dir.path(), opts).unwrap()), vec![2]);
    }

    #[test]
    fn unstorable_messages_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 10).unwrap();
        assert!(matches!(
            o.push(b"{}", ""),
            Err(OutboxError::EmptyTopic { .. })
        ));
        let huge = vec![b'x'; journal::MAX_BODY + 1];
        let e = o.push(&huge, "t").unwrap_err();
        assert!(matches!(e, OutboxError::TooLarge { .. }), "{e}");
        assert_eq!(o.depth(), 0);
        // Binary payloads are fine.
        o.push(&[0xff, 0x00, 0xfe], "t").unwrap();
        assert_eq!(o.pending().next().unwrap().payload, &[0xff, 0x00, 0xfe]);
    }
}
