//! Anomalies that are open (a `start` accepted, no `end` yet), kept on disk beside the outbox so
//! that one still open when vigil dies (SIGKILL, crash, power cut) gets its `end` at the next
//! start. Without it a consumer that turns something on at `start` (a Home Assistant binary
//! sensor, a siren) would stay on forever: the new run numbers its events afresh and never
//! mentions the old id again.
//!
//! One file per open anomaly, `<outbox>/open/<event id>.json`, holding the latest message of
//! that anomaly (its `start`, then each `update`) and its outbox sequence number, replaced
//! atomically (write, fsync under the
//! outbox's `fsync = "always"`, rename) and removed once its `end` is in the outbox. At start
//! every file left over is turned into an `end` with reason `restart` and spooled after the
//! journal's backlog, before any camera starts, so consumers receive it after everything the
//! dead run had accepted and before anything new.
//!
//! The order "end into the outbox, then remove the file" means a crash between the two steps
//! (microseconds) yields a second `end` for the same id at the next start: consumers already
//! treat `end` of an unknown or closed id as a no-op, which is far better than an `end` lost.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use log::{debug, warn};
use serde::{Deserialize, Serialize};

use super::message::{rfc3339_utc, EndReason, EventKind, EventMessage};
use super::outbox::FsyncPolicy;

const EXT: &str = ".json";
const TMP: &str = ".json.tmp";

/// One file's content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// Outbox sequence number of `last`: leftovers are closed in the order they were accepted
    /// (event ids are ULIDs, whose order within one millisecond is random).
    seq: u64,
    last: EventMessage,
}

/// The on-disk set of open anomalies; see the module docs.
#[derive(Debug)]
pub struct OpenEvents {
    dir: PathBuf,
    fsync: FsyncPolicy,
}

impl OpenEvents {
    /// Opens (creating) `dir` and returns the latest message of each anomaly an earlier run
    /// left open, in the order the outbox accepted those messages. Files that do not parse are reported
    /// and removed: they cannot be closed, and keeping them would repeat the warning forever.
    pub fn open(dir: PathBuf, fsync: FsyncPolicy) -> io::Result<(OpenEvents, Vec<EventMessage>)> {
        fs::create_dir_all(&dir)?;
        let mut left = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(TMP) {
                // A replacement that never got renamed: the previous file (if any) is current.
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(EXT) {
                debug!("open events {}: ignoring {name}", dir.display());
                continue;
            }
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
            {
                Ok(r) if r.last.kind != EventKind::End && r.last.validate().is_ok() => left.push(r),
                Ok(_) => {
                    let _ = fs::remove_file(&path);
                }
                Err(e) => {
                    warn!(
                        "open event record {} is unreadable ({e}); removed, so that anomaly \
                         gets no `end` from this start",
                        path.display()
                    );
                    let _ = fs::remove_file(&path);
                }
            }
        }
        left.sort_by_key(|r| r.seq);
        let left = left.into_iter().map(|r| r.last).collect();
        Ok((OpenEvents { dir, fsync }, left))
    }

    /// The record in `dir` without reading it (when [`OpenEvents::open`] failed): notes are
    /// still attempted, and fail with their own error if the directory stays unusable.
    pub fn unread(dir: PathBuf, fsync: FsyncPolicy) -> OpenEvents {
        OpenEvents { dir, fsync }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps the record in step with `msg`, which the outbox has just accepted as `seq`: a
    /// `start` or `update` becomes the anomaly's latest state, an `end` removes it.
    pub fn note(&self, msg: &EventMessage, seq: u64) -> io::Result<()> {
        let path = self.dir.join(format!("{}{EXT}", msg.id));
        if msg.kind == EventKind::End {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let tmp = self.dir.join(format!("{}{TMP}", msg.id));
        let record = Record {
            seq,
            last: msg.clone(),
        };
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        {
            let mut f = File::create(&tmp)?;
            io::Write::write_all(&mut f, &bytes)?;
            if self.fsync == FsyncPolicy::Always {
                f.sync_data()?;
            }
        }
        fs::rename(&tmp, &path)?;
        if self.fsync == FsyncPolicy::Always {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// The `end` of an anomaly that `last` (its latest accepted message) left open when vigil died:
/// same id and start, the last frame and score published, ended now, reason `restart`.
pub fn interrupted_end(last: &EventMessage, now: SystemTime) -> EventMessage {
    EventMessage {
        kind: EventKind::End,
        ended_at: Some(rfc3339_utc(now)),
        reason: Some(EndReason::Restart),
        ..last.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::tests_support;
    use super::*;

    #[test]
    fn open_anomalies_survive_a_reopen_and_ended_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("open");
        let (open, left) = OpenEvents::open(at.clone(), FsyncPolicy::Always).unwrap();
        assert!(left.is_empty());
        let mut a = tests_support::event("box-1", "north");
        let mut b = tests_support::event("box-1", "south");
        let mut c = tests_support::event("box-1", "west");
        open.note(&a, 1).unwrap();
        open.note(&b, 2).unwrap();
        open.note(&c, 3).unwrap();
        a.kind = EventKind::Update;
        a.frame = 50;
        a.peak_score = 0.95;
        open.note(&a, 4).unwrap();
        c.kind = EventKind::Update;
        open.note(&c, 5).unwrap();
        b.kind = EventKind::End;
        b.ended_at = Some("2024-05-01T12:00:09.000Z".into());
        b.reason = Some(EndReason::Score);
        open.note(&b, 6).unwrap();
        // A torn replacement and a foreign file are not anomalies.
        fs::write(at.join(format!("{}{TMP}", a.id)), b"{\"sch").unwrap();
        fs::write(at.join("README"), b"x").unwrap();
        drop(open);

        let (_open, left) = OpenEvents::open(at.clone(), FsyncPolicy::Never).unwrap();
        assert_eq!(
            left,
            vec![a.clone(), c.clone()],
            "the latest state of the two still open, in the order they were accepted"
        );
        assert!(!at.join(format!("{}{TMP}", a.id)).exists());
        let end = interrupted_end(&left[0], SystemTime::now());
        assert_eq!(end.validate(), Ok(()));
        assert_eq!(
            (end.kind, end.reason, end.frame, end.id.as_str()),
            (EventKind::End, Some(EndReason::Restart), 50, a.id.as_str())
        );
        assert_eq!(end.started_at, a.started_at);
    }

    #[test]
    fn an_unreadable_record_is_reported_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("open");
        fs::create_dir_all(&at).unwrap();
        let bad = at.join("01HXYZ3N4B8Q6F2R7T9V0W1X2Y.json");
        fs::write(&bad, b"{ not json").unwrap();
        let (_open, left) = OpenEvents::open(at, FsyncPolicy::Always).unwrap();
        assert!(left.is_empty());
        assert!(!bad.exists());
    }
}
