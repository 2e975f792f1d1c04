//! What the task commands answer: the envelope's `data` of `start`, `status`, `wait`, `stop`,
//! `restart`, `list`, `rm`, `prune`, `logs` and `events`.
//!
//! Every front end answers with these same types (their doc comments are the schemas'
//! descriptions); the lifecycle layer's results are turned into them.

use std::path::PathBuf;

use serde::Serialize;

use crate::output_log::{Cursor, CursorReset};
use crate::payload::frame::Frame;
use crate::payload::input::WaitMode;
use crate::payload::task::{ChildTask, LogInfo, Status, Task};

/// The answer of `status`, `wait` and `restart`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TaskAnswer {
    pub task_id: String,
    pub status: Status,
    /// The whole task, or only the `fields` asked for.
    pub task: Shown,
    /// `wait {until: {log}}`: the line that met the log condition, and its cursor (pass it
    /// as `until.after` to wait for the next such line). Absent otherwise.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub matched: Option<LogMatch>,
    /// Present only when a signal (SIGINT, SIGTERM, SIGHUP) interrupted the wait: its name.
    /// The tasks are as they were then (they run on); the exit code is 130.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<&'static str>,
}

impl TaskAnswer {
    pub fn new(task: Task) -> TaskAnswer {
        TaskAnswer::shown(task, None)
    }

    /// With only `fields` of the task, when given.
    pub fn shown(task: Task, fields: Option<&[String]>) -> TaskAnswer {
        TaskAnswer {
            task_id: task.id.clone(),
            status: task.status,
            task: Shown::new(task, fields),
            matched: None,
            interrupted: None,
        }
    }
}

/// A log line that met a condition.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LogMatch {
    /// The line, cut to the line budget (8 KiB).
    pub line: String,
    /// Just past the line: `after` for `logs`, `events` and `wait {until: {after}}`.
    pub cursor: Cursor,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StartAnswer {
    /// The whole task, or only the `fields` asked for.
    pub task: Shown,
    /// `true` when `if_running: "reuse"` answered the task that was already running;
    /// `false` otherwise (always present).
    pub reused: bool,
    /// Present only when a signal (SIGINT, SIGTERM, SIGHUP) interrupted the wait: its name.
    /// The tasks are as they were then (they run on); the exit code is 130.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<&'static str>,
    /// The beginning of the answered run's output (`"<run>:0"`): pass it as `after` to
    /// `logs` (or `logs --stream`, `events`) to read everything the run printed, missing
    /// nothing, however soon after `start` it printed it.
    pub next_cursor: Cursor,
}

impl StartAnswer {
    /// The task whole, or only `fields`; `reused` always said.
    pub fn new(task: Task, reused: bool, fields: Option<&[String]>) -> StartAnswer {
        StartAnswer {
            next_cursor: Cursor {
                run: task.run,
                offset: 0,
            },
            task: Shown::new(task, fields),
            reused,
            interrupted: None,
        }
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StopAnswer {
    pub task_id: String,
    pub status: Status,
    /// `true` when the task had already ended and nothing was signalled.
    pub already_terminal: bool,
    /// The whole task, or only the `fields` asked for.
    pub task: Shown,
    /// With `with_children`: the tasks started from inside it (and from inside those), as
    /// they are after their stop; `null` otherwise.
    pub children: Option<Vec<ChildTask>>,
}

impl StopAnswer {
    /// A stopped task, whole or only `fields`, with its descendants when they were stopped
    /// too.
    pub fn new(
        task: Task,
        already_terminal: bool,
        children: Option<Vec<ChildTask>>,
        fields: Option<&[String]>,
    ) -> StopAnswer {
        StopAnswer {
            task_id: task.id.clone(),
            status: task.status,
            already_terminal,
            task: Shown::new(task, fields),
            children,
        }
    }
}

/// What `wait` answers: one task, or several.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum WaitAnswer {
    /// `wait {id}`.
    One(Box<TaskAnswer>),
    /// `wait {ids}`.
    Several(SeveralAnswer),
}

impl WaitAnswer {
    /// `wait {id}`'s answer, the task whole or only `fields`.
    pub fn one(task: Task, fields: Option<&[String]>) -> WaitAnswer {
        WaitAnswer::One(Box::new(TaskAnswer::shown(task, fields)))
    }

