//! What the discovery commands answer (`capabilities`, `schema list|show`) and `doctor`'s
//! report: the envelope's `data` of the commands that describe the tool rather than tasks.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CapabilitiesAnswer {
    pub name: &'static str,
    /// This build's version (semver).
    pub version: &'static str,
    /// The JSON contract's version; every schema id ends with `/v<protocol_version>`.
    pub protocol_version: u32,
    /// The on-disk record's `format_version`.
    pub record_format_version: u32,
    pub commands: Vec<CommandInfo>,
    /// Flags every command takes.
    pub global_flags: Vec<FlagInfo>,
    /// How a payload may be given.
    pub payload_modes: Vec<ModeInfo>,
    /// `logs --output` modes.
    pub output_modes: Vec<ModeInfo>,
    /// Every task status, and which are terminal.
    pub statuses: Vec<StatusInfo>,
    /// Why a task is terminal (`reason`).
    pub reasons: Vec<String>,
    /// Every error `type`, and whether it may be retryable.
    pub error_types: Vec<ErrorInfo>,
    pub exit_codes: Vec<ExitCodeInfo>,
    /// The forms of output lines read as a task's `progress`, in the order they are tried,
    /// each with an example line.
    pub progress_forms: Vec<ModeInfo>,
    /// How a task reports a tree of steps on its output (`steps` on its record).
    pub steps: StepsInfo,
    pub limits: Limits,
    pub defaults: Defaults,
    /// Optional features, and whether this build on this machine has them.
    pub features: Vec<Feature>,
    /// The tools `background-tasks mcp` serves (none when this build has no `mcp` feature).
    pub mcp_tools: Vec<McpToolInfo>,
    /// Environment variables read.
    pub environment: Vec<ModeInfo>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CommandInfo {
    /// As in the envelope's `command` (`schema show`).
    pub name: String,
    pub summary: String,
    /// `required`, `optional` or `none`.
    #[schemars(extend("enum" = ["required", "optional", "none"]))]
    pub payload: &'static str,
    /// Whether an array payload runs as a batch.
    pub batch: bool,
    /// Whether `--stream` prints NDJSON frames.
    pub stream: bool,
    pub flags: Vec<FlagInfo>,
    /// Ids of its payload and answer schemas (`schema show <name>`).
    pub schemas: Vec<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FlagInfo {
    /// `--wait`; a positional argument is `<NAME>`.
    pub name: String,
    /// The value it takes (`SECONDS`), or `null` for a switch.
    pub value: Option<String>,
    /// The values allowed, when they are a fixed set.
    pub values: Vec<String>,
    pub help: String,
}

/// The step line: its form, its statuses and the bounds of a run's steps.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StepsInfo {
    /// The `type` that makes an output line a step line: the whole line must be a JSON
    /// object with it (ordinary JSON logs, `{"type":"step"}` included, never are).
    pub line_type: &'static str,
    /// An example step line.
    pub example: &'static str,
    /// How lines fold into steps, and how the run's end closes them.
    pub description: &'static str,
    /// A step's statuses.
    pub statuses: Vec<&'static str>,
    /// The most steps a run keeps; more are counted in `steps_dropped`.
    pub max_steps: usize,
    /// The most bytes of titles and messages a run's steps keep in all.
    pub max_text_bytes: usize,
    /// The longest line read as a step line.
    pub max_line_bytes: usize,
    /// The longest step id.
    pub max_id_bytes: usize,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ModeInfo {
    pub name: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StatusInfo {
    pub name: &'static str,
    pub terminal: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorInfo {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `always`, `never`, or `sometimes` (see the error's `details.retryable`).
    #[schemars(extend("enum" = ["always", "never", "sometimes"]))]
    pub retryable: &'static str,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ExitCodeInfo {
    pub code: u8,
    pub meaning: &'static str,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Limits {
    /// Largest payload, in bytes (literal, @file or stdin).
    pub max_payload_bytes: u64,
    /// The line budget: a line of task output longer than this is cut, saying how many bytes
    /// were left out, wherever it is answered (`logs` in `auto`, whose artifact holds it
    /// whole; `events` and stream frames; `log_tail`; progress messages).
    pub max_line_bytes: usize,
    /// The answer budget: most bytes of lines in one `auto` answer of `logs`, of frames in one
    /// `events` answer, of lines in a `log_tail`; past it, answers page by cursor.
    pub max_inline_bytes: usize,
    /// Longest `grace_s` and `--timeout` of stop, in seconds.
    pub max_grace_s: f64,
    /// Longest `timeout_s`, in seconds.
    pub max_timeout_s: f64,
    /// Task ids match this.
    pub task_id_pattern: &'static str,
    /// Batch items worked on at once by one call (without `--concurrency`).
    pub batch_workers: usize,
    /// Lines of output a `TaskNotReady` error carries in `log_tail`.
    pub log_tail_lines: u64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Defaults {
    /// Seconds between SIGTERM and SIGKILL.
    pub grace_s: f64,
    /// Seconds a waiting call (`wait`, `start --wait`, `restart --wait`, `stop`) blocks when
    /// `--timeout` is absent, whatever `grace_s` is: under the two minutes agent harnesses
    /// give a tool call. Running out is `TaskWaitTimedOut` (retryable) with the task's
    /// `status` and a log `cursor`; `--timeout none` waits for good. `--stream` follows have
    /// no default bound.
    pub wait_timeout_s: f64,
    /// Lines `logs` answers without `lines`.
    pub log_lines: u64,
    /// `logs --output`.
    pub output: &'static str,
    /// The first signal of `stop`.
    pub stop_signal: &'static str,
    /// `start`'s `if_running`.
    pub if_running: &'static str,
    /// `wait`'s `until`.
    pub until: &'static str,
    /// Where state lives without BACKGROUND_TASKS_HOME.
    pub state_dir: &'static str,
}

/// A tool of `background-tasks mcp`: a command of the same name, with its MCP annotations.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct McpToolInfo {
    pub name: &'static str,
    /// `readOnlyHint`.
    pub read_only: bool,
    /// `destructiveHint`.
    pub destructive: bool,
    /// `idempotentHint`.
    pub idempotent: bool,
    /// The argument bounding how long a call may block (default 25 s, at most 50 s), for
    /// the tools that can block.
    pub bound: Option<&'static str>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    pub description: &'static str,
}

/// What a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A command's payload.
    Input,
    /// A command's answer: the envelope's `data`.
    Output,
    /// One NDJSON frame of `--stream` (and an item of `events`' `frames`).
    Frame,
    /// The `error` object of a failure envelope (on stderr).
    Error,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Input => "input",
            Kind::Output => "output",
            Kind::Frame => "frame",
            Kind::Error => "error",
        }
    }
}

/// The answer of `schema list` (no `name`, no `schema` bodies) and `schema show`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SchemaAnswer {
    /// The name shown (`schema show`); absent for `schema list`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub schemas: Vec<SchemaItem>,
}

