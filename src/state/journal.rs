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
//! `ProgressRecord`, `StepRecord`); the wire's frames are built from them (`payload::frame`).
//!
//! A supervisor keeps room allocated past the journal's end ([`Journal::reserve`]), so the
//! lines of its run's end can be appended on a disk that filled up meanwhile; lines that
//! are not the end (progress, steps, readiness) are left out rather than eat into that room. The
//! journal may so miss a line, but never contradicts the record: the end is journaled only
//! once the record that says it is sure to follow ([`record_end`]).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::paths::{TaskPaths, names};
use crate::state::TaskRecord;
use crate::state::folder::{self, Folder};
use crate::state::record::{ProgressRecord, Reason, Status, StepRecord};
use crate::time::now_ms;

/// Frame types written to the journal.
pub mod kind {
    pub const STATUS: &str = "task.status";
    pub const ENDED: &str = "task.ended";
    pub const READY: &str = "task.ready";
    pub const PROGRESS: &str = "task.progress";
    pub const STEP: &str = "task.step";
    pub const RESTARTING: &str = "task.restarting";
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

/// `task.restarting`: the supervisor starts run `run` itself after `delay_ms`, because
/// run `run - 1` ended as `reason` says (its `task.ended` came before). The first entry of
/// the new run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartingEntry {
    pub run: u32,
    /// Why: `exited` (exit 0, with `on: "always"`), `failed` (a non-zero exit code),
    /// `signal`, `timeout` (its `timeout_s`), `ready_timeout` (its `ready` conditions did
    /// not hold in time).
    pub reason: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<String>,
    /// How long the ended run ran.
    #[serde(default)]
    pub uptime_ms: Option<i64>,
    pub delay_ms: u64,
    /// Automatic restarts since a caller last started the task, this one included.
    pub restarts: u32,
    /// Runs shorter than `min_uptime_s` in a row, the ended one included.
    pub unstable_runs: u32,
    pub next_restart_at_ms: i64,
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
    /// The journal's size, as far as we appended.
    size: u64,
    /// Where the room allocated past the end ends; 0 when there is none.
    reserved_to: u64,
}

/// Room a supervisor keeps allocated past the journal's end for the lines of its run's end.
const RESERVE: u64 = 16 * 1024;
/// Room a line other than the end must leave: below it, the line is left out.
const END_ROOM: u64 = 2 * 1024;

