//! Stream frames: one JSON object per line with `--stream`, and the items of `events`.
//!
//! `{"type":"task.log.line","task_id":"web","sequence":12,"timestamp":"...","data":{...}}`
//! (the seed tool's frame keys). Types:
//! - `task.status`: `{status, run, ...}`, a snapshot and then each change;
//! - `task.log.line`: `{line, cursor}`, one line of output; pass `cursor` as `after` to
//!   resume after it;
//! - `task.ended`: `{status, exit_code, signal, reason}`; a follow ends after it.
//!
//! `sequence` numbers a task's frames in one order: its lifecycle entries of earlier runs,
//! then the current run's entries and log lines as they happened. Numbers are stable within
//! a run, so `after: <sequence>` resumes a stream; a restart starts a new run whose lines
//! replace the old run's. `timestamp` is when a lifecycle entry was recorded, or when a
//! log line was read (the log itself holds no times).

use serde::Serialize;
use serde_json::Value;

/// One frame.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    #[serde(rename = "type")]
    pub kind: String,
    pub task_id: String,
    pub sequence: u64,
    pub timestamp: String,
    pub data: Value,
}
