//! Payloads: what each command accepts. Every type denies unknown fields, so a typo is an
//! error that names the accepted fields instead of a silently ignored option.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::paths::TaskId;
use crate::payload::policy::{RateLimit, RestartPolicy};
use crate::payload::task::Status;
use crate::ready::{Probe, ReadySpec};
use crate::state::record::ReadySpecRecord;

/// The longest grace period or wait accepted, in seconds (one day).
pub const MAX_SECONDS: f64 = 86_400.0;
/// The longest `timeout_s` accepted (30 days).
pub const MAX_TIMEOUT_S: f64 = 30.0 * 86_400.0;
/// Default seconds between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE_S: f64 = 5.0;
/// Default number of log lines answered.
pub const DEFAULT_LOG_LINES: u64 = 100;

/// `start`: one task to launch. Give either `command` (with `args`, run directly, no shell)
/// or `shell` (run by `/bin/sh -c`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::wire_schema::command_or_shell)]
pub struct StartInput {
    /// The task id; generated (`bg_` + 8 hex) when absent.
    pub id: Option<TaskId>,
    /// A label for people.
    #[schemars(length(min = 1))]
    pub name: Option<String>,
    /// The program to execute directly (no shell), found on PATH.
    #[schemars(length(min = 1))]
    pub command: Option<String>,
    /// Arguments to `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Working directory; relative paths are taken from the caller's directory.
    #[schemars(length(min = 1))]
    pub workdir: Option<String>,
    /// Variables set for the task. Only their names are ever stored or printed.
    #[serde(default, deserialize_with = "env_map")]
    #[schemars(extend("propertyNames" = crate::wire_schema::env_name()))]
    pub env: BTreeMap<String, String>,
    /// Labels to find the task by (`list {"tag": ...}`).
    #[serde(default)]
    #[schemars(inner(length(min = 1)))]
    pub tags: Vec<String>,
    /// A shell line run by `/bin/sh -c`, instead of `command` and `args`.
    #[schemars(length(min = 1))]
    pub shell: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when the task is stopped (default 5).
    #[schemars(range(min = 0, max = MAX_SECONDS))]
    pub grace_s: Option<f64>,
    /// Stop the task after this many seconds; it then ends `timed_out`.
    #[schemars(range(max = MAX_TIMEOUT_S), extend("exclusiveMinimum" = 0))]
    pub timeout_s: Option<f64>,
    /// What to do when a task with this id is already running or queued.
    #[serde(default)]
    pub if_running: IfRunning,
    /// Stop the task when the process with this pid exits (an agent session that ends
    /// takes its tasks with it). It must be running when the task starts.
    #[schemars(range(min = 2))]
    pub stop_with_pid: Option<i32>,
    /// When the task counts as ready: `{log?, port?, http?, timeout_s?}`; `start --wait`
    /// then answers once it is ready.
    pub ready: Option<ReadySpec>,
    /// Restart runs automatically: `{on: "never"|"failure"|"always", max_restarts?,
    /// min_uptime_s?, backoff?: {initial_s?, factor?, max_s?}}` (default: never).
    pub restart_policy: Option<RestartPolicy>,
    /// At most `max` fresh spawns of this id by `start` per `per_s` seconds: `{max,
    /// per_s}`; one more answers `StartThrottled` with `retry_after_s` (off unless given).
    pub rate_limit: Option<RateLimit>,
    /// Answer only these fields of the task (e.g. ["id","status"]), as `list` does; in a
    /// batch, each item's own.
    #[serde(default)]
    #[schemars(schema_with = "crate::payload::task::task_fields")]
    pub fields: Option<Vec<String>>,
}

/// `if_running`: what `start` does when the id is already running or queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IfRunning {
    /// Fail with `TaskAlreadyRunning`.
    #[default]
    Error,
    /// Answer the running task (`reused: true`) if it runs the same command.
    Reuse,
    /// Stop the running task and start a new run.
    Restart,
}

