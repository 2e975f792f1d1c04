//! The one error type of the envelope path.
//!
//! Every failure a user can see is a variant here. Each variant knows its envelope `type`
//! (the names scripts written for the seed tool match on), the next step to suggest
//! (`details.hint`), whether trying again can help (`details.retryable`) and any extra
//! details. Messages are lowercase and never repeat their `#[source]`; the envelope joins the
//! chain so agents read the whole cause in one string.

use std::io;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

/// Exit code of every failed command.
pub const EXIT_FAILURE: u8 = 1;

/// Everything that can go wrong in a command, as the envelope reports it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or the payload is wrong.
    #[error("{message}")]
    CommandInput {
        message: String,
        hint: String,
        /// JSON path of the bad value, when the payload is at fault.
        path: Option<String>,
    },

    #[error("task not found: {id}")]
    TaskNotFound { id: String },

    /// A task this call saw (or started) whose folder another caller's `rm` or `prune`
    /// removed before its end could be read: the envelope type is still `TaskNotFound`,
    /// the message and `details.removed_meanwhile` say what happened.
    #[error("task {id} was removed by another caller's rm or prune while this call waited for it")]
    TaskRemoved { id: String },

    #[error("task {id} is already running{}{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), if differences.is_empty() { String::new() } else { format!(" with a different {}", differences.join(", ")) })]
    TaskAlreadyRunning {
        id: String,
        pid: Option<i64>,
        /// With `if_running: "reuse"`: what differs from the running task.
        differences: Vec<String>,
        /// A hint for this situation, instead of the general one.
        hint: Option<&'static str>,
    },

    #[error("task {id} is still {status} after waiting {timeout_s}s")]
    TaskWaitTimedOut {
        id: String,
        status: String,
        timeout_s: f64,
        /// Where the task's log stood when the wait ran out (after its last whole line):
        /// `logs {after}` reads what it printed since. `None` until the lifecycle looked.
        cursor: Option<crate::output_log::Cursor>,
    },

    #[error("task {id} was not ready: {why}")]
    TaskNotReady {
        id: String,
        /// "it ended first" or "the time ran out".
        why: &'static str,
        status: String,
        exit_code: Option<i32>,
        /// The last lines of its output, to see why at once.
        log_tail: Vec<String>,
    },

    #[error("port {port} is already in use{}", match (pid, process) { (Some(pid), Some(name)) => format!(" by {name} (pid {pid})"), (Some(pid), None) => format!(" by pid {pid}"), _ => String::new() })]
    PortInUse {
        port: u16,
        pid: Option<i32>,
        process: Option<String>,
        /// The task of ours that holds it, if any.
        task_id: Option<String>,
    },

    /// `start`'s `rate_limit`: this id was spawned `max` times within the window already.
    #[error(
        "task {id} was started {max} times in the last {per_s}s (its rate_limit); the next start is allowed in {retry_after_s}s"
    )]
    StartThrottled {
        id: String,
        max: u64,
        per_s: f64,
        /// Seconds until the oldest spawn of the window leaves it.
        retry_after_s: f64,
    },

    #[error("could not start task {id}: {cause}")]
    SpawnFailed {
        id: String,
        /// What could not be used: "command `x`", "workdir `/y`", "supervisor".
        cause: String,
        #[source]
        source: io::Error,
    },

    #[error("could not {action} {}", path.display())]
    Store {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A symlink where the state directory holds only files and folders of its own: nothing
    /// is ever opened through one (RELIABILITY 33).
    #[error("refusing {}: it is a symlink, and nothing in the state directory is opened through one", path.display())]
    Symlink { path: PathBuf },

    #[error("the record {} is unreadable: {detail}", path.display())]
    CorruptRecord { path: PathBuf, detail: String },

    #[error("task {id} was recorded by a newer version of background-tasks ({what})")]
    NewerRecord { id: String, what: String },

    #[error("refusing the state directory {}: {reason}", path.display())]
    UnsafeStateDir { path: PathBuf, reason: String },

    #[error("could not signal task {id}: {reason}")]
    SignalRefused { id: String, reason: String },

    /// A bug: a panic caught by the last-resort hook.
    #[error("internal error: {message}")]
    Internal {
        /// Where it happened (`src/x.rs:12`).
        location: String,
        message: String,
    },
}

impl Error {
    /// A payload or command-line error with a hint and, where known, the JSON path.
    pub fn input(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::CommandInput {
            message: message.into(),
            hint: hint.into(),
            path: None,
        }
    }

    /// A payload error at `path` (e.g. `tags[2]`).
    pub fn input_at(
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Error::CommandInput {
            message: message.into(),
            hint: hint.into(),
            path: Some(path.into()),
        }
    }

    /// `TaskAlreadyRunning` with the general hint.
    pub fn already_running(id: impl ToString, pid: Option<i64>) -> Self {
        Error::TaskAlreadyRunning {
            id: id.to_string(),
            pid,
            differences: Vec::new(),
            hint: None,
        }
    }

    /// A filesystem failure under the state directory.
    pub fn store(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Store {
            action,
            path: path.into(),
            source,
        }
    }

