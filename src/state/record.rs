//! The on-disk task record (`task.json`), its own versioned type: the DISK contract.
//!
//! A supervisor started by one version may still be writing when a newer version reads, so
//! fields are only ever added (with defaults), never renamed or removed. Disk types forgive
//! what wire types refuse: no type here denies unknown fields. Fields this version does not
//! know are kept as read (`extra`, at the top and in every nested object), so a record a
//! newer version wrote keeps them when this one rewrites it; a status or reason word this
//! version does not know reads as [`Status::Unknown`] / [`Reason::Unknown`].
//!
//! `format_version` changes only for a change an older reader must not misread. A record
//! this version does not fully understand (a higher `format_version`, or an unknown status
//! or reason) is never rewritten by it: [`TaskRecord::replace`] refuses it, and readers
//! answer what they can from it without reconciling it ([`TaskRecord::understood`]).
//!
//! `tests/fixtures/record-v1.json` must always load (a unit test parses it; an integration
//! test reads it through the binary).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::paths::{TaskPaths, names};
use crate::procfs::Identity;
use crate::state::atomic;
use crate::state::folder::Folder;

/// The record format this version reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Unknown fields, kept as read.
pub type Extra = Map<String, Value>;

/// Where a task is in its life, as stored: `queued` waits for a batch slot; `running`;
/// `exited` (it ended by itself, any code); `killed` (by `stop` or a signal); `timed_out` (by
/// its `timeout_s`); `failed` (it never started); `lost` (its supervisor vanished without
/// recording an end). The wire's status is `payload::task::Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Exited,
    Killed,
    TimedOut,
    Failed,
    Lost,
    /// A word a newer version wrote. Not known to have ended; a record holding it is not
    /// [`TaskRecord::understood`], so it is never rewritten here.
    #[serde(other)]
    Unknown,
}

impl Status {
    /// Terminal: known to have ended (all but `queued`, `running` and an unknown word).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Queued | Status::Running | Status::Unknown)
    }
}

/// Why a task is terminal, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Its `restart_policy` gave up: too many short runs in a row (status `failed`; the
    /// last run's exit code or signal is kept).
    RestartLimit,
    /// A word a newer version wrote.
    #[serde(other)]
    Unknown,
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
    /// Every process the task is stopped with, once a second one was added (`stop_with_pid`
    /// given again by a `start` that reused the run): the task is stopped when the last of
    /// them exits. Empty while `owner_pid` is the only one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<OwnerRecord>,
    /// The TCP ports the run's processes listened on when its supervisor looked (when the
    /// run became ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    /// The batch this run was queued in, when `start --concurrency` limited it.
    #[serde(default)]
    pub batch: Option<BatchSlot>,
    /// The task this one was started from (its id, from the environment its supervisor
    /// gave it), when `start` ran inside a task of the same state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The conditions under which the run counts as ready (`start`'s `ready`).
    #[serde(default)]
    pub ready_spec: Option<ReadySpecRecord>,
    /// `Some(true)` once every ready condition held; `Some(false)` until then.
    #[serde(default)]
    pub ready: Option<bool>,
    #[serde(default)]
    pub ready_at_ms: Option<i64>,
    /// The newest progress the task's output reported.
    #[serde(default)]
    pub progress: Option<ProgressRecord>,
    /// The run's steps, as its step lines reported them (`crate::steps`), in the order first
    /// seen (a parent before its children).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    /// Steps (and step lines) left out past the bounds of `crate::steps`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub steps_dropped: u64,
    /// When and how the supervisor restarts the task's runs itself (`start`'s
    /// `restart_policy`, every default filled in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicyRecord>,
    /// Automatic restarts since a caller last started or restarted the task (this run
    /// included, when it is one).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    /// While an automatic restart is pending: when the run starts. The record then says
    /// `running` with no `pid`; the previous run's end is in the journal and its output in
    /// `output.<run>.log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_at_ms: Option<i64>,
    /// Fields this version does not know, kept as read.
    #[serde(flatten)]
    pub extra: Extra,
}

