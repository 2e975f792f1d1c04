//! The wire form of a task: what `status`, `list`, `start`, `wait` and `stop` answer.
//!
//! This is not the disk record ([`TaskRecord`]): it prints times as RFC 3339, signals as
//! names, derives `success` and `duration_ms`, and never carries a supervisor's internals.
//! Fields a user did not set are `null`, never invented. The disk's types convert to these
//! with `From`; where the disk forgives (a status word from a newer version), the wire
//! names only what this version documents.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::paths::TaskPaths;
use crate::payload::policy::RestartPolicy;
use crate::state::TaskRecord;
use crate::state::record::{self, ProgressRecord};
use crate::time::{now_ms, rfc3339};

/// Where a task is in its life: `queued` waits for a batch slot; `running`; `exited` (it ended
/// by itself, any code); `killed` (by `stop` or a signal); `timed_out` (by its `timeout_s`);
/// `failed` (it never started, or its restart policy gave up); `lost` (its supervisor vanished without recording an end).
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

/// A status word a newer version wrote answers `running`: the task is not known to have
/// ended. (Readers answer such a task `lost` once its supervisor is gone, without rewriting
/// its record.)
impl From<record::Status> for Status {
    fn from(status: record::Status) -> Status {
        match status {
            record::Status::Queued => Status::Queued,
            record::Status::Running | record::Status::Unknown => Status::Running,
            record::Status::Exited => Status::Exited,
            record::Status::Killed => Status::Killed,
            record::Status::TimedOut => Status::TimedOut,
            record::Status::Failed => Status::Failed,
            record::Status::Lost => Status::Lost,
        }
    }
}

/// Why a task is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
    /// Its `restart_policy` gave up after too many short runs in a row (status `failed`,
    /// with the last run's `exit_code` or `signal`).
    RestartLimit,
}

/// A reason word a newer version wrote answers `null`: this version cannot say why.
impl From<record::Reason> for Option<Reason> {
    fn from(reason: record::Reason) -> Option<Reason> {
        Some(match reason {
            record::Reason::Exit => Reason::Exit,
            record::Reason::Signal => Reason::Signal,
            record::Reason::Stop => Reason::Stop,
            record::Reason::SupervisorSignal => Reason::SupervisorSignal,
            record::Reason::SpawnError => Reason::SpawnError,
            record::Reason::SupervisorLost => Reason::SupervisorLost,
            record::Reason::Timeout => Reason::Timeout,
            record::Reason::OwnerExited => Reason::OwnerExited,
            record::Reason::SupervisorError => Reason::SupervisorError,
            record::Reason::RestartLimit => Reason::RestartLimit,
            record::Reason::Unknown => return None,
        })
    }
}

/// How far a task got, from its newest progress line.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Progress {
    pub current: Option<f64>,
    pub total: Option<f64>,
    /// 0 to 100; derived from `current / total` when only those are given.
    pub percent: Option<f64>,
    /// What the task said with it, cut to the line budget (8 KiB; a cut message ends with
    /// `…[<n> more bytes]`).
    pub message: Option<String>,
}

impl From<&ProgressRecord> for Progress {
    fn from(progress: &ProgressRecord) -> Progress {
        Progress {
            current: progress.current,
            total: progress.total,
            percent: progress.percent,
            // Cut to the line budget here too: a record written by an older supervisor
            // may hold a message of any size.
            message: progress.message.as_deref().map(crate::output_log::shorten),
        }
    }
}