    /// What a panic amounts to, for the last-resort panic hooks.
    pub fn from_panic(info: &std::panic::PanicHookInfo<'_>) -> Self {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        Error::Internal {
            location: info.location().map_or_else(
                || "unknown".into(),
                |l| format!("{}:{}", l.file(), l.line()),
            ),
            message,
        }
    }

    /// Every envelope `type`, for `capabilities` and the schemas.
    pub const TYPES: [&'static str; 11] = [
        "CommandInputError",
        "TaskNotFound",
        "TaskAlreadyRunning",
        "TaskWaitTimedOut",
        "TaskNotReady",
        "PortInUse",
        "StartThrottled",
        "SpawnFailed",
        "StoreError",
        "SignalRefused",
        "InternalError",
    ];

    /// The envelope `type`; these names are part of the contract.
    pub fn type_name(&self) -> &'static str {
        match self {
            Error::CommandInput { .. } => "CommandInputError",
            Error::TaskNotFound { .. } | Error::TaskRemoved { .. } => "TaskNotFound",
            Error::TaskAlreadyRunning { .. } => "TaskAlreadyRunning",
            Error::TaskWaitTimedOut { .. } => "TaskWaitTimedOut",
            Error::TaskNotReady { .. } => "TaskNotReady",
            Error::PortInUse { .. } => "PortInUse",
            Error::StartThrottled { .. } => "StartThrottled",
            Error::SpawnFailed { .. } => "SpawnFailed",
            Error::Store { .. }
            | Error::Symlink { .. }
            | Error::CorruptRecord { .. }
            | Error::NewerRecord { .. }
            | Error::UnsafeStateDir { .. } => "StoreError",
            Error::SignalRefused { .. } => "SignalRefused",
            Error::Internal { .. } => "InternalError",
        }
    }

    /// Whether the same call may succeed later without any change.
    pub fn retryable(&self) -> bool {
        match self {
            Error::TaskWaitTimedOut { .. } | Error::StartThrottled { .. } => true,
            // A start that kept meeting `rm`/`prune`: trying again starts in a fresh folder.
            Error::Store { action, .. } if *action == crate::state::lock::REMOVED_MEANWHILE => true,
            // Still running: waiting again may see it ready.
            Error::TaskNotReady { status, .. } => status == "running" || status == "queued",
            // A full disk is freed, a limit raised: the same call may then succeed.
            Error::Store { source, .. } | Error::SpawnFailed { source, .. } => matches!(
                source.raw_os_error(),
                Some(
                    libc::EAGAIN
                        | libc::EMFILE
                        | libc::ENFILE
                        | libc::ENOMEM
                        | libc::EINTR
                        | libc::ENOSPC
                        | libc::EDQUOT
                )
            ),
            _ => false,
        }
    }

    /// A `TaskNotFound` met while waiting on a task that was there: it was removed
    /// meanwhile. Other errors are left as they are.
    pub fn removed_meanwhile(self) -> Error {
        match self {
            Error::TaskNotFound { id } => Error::TaskRemoved { id },
            other => other,
        }
    }

    /// Whether this is a write that failed because the disk (or the user's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Store { source, .. } | Error::SpawnFailed { source, .. } => is_disk_full(source),
            _ => false,
        }
    }

    /// The next step an agent should take.
    pub fn hint(&self) -> String {
        match self {
            Error::CommandInput { hint, .. } => hint.clone(),
            Error::TaskNotFound { .. } => "Run list to discover known task ids.".into(),
            Error::TaskRemoved { .. } => "Its end was removed before this call could read it; start it again if the result is still needed, and prune with older_than_s so that tasks just ended are kept.".into(),
            Error::TaskAlreadyRunning {
                hint: Some(hint), ..
            } => (*hint).to_owned(),
            Error::TaskAlreadyRunning {
                id, differences, ..
            } if !differences.is_empty() => format!(
                "Task {id} runs with a different {}; start with the same values to reuse it, or stop it, pick another id, or pass if_running: \"restart\".",
                differences.join(", ")
            ),
            Error::TaskAlreadyRunning { id, .. } => format!(
                "Use status {{\"id\":\"{id}\"}} to inspect it; pass if_running: \"reuse\" to get it back, or stop or restart it."
            ),
            Error::TaskWaitTimedOut { .. } => {
                "The task runs on: wait again (or raise --timeout; --timeout none waits for good), or read what it printed meanwhile with logs {\"after\": cursor}.".into()
            }
            // Out of disk or descriptors, whatever failed: the hint for the command or
            // workdir would send the caller the wrong way.
            Error::SpawnFailed { source, .. } | Error::Store { source, .. }
                if source.raw_os_error() == Some(libc::ENOSPC) =>
            {
                "The disk holding the state directory is full; free space and retry.".into()
            }
            Error::SpawnFailed { source, .. } | Error::Store { source, .. }
                if source.raw_os_error() == Some(libc::EDQUOT) =>
            {
                "Your disk quota on the state directory's disk is used up; free space and retry."
                    .into()
            }
            Error::SpawnFailed { source, .. } | Error::Store { source, .. }
                if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
            {
                "Too many open files: raise the open-file limit (ulimit -n) or close some, and retry."
                    .into()
            }
            Error::SpawnFailed { .. } => {
                "Check that the command exists and is executable and that workdir exists.".into()
            }
            Error::TaskNotReady { status, .. } if status == "running" || status == "queued" => {
                "It runs but is not ready yet: read log_tail, then wait again or raise the timeout."
                    .into()
            }
            Error::TaskNotReady { .. } => {
                "It ended before it was ready: read log_tail for why, fix it, and start again."
                    .into()
            }
            Error::PortInUse {
                task_id: Some(task),
                ..
            } => format!(
                "Task {task} holds the port: reuse it (if_running: \"reuse\") or stop it first."
            ),
            Error::PortInUse { .. } => {
                "Stop the process that holds the port, or start the task on another port.".into()
            }
            Error::StartThrottled { retry_after_s, .. } => format!(
                "Too many fresh starts of this id: try again after retry_after_s ({retry_after_s}s), or use if_running: \"reuse\" while it runs; if it keeps crashing, read its logs first."
            ),
            Error::Store { action, .. } if *action == crate::state::lock::REMOVED_MEANWHILE => {
                "rm or prune removed the task while this call used it; try again.".into()
            }
            Error::Store { .. } => {
                "Check the permissions and free space of the state directory.".into()
            }
            Error::Symlink { .. } => {
                "Something other than background-tasks put the symlink there; remove it (what it points at was not touched).".into()
            }
            Error::CorruptRecord { .. } => {
                "The record was damaged outside background-tasks; remove the task's folder.".into()
            }
            Error::NewerRecord { .. } => {
                "Upgrade background-tasks to manage this task; status, list and logs still show it."
                    .into()
            }
            Error::UnsafeStateDir { .. } => {
                "Point BACKGROUND_TASKS_HOME at a directory you own with mode 0700.".into()
            }
            Error::SignalRefused { .. } => {
                "The process no longer belongs to this task; nothing was signalled.".into()
            }
            Error::Internal { .. } => {
                "This is a bug in background-tasks: please report it with the command and payload that caused it. Check the task with status before retrying.".into()
            }
        }
    }

    /// The whole message: this error followed by each of its causes.
    pub fn full_message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }

    /// The envelope's `error` object: `{type, message, details}`.
    pub fn to_json(&self) -> Value {
        json!({
            "type": self.type_name(),
            "message": self.full_message(),
            "details": self.details(),
        })
    }

    /// `details` of the envelope: the variant's fields plus `hint` and `retryable`.
    pub fn details(&self) -> Value {
        let mut details = Map::new();
        let mut put = |key: &str, value: Value| {
            details.insert(key.to_owned(), value);
        };
        match self {
            Error::CommandInput { path, .. } => {
                if let Some(path) = path {
                    put("path", json!(path));
                }
            }
            Error::TaskNotFound { id } => put("id", json!(id)),
            Error::TaskRemoved { id } => {
                put("id", json!(id));
                put("removed_meanwhile", json!(true));
            }
            Error::TaskAlreadyRunning {
                id,
                pid,
                differences,
                ..
            } => {
                put("id", json!(id));
                put("pid", json!(pid));
                if !differences.is_empty() {
                    put("differences", json!(differences));
                }
            }
            Error::TaskWaitTimedOut {
                id,
                status,
                timeout_s,
                cursor,
            } => {
                put("id", json!(id));
                put("status", json!(status));
                put("timeout_s", json!(timeout_s));
                put("cursor", json!(cursor.map(|c| c.to_string())));
            }
            Error::TaskNotReady {
                id,
                status,
                exit_code,
                log_tail,
                ..
            } => {
                put("id", json!(id));
                put("status", json!(status));
                put("exit_code", json!(exit_code));
                put("log_tail", json!(log_tail));
            }
            Error::PortInUse {
                port,
                pid,
                process,
                task_id,
            } => {
                put("port", json!(port));
                put("pid", json!(pid));
                put("process", json!(process));
                put("task_id", json!(task_id));
            }
            Error::StartThrottled {
                id,
                max,
                per_s,
                retry_after_s,
            } => {
                put("id", json!(id));
                put("max", json!(max));
                put("per_s", json!(per_s));
                put("retry_after_s", json!(retry_after_s));
            }
            Error::SpawnFailed { id, cause, source } => {
                put("id", json!(id));
                put("cause", json!(cause));
                put("os_error", json!(source.raw_os_error()));
                put("reason", json!(source.to_string()));
            }
            Error::Store { path, source, .. } => {
                put("path", json!(path));
                put("os_error", json!(source.raw_os_error()));
            }
            Error::CorruptRecord { path, .. }
            | Error::UnsafeStateDir { path, .. }
            | Error::Symlink { path } => {
                put("path", json!(path));
            }
            Error::SignalRefused { id, .. } | Error::NewerRecord { id, .. } => put("id", json!(id)),
            Error::Internal { location, .. } => put("where", json!(location)),
        }
        put("hint", json!(self.hint()));
        put("retryable", json!(self.retryable()));
        Value::Object(details)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether an OS error says the disk (or the user's quota on it) is full.
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}