impl StartInput {
    /// Checks what serde cannot: one of command/shell, no NUL bytes, sane numbers.
    pub fn validate(&self) -> Result<()> {
        match (&self.command, &self.shell) {
            (Some(_), Some(_)) => {
                return Err(Error::input_at(
                    "shell",
                    "shell: give either command (with args) or shell, not both",
                    "Use {\"command\":\"npm\",\"args\":[\"run\",\"dev\"]} or {\"shell\":\"npm run dev\"}.",
                ));
            }
            (None, None) => {
                return Err(Error::input_at(
                    "command",
                    "command: missing; give command (with args) or shell",
                    "Use {\"command\":\"npm\",\"args\":[\"run\",\"dev\"]} or {\"shell\":\"npm run dev\"}.",
                ));
            }
            (None, Some(_)) if !self.args.is_empty() => {
                return Err(Error::input_at(
                    "args",
                    "args: only allowed with command; a shell line holds its own arguments",
                    "Put the arguments into the shell line, or use command and args.",
                ));
            }
            _ => {}
        }
        if let Some(command) = &self.command {
            text("command", command, true)?;
        }
        if let Some(shell) = &self.shell {
            text("shell", shell, true)?;
        }
        for (i, arg) in self.args.iter().enumerate() {
            text(&format!("args[{i}]"), arg, false)?;
        }
        if let Some(name) = &self.name {
            text("name", name, true)?;
        }
        if let Some(workdir) = &self.workdir {
            text("workdir", workdir, true)?;
        }
        for (i, tag) in self.tags.iter().enumerate() {
            text(&format!("tags[{i}]"), tag, true)?;
        }
        environment(&self.env)?;
        if let Some(grace) = self.grace_s {
            seconds("grace_s", grace)?;
        }
        if let Some(timeout) = self.timeout_s
            && !(timeout.is_finite() && timeout > 0.0 && timeout <= MAX_TIMEOUT_S)
        {
            return Err(Error::input_at(
                "timeout_s",
                format!("timeout_s: {timeout} is out of range"),
                format!("Give a number of seconds above 0 and at most {MAX_TIMEOUT_S}."),
            ));
        }
        if let Some(ready) = &self.ready {
            ready.probe("ready")?;
        }
        if let Some(policy) = &self.restart_policy {
            policy.resolve()?;
        }
        if let Some(limit) = &self.rate_limit {
            limit.validate()?;
        }
        check_fields(self.fields.as_deref())?;
        if let Some(pid) = self.stop_with_pid {
            use crate::procfs::{NotAnOwner, check_owner};
            let refused = |message: String, hint: String| {
                Error::input_at("stop_with_pid", format!("stop_with_pid: {message}"), hint)
            };
            match check_owner(pid) {
                Ok(()) => {}
                Err(NotAnOwner::NotRunning) => {
                    return Err(refused(
                        format!("no process {pid} is running"),
                        "Give the pid of a live process, e.g. your own session's ($$ in a shell)."
                            .into(),
                    ));
                }
                Err(NotAnOwner::Thread { process }) => {
                    return Err(refused(
                        format!("{pid} is a thread of process {process}, not a process"),
                        format!("Give the process's own pid ({process}), e.g. $$ in a shell."),
                    ));
                }
                Err(NotAnOwner::OtherUser { uid }) => {
                    return Err(refused(
                        format!("process {pid} belongs to another user (uid {uid})"),
                        "Give the pid of one of your own processes, e.g. $$ in a shell.".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `start`'s payload: one task, or an array of them (a batch).
#[derive(Debug)]
pub enum StartPayload {
    One(Box<StartInput>),
    Batch(Vec<StartInput>),
}

/// `rm`: one task to remove.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RmInput {
    /// The task id.
    pub id: TaskId,
    /// Stop the task first if it still runs.
    #[serde(default)]
    pub force: bool,
}

/// `prune`: remove finished tasks; every filter given must match.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneInput {
    /// Only tasks that ended more than this many seconds ago.
    #[schemars(range(min = 0))]
    pub older_than_s: Option<f64>,
    /// Keep this many of the most recently ended matching tasks.
    pub keep_last: Option<usize>,
    /// Only tasks with this (terminal) status.
    pub status: Option<Status>,
}

impl PruneInput {
    /// Checks what serde cannot: a finite, non-negative age.
    pub fn validate(&self) -> Result<()> {
        if let Some(age) = self.older_than_s
            && !(age.is_finite() && age >= 0.0)
        {
            return Err(Error::input_at(
                "older_than_s",
                format!("older_than_s: {age} is out of range"),
                "Give a number of seconds, 0 or more.",
            ));
        }
        Ok(())
    }
}

/// `wait`: one task (`id`) and what to wait for, or several (`ids`) and whether all or any
/// must end.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::wire_schema::one_or_several_ids)]
pub struct WaitInput {
    /// The task id.
    pub id: Option<TaskId>,
    /// Several tasks, instead of `id`: wait until all (or any) of them have ended.
    #[schemars(length(min = 1))]
    pub ids: Option<Vec<TaskId>>,
    /// With `ids` or a selector: `"all"` (the default) or `"any"`.
    pub mode: Option<WaitMode>,
    /// `"exit"` (the default): until the task has ended. Or conditions, as in `start`'s
    /// `ready`: `{log?, port?, http?}`, until they all hold.
    #[serde(default)]
    pub until: Until,
    /// A selector, instead of `id` or `ids`: every task carrying this tag (as they are when
    /// the wait begins), answered as with `ids`.
    #[schemars(length(min = 1))]
    pub tag: Option<String>,
    /// A selector: every task carrying all of these tags.
    pub tags: Option<Vec<String>>,
    /// A selector: every task with this status, or one of these.
    pub status: Option<StatusFilter>,
    /// Answer only these fields of each task (e.g. ["id","status","exit_code"]), as `list`
    /// does.
    #[serde(default)]
    #[schemars(schema_with = "crate::payload::task::task_fields")]
    pub fields: Option<Vec<String>>,
}

impl WaitInput {
    /// The selector given (`tag`, `tags`, `status`), if any.
    pub fn selector(&self) -> Option<Selector> {
        Selector::of(&self.tag, &self.tags, &self.status)
    }
}

/// Which tasks a command acts on, chosen by what they carry rather than by id: every task
/// with the `tag`, all of the `tags`, and one of the statuses of `status`. `wait` and `stop`
/// take it; `list` filters by the same fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    pub tag: Option<String>,
    pub tags: Option<Vec<String>>,
    pub status: Option<StatusFilter>,
}

impl Selector {
    /// The selector of these payload fields; `None` when none is given.
    pub fn of(
        tag: &Option<String>,
        tags: &Option<Vec<String>>,
        status: &Option<StatusFilter>,
    ) -> Option<Selector> {
        (tag.is_some() || tags.is_some() || status.is_some()).then(|| Selector {
            tag: tag.clone(),
            tags: tags.clone(),
            status: status.clone(),
        })
    }
}

/// `status` in a filter or selector: one status (`"running"`) or several
/// (`["killed","timed_out"]`).
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum StatusFilter {
    One(Status),
    Several(Vec<Status>),
}

impl StatusFilter {
    /// Whether `status` is one of these.
    pub fn allows(&self, status: Status) -> bool {
        match self {
            StatusFilter::One(one) => *one == status,
            StatusFilter::Several(several) => several.contains(&status),
        }
    }
}

// Read by hand, as `Until` is, so that a wrong status is named by its path (`status[1]`)
// instead of "data did not match any variant".
impl<'de> Deserialize<'de> for StatusFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StatusFilter, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StatusFilter;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a status (one of `queued`, `running`, `exited`, `killed`, `timed_out`, `failed`, `lost`) or an array of them",
                )
            }

            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<StatusFilter, E> {
                Status::deserialize(serde::de::value::StrDeserializer::<E>::new(word))
                    .map(StatusFilter::One)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<StatusFilter, A::Error> {
                Vec::<Status>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(StatusFilter::Several)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Checks `fields`: every name is a task field.
pub fn check_fields(fields: Option<&[String]>) -> Result<()> {
    use crate::payload::task::FIELDS;
    for (i, field) in fields.into_iter().flatten().enumerate() {
        if !FIELDS.contains(&field.as_str()) {
            return Err(Error::input_at(
                format!("fields[{i}]"),
                format!("fields[{i}]: {field:?} is not a task field"),
                format!("Task fields: {}.", FIELDS.join(", ")),
            ));
        }
    }
    Ok(())
}

/// `wait {ids, mode}`: whether every task or the first one must end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitMode {
    /// Until every task has ended.
    #[default]
    All,
    /// Until one of them has ended.
    Any,
}

/// What `wait` waits for: `"exit"` (the default), or conditions that must all hold.
#[derive(Debug, Default, JsonSchema)]
#[serde(untagged)]
pub enum Until {
    #[default]
    #[serde(skip)]
    Exit,
    /// `"exit"`: until the task has ended.
    #[schemars(schema_with = "crate::wire_schema::exit_word")]
    Word(String),
    /// Conditions, as in `start`'s `ready`: until they all hold.
    Ready(UntilConditions),
}

/// `wait`'s conditions: those of `start`'s `ready`, and `after`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::wire_schema::some_condition)]
pub struct UntilConditions {
    /// A regular expression a line of the current run's output must match. A line longer
    /// than 64 KiB is matched on its first 64 KiB.
    #[serde(default)]
    pub log: Option<String>,
    /// A TCP port on this machine that must accept connections.
    #[serde(default)]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u32>,
    /// An `http://` URL that must answer with a 2xx or 3xx status.
    #[serde(default)]
    #[schemars(regex(pattern = "^http://"))]
    pub http: Option<String>,
    /// How long the conditions may take, in seconds (at most a day).
    #[serde(default)]
    #[schemars(range(max = MAX_SECONDS), extend("exclusiveMinimum" = 0))]
    pub timeout_s: Option<f64>,
    /// With `log`: a cursor (an earlier answer's `next_cursor`, `match.cursor` or a line's
    /// `cursor`): only lines after it count, so a second wait for the same message waits
    /// for a new one. A cursor of an earlier run counts the whole current run.
    #[serde(default)]
    #[schemars(schema_with = "crate::wire_schema::optional_cursor")]
    pub after: Option<String>,
}

impl UntilConditions {
    /// The conditions as `start`'s `ready` has them, and `after`.
    pub fn split(self) -> (ReadySpec, Option<String>) {
        let UntilConditions {
            log,
            port,
            http,
            timeout_s,
            after,
        } = self;
        (
            ReadySpec {
                log,
                port,
                http,
                timeout_s,
            },
            after,
        )
    }
}

// Read by hand rather than as an untagged enum: serde's untagged enums buffer the value and
// answer any mistake inside it with "data did not match any variant", losing the path
// (`until.log`) and what was expected there.
impl<'de> Deserialize<'de> for Until {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Until, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Until;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"exit\" or conditions {log?, port?, http?, timeout_s?, after?}")
            }

            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<Until, E> {
                Ok(Until::Word(word.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Until, A::Error> {
                // Through the map itself, so a bad field is named by its path.
                UntilConditions::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Until::Ready)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A payload that names one task.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdInput {
    /// The task id.
    pub id: TaskId,
}

/// `list`: filters, all optional; a task must match every one given.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListInput {
    /// Only these ids.
    pub ids: Option<Vec<TaskId>>,
    /// Only tasks with this status, or with one of these.
    pub status: Option<StatusFilter>,
    /// Only tasks that succeeded (`true`: exited with code 0) or did not (`false`: every
    /// other ended task, killed and timed out included). Queued and running tasks match
    /// neither.
    pub success: Option<bool>,
    /// Only tasks that exited with this code.
    pub exit_code: Option<i32>,
    /// Only tasks carrying this tag.
    pub tag: Option<String>,
    /// Only tasks carrying all of these tags.
    pub tags: Option<Vec<String>>,
    /// Only tasks with this name.
    pub name: Option<String>,
    /// Only tasks started in this directory.
    pub workdir: Option<String>,
    /// Only the tasks started from inside this task (its children).
    pub parent: Option<TaskId>,
    /// Answer only these fields of each task (e.g. ["id","status"]).
    #[serde(default)]
    #[schemars(schema_with = "crate::payload::task::task_fields")]
    pub fields: Option<Vec<String>>,
}

impl ListInput {
    /// Checks what serde cannot: every name in `fields` is a task field.
    pub fn validate(&self) -> Result<()> {
        check_fields(self.fields.as_deref())
    }

    /// The filters a selector shares with `list`.
    pub fn selecting(selector: Selector) -> ListInput {
        ListInput {
            tag: selector.tag,
            tags: selector.tags,
            status: selector.status,
            ..ListInput::default()
        }
    }
}

/// `stop`: one task (`id`) or every task a selector chooses (`tag`, `tags`, `status`), how
/// to signal it and how long to wait before SIGKILL.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::wire_schema::id_or_selector)]
pub struct StopInput {
    /// The task id.
    pub id: Option<TaskId>,
    /// A selector, instead of `id`: every task carrying this tag; answered as a batch.
    /// Without `status`, only queued and running tasks are chosen.
    #[schemars(length(min = 1))]
    pub tag: Option<String>,
    /// A selector: every task carrying all of these tags.
    pub tags: Option<Vec<String>>,
    /// A selector: every task with this status, or one of these.
    pub status: Option<StatusFilter>,
    /// Answer only these fields of the task (e.g. ["id","status"]), as `list` does.
    #[serde(default)]
    #[schemars(schema_with = "crate::payload::task::task_fields")]
    pub fields: Option<Vec<String>>,
    /// The first signal: a name (`"SIGINT"`, `"INT"`, any case) or number; default SIGTERM.
    #[serde(default, deserialize_with = "signal")]
    #[schemars(schema_with = "crate::wire_schema::signal")]
    pub signal: Option<Signal>,
    /// Seconds before SIGKILL follows; default the task's `grace_s`.
    #[schemars(range(min = 0, max = MAX_SECONDS))]
    pub grace_s: Option<f64>,
    /// `true`: stop the tasks started from inside it too (its `children` in `status`,
    /// theirs, and so on), the deepest first, then the task itself. By default a child
    /// task outlives its parent's stop.
    #[serde(default)]
    pub with_children: bool,
}

impl StopInput {
    pub fn validate(&self) -> Result<()> {
        check_fields(self.fields.as_deref())?;
        match self.grace_s {
            Some(grace) => seconds("grace_s", grace),
            None => Ok(()),
        }
    }

    /// The selector given (`tag`, `tags`, `status`), if any.
    pub fn selector(&self) -> Option<Selector> {
        Selector::of(&self.tag, &self.tags, &self.status)
    }

    /// The task this payload names: its `id`. A payload with a selector instead names none
    /// (its front end turns it into one payload per chosen task first).
    pub fn id(&self) -> Result<&TaskId> {
        match (&self.id, self.selector()) {
            (Some(id), None) => Ok(id),
            (Some(_), Some(_)) => Err(Error::input_at(
                "id",
                "id: give id or a selector (tag, tags, status), not both",
                "Use {\"id\":\"web\"} for one task or {\"tag\":\"session-7\"} for every task tagged so.",
            )),
            (None, Some(_)) => Err(Error::input_at(
                "id",
                "id: missing; a selector (tag, tags, status) is taken as the whole payload, not in an item of an array",
                "Send the selector alone, {\"tag\":\"session-7\"}, or give each item an id.",
            )),
            (None, None) => Err(Error::input_at(
                "id",
                "id: missing; give id or a selector (tag, tags, status)",
                "Use {\"id\":\"web\"} for one task or {\"tag\":\"session-7\"} for every task tagged so.",
            )),
        }
    }

    /// A payload for each of `ids`, with this one's signal, grace period and fields.
    pub fn for_each(&self, ids: Vec<TaskId>) -> Vec<StopInput> {
        ids.into_iter()
            .map(|id| StopInput {
                id: Some(id),
                tag: None,
                tags: None,
                status: None,
                fields: self.fields.clone(),
                signal: self.signal,
                grace_s: self.grace_s,
                with_children: self.with_children,
            })
            .collect()
    }
}

/// `restart`: one task. Environment values are never stored, so a task started with `env`
/// needs them again here.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartInput {
    /// The task id.
    pub id: TaskId,
    /// Values for the variables the task was started with (`env_keys`).
    #[serde(default, deserialize_with = "env_map")]
    #[schemars(extend("propertyNames" = crate::wire_schema::env_name()))]
    pub env: BTreeMap<String, String>,
    /// Answer only these fields of the task (e.g. ["id","status"]), as `list` does.
    #[serde(default)]
    #[schemars(schema_with = "crate::payload::task::task_fields")]
    pub fields: Option<Vec<String>>,
}

/// `logs`: lines of the current run's output.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsInput {
    /// The task id.
    pub id: TaskId,
    /// Without `after`: how many of the last lines to answer (default 100). With `after`:
    /// at most this many lines after the cursor (default 100; `next_cursor` continues).
    pub lines: Option<u64>,
    /// A cursor (`next_cursor` of an earlier answer, or a frame's `cursor`): only what came
    /// after it.
    #[serde(default)]
    #[schemars(schema_with = "crate::wire_schema::optional_cursor")]
    pub after: Option<String>,
    /// Only lines matching this regular expression.
    pub grep: Option<String>,
    /// `true`: lines as written, with their ANSI escape sequences (colours, cursor moves).
    /// By default (`false`) they are removed, and `grep` matches the text without them; the
    /// log file and the artifact keep every byte.
    #[serde(default)]
    pub ansi: bool,
}

/// `events`: a task's lifecycle frames and log lines, or every task's status.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::wire_schema::events_choice)]
pub struct EventsInput {
    /// The task id; without it (and without `ids` or a selector), every task's status.
    pub id: Option<TaskId>,
    /// Several tasks in one stream (`--stream` only), instead of `id`: each task's own
    /// frames (its own `sequence` numbers, each log line with its `cursor`, so
    /// `{"id": <task_id>, "after": <sequence>}` resumes that task) until every one has
    /// ended.
    #[schemars(length(min = 1))]
    pub ids: Option<Vec<TaskId>>,
    /// A selector, instead of `id` or `ids`: every task carrying this tag (as they are when
    /// the call begins), followed as with `ids`.
    #[schemars(length(min = 1))]
    pub tag: Option<String>,
    /// A selector: every task carrying all of these tags.
    pub tags: Option<Vec<String>>,
    /// A selector: every task with this status, or one of these.
    pub status: Option<StatusFilter>,
    /// Resume after a frame: its `sequence` (a number) or a log line's `cursor` (a string).
    /// Only with `id`.
    pub after: Option<AfterInput>,
    /// How many past log lines to include first (default 100). With `ids` or a selector
    /// (and `--stream`): log lines are included only when `lines` is given, the last
    /// `lines` of each task first (`0`: only new ones).
    pub lines: Option<u64>,
    /// `true`: lines as written, with their ANSI escape sequences (colours, cursor moves).
    /// By default (`false`) they are removed; the
    /// log file and the artifact keep every byte.
    #[serde(default)]
    pub ansi: bool,
}

impl EventsInput {
    /// The selector given (`tag`, `tags`, `status`), if any.
    pub fn selector(&self) -> Option<Selector> {
        Selector::of(&self.tag, &self.tags, &self.status)
    }

    /// One way of choosing tasks at most; `after` only with an `id`; `lines` with an `id`,
    /// `ids` or a selector.
    pub fn validate(&self) -> Result<()> {
        let several = self.ids.is_some() || self.selector().is_some();
        if (self.id.is_some() && several) || (self.ids.is_some() && self.selector().is_some()) {
            return Err(Error::input_at(
                if self.id.is_some() { "id" } else { "ids" },
                "give one of id, ids or a selector (tag, tags, status), not several",
                "Use {\"id\":\"web\"} for one task, {\"ids\":[\"web\",\"api\"]} or {\"tag\":\"session-7\"} for several.",
            ));
        }
        if self.id.is_none() && several && self.after.is_some() {
            return Err(Error::input_at(
                "after",
                "after: only with an id; a stream over several tasks resumes one task at a time",
                "Each frame carries its task's sequence (and a log line its cursor): resume that task with events {\"id\": <task_id>, \"after\": <sequence>}.",
            ));
        }
        if self.id.is_none() && !several && (self.after.is_some() || self.lines.is_some()) {
            return Err(Error::input_at(
                "id",
                "id: missing; after and lines need an id, ids or a selector",
                "Give {\"id\":..} to resume one task's frames, or {\"ids\":[..],\"lines\":0} with --stream to follow several tasks' output; without them, events shows every task's status.",
            ));
        }
        Ok(())
    }
}

/// `events --stream --raw` (for people): one task (`id`), every task (nothing), or every
/// task a selector chooses as the follow begins (`tag`, `tags`, `status`). It follows what
/// comes from now on, so it takes no `after` or `lines`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventsInput {
    pub id: Option<TaskId>,
    pub tag: Option<String>,
    pub tags: Option<Vec<String>>,
    pub status: Option<StatusFilter>,
}

impl RawEventsInput {
    /// The selector given (`tag`, `tags`, `status`), if any.
    pub fn selector(&self) -> Option<Selector> {
        Selector::of(&self.tag, &self.tags, &self.status)
    }
}

/// Where to resume: a frame's sequence number or a log cursor.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum AfterInput {
    /// A frame's `sequence`: only later frames.
    Sequence(u64),
    /// A log line's `cursor` (`"<run>:<offset>"`): only what came after it.
    #[schemars(schema_with = "crate::wire_schema::cursor")]
    Cursor(String),
}