/// One step of a task, as its step lines reported it: a line of output that is a JSON object
/// `{"type":"background-tasks.step","id":"build","parent":null,"title":"Build","status":"running","current":1,"total":3,"message":"..."}`
/// (only `type` and `id` are required; `capabilities.steps` says the form). Lines for a known
/// id merge into it. A step still running when the run ends is closed with the run's
/// outcome: `done` when the task exited with 0, `failed` otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Step {
    /// The step's id, as the task gave it.
    pub id: String,
    /// The id of its parent step, listed before it; `null` for a root. Taken when the step
    /// is first seen, and only when that parent is already known (else the step is a root),
    /// so the steps never form a cycle.
    pub parent: Option<String>,
    /// Its title (its id when none was given), cut to the line budget (8 KiB; a cut text
    /// ends with `…[<n> more bytes]`).
    pub title: String,
    pub status: StepStatus,
    pub current: Option<f64>,
    pub total: Option<f64>,
    /// 0 to 100, from `current / total`.
    pub percent: Option<f64>,
    /// Its newest message, cut to the line budget.
    pub message: Option<String>,
    /// When its first line was read (RFC 3339, UTC, milliseconds); `null` only in a record
    /// another version wrote.
    pub started_at: Option<String>,
    /// When it became done, failed or skipped; `null` while it runs.
    pub ended_at: Option<String>,
    /// `started_at` in milliseconds since the Unix epoch.
    pub started_at_ms: Option<i64>,
    /// `ended_at` in milliseconds since the Unix epoch.
    pub ended_at_ms: Option<i64>,
}

impl Step {
    /// A step of `record`'s run: once the run has ended, a step its record still says is
    /// running (its supervisor never closed it: the task was lost, or the record is an
    /// older version's) answers the run's outcome, as the supervisor closes them: `done`
    /// after exit 0, `failed` otherwise.
    fn of_run(step: &record::StepRecord, record: &TaskRecord) -> Step {
        let mut answered = Step::from(step);
        if record.status.is_terminal() && answered.status == StepStatus::Running {
            let succeeded = record.status == record::Status::Exited && record.exit_code == Some(0);
            answered.status = if succeeded {
                StepStatus::Done
            } else {
                StepStatus::Failed
            };
            answered.ended_at_ms = record.ended_at_ms;
            answered.ended_at = record.ended_at_ms.map(rfc3339);
        }
        answered
    }
}

/// A step's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    Done,
    Failed,
    Skipped,
}

impl From<&record::StepRecord> for Step {
    fn from(step: &record::StepRecord) -> Step {
        Step {
            id: step.id.clone(),
            parent: step.parent.clone(),
            // Cut here too: the record may come from a supervisor of another version.
            title: crate::output_log::shorten(step.title.as_deref().unwrap_or(&step.id)),
            status: match step.status {
                record::StepStatus::Done => StepStatus::Done,
                record::StepStatus::Failed => StepStatus::Failed,
                record::StepStatus::Skipped => StepStatus::Skipped,
                // A status word a newer version wrote reads running, as task statuses do.
                record::StepStatus::Running | record::StepStatus::Unknown => StepStatus::Running,
            },
            current: step.current,
            total: step.total,
            percent: step.percent,
            message: step.message.as_deref().map(crate::output_log::shorten),
            started_at: step.started_at_ms.map(rfc3339),
            ended_at: step.ended_at_ms.map(rfc3339),
            started_at_ms: step.started_at_ms,
            ended_at_ms: step.ended_at_ms,
        }
    }
}

/// The names of a task's fields, in the order answered (for `list {"fields"}`).
pub const FIELDS: [&str; 42] = [
    "id",
    "name",
    "command",
    "args",
    "shell",
    "workdir",
    "tags",
    "env_keys",
    "status",
    "run",
    "pid",
    "pgid",
    "exit_code",
    "signal",
    "core_dumped",
    "success",
    "reason",
    "error",
    "grace_s",
    "created_at",
    "started_at",
    "ended_at",
    "duration_ms",
    "created_at_ms",
    "started_at_ms",
    "ended_at_ms",
    "log",
    "progress",
    "steps",
    "steps_dropped",
    "ready",
    "timeout_s",
    "stop_with_pid",
    "stop_with_pids",
    "ports",
    "stopped",
    "parent",
    "children",
    "restart_policy",
    "restarts",
    "next_restart_at",
    "next_restart_at_ms",
];

/// `list {fields}`: names of a task's fields.
pub fn task_fields(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Answer only these fields of each task, in the task's order.",
        "type": ["array", "null"],
        "items": {"enum": FIELDS.as_slice()}
    })
}