impl Journal {
    /// Opens (creating, 0600) the journal and finds the next sequence number.
    pub fn open(paths: &TaskPaths) -> Result<Journal> {
        let folder = paths.open()?.ok_or_else(|| {
            Error::store(
                "open",
                paths.journal(),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
        Journal::open_in(&folder)
    }

    /// [`Journal::open`], in the task's open folder.
    pub fn open_in(folder: &Folder) -> Result<Journal> {
        let mut file = folder.write_file(names::JOURNAL, folder::Write::ReadAppend)?;
        let path = || folder.file_path(names::JOURNAL);
        let size = file
            .metadata()
            .map_err(|e| Error::store("inspect", path(), e))?
            .len();
        let last = last_sequence(&mut file, size).map_err(|e| Error::store("read", path(), e))?;
        Ok(Journal {
            file,
            next: last + 1,
            size,
            reserved_to: 0,
        })
    }

    /// Allocates room past the journal's end for the lines of the run's end (without
    /// changing its size), so that they can be appended on a full disk. Fails where the
    /// filesystem cannot allocate ahead, or has no room left.
    pub fn reserve(&mut self) -> Result<()> {
        self.allocate(RESERVE)
    }

    fn allocate(&mut self, room: u64) -> Result<()> {
        let (from, length) = (self.size, room);
        nix::fcntl::fallocate(
            self.file.as_fd(),
            nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
            i64::try_from(from).unwrap_or(i64::MAX),
            i64::try_from(length).unwrap_or(i64::MAX),
        )
        .map_err(|e| Error::store("set room aside in", names::JOURNAL, e.into()))?;
        self.reserved_to = self.reserved_to.max(from + length);
        Ok(())
    }

    /// Gives back the room allocated past the journal's end, a dead supervisor's too
    /// (truncating the journal to its own size frees it).
    pub fn release(&mut self) {
        if let Ok(meta) = self.file.metadata() {
            let _ = self.file.set_len(meta.len());
        }
        self.reserved_to = 0;
    }

    /// Appends one entry.
    pub fn append(&mut self, kind: &str, run: u32, log_offset: u64, data: Value) -> Result<()> {
        self.append_line(kind, run, log_offset, data, kind == kind::ENDED)
    }

    /// Appends one entry; one that is not part of the `end` must leave the room kept for
    /// the end, or it is left out (an error) when no more room can be had.
    fn append_line(
        &mut self,
        kind: &str,
        run: u32,
        log_offset: u64,
        data: Value,
        end: bool,
    ) -> Result<()> {
        let entry = JournalEntry {
            sequence: self.next,
            kind: kind.to_owned(),
            timestamp_ms: now_ms(),
            run,
            log_offset,
            data,
        };
        let mut line = serde_json::to_vec(&entry)
            .map_err(|e| Error::store("encode", names::JOURNAL, io::Error::other(e)))?;
        line.push(b'\n');
        let after = self.size + line.len() as u64;
        if self.reserved_to > 0 && !end && after + END_ROOM > self.reserved_to {
            // The room kept for the end would be eaten into: more room, or no line.
            self.allocate(line.len() as u64 + RESERVE)?;
        }
        self.file
            .write_all(&line)
            .map_err(|e| Error::store("append to", names::JOURNAL, e))?;
        self.size = after;
        self.next += 1;
        if self.reserved_to > 0 && self.reserved_to < self.size + RESERVE / 2 {
            // Topped up while there is room; on a full disk what is left still holds an end.
            let _ = self.allocate(RESERVE);
        }
        Ok(())
    }
}

impl Journal {
    /// Records the task's status as it now stands.
    pub fn status(&mut self, record: &TaskRecord, log_offset: u64) -> Result<()> {
        let end = record.status.is_terminal();
        let entry = StatusEntry::of(record);
        self.append_entry(kind::STATUS, record.run, log_offset, &entry, end)
    }

    /// Records a terminal status and the end of the run.
    pub fn ended(&mut self, record: &TaskRecord, log_offset: u64) -> Result<()> {
        self.status(record, log_offset)?;
        let entry = EndedEntry::of(record);
        self.append_entry(kind::ENDED, record.run, log_offset, &entry, true)
    }

    /// Records that the run's ready conditions all held.
    pub fn ready(&mut self, run: u32, log_offset: u64) -> Result<()> {
        let entry = ReadyEntry { ready: true, run };
        self.append_entry(kind::READY, run, log_offset, &entry, false)
    }

    /// Records that the supervisor restarts the task itself (failures are the caller's to
    /// let go).
    pub fn restarting(&mut self, entry: &RestartingEntry) -> Result<()> {
        self.append_entry(kind::RESTARTING, entry.run, 0, entry, false)
    }

    /// Records the newest progress the run reported.
    pub fn progress(&mut self, run: u32, log_offset: u64, progress: &ProgressRecord) -> Result<()> {
        self.append_entry(kind::PROGRESS, run, log_offset, progress, false)
    }

    /// Records a step of the run as it now stands (`crate::steps`).
    pub fn step(&mut self, run: u32, log_offset: u64, step: &StepRecord) -> Result<()> {
        self.append_entry(kind::STEP, run, log_offset, step, false)
    }

    fn append_entry(
        &mut self,
        kind: &str,
        run: u32,
        log_offset: u64,
        data: &impl Serialize,
        end: bool,
    ) -> Result<()> {
        let data = serde_json::to_value(data)
            .map_err(|e| Error::store("encode", names::JOURNAL, io::Error::other(e)))?;
        self.append_line(kind, run, log_offset, data, end)
    }
}

/// Records the end of a run, in the one order every writer keeps: the record's new content
/// is written first (into a temp file beside it: the part that needs room on the disk), then
/// the journal's `task.ended`, then the record is renamed into place. A follower that sees a
/// terminal record so finds `task.ended` already journaled (or knows it never will be), and
/// one that sees `task.ended` waits only for the rename, which needs no room: the journal
/// never announces an end that its record then fails to say (a reader on a full disk that
/// cannot record a task `lost` journals nothing). A journal that cannot be written (`None`,
/// or a failed append) does not stop the record: the journal is a courtesy to followers, the
/// record is the truth. Used by the supervisor and by a reader that records a task `lost`.
pub fn record_end(
    paths: &TaskPaths,
    journal: Option<&mut Journal>,
    record: &TaskRecord,
) -> Result<()> {
    let folder = paths.open()?.ok_or_else(|| {
        Error::store(
            "replace",
            paths.record(),
            io::Error::from(io::ErrorKind::NotFound),
        )
    })?;
    record_end_in(&folder, journal, record)
}

/// [`record_end`], in the task's open folder.
pub fn record_end_in(
    folder: &Folder,
    journal: Option<&mut Journal>,
    record: &TaskRecord,
) -> Result<()> {
    let staged = record.stage_in(folder)?;
    journal_end(folder, journal, record);
    staged.commit()?.sync()
}

/// Journals the end of `record`'s run (its terminal status, then `task.ended`), placed at
/// the log's size now (0 when the run wrote none). Failures are let go: see [`record_end`].
pub fn journal_end(folder: &Folder, journal: Option<&mut Journal>, record: &TaskRecord) {
    if let Some(journal) = journal {
        let log_size = folder.size(names::LOG).unwrap_or(0);
        let _ = journal.ended(record, log_size);
    }
}

/// A run's end as its journal holds it, and when it was journaled.
#[derive(Debug, Clone, PartialEq)]
pub struct JournaledEnd {
    pub ended: EndedEntry,
    pub at_ms: i64,
}

impl JournaledEnd {
    /// `record` (of the same run) ended as journaled.
    pub fn applied_to(self, mut record: TaskRecord) -> TaskRecord {
        let JournaledEnd { ended, at_ms } = self;
        record.exit_code = ended.exit_code;
        record.signal = ended.signal;
        let reason = ended.reason.unwrap_or(Reason::Exit);
        record.finish(ended.status, reason, at_ms);
        record
    }
}

/// How run `run` ended, if the journal says so: its last `task.ended` entry for that run.
/// Only the journal's tail is read: the end is the last thing a run's supervisor journals.
pub fn journaled_end(folder: &Folder, run: u32) -> Option<JournaledEnd> {
    const TAIL: u64 = 64 * 1024;
    let mut file = folder.read_file(names::JOURNAL).ok()??;
    let size = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(size.saturating_sub(TAIL))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    tail.split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<JournalEntry>(line).ok())
        .filter(|entry| entry.kind == kind::ENDED && entry.run == run)
        .filter_map(|entry| {
            let ended = serde_json::from_value::<EndedEntry>(entry.data).ok()?;
            let at_ms = entry.timestamp_ms;
            (ended.run == run && ended.status.is_terminal())
                .then_some(JournaledEnd { ended, at_ms })
        })
        .next_back()
}

/// Entries from byte `offset` on, and the offset just past the last whole line read.
pub fn read_from(paths: &TaskPaths, offset: u64) -> Result<(Vec<JournalEntry>, u64)> {
    let mut bytes = Vec::new();
    let file = match paths.open()? {
        Some(folder) => folder.read_file(names::JOURNAL)?,
        None => None,
    };
    let Some(mut file) = file else {
        return Ok((Vec::new(), offset));
    };
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Error::store("read", paths.journal(), e))?;
    // Only whole lines: the last one may still be being written.
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let entries = bytes[..whole]
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect();
    Ok((entries, offset + whole as u64))
}

fn last_sequence(file: &mut File, size: u64) -> io::Result<u64> {
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
