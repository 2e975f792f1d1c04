//! Stream frames: one JSON object per line with `--stream`, and the items of `events`.
//!
//! `{"type":"task.log.line","task_id":"web","sequence":12,"timestamp":"...","data":{...}}`
//! (the seed tool's frame keys). Types:
//! - `task.status`: `{status, run, ...}`, a snapshot and then each change;
//! - `task.log.line`: `{line, cursor}`, one line of output; pass `cursor` as `after` to
//!   resume after it;
//! - `task.ended`: `{status, exit_code, signal, reason}`; a follow ends after it.
//!
//! `sequence` numbers a run's frames in one order, its lifecycle entries and log lines as
//! they happened, from `(run - 1) * 2^32 + 1`: a frame's number never changes and never
//! repeats across restarts, so `after: <sequence>` resumes, and a number from an earlier
//! run starts over at the current run (with `cursor_reset: "new_run"`). `timestamp` is when
//! a lifecycle entry was recorded, or when a log line was read (the log holds no times).

use serde::Serialize;
use serde_json::Value;

/// One frame: `{type, task_id, sequence, timestamp, data}`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Frame {
    /// `task.status`, `task.log.line`, `task.progress`, `task.ready` or `task.ended`.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["task.status", "task.log.line", "task.progress", "task.ready", "task.ended"]))]
    pub kind: String,
    /// The task the frame is about.
    pub task_id: String,
    /// The frame's place in its task's timeline; never repeats across restarts.
    pub sequence: u64,
    /// When it was recorded (a lifecycle entry) or read (a log line), RFC 3339 UTC.
    pub timestamp: String,
    /// By type: `task.status` `{status, run, pid}` (or a whole task as a snapshot);
    /// `task.log.line` `{line, cursor}`; `task.progress` `{current, total, percent,
    /// message}`; `task.ready` `{ready, run}`; `task.ended` `{status, run, exit_code,
    /// signal, reason}`.
    #[schemars(extend("type" = "object"))]
    pub data: Value,
}