/// One task as answered. Fields a user did not set are `null`, never invented.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Task {
    /// The task id, given or generated (`bg_` + 8 hex).
    pub id: String,
    /// The label given at start.
    pub name: Option<String>,
    /// The program, when started with `command`.
    pub command: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// The shell line, when started with `shell`.
    pub shell: Option<String>,
    /// The absolute working directory.
    pub workdir: String,
    /// Labels given at start.
    pub tags: Vec<String>,
    /// Names of the variables the payload set; values are never printed.
    pub env_keys: Vec<String>,
    pub status: Status,
    /// 1 for the first run, +1 for each restart.
    pub run: u32,
    /// The task's process id (it leads its own session and process group).
    pub pid: Option<i32>,
    /// Its process group id.
    pub pgid: Option<i32>,
    /// The exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the task (`"SIGTERM"`).
    pub signal: Option<String>,
    /// Whether it dumped core.
    pub core_dumped: bool,
    /// `true` only for `exited` with code 0.
    pub success: bool,
    /// Why it is terminal; `null` while it is queued or running.
    pub reason: Option<Reason>,
    /// Why the task failed to start or was lost.
    pub error: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when it is stopped.
    pub grace_s: f64,
    /// When the task was first created (RFC 3339, UTC, milliseconds).
    pub created_at: String,
    /// When the current run started.
    pub started_at: Option<String>,
    /// When the current run ended.
    pub ended_at: Option<String>,
    /// Run time so far, or until the end.
    pub duration_ms: Option<i64>,
    /// `created_at` as milliseconds since the Unix epoch (for tools that cannot parse
    /// fractional RFC 3339 seconds, such as jq 1.6).
    pub created_at_ms: i64,
    /// `started_at` in milliseconds since the Unix epoch.
    pub started_at_ms: Option<i64>,
    /// `ended_at` in milliseconds since the Unix epoch.
    pub ended_at_ms: Option<i64>,
    /// The current run's output.
    pub log: LogInfo,
    /// The newest progress the task printed, if any.
    pub progress: Option<Progress>,
    /// The current run's steps, from its step lines (see [`Step`]), flat, in the order first
    /// seen (a parent before its children); `null` when it printed none. At most 256 steps
    /// and 256 KiB of titles and messages.
    pub steps: Option<Vec<Step>>,
    /// Steps (and step lines) left out past those bounds, or in a line longer than 1 MiB;
    /// `null` when it printed no steps.
    pub steps_dropped: Option<u64>,
    /// Whether its `ready` conditions held; `null` when none were given.
    pub ready: Option<bool>,
    /// Stopped after this many seconds (`timeout_s`), if set.
    pub timeout_s: Option<f64>,
    /// Stopped when this process exits (`stop_with_pid`, as first given), if set.
    pub stop_with_pid: Option<i32>,
    /// Every process the task is stopped with: `stop_with_pid`, and those added by a
    /// `start` that reused the task with its own `stop_with_pid`. The task is stopped once
    /// the last of them has exited. `null` when it has none.
    pub stop_with_pids: Option<Vec<i32>>,
    /// TCP ports the task's processes listen on, as port numbers: looked up now by `status`
    /// (and by `list` when `fields` asks for `ports`, and by `wait` for a running task);
    /// elsewhere as its supervisor recorded them when the task became ready. `[]` once it
    /// has ended; `null` when not known.
    pub ports: Option<Vec<u16>>,
    /// Whether the task's process is stopped (state `T`: by SIGSTOP, SIGTSTP or a debugger)
    /// while its status is `running`; `stop` continues it so that it ends at once (`status`
    /// only; `null` elsewhere and once it has ended).
    pub stopped: Option<bool>,
    /// The task this one was started from (a `start` run inside that task's processes),
    /// or `null`.
    pub parent: Option<String>,
    /// The tasks started from inside this one, oldest first (`status` only; `null`
    /// elsewhere). `stop {"id", "with_children": true}` stops them with it.
    pub children: Option<Vec<ChildTask>>,
    /// When its supervisor restarts a run that ended (`start`'s `restart_policy`, every
    /// default filled in); `null` without one.
    pub restart_policy: Option<RestartPolicy>,
    /// Automatic restarts since a caller last started or restarted the task (a manual
    /// `restart` starts the count over).
    pub restarts: u32,
    /// While an automatic restart is pending (between two runs, `status` `running` with
    /// `pid` `null`): when the next run starts. `null` otherwise.
    pub next_restart_at: Option<String>,
    /// `next_restart_at` in milliseconds since the Unix epoch.
    pub next_restart_at_ms: Option<i64>,
}