// Read by hand, as `Until` is, so that a value of another type says what was expected.
impl<'de> Deserialize<'de> for AfterInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AfterInput, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = AfterInput;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a frame's sequence (a whole number, 0 or more) or a log cursor (\"<run>:<offset>\")")
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<AfterInput, E> {
                Ok(AfterInput::Sequence(n))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<AfterInput, E> {
                u64::try_from(n)
                    .map(AfterInput::Sequence)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
            }

            fn visit_str<E: serde::de::Error>(self, cursor: &str) -> Result<AfterInput, E> {
                Ok(AfterInput::Cursor(cursor.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl RestartInput {
    pub fn validate(&self) -> Result<()> {
        check_fields(self.fields.as_deref())?;
        environment(&self.env)
    }
}

/// `ready` as stored, from the payload's.
impl From<ReadySpec> for ReadySpecRecord {
    fn from(spec: ReadySpec) -> ReadySpecRecord {
        ReadySpecRecord {
            log: spec.log,
            port: spec.port,
            http: spec.http,
            timeout_s: spec.timeout_s,
            extra: Default::default(),
        }
    }
}

/// The conditions as the probe checks them. Fields a newer version stored beside them are
/// not conditions this version can check; the ones it knows must all hold.
impl From<&ReadySpecRecord> for ReadySpec {
    fn from(spec: &ReadySpecRecord) -> ReadySpec {
        ReadySpec {
            log: spec.log.clone(),
            port: spec.port,
            http: spec.http.clone(),
            timeout_s: spec.timeout_s,
        }
    }
}

impl ReadySpecRecord {
    /// Checks the stored conditions as the payload's are checked and returns a probe for
    /// them (the supervisor's); `at` is the path named in errors.
    pub fn probe(&self, at: &str) -> Result<Probe> {
        ReadySpec::from(self).probe(at)
    }

    /// The stored readiness bound, checked as the payload's is.
    pub fn timeout(&self, at: &str) -> Result<Option<Duration>> {
        ReadySpec::from(self).timeout(at)
    }
}

/// `env`: names are non-empty and hold no `=`; no NUL anywhere. (A name that holds `=` or
/// NUL is refused while it is read, by [`env_map`]; this is for inputs built otherwise.)
fn environment(env: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in env {
        if let Some(why) = bad_env_name(key) {
            return Err(Error::input_at("env", format!("env: {why}"), ENV_NAME_HINT));
        }
        text(&format!("env.{key}"), value, false)?;
    }
    Ok(())
}

const ENV_NAME_HINT: &str =
    "Variable names are non-empty and hold no '=' or NUL: give {\"NAME\":\"value\"}.";

/// Why `name` is not a variable name, showing only what comes before a `=` or NUL: a name
/// like `API_TOKEN=sk-...` is a whole assignment, and what follows the `=` is a value.
fn bad_env_name(name: &str) -> Option<String> {
    let shown = &name[..name.find(['=', '\0']).unwrap_or(name.len())];
    if name.is_empty() {
        Some("a variable name is empty".to_owned())
    } else if name.contains('=') {
        Some(format!(
            "the variable name {shown:?} is followed by '='; what follows is not shown"
        ))
    } else if name.contains('\0') {
        Some(format!(
            "the variable name {shown:?} is followed by a NUL byte; what follows is not shown"
        ))
    } else {
        None
    }
}

/// Reads `env`: an object of variable names to string values. Its errors never show a
/// value (RELIABILITY 34): serde's own messages quote the value they refuse ("invalid type:
/// integer `987654`"), so `env` is read by visitors of its own that say the path (`env.PIN`),
/// the type expected and the type found, and nothing of the value.
fn env_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_any(EnvVisitor)
}

/// What a JSON value is, in words, without what it holds.
fn json_type(found: &str) -> String {
    format!("{found} (values are never shown)")
}

struct EnvVisitor;

impl EnvVisitor {
    fn refuse<E: serde::de::Error>(found: &str) -> Result<BTreeMap<String, String>, E> {
        Err(E::custom(format!(
            "expected an object of variable names to string values, not {}",
            json_type(found)
        )))
    }
}

impl<'de> serde::de::Visitor<'de> for EnvVisitor {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object of variable names to string values")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut env = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            if let Some(why) = bad_env_name(&name) {
                return Err(serde::de::Error::custom(why));
            }
            let EnvValue(value) = map.next_value()?;
            env.insert(name, value);
        }
        Ok(env)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        EnvVisitor::refuse("a boolean")
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        EnvVisitor::refuse("a number")
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        EnvVisitor::refuse("a number")
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        EnvVisitor::refuse("a number")
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        EnvVisitor::refuse("a string")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        EnvVisitor::refuse("null")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        EnvVisitor::refuse("an array")
    }
}