fn is_zero<N: Default + PartialEq>(n: &N) -> bool {
    *n == N::default()
}

/// `restart_policy` as stored (the wire's form, which refuses unknown fields, is
/// `payload::policy::RestartPolicy`). `start` stores every value; a value missing here
/// (a record written otherwise) takes its default when used
/// (`RestartPolicyRecord::effective`), and is not added when the record is rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartPolicyRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<RestartOn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_uptime_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffRecord>,
    /// Fields this version does not know, kept as read.
    #[serde(flatten)]
    pub extra: Extra,
}

/// When a run is restarted, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartOn {
    Never,
    Failure,
    Always,
    /// A word a newer version wrote: this version does not restart.
    #[serde(other)]
    Unknown,
}

/// The delay before an automatic restart, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackoffRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_s: Option<f64>,
    /// Fields this version does not know, kept as read.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A process a task is stopped with (`stop_with_pid`), as recognised by its start time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    pub pid: i32,
    #[serde(default)]
    pub start_ticks: Option<u64>,
    /// Fields this version does not know, kept as read.
    #[serde(flatten)]
    pub extra: Extra,
}

impl TaskRecord {
    /// Every process the task is stopped with: `owners`, or `owner_pid` alone.
    pub fn all_owners(&self) -> Vec<OwnerRecord> {
        if !self.owners.is_empty() {
            return self.owners.clone();
        }
        self.owner_pid
            .map(|pid| OwnerRecord {
                pid,
                start_ticks: self.owner_start_ticks,
                extra: Extra::new(),
            })
            .into_iter()
            .collect()
    }
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
    /// Fields this version does not know, kept as read.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ready` as stored: the conditions under which a run counts as ready. The wire's form,
/// which refuses unknown fields, is `ready::ReadySpec`; they convert both ways with `From`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadySpecRecord {
    /// A regular expression a line of the current run's output must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// A TCP port on this machine that must accept connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// An `http://` URL that must answer with a 2xx or 3xx status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// How long readiness may take, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// Fields this version does not know, kept as read.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Progress as stored: how far a task got, from its newest progress line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressRecord {
    #[serde(default)]
    pub current: Option<f64>,
    #[serde(default)]
    pub total: Option<f64>,
    /// 0 to 100.
    #[serde(default)]
    pub percent: Option<f64>,
    #[serde(default)]
    pub message: Option<String>,
    /// Fields this version does not know, kept as read.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One step as stored (`crate::steps`): flat, with its parent's id. Only `id` is required
/// and absent fields stay absent when rewritten, so that a record whose steps a newer
/// version wrote in another shape still loads and keeps them as they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    /// The id of a step listed before it; `None` for a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// `None` only in a record another version wrote (the wire then answers the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default = "StepStatus::unknown")]
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// 0 to 100, from `current / total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When its first line was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    /// When it last became done, failed or skipped; `None` while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<i64>,
    /// Fields this version does not know, kept as read.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A step's status as stored; a word a newer version wrote reads `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    Done,
    Failed,
    Skipped,
    #[serde(other)]
    Unknown,
}

impl StepStatus {
    fn unknown() -> StepStatus {
        StepStatus::Unknown
    }

    /// Whether the step has ended (done, failed, skipped).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Done | StepStatus::Failed | StepStatus::Skipped
        )
    }
}

impl From<crate::progress::Progress> for ProgressRecord {
    fn from(progress: crate::progress::Progress) -> ProgressRecord {
        ProgressRecord {
            current: progress.current,
            total: progress.total,
            percent: progress.percent,
            message: progress.message,
            extra: Extra::new(),
        }
    }
}

/// Whether record bytes have the shape a crash leaves when the disk did not get all of
/// them: nothing, zeros where pages were never written (our writer never writes a NUL: JSON
/// escapes it), or JSON cut short.
fn looks_torn(bytes: &[u8]) -> bool {
    bytes.is_empty()
        || bytes.contains(&0)
        || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err_and(|e| e.is_eof())
}