/// A task started from inside another, as its parent's `status` lists it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ChildTask {
    pub id: String,
    pub status: Status,
    /// How it ended, when it exited.
    pub exit_code: Option<i32>,
}

/// Where the current run's output is.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct LogInfo {
    /// The absolute path of the log file (stdout and stderr, bytes as written).
    pub path: PathBuf,
    /// Its size now.
    pub size_bytes: u64,
}

impl Task {
    pub fn from_record(record: &TaskRecord, paths: &TaskPaths) -> Task {
        // The log's own size: a symlink planted in its place is never followed.
        let size_bytes = std::fs::symlink_metadata(paths.log())
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map_or(0, |m| m.len());
        Task::from_record_with_log(record, paths, size_bytes)
    }

    /// [`Task::from_record`] with the log's size already known (`list` reads it through
    /// the task's open folder).
    pub fn from_record_with_log(record: &TaskRecord, paths: &TaskPaths, size_bytes: u64) -> Task {
        let log = paths.log();
        let duration_ms = record
            .started_at_ms
            .map(|start| record.ended_at_ms.unwrap_or_else(now_ms) - start)
            .map(|d| d.max(0));
        Task {
            id: record.id.clone(),
            name: record.name.clone(),
            command: record.command.clone(),
            args: record.args.clone(),
            shell: record.shell.clone(),
            workdir: record.workdir.clone(),
            tags: record.tags.clone(),
            env_keys: record.env_keys.clone(),
            status: record.status.into(),
            run: record.run,
            pid: record.pid,
            pgid: record.pgid,
            exit_code: record.exit_code,
            signal: record.signal.clone(),
            core_dumped: record.core_dumped,
            success: record.status == record::Status::Exited && record.exit_code == Some(0),
            reason: record.reason.and_then(Into::into),
            error: record.error.clone(),
            grace_s: record.grace_ms as f64 / 1000.0,
            created_at: rfc3339(record.created_at_ms),
            started_at: record.started_at_ms.map(rfc3339),
            ended_at: record.ended_at_ms.map(rfc3339),
            duration_ms,
            created_at_ms: record.created_at_ms,
            started_at_ms: record.started_at_ms,
            ended_at_ms: record.ended_at_ms,
            log: LogInfo {
                path: log,
                size_bytes,
            },
            progress: record.progress.as_ref().map(Progress::from),
            steps: (!record.steps.is_empty() || record.steps_dropped > 0).then(|| {
                record
                    .steps
                    .iter()
                    .map(|s| Step::of_run(s, record))
                    .collect()
            }),
            steps_dropped: (!record.steps.is_empty() || record.steps_dropped > 0)
                .then_some(record.steps_dropped),
            ready: record.ready,
            timeout_s: record.timeout_ms.map(|ms| ms as f64 / 1000.0),
            stop_with_pid: record.owner_pid,
            stop_with_pids: {
                let owners = record.all_owners();
                (!owners.is_empty()).then(|| owners.iter().map(|o| o.pid).collect())
            },
            ports: if record.status.is_terminal() {
                Some(Vec::new())
            } else {
                record.ports.clone()
            },
            stopped: None,
            parent: record.parent.clone(),
            children: None,
            restart_policy: record
                .restart_policy
                .as_ref()
                .and_then(RestartPolicy::shown),
            restarts: record.restarts,
            next_restart_at: record.next_restart_at_ms.map(rfc3339),
            next_restart_at_ms: record.next_restart_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FIELDS` must name exactly what a task serializes to, in order.
    #[test]
    fn fields_match_the_wire_form() {
        let record: TaskRecord =
            serde_json::from_slice(include_bytes!("../../tests/fixtures/record-v1.json"))
                .expect("fixture");
        let home = tempfile::tempdir().expect("a temp dir");
        let state = crate::paths::StateDir::open(home.path().join("state")).expect("state dir");
        let paths = state.task(&crate::paths::TaskId::parse("legacy").expect("an id"));
        let value = serde_json::to_value(Task::from_record(&record, &paths)).expect("encode");
        let keys: Vec<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, FIELDS);
    }
}