    /// `wait {ids}`'s answer, each task whole or only `fields`.
    pub fn several(
        mode: WaitMode,
        tasks: Vec<Task>,
        ended: Vec<String>,
        fields: Option<&[String]>,
    ) -> WaitAnswer {
        WaitAnswer::Several(SeveralAnswer {
            mode,
            tasks: tasks.into_iter().map(|t| Shown::new(t, fields)).collect(),
            ended,
            interrupted: None,
        })
    }
}

/// `wait {ids, mode}`'s answer (and a wait by selector's).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SeveralAnswer {
    pub mode: WaitMode,
    /// Every task of `ids` (or that the selector chose), in that order, as it is now: whole,
    /// or only the `fields` asked for.
    pub tasks: Vec<Shown>,
    /// The ids of those that have ended: all of them with `all`, at least one with `any`.
    pub ended: Vec<String>,
    /// Present only when a signal (SIGINT, SIGTERM, SIGHUP) interrupted the wait: its name.
    /// The tasks are as they were then (they run on); the exit code is 130.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<&'static str>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ListAnswer {
    pub total: usize,
    /// Whole tasks, or only the `fields` asked for.
    pub tasks: Vec<Shown>,
    /// Task folders whose record could not be read, with the reason.
    pub unreadable: Vec<Unreadable>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Unreadable {
    pub id: String,
    pub error: String,
}

/// A task as listed: whole, or projected to some fields.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Shown {
    Whole(Box<Task>),
    Some(serde_json::Map<String, serde_json::Value>),
}

impl Shown {
    /// A task as `list` shows it: whole, or only `fields`, in the order asked.
    pub fn new(task: Task, fields: Option<&[String]>) -> Shown {
        let Some(fields) = fields else {
            return Shown::Whole(Box::new(task));
        };
        let mut whole = match serde_json::to_value(&task) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        Shown::Some(
            fields
                .iter()
                .filter_map(|f| whole.remove(f).map(|v| (f.clone(), v)))
                .collect(),
        )
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RmAnswer {
    pub task_id: String,
    pub removed: bool,
    /// The task's last status.
    pub status: Status,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PruneAnswer {
    pub removed: Vec<String>,
    pub total_removed: usize,
    /// Tasks that matched when `prune` looked but were left, each with why: `prune` never
    /// waits on a running task and never removes a run that began after it looked.
    pub skipped: Vec<Skipped>,
}

/// A task `prune` chose but left.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Skipped {
    pub id: String,
    pub reason: SkipReason,
    /// The same, in a sentence.
    pub message: String,
}

/// Why `prune` left a task it had chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A new run of it began after `prune` looked (a racing `start` or `restart`).
    Running,
    /// Another command held its lock (a start under way, or a reader for an instant).
    Busy,
    /// It ran again and ended after `prune` looked, or no longer matches the filters.
    Changed,
    /// A newer version of background-tasks recorded it; that version removes it.
    Newer,
    /// Removing its folder failed (see `message`).
    Failed,
}

impl SkipReason {
    /// What the reason means, as a sentence for `message`.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Running => "a new run began after prune looked; it was left running",
            SkipReason::Busy => "another command held its lock; it was left as it is",
            SkipReason::Changed => {
                "it ran again (or changed) after prune looked and no longer matched"
            }
            SkipReason::Newer => "a newer version of background-tasks recorded it",
            SkipReason::Failed => "its folder could not be removed",
        }
    }
}