impl TaskRecord {
    /// Reads the record of a task; `None` when the task has none (or no folder).
    pub fn read(paths: &TaskPaths) -> Result<Option<TaskRecord>> {
        match paths.open()? {
            Some(folder) => TaskRecord::read_in(&folder),
            None => Ok(None),
        }
    }

    /// Reads the record in a task's open folder; `None` when it has none.
    ///
    /// A record that does not parse is a `StoreError` (RELIABILITY 10), unless it was
    /// written before the running boot began and has the shape a crash leaves: a run's
    /// first `running` record is not synced before `start` answers, so a crash in that
    /// moment can leave it empty, zero-filled or cut short ([`looks_torn`]). That task went
    /// down with the machine, and it reads `lost` ([`TaskRecord::torn_by_crash`]). Any other
    /// unreadable record (wrong types, garbage) stays a `StoreError`, whenever written.
    pub fn read_in(folder: &Folder) -> Result<Option<TaskRecord>> {
        let Some(bytes) = folder.read(names::RECORD)? else {
            return Ok(None);
        };
        match TaskRecord::parse(&folder.file_path(names::RECORD), &bytes) {
            Ok(record) => Ok(Some(record)),
            Err(error) => {
                let written_ms = folder.modified_ms(names::RECORD);
                let booted_ms = crate::procfs::boot_time_ms();
                match written_ms.zip(booted_ms) {
                    Some((written, booted)) if written < booted && looks_torn(&bytes) => {
                        Ok(Some(TaskRecord::torn_by_crash(folder, written)))
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// The record of a task whose record a crash left unreadable (empty, zero-filled or cut
    /// short), last written at `written_ms`, before the running boot: `lost`, with what
    /// could be known. Its id is its folder's name; its run follows the newest run's log
    /// kept in the folder. What it ran is not known, so it cannot be restarted, only
    /// started again. Never written back: the next run replaces it.
    fn torn_by_crash(folder: &Folder, written_ms: i64) -> TaskRecord {
        let id = folder
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kept = folder
            .names()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|name| names::old_log_run(name.to_str()?))
            .max()
            .unwrap_or(0);
        let mut record = TaskRecord::first_run(id, String::new(), 0, written_ms);
        record.run = kept.saturating_add(1);
        record.started_at_ms = Some(written_ms);
        record.finish(Status::Lost, Reason::SupervisorLost, written_ms);
        record.error = Some(format!(
            "the machine went down while this run's record was being written ({}, before the \
             running boot began), and it could not be read back: the task and its supervisor \
             went down with it; what it ran is not known",
            crate::time::rfc3339(written_ms)
        ));
        record
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
    /// directory with [`atomic::Replaced::sync`], possibly after answering. A record this
    /// version does not fully understand is refused: it is never rewritten here.
    pub fn replace(&self, paths: &TaskPaths) -> Result<atomic::Replaced> {
        let bytes = self.encode()?;
        let folder = paths.open()?.ok_or_else(|| {
            Error::store(
                "replace",
                paths.record(),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
        atomic::replace(&folder, names::RECORD, &bytes)
    }

    /// Replaces the record in a task's open folder, atomically and durably.
    pub fn write_in(&self, folder: &Folder) -> Result<()> {
        atomic::replace(folder, names::RECORD, &self.encode()?)?.sync()
    }

    /// Writes the record into a temp file beside the record, not yet renamed over it (see
    /// [`atomic::stage`]).
    pub fn stage_in(&self, folder: &Folder) -> Result<atomic::Staged> {
        atomic::stage(folder, names::RECORD, &self.encode()?)
    }

    /// The record as it is stored. A record this version does not fully understand is
    /// refused: it is never rewritten here.
    pub fn encode(&self) -> Result<Vec<u8>> {
        if !self.understood() {
            return Err(self.newer());
        }
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::store("encode the record", names::RECORD, io::Error::other(e)))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Marks the record terminal at `ended_at_ms`.
    pub fn finish(&mut self, status: Status, reason: Reason, ended_at_ms: i64) {
        self.status = status;
        self.reason = Some(reason);
        self.ended_at_ms = Some(ended_at_ms);
    }

    /// A task's first run, from what defines it (`id`, `workdir`, grace period, creation
    /// time); everything else is empty or unset until the caller fills it in, and every
    /// field of a run is as [`TaskRecord::begin_run`] leaves it.
    pub fn first_run(id: String, workdir: String, grace_ms: u64, created_at_ms: i64) -> Self {
        let mut record = TaskRecord {
            format_version: FORMAT_VERSION,
            id,
            name: None,
            command: None,
            args: Vec::new(),
            shell: None,
            workdir,
            env_keys: Vec::new(),
            tags: Vec::new(),
            grace_ms,
            status: Status::Running,
            run: 1,
            pid: None,
            pgid: None,
            pid_start_ticks: None,
            supervisor_pid: None,
            supervisor_start_ticks: None,
            boot_id: None,
            exit_code: None,
            signal: None,
            core_dumped: false,
            reason: None,
            error: None,
            created_at_ms,
            started_at_ms: None,
            ended_at_ms: None,
            timeout_ms: None,
            owner_pid: None,
            owner_start_ticks: None,
            owners: Vec::new(),
            ports: None,
            batch: None,
            parent: None,
            ready_spec: None,
            ready: None,
            ready_at_ms: None,
            progress: None,
            steps: Vec::new(),
            steps_dropped: 0,
            restart_policy: None,
            restarts: 0,
            next_restart_at_ms: None,
            extra: Extra::new(),
        };
        record.begin_run();
        record
    }

    /// Clears what belongs to one run, for the next: the process, its supervisor, how it
    /// ended, its times, readiness (unready again when there are conditions), progress and steps.
    /// What defines the task (command, workdir, env names, tags, limits, conditions, its
    /// batch slot) stays. Every launch of a run goes through this (`start`, `restart`);
    /// `run` and `created_at_ms` are set by the launch, which knows the previous run.
    pub fn begin_run(&mut self) {
        self.status = Status::Running;
        self.pid = None;
        self.pgid = None;
        self.pid_start_ticks = None;
        self.supervisor_pid = None;
        self.supervisor_start_ticks = None;
        self.boot_id = None;
        self.exit_code = None;
        self.signal = None;
        self.core_dumped = false;
        self.reason = None;
        self.error = None;
        self.started_at_ms = None;
        self.ended_at_ms = None;
        self.ready = self.ready_spec.as_ref().map(|_| false);
        self.ready_at_ms = None;
        self.progress = None;
        self.steps = Vec::new();
        self.steps_dropped = 0;
        self.ports = None;
        self.next_restart_at_ms = None;
    }

    /// The supervisor the record names, as recognised by its start time; `None` before the
    /// supervisor has written its first record.
    pub fn supervisor(&self) -> Option<Identity> {
        self.supervisor_pid
            .zip(self.supervisor_start_ticks)
            .map(|(pid, start_ticks)| Identity { pid, start_ticks })
    }

    /// Whether the supervisor the record names is the running process it was.
    pub fn supervisor_alive(&self) -> bool {
        self.supervisor().is_some_and(|s| s.is_alive())
    }

    /// Whether the record names a supervisor that is no longer running (a record that
    /// names none yet, while `start` holds the lock, is not known dead).
    pub fn supervisor_dead(&self) -> bool {
        self.supervisor().is_some_and(|s| !s.is_alive())
    }

    /// Whether this version fully understands the record: its format is not newer and its
    /// status and reason are words this version knows. Only such a record is rewritten.
    pub fn understood(&self) -> bool {
        self.format_version <= FORMAT_VERSION
            && self.status != Status::Unknown
            && self.reason != Some(Reason::Unknown)
    }

    /// Why the record is not [`TaskRecord::understood`], as the error that refuses to act
    /// on it.
    pub fn newer(&self) -> Error {
        let what = if self.format_version > FORMAT_VERSION {
            format!(
                "record format {}; this version reads {FORMAT_VERSION}",
                self.format_version
            )
        } else {
            "a status or reason this version does not know".to_owned()
        };
        Error::NewerRecord {
            id: self.id.clone(),
            what,
        }
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

    /// Fields and words a newer version may write: every optional field set, unknown
    /// fields at the top and inside each nested object, an unknown status and reason.
    fn newer_record() -> serde_json::Value {
        let mut value: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../tests/fixtures/record-v1.json"))
                .expect("json");
        value["top_level_future"] = serde_json::json!({"x": [1, 2]});
        value["batch"] =
            serde_json::json!({"id": "b_1", "index": 0, "concurrency": 1, "priority": 3});
        value["ready_spec"] = serde_json::json!({"log": "up", "port": 80, "http": "http://h/", "timeout_s": 1.5, "tcp_half_open": true});
        value["ready"] = serde_json::json!(true);
        value["ready_at_ms"] = serde_json::json!(951782401500_i64);
        value["progress"] = serde_json::json!({"current": 1.0, "total": 2.0, "percent": 50.0, "message": "m", "eta_s": 9});
        value["timeout_ms"] = serde_json::json!(1000);
        value["owner_pid"] = serde_json::json!(4242);
        value["owner_start_ticks"] = serde_json::json!(7);
        value
    }

    #[test]
    fn unknown_fields_survive_a_rewrite_at_every_level() {
        let value = newer_record();
        let bytes = serde_json::to_vec(&value).expect("encode");
        let record = TaskRecord::parse(Path::new("r.json"), &bytes).expect("loads");
        assert!(record.understood());
        let rewritten = serde_json::to_value(&record).expect("encode");
        for (path, key) in [
            ("", "top_level_future"),
            ("/batch", "priority"),
            ("/ready_spec", "tcp_half_open"),
            ("/progress", "eta_s"),
        ] {
            let at = |v: &serde_json::Value| v.pointer(path).and_then(|o| o.get(key)).cloned();
            assert_eq!(at(&rewritten), at(&value), "{path}/{key}");
            assert!(at(&rewritten).is_some(), "{path}/{key}");
        }
    }

    #[test]
    fn words_and_formats_of_a_newer_version_are_read_but_never_rewritten() {
        for (key, word) in [("status", "paused"), ("reason", "quota_exceeded")] {
            let mut value = newer_record();
            value[key] = serde_json::json!(word);
            let bytes = serde_json::to_vec(&value).expect("encode");
            let record = TaskRecord::parse(Path::new("r.json"), &bytes).expect("loads");
            assert!(!record.understood(), "{key}: {word}");
            let refused = record.encode().expect_err("never rewritten");
            assert!(
                refused.full_message().contains("newer version"),
                "{refused}"
            );
        }
        let record = TaskRecord::parse(
            Path::new("r.json"),
            &serde_json::to_vec(&newer_record()).expect("encode"),
        )
        .expect("loads");
        assert_eq!(record.status, Status::Killed);
        let mut newer = newer_record();
        newer["format_version"] = serde_json::json!(2);
        let record = TaskRecord::parse(
            Path::new("r.json"),
            &serde_json::to_vec(&newer).expect("encode"),
        )
        .expect("a format 2 record loads");
        assert!(!record.understood());
        assert!(record.newer().full_message().contains("record format 2"));
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

    #[test]
    fn only_what_a_crash_leaves_looks_torn() {
        let whole = br#"{"format_version":1,"id":"t","status":"running"}"#;
        assert!(looks_torn(b""));
        assert!(looks_torn(&[0; 512]));
        assert!(looks_torn(&whole[..whole.len() / 2]));
        let mut zero_tail = whole[..20].to_vec();
        zero_tail.resize(4096, 0);
        assert!(looks_torn(&zero_tail));
        assert!(!looks_torn(whole), "whole JSON (of any types) is not torn");
        assert!(!looks_torn(br#"{"format_version":"one"}"#));
        assert!(!looks_torn(b"not json"));
        assert!(!looks_torn(b"[1,2] trailing"));
    }
}
