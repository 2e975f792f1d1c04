//! The one table of public commands: each command's name (as the envelope's `command`),
//! whether it takes a payload, runs an array as a batch or streams, and the schemas of its
//! payload and answer.
//!
//! Everything that lists commands derives from this table: the names of usage errors
//! (`cli.rs`), `capabilities`' command list, the schema registry (`crate::schema`) and
//! `schema show`'s names. The clap definitions must name the same commands (a test in
//! `cli.rs` compares them), and dispatch (`commands::execute`) matches every clap variant.

use schemars::Schema;

use crate::payload::answer::{
    AllEventsAnswer, EventsAnswer, ListAnswer, LogsAnswer, PruneAnswer, RmAnswer, ServeAnswer,
    StartAnswer, StopAnswer, TaskAnswer, WaitAnswer,
};
use crate::payload::batch::BatchAnswer;
use crate::payload::discovery::{CapabilitiesAnswer, DoctorAnswer, SchemaAnswer};
use crate::payload::examples::ExamplesAnswer;
use crate::payload::input::{
    EventsInput, IdInput, ListInput, LogsInput, PruneInput, RestartInput, RmInput, StartInput,
    StopInput, WaitInput,
};
use crate::wire_schema::{AnyOf, OneOrBatch, Optional, input, output};

/// Whether a command takes a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    Required,
    Optional,
    None,
}

impl Payload {
    /// As `capabilities` says it: `required`, `optional` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Payload::Required => "required",
            Payload::Optional => "optional",
            Payload::None => "none",
        }
    }
}

/// One public command.
#[derive(Debug, Clone, Copy)]
pub struct CommandEntry {
    /// As in the envelope's `command`: `start`, `schema show`.
    pub name: &'static str,
    pub payload: Payload,
    /// Whether an array payload runs as a batch.
    pub batch: bool,
    /// Whether `--stream` prints NDJSON frames.
    pub stream: bool,
    /// The schema of its payload, when it takes one.
    pub input: Option<fn() -> Schema>,
    /// The schema of its answer's `data`, when it answers JSON.
    pub output: Option<fn() -> Schema>,
}

const fn entry(
    name: &'static str,
    payload: Payload,
    batch: bool,
    stream: bool,
    input: Option<fn() -> Schema>,
    output: Option<fn() -> Schema>,
) -> CommandEntry {
    CommandEntry {
        name,
        payload,
        batch,
        stream,
        input,
        output,
    }
}

/// Every public command, in the order `capabilities`, `schema list` and help show them.
pub const COMMANDS: [CommandEntry; 19] = [
    entry(
        "start",
        Payload::Required,
        true,
        false,
        Some(input::<OneOrBatch<StartInput>>),
        Some(output::<AnyOf<StartAnswer, BatchAnswer<StartAnswer>>>),
    ),
    entry(
        "status",
        Payload::Required,
        false,
        false,
        Some(input::<IdInput>),
        Some(output::<TaskAnswer>),
    ),
    entry(
        "list",
        Payload::Optional,
        false,
        false,
        Some(input::<Optional<ListInput>>),
        Some(output::<ListAnswer>),
    ),
    entry(
        "wait",
        Payload::Required,
        false,
        false,
        Some(input::<WaitInput>),
        Some(output::<WaitAnswer>),
    ),
    entry(
        "stop",
        Payload::Required,
        true,
        false,
        Some(input::<OneOrBatch<StopInput>>),
        Some(output::<AnyOf<StopAnswer, BatchAnswer<StopAnswer>>>),
    ),
    entry(
        "restart",
        Payload::Required,
        true,
        false,
        Some(input::<OneOrBatch<RestartInput>>),
        Some(output::<AnyOf<TaskAnswer, BatchAnswer<TaskAnswer>>>),
    ),
    entry(
        "logs",
        Payload::Required,
        false,
        true,
        Some(input::<LogsInput>),
        Some(output::<LogsAnswer>),
    ),
    entry(
        "events",
        Payload::Optional,
        false,
        true,
        Some(input::<Optional<EventsInput>>),
        Some(output::<AnyOf<EventsAnswer, AllEventsAnswer>>),
    ),
    entry(
        "rm",
        Payload::Required,
        true,
        false,
        Some(input::<OneOrBatch<RmInput>>),
        Some(output::<AnyOf<RmAnswer, BatchAnswer<RmAnswer>>>),
    ),
    entry(
        "prune",
        Payload::Optional,
        false,
        false,
        Some(input::<Optional<PruneInput>>),
        Some(output::<PruneAnswer>),
    ),
    entry(
        "serve",
        Payload::None,
        false,
        false,
        None,
        Some(output::<ServeAnswer>),
    ),
    entry(
        "doctor",
        Payload::None,
        false,
        false,
        None,
        Some(output::<DoctorAnswer>),
    ),
    entry(
        "capabilities",
        Payload::None,
        false,
        false,
        None,
        Some(output::<CapabilitiesAnswer>),
    ),
    entry(
        "schema list",
        Payload::None,
        false,
        false,
        None,
        Some(output::<SchemaAnswer>),
    ),
    entry(
        "schema show",
        Payload::None,
        false,
        false,
        None,
        Some(output::<SchemaAnswer>),
    ),
    entry(
        "examples list",
        Payload::None,
        false,
        false,
        None,
        Some(output::<ExamplesAnswer>),
    ),
    entry(
        "examples show",
        Payload::None,
        false,
        false,
        None,
        Some(output::<ExamplesAnswer>),
    ),
    // Plain text for a shell, not an envelope.
    entry("completions", Payload::None, false, false, None, None),
    // JSON-RPC on stdin and stdout for an MCP client, not an envelope.
    entry("mcp", Payload::None, false, false, None, None),
];

