//! The on-disk task record (`task.json`), its own versioned type.
//!
//! A supervisor started by one version may still be writing when a newer version reads, so
//! fields are only ever added (with defaults), never renamed or removed; unknown fields are
//! ignored. `format_version` changes only for a change an older reader must not misread.
//! `tests/fixtures/record-v1.json` must always load (a unit test parses it; an integration
//! test reads it through the binary).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::paths::TaskPaths;
use crate::state::atomic;

pub const FORMAT_VERSION: u32 = 1;

/// Where a task is in its life: `queued` waits for a batch slot; `running`; `exited` (it ended
/// by itself, any code); `killed` (by `stop` or a signal); `timed_out` (by its `timeout_s`);
/// `failed` (it never started); `lost` (its supervisor vanished without recording an end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Exited,
    Killed,
    TimedOut,
    Failed,
    Lost,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Running,
        Status::Exited,
        Status::Killed,
        Status::TimedOut,
        Status::Failed,
        Status::Lost,
    ];

    /// Terminal: all but `queued` and `running`.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Killed => "killed",
            Status::TimedOut => "timed_out",
            Status::Failed => "failed",
            Status::Lost => "lost",
        }
    }
}

/// Why a task is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The process ended by itself.
    Exit,
    /// A signal from outside ended it.
    Signal,
    /// `stop` (or `restart`) ended it.
    Stop,
    /// Its supervisor was told to end (SIGTERM, SIGINT or SIGHUP) and stopped it.
    SupervisorSignal,
    /// It never started: bad command, bad workdir.
    SpawnError,
    /// The supervisor vanished without recording an end.
    SupervisorLost,
    /// It ran longer than its `timeout_s`.
    Timeout,
    /// The process named by `stop_with_pid` exited.
    OwnerExited,
    /// The supervisor failed (an internal error, said in `error`); it stopped the task and
    /// recorded the end instead of leaving it `lost`.
    SupervisorError,
}

/// One task's record as stored. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub format_version: u32,
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub shell: Option<String>,
    pub workdir: String,
    /// Names of the variables the payload set; their values are never stored.
    #[serde(default)]
    pub env_keys: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub grace_ms: u64,
    pub status: Status,
    pub run: u32,
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default)]
    pub pgid: Option<i32>,
    /// Start time of `pid` in clock ticks after boot: its identity with `boot_id`.
    #[serde(default)]
    pub pid_start_ticks: Option<u64>,
    #[serde(default)]
    pub supervisor_pid: Option<i32>,
    #[serde(default)]
    pub supervisor_start_ticks: Option<u64>,
    #[serde(default)]
    pub boot_id: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The signal that ended the process, as a name (`SIGTERM`).
    #[serde(default)]
    pub signal: Option<String>,
    #[serde(default)]
    pub core_dumped: bool,
    #[serde(default)]
    pub reason: Option<Reason>,
    /// Why it failed to start, or what happened to a lost task.
    #[serde(default)]
    pub error: Option<String>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub started_at_ms: Option<i64>,
    #[serde(default)]
    pub ended_at_ms: Option<i64>,
    /// Stop after this long (`timeout_s`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Stop when this process exits (`stop_with_pid`), as recognised by its start time.
    #[serde(default)]
    pub owner_pid: Option<i32>,
    #[serde(default)]
    pub owner_start_ticks: Option<u64>,
    /// The batch this run was queued in, when `start --concurrency` limited it.
    #[serde(default)]
    pub batch: Option<BatchSlot>,
    /// The conditions under which the run counts as ready (`start`'s `ready`).
    #[serde(default)]
    pub ready_spec: Option<crate::ready::ReadySpec>,
    /// `Some(true)` once every ready condition held; `Some(false)` until then.
    #[serde(default)]
    pub ready: Option<bool>,
    #[serde(default)]
    pub ready_at_ms: Option<i64>,
    /// The newest progress the task's output reported.
    #[serde(default)]
    pub progress: Option<crate::progress::Progress>,
}