/// One schema.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SchemaItem {
    /// The command (`start`, `schema show`), or `frame` / `error`.
    pub name: &'static str,
    pub kind: Kind,
    /// The schema's `$id`, e.g. `background-tasks.start.input/v1`.
    pub id: String,
    /// Where it is committed in the source repository, e.g. `schemas/start.input.json`.
    pub file: String,
    /// The JSON Schema itself (draft 2020-12); `schema show` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DoctorAnswer {
    /// `true` when no check failed (warnings allowed); exit code 1 otherwise.
    pub healthy: bool,
    pub summary: Summary,
    pub state_dir: PathBuf,
    pub checks: Vec<Check>,
    pub tasks: TaskCounts,
}

#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
}

/// One check's outcome.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Check {
    /// `state_dir`, `filesystem`, `locks`, `notify`, `binary`, `tasks`, `temp_files`.
    pub name: &'static str,
    pub status: CheckStatus,
    /// What was found.
    pub message: String,
    /// What to do about it; `null` when the check passed.
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
}

/// Tasks by state, as `status` would report them now.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct TaskCounts {
    pub total: usize,
    pub queued: usize,
    pub running: usize,
    /// Ended in any way but `lost`.
    pub finished: usize,
    /// Their supervisor vanished without recording an end.
    pub lost: usize,
    /// Finished more than 7 days ago.
    pub stale: usize,
    /// Task folders whose record cannot be read.
    pub unreadable: usize,
}

impl Check {
    pub fn ok(name: &'static str, message: impl Into<String>) -> Check {
        Check {
            name,
            status: CheckStatus::Ok,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warn(name: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name,
            status: CheckStatus::Warn,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn fail(name: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name,
            status: CheckStatus::Fail,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}
