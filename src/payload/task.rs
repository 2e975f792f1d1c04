//! The wire form of a task: what `status`, `list`, `start`, `wait` and `stop` answer.
//!
//! This is not the disk record ([`TaskRecord`]): it prints times as RFC 3339, signals as
//! names, derives `success` and `duration_ms`, and never carries a supervisor's internals.
//! Fields a user did not set are `null`, never invented.

use std::path::PathBuf;

use serde::Serialize;

use crate::paths::TaskPaths;
use crate::state::{Reason, Status, TaskRecord};
use crate::time::{now_ms, rfc3339};

/// The names of a task's fields, in the order answered (for `list {"fields"}`).
pub const FIELDS: [&str; 29] = [
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
    "log",
    "progress",
    "ready",
    "timeout_s",
    "stop_with_pid",
    "ports",
];

/// One task as answered.
#[derive(Debug, Serialize)]
pub struct Task {
    pub id: String,
    pub name: Option<String>,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub shell: Option<String>,
    pub workdir: String,
    pub tags: Vec<String>,
    /// Names of the variables the payload set; values are never printed.
    pub env_keys: Vec<String>,
    pub status: Status,
    /// 1 for the first run, +1 for each restart.
    pub run: u32,
    pub pid: Option<i32>,
    pub pgid: Option<i32>,
    pub exit_code: Option<i32>,
    /// The signal that ended the task (`"SIGTERM"`).
    pub signal: Option<String>,
    pub core_dumped: bool,
    /// `true` only for `exited` with code 0.
    pub success: bool,
    pub reason: Option<Reason>,
    /// Why the task failed to start or was lost.
    pub error: Option<String>,
    pub grace_s: f64,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Run time so far, or until the end.
    pub duration_ms: Option<i64>,
    pub log: LogInfo,
    pub progress: Option<serde_json::Value>,
    pub ready: Option<bool>,
    /// Stopped after this many seconds (`timeout_s`), if set.
    pub timeout_s: Option<f64>,
    /// Stopped when this process exits (`stop_with_pid`), if set.
    pub stop_with_pid: Option<i32>,
    /// TCP ports the task's processes listen on (`status` only; `null` elsewhere).
    pub ports: Option<Vec<u16>>,
}

/// Where the current run's output is.
#[derive(Debug, Serialize)]
pub struct LogInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
}

impl Task {
    pub fn from_record(record: &TaskRecord, paths: &TaskPaths) -> Task {
        let log = paths.log();
        let size_bytes = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
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
            status: record.status,
            run: record.run,
            pid: record.pid,
            pgid: record.pgid,
            exit_code: record.exit_code,
            signal: record.signal.clone(),
            core_dumped: record.core_dumped,
            success: record.status == Status::Exited && record.exit_code == Some(0),
            reason: record.reason,
            error: record.error.clone(),
            grace_s: record.grace_ms as f64 / 1000.0,
            created_at: rfc3339(record.created_at_ms),
            started_at: record.started_at_ms.map(rfc3339),
            ended_at: record.ended_at_ms.map(rfc3339),
            duration_ms,
            log: LogInfo {
                path: log,
                size_bytes,
            },
            progress: record
                .progress
                .as_ref()
                .and_then(|p| serde_json::to_value(p).ok()),
            ready: record.ready,
            timeout_s: record.timeout_ms.map(|ms| ms as f64 / 1000.0),
            stop_with_pid: record.owner_pid,
            ports: None,
        }
    }
}

/// The TCP ports a running task's processes listen on: its process group, and processes
/// its supervisor adopted. Reads /proc, so only `status` asks for it.
pub fn listening_ports(record: &TaskRecord) -> Vec<u16> {
    if record.status.is_terminal() {
        return Vec::new();
    }
    let pids: Vec<i32> = crate::procfs::all()
        .into_iter()
        .filter(|p| {
            record.pgid.is_some_and(|g| p.pgrp == g) || record.supervisor_pid == Some(p.ppid)
        })
        .map(|p| p.pid)
        .collect();
    crate::ready::ports_of(&pids)
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
        let paths = TaskPaths {
            dir: std::path::PathBuf::from("/nonexistent"),
        };
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