/// A place in a batch started with `--concurrency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSlot {
    /// The batch's folder under `batches/`.
    pub id: String,
    /// Position in the batch: runs start in this order.
    pub index: usize,
    /// How many of the batch may run at once.
    pub concurrency: usize,
}

impl TaskRecord {
    /// Reads the record of a task; `None` when the task has none.
    pub fn read(paths: &TaskPaths) -> Result<Option<TaskRecord>> {
        let path = paths.record();
        match std::fs::read(&path) {
            Ok(bytes) => TaskRecord::parse(&path, &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::store("read the record", path, e)),
        }
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<TaskRecord> {
        let record: TaskRecord =
            serde_json::from_slice(bytes).map_err(|e| Error::CorruptRecord {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        // Pids 0, 1 and negative numbers would signal whole sessions or init: a record that
        // holds one did not come from us.
        let bad_pid = |pid: Option<i32>| pid.is_some_and(|p| p <= 1);
        if bad_pid(record.pid) || bad_pid(record.pgid) || bad_pid(record.supervisor_pid) {
            return Err(Error::CorruptRecord {
                path: path.to_path_buf(),
                detail: "it names pid 0, 1 or a negative pid".into(),
            });
        }
        Ok(record)
    }

    /// Replaces the record atomically and durably.
    pub fn write(&self, paths: &TaskPaths) -> Result<()> {
        self.replace(paths)?.sync()
    }

    /// Replaces the record atomically (temp file, fsync, rename); the caller syncs the
    /// directory with [`atomic::Replaced::sync`], possibly after answering.
    pub fn replace(&self, paths: &TaskPaths) -> Result<atomic::Replaced> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::store("encode the record", paths.record(), io::Error::other(e)))?;
        bytes.push(b'\n');
        atomic::replace(&paths.record(), &bytes)
    }

    /// Marks the record terminal at `ended_at_ms`.
    pub fn finish(&mut self, status: Status, reason: Reason, ended_at_ms: i64) {
        self.status = status;
        self.reason = Some(reason);
        self.ended_at_ms = Some(ended_at_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record written by format version 1. It must load forever: a supervisor started by
    /// an older build may still be writing when a newer build reads.
    #[test]
    fn version_1_record_still_loads() {
        let bytes = include_bytes!("../../tests/fixtures/record-v1.json");
        let record = TaskRecord::parse(Path::new("record-v1.json"), bytes).expect("v1 loads");
        assert_eq!(record.format_version, 1);
        assert_eq!(record.id, "legacy");
        assert_eq!(record.status, Status::Killed);
        assert_eq!(record.reason, Some(Reason::Stop));
        assert_eq!(record.signal.as_deref(), Some("SIGTERM"));
        assert_eq!(record.run, 3);
        assert_eq!(record.env_keys, ["PORT"]);
        assert_eq!(record.tags, ["web", "dev"]);
    }

    #[test]
    fn unknown_fields_from_a_newer_writer_are_ignored() {
        let mut value: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../tests/fixtures/record-v1.json"))
                .expect("json");
        value["added_by_a_future_version"] = serde_json::json!({"x": 1});
        let bytes = serde_json::to_vec(&value).expect("encode");
        assert!(TaskRecord::parse(Path::new("r.json"), &bytes).is_ok());
    }

    #[test]
    fn records_naming_dangerous_pids_are_refused() {
        for pid in [0, 1, -1] {
            let mut value: serde_json::Value =
                serde_json::from_slice(include_bytes!("../../tests/fixtures/record-v1.json"))
                    .expect("json");
            value["pgid"] = serde_json::json!(pid);
            let bytes = serde_json::to_vec(&value).expect("encode");
            let error = TaskRecord::parse(Path::new("r.json"), &bytes).expect_err("refused");
            assert_eq!(error.type_name(), "StoreError");
        }
        for garbage in [&b""[..], b"{", b"\xff\xfe", b"[]", b"{\"id\":1}"] {
            assert!(TaskRecord::parse(Path::new("r.json"), garbage).is_err());
        }
    }
}