/// One value of `env`: a string; anything else is refused without showing it.
struct EnvValue(String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EnvValue, D::Error> {
        d.deserialize_any(EnvValueVisitor)
    }
}

struct EnvValueVisitor;

impl EnvValueVisitor {
    fn refuse<E: serde::de::Error>(found: &str) -> Result<EnvValue, E> {
        Err(E::custom(format!(
            "expected a string, not {}",
            json_type(found)
        )))
    }
}

impl<'de> serde::de::Visitor<'de> for EnvValueVisitor {
    type Value = EnvValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<EnvValue, E> {
        Ok(EnvValue(value.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<EnvValue, E> {
        Ok(EnvValue(value))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<EnvValue, E> {
        EnvValueVisitor::refuse("a boolean")
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<EnvValue, E> {
        EnvValueVisitor::refuse("a number")
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<EnvValue, E> {
        EnvValueVisitor::refuse("a number")
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<EnvValue, E> {
        EnvValueVisitor::refuse("a number")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<EnvValue, E> {
        EnvValueVisitor::refuse("null")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<EnvValue, A::Error> {
        EnvValueVisitor::refuse("an array")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<EnvValue, A::Error> {
        EnvValueVisitor::refuse("an object")
    }
}

fn text(path: &str, value: &str, required: bool) -> Result<()> {
    if required && value.is_empty() {
        return Err(Error::input_at(
            path,
            format!("{path}: must not be empty"),
            "Give a non-empty string or leave the field out.",
        ));
    }
    if value.contains('\0') {
        return Err(Error::input_at(
            path,
            format!("{path}: holds a NUL byte"),
            "Strings passed to a process cannot hold NUL bytes.",
        ));
    }
    Ok(())
}

fn seconds(path: &str, value: f64) -> Result<()> {
    if value.is_finite() && (0.0..=MAX_SECONDS).contains(&value) {
        Ok(())
    } else {
        Err(Error::input_at(
            path,
            format!("{path}: {value} is out of range"),
            format!("Give a number of seconds from 0 to {MAX_SECONDS}."),
        ))
    }
}

/// A signal as a name (`SIGTERM`, `TERM`, any case) or a number; `null` for the default.
/// Read by a visitor rather than an untagged enum, so that a value of another type says
/// what was expected instead of "data did not match any variant".
fn signal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Signal>, D::Error> {
    struct Visitor;
    impl Visitor {
        fn refused<E: serde::de::Error>() -> E {
            E::custom("not a signal: give a name like \"SIGTERM\" or a number like 15")
        }
    }
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<Signal>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a signal name like \"SIGTERM\" or a number like 15")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<Signal>, E> {
            Ok(None)
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Option<Signal>, E> {
            let signal = i32::try_from(n).ok().and_then(|n| Signal::try_from(n).ok());
            signal.map(Some).ok_or_else(Visitor::refused)
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Option<Signal>, E> {
            let signal = i32::try_from(n).ok().and_then(|n| Signal::try_from(n).ok());
            signal.map(Some).ok_or_else(Visitor::refused)
        }

        fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Option<Signal>, E> {
            let upper = name.to_ascii_uppercase();
            let full = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            full.parse::<Signal>()
                .map(Some)
                .map_err(|_| Visitor::refused())
        }
    }
    d.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RELIABILITY 34: whatever is wrong with `env`, the error names the path and the types,
    /// never the value.
    #[test]
    fn env_errors_never_show_a_value() {
        let cases = [
            (
                r#"{"command":"x","env":{"PIN":987654}}"#,
                "env.PIN",
                "987654",
            ),
            (r#"{"command":"x","env":{"PIN":-4.5e3}}"#, "env.PIN", "4.5"),
            (r#"{"command":"x","env":{"PIN":true}}"#, "env.PIN", "true"),
            (
                r#"{"command":"x","env":{"PIN":{"v":"s3cret"}}}"#,
                "env.PIN",
                "s3cret",
            ),
            (
                r#"{"command":"x","env":"API_TOKEN=s3cret"}"#,
                "env",
                "s3cret",
            ),
            (
                r#"{"command":"x","env":["API_TOKEN=s3cret"]}"#,
                "env",
                "s3cret",
            ),
            (
                r#"{"command":"x","env":{"API_TOKEN=s3cret":"v"}}"#,
                "env",
                "s3cret",
            ),
            (
                r#"{"command":"x","env":{"API_TOKEN\u0000s3cret":"v"}}"#,
                "env",
                "s3cret",
            ),
            (r#"{"command":"x","env":{"":"v"}}"#, "env", "\"v\""),
        ];
        for (payload, path, secret) in cases {
            let error =
                crate::payload::parse::<StartInput>(payload.as_bytes(), "{}").expect_err(payload);
            let json = error.to_json().to_string();
            assert!(!json.contains(secret), "{payload}: {json}");
            assert_eq!(error.details()["path"], path, "{payload}: {json}");
        }
        let input: StartInput =
            crate::payload::parse(br#"{"command":"x","env":{"A":"1","B":""}}"#, "{}")
                .expect("strings are values");
        assert_eq!(input.env["A"], "1");
        assert_eq!(input.env["B"], "");
    }
}