/// One tool of `background-tasks mcp`: a command of [`COMMANDS`] (same name, same payload
/// and answer schemas) and what an MCP client may assume of it (its annotations).
#[derive(Debug, Clone, Copy)]
pub struct ToolEntry {
    /// The tool's name, which is the command's.
    pub name: &'static str,
    /// The tool's description: what a model reads to choose it.
    pub description: &'static str,
    /// `readOnlyHint`: it changes no task.
    pub read_only: bool,
    /// `destructiveHint`: it may end a task or remove its files.
    pub destructive: bool,
    /// `idempotentHint`: calling it again with the same arguments changes nothing more.
    pub idempotent: bool,
    /// The argument that bounds how long a call may block, for the tools that can.
    pub bound: Option<&'static str>,
}

const fn tool(
    name: &'static str,
    description: &'static str,
    (read_only, destructive, idempotent): (bool, bool, bool),
    bound: Option<&'static str>,
) -> ToolEntry {
    ToolEntry {
        name,
        description,
        read_only,
        destructive,
        idempotent,
        bound,
    }
}

/// Annotations: read-only (and so idempotent); destructive and idempotent (a second stop or
/// rm finds nothing more to do); neither (a second start or restart starts another run).
const READS: (bool, bool, bool) = (true, false, true);
const ENDS: (bool, bool, bool) = (false, true, true);
const STARTS: (bool, bool, bool) = (false, false, false);

/// The tools of `background-tasks mcp`, in the order `tools/list` answers them.
pub const TOOLS: [ToolEntry; 10] = [
    tool(
        "start",
        "Start a background process (a dev server, build or test run) under its own supervisor; answers once it runs. Several at once with `items`. With `wait`: answers once it is ready (`ready` conditions) or has ended, waiting at most `wait_timeout_s`. Tasks outlive this server; output is kept on disk.",
        STARTS,
        Some("wait_timeout_s"),
    ),
    tool(
        "status",
        "One task as it is now: status, pid, exit code or signal, times, progress, readiness, listening ports.",
        READS,
        None,
    ),
    tool(
        "list",
        "Every task, oldest first, optionally filtered (one status or several, success, exit_code, tags, name, workdir) and projected to some `fields` (asking for `ports` looks them up now).",
        READS,
        None,
    ),
    tool(
        "wait",
        "Block until a task has ended, or until conditions hold (`until`: log line, port, HTTP URL), or until all or any of several tasks (`ids`, or every task a selector `tag`/`tags`/`status` chooses) have ended, answering only `fields` if given; at most `timeout_s` seconds. Running out answers TaskWaitTimedOut with the status and a log cursor: call again to keep waiting.",
        READS,
        Some("timeout_s"),
    ),
    tool(
        "stop",
        "Stop a task's whole process tree (SIGTERM, then SIGKILL after its grace period) and answer once it has ended; with a selector (`tag`, `tags`, `status`) instead of `id`, every queued or running task it chooses, answered as a batch. Stopping an ended task changes nothing.",
        ENDS,
        Some("timeout_s"),
    ),
    tool(
        "restart",
        "Stop a task if it runs, then start its next run with the same command. With `wait`: answers once it is ready or has ended, waiting at most `wait_timeout_s`.",
        STARTS,
        Some("wait_timeout_s"),
    ),
    tool(
        "logs",
        "A task's output (stdout and stderr in the order written): the last `lines`, or what came `after` a cursor; `next_cursor` continues. With `follow`: if nothing new is there yet, wait up to `timeout_s` for it.",
        READS,
        Some("timeout_s"),
    ),
    tool(
        "events",
        "A task's lifecycle frames (status, progress, ready, ended) and log lines in one order, resumable with `after`; without `id`, every task's status. With `follow` (and an id): if nothing new is there yet, wait up to `timeout_s` for it.",
        READS,
        Some("timeout_s"),
    ),
    tool(
        "rm",
        "Remove a finished task and its files (`force`: stop it first if it runs). Several at once with `items`.",
        ENDS,
        None,
    ),
    tool(
        "prune",
        "Remove finished tasks in bulk: by age, by status, keeping the newest. Never touches running or queued tasks.",
        ENDS,
        None,
    ),
];

/// The command called `name` (`schema show`).
pub fn find(name: &str) -> Option<&'static CommandEntry> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Every public command's name, in table order.
pub fn names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|c| c.name)
}

/// The command a command line names by its first words (`schema show`, `status`), for
/// the envelope of a usage error. A group named alone (`schema`) is itself the name.
pub fn named_by(words: &[&str]) -> Option<&'static str> {
    let two = words.get(..2).map(|w| w.join(" "));
    let one = words.first().copied();
    names()
        .find(|&name| two.as_deref() == Some(name))
        .or_else(|| names().find(|&name| one == Some(name)))
        .or_else(|| groups().find(|&group| one == Some(group)))
}

/// Command groups (`schema`, `examples`): the first word of two-word commands.
fn groups() -> impl Iterator<Item = &'static str> {
    names().filter_map(|name| name.split_once(' ').map(|(group, _)| group))
}
