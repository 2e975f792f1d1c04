//! `events.jsonl`: the append-only lifecycle journal of one task, across its runs.
//!
//! One JSON object per line, each with a sequence number that grows by one per entry for
//! the whole life of the task. Only the holder of the task's lock appends (the supervisor,
//! or a reader recording a lost task), so sequence numbers never collide. Each entry keeps
//! the size of the run's log at the moment it was written (`log_offset`), which places it
//! among the log's lines when the two are merged into one stream of frames.
//!
//! Entries are written with one `write` on a descriptor opened `O_APPEND`, so a reader sees
//! whole lines, except perhaps the very last while it is being written; a line that does
//! not parse is skipped. A disk type: entries never deny unknown fields, and an entry of a
//! type (or with data) a newer version wrote is read and passed over, not refused. Each
//! type's data has its own struct ([`StatusEntry`], [`EndedEntry`], [`ReadyEntry`],
//! `ProgressRecord`); the wire's frames are built from them (`payload::frame`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::paths::{TaskPaths, set_private_mode};
use crate::state::TaskRecord;
use crate::state::record::{ProgressRecord, Reason, Status};
use crate::time::now_ms;

/// Frame types written to the journal.
pub mod kind {
    pub const STATUS: &str = "task.status";
    pub const ENDED: &str = "task.ended";
    pub const READY: &str = "task.ready";
    pub const PROGRESS: &str = "task.progress";
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub sequence: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp_ms: i64,
    pub run: u32,
    /// Size of the run's log when the entry was written.
    pub log_offset: u64,
    pub data: Value,
}

/// `task.status`: the task's status as it now stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub status: Status,
    pub run: u32,
    #[serde(default)]
    pub pid: Option<i32>,
}

impl StatusEntry {
    /// What a `task.status` entry (and frame) says of a record: the one place it is decided.
    pub fn of(record: &TaskRecord) -> StatusEntry {
        StatusEntry {
            status: record.status,
            run: record.run,
            pid: record.pid,
        }
    }
}

/// `task.ended`: how the run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedEntry {
    pub status: Status,
    pub run: u32,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<String>,
    #[serde(default)]
    pub reason: Option<Reason>,
}

impl EndedEntry {
    /// What a `task.ended` entry (and frame) says of a terminal record: the one place it is
    /// decided, for the supervisor's journal and for a follower that must say it itself.
    pub fn of(record: &TaskRecord) -> EndedEntry {
        EndedEntry {
            status: record.status,
            run: record.run,
            exit_code: record.exit_code,
            signal: record.signal.clone(),
            reason: record.reason,
        }
    }
}

/// `task.ready`: the run's ready conditions all held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyEntry {
    pub ready: bool,
    pub run: u32,
}

/// The journal, open for appending by the lock holder.
#[derive(Debug)]
pub struct Journal {
    file: File,
    next: u64,
}

impl Journal {
    /// Opens (creating, 0600) the journal and finds the next sequence number.
    pub fn open(paths: &TaskPaths) -> Result<Journal> {
        let path = paths.journal();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::store("open", &path, e))?;
        set_private_mode(&path, 0o600)?;
        let last = last_sequence(&mut file).map_err(|e| Error::store("read", &path, e))?;
        Ok(Journal {
            file,
            next: last + 1,
        })
    }

    /// Appends one entry.
    pub fn append(&mut self, kind: &str, run: u32, log_offset: u64, data: Value) -> Result<()> {
        let entry = JournalEntry {
            sequence: self.next,
            kind: kind.to_owned(),
            timestamp_ms: now_ms(),
            run,
            log_offset,
            data,
        };
        let mut line = serde_json::to_vec(&entry)
            .map_err(|e| Error::store("encode", "events.jsonl", io::Error::other(e)))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| Error::store("append to", "events.jsonl", e))?;
        self.next += 1;
        Ok(())
    }
}

impl Journal {
    /// Records the task's status as it now stands.
    pub fn status(&mut self, record: &TaskRecord, log_offset: u64) -> Result<()> {
        self.append_entry(
            kind::STATUS,
            record.run,
            log_offset,
            &StatusEntry::of(record),
        )
    }

    /// Records a terminal status and the end of the run.
    pub fn ended(&mut self, record: &TaskRecord, log_offset: u64) -> Result<()> {
        self.status(record, log_offset)?;
        self.append_entry(kind::ENDED, record.run, log_offset, &EndedEntry::of(record))
    }

    /// Records that the run's ready conditions all held.
    pub fn ready(&mut self, run: u32, log_offset: u64) -> Result<()> {
        let entry = ReadyEntry { ready: true, run };
        self.append_entry(kind::READY, run, log_offset, &entry)
    }

    /// Records the newest progress the run reported.
    pub fn progress(&mut self, run: u32, log_offset: u64, progress: &ProgressRecord) -> Result<()> {
        self.append_entry(kind::PROGRESS, run, log_offset, progress)
    }

    fn append_entry(
        &mut self,
        kind: &str,
        run: u32,
        log_offset: u64,
        data: &impl Serialize,
    ) -> Result<()> {
        let data = serde_json::to_value(data)
            .map_err(|e| Error::store("encode", "events.jsonl", io::Error::other(e)))?;
        self.append(kind, run, log_offset, data)
    }
}

/// Records the end of a run, in the one order every writer keeps: the journal's `task.ended`
/// first, then the terminal record. A follower that sees a terminal record so finds
/// `task.ended` already journaled (or knows it never will be), and one that sees
/// `task.ended` waits only for the record. The entry is placed at the log's size now (0
/// when the run wrote none). A journal that cannot be written (`None`, or a failed append)
/// does not stop the record: the journal is a courtesy to followers, the record is the
/// truth. Used by the supervisor and by a reader that records a task `lost`.
pub fn record_end(
    paths: &TaskPaths,
    journal: Option<&mut Journal>,
    record: &TaskRecord,
) -> Result<()> {
    if let Some(journal) = journal {
        let log_size = std::fs::metadata(paths.log()).map_or(0, |m| m.len());
        let _ = journal.ended(record, log_size);
    }
    record.write(paths)
}

/// Entries from byte `offset` on, and the offset just past the last whole line read.
pub fn read_from(paths: &TaskPaths, offset: u64) -> Result<(Vec<JournalEntry>, u64)> {
    let path = paths.journal();
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut file) => {
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_to_end(&mut bytes))
                .map_err(|e| Error::store("read", &path, e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(Error::store("open", &path, e)),
    }
    // Only whole lines: the last one may still be being written.
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let entries = bytes[..whole]
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect();
    Ok((entries, offset + whole as u64))
}

fn last_sequence(file: &mut File) -> io::Result<u64> {
    let size = file.metadata()?.len();
    let start = size.saturating_sub(4096);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let last = |bytes: &[u8]| {
        bytes
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice::<JournalEntry>(line).ok())
            .map(|entry| entry.sequence)
            .max()
    };
    if let Some(sequence) = last(&tail) {
        return Ok(sequence);
    }
    if start == 0 {
        return Ok(0);
    }
    // An entry longer than the tail read: read it all.
    file.seek(SeekFrom::Start(0))?;
    let mut all = Vec::new();
    file.read_to_end(&mut all)?;
    Ok(last(&all).unwrap_or(0))
}