/// `logs`: one shape whatever the log's size. `lines` and `next_cursor` are always at the
/// top; when the answer is cut (lines left out, or lines cut to the line budget), `kind` is
/// `"summary+artifact"` and `summary` and `artifact` (the whole log, as a file) are added
/// beside them, never moving them.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct LogsAnswer {
    /// `"inline"`: every line asked for, whole; `"summary+artifact"`: cut (see `omitted`,
    /// `truncated_lines`), with `summary` and `artifact`.
    #[schemars(extend("enum" = ["inline", "summary+artifact"]))]
    pub kind: &'static str,
    /// With `summary+artifact`: one sentence for people ("Showing 50 of 412 log lines for
    /// web.").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    pub task_id: String,
    pub run: u32,
    pub status: Status,
    /// Lines in the part of the log considered (the whole run, or after the cursor).
    pub total_lines: u64,
    pub shown_lines: u64,
    /// Lines asked for but left out, by where they are.
    pub omitted: Omitted,
    pub lines: Vec<String>,
    /// Pass as `after` to get only what comes next: after the last line shown, so `after`
    /// with `lines` pages forward through `omitted.after`.
    pub next_cursor: Cursor,
    /// Set when `after` could not be used as given (`new_run`, `truncated`).
    pub cursor_reset: Option<CursorReset>,
    /// Lines cut to the byte budget.
    pub truncated_lines: u64,
    pub grep: Option<String>,
    pub log: LogInfo,
    /// With `summary+artifact`: the whole log, as a file to read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
}

/// Lines of the part considered (matching `grep`, if given) that the answer left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Omitted {
    /// Before the first line shown: the earlier lines of a tail (`lines`, or the answer
    /// budget). Read them from the artifact, or page from an earlier cursor.
    pub before: u64,
    /// After the last line shown: past `lines` or the answer budget, after a cursor.
    /// Continue with `after: next_cursor`.
    pub after: u64,
}

/// The whole log, as a file to read.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Artifact {
    /// `task.<id>.logs`
    pub key: String,
    /// `"text"`.
    #[schemars(extend("const" = "text"))]
    pub kind: &'static str,
    pub absolute_path: PathBuf,
    /// Relative to the state directory.
    pub relative_path: PathBuf,
    pub size_bytes: u64,
}

/// One page of a task's frames: at most the answer budget (64 KiB) of them, each log line
/// cut to the line budget (8 KiB).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct EventsAnswer {
    pub task_id: String,
    pub frames: Vec<Frame>,
    /// Whether the run has ended (its `task.ended` frame is among or before these).
    pub ended: bool,
    /// Whether frames were left out of this answer: without `after`, the oldest, to keep it
    /// within its byte budget (page through them from the start with `after`); after a
    /// sequence or cursor, those past `lines` or the byte budget (continue with
    /// `after: next_sequence - 1`).
    pub has_more: bool,
    /// Log lines cut to the line budget (each says `…[<n> more bytes]`; `logs` points to
    /// the whole log).
    pub truncated_lines: u64,
    /// Pass `next_sequence - 1` as `after` to get only later frames.
    pub next_sequence: u64,
    /// The log position reached: `after` for the next call, like a line's cursor.
    pub next_cursor: Cursor,
    pub cursor_reset: Option<CursorReset>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AllEventsAnswer {
    pub frames: Vec<Frame>,
}

/// `serve`'s first (and only) line: where the page is. The server goes on until stopped.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ServeAnswer {
    /// The page, with the token that opens it (exchanged for a cookie on the first visit).
    pub url: String,
    /// Every task's changes as Server-Sent Events, with the token (`curl -N`).
    pub events_url: String,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// The server's process id (SIGTERM or SIGINT end it).
    pub pid: u32,
    /// With `--open`: whether the desktop's opener was started; `null` without `--open`.
    pub opened: Option<bool>,
    /// With `--open`: why the page could not be opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_error: Option<String>,
}
