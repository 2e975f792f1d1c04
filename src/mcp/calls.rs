//! One function per tool: the arguments become the lifecycle's args struct, the result
//! becomes the command's answer type, as the CLI's commands do (`src/commands/`), never
//! through them. Each runs its lifecycle calls through [`blocking::run`].
//!
//! A blocking tool (`wait`, `start`/`restart` with `wait`, `stop`, `logs`/`events` with
//! `follow`) waits at most its bound (default 25 s, at most 50 s). Running out is always the
//! error `TaskWaitTimedOut` (retryable), whose `details` carry what the next call needs: the
//! task's `id` and `status`, and `cursor`, the log position reached (pass it as `after` to
//! `logs` or `events`). Its hint names the tool to call again, not a command-line flag.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use rmcp::model::JsonObject;
use rmcp::service::{RequestContext, RoleServer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::blocking::{self, Reporter};
use super::tools::{self, Extra};
use crate::catalog;
use crate::error::{Error, Result};
use crate::lifecycle::batch::{self, Item};
use crate::lifecycle::follow::{EventsOf, FollowArgs};
use crate::lifecycle::launch::{StartArgs, StartBatchArgs, Started, WaitStartedArgs};
use crate::lifecycle::list::ListArgs;
use crate::lifecycle::logs::{LogsArgs, LogsShape};
use crate::lifecycle::observe::StatusArgs;
use crate::lifecycle::restart::RestartArgs;
use crate::lifecycle::retention::{PruneArgs, RmArgs};
use crate::lifecycle::stop::StopArgs;
use crate::lifecycle::wait::{WaitArgs, Waited};
use crate::lifecycle::{Cancel, Tasks};
use crate::output_log::Cursor;
use crate::paths::TaskId;
use crate::payload;
use crate::payload::answer::{
    ListAnswer, PruneAnswer, RmAnswer, Shown, StartAnswer, StopAnswer, TaskAnswer, WaitAnswer,
};
use crate::payload::batch::{BatchAnswer, ItemResult};
use crate::payload::input::{
    AfterInput, EventsInput, IdInput, ListInput, LogsInput, PruneInput, RestartInput, RmInput,
    StartInput, StopInput, WaitInput,
};
use crate::payload::task::{Status, Task};
use crate::state::record::ReadySpecRecord;

/// A failed call: the error, and where to resume when a wait ran out.
#[derive(Debug)]
pub struct Failed {
    /// Boxed: a `Result` carrying it stays small.
    error: Box<Error>,
    resume: Resume,
}

/// What the next call needs after a wait ran out (`TaskWaitTimedOut`).
#[derive(Debug, Clone, Copy)]
enum Resume {
    /// `wait`, `start`/`restart` with `wait`, `stop`: the error carries the log position.
    Wait,
    /// `logs` with `follow`: the position reached.
    Logs(Cursor),
    /// `events` with `follow`: the position reached, and the next frame's number.
    Events { cursor: Cursor, next_sequence: u64 },
}

impl From<Error> for Failed {
    fn from(error: Error) -> Failed {
        Failed {
            error: Box::new(error),
            resume: Resume::Wait,
        }
    }
}

impl Failed {
    /// The error object, as the CLI's (`{type, message, details}`). A running-out also
    /// carries its resume point, and a hint that names the tool to call rather than a flag.
    pub fn to_json(&self) -> Value {
        let mut object = self.error.to_json();
        let (Error::TaskWaitTimedOut { .. }, Some(Value::Object(details))) =
            (self.error.as_ref(), object.get_mut("details"))
        else {
            return object;
        };
        // `hint` and `retryable` stay last, as everywhere.
        let retryable = details.remove("retryable");
        details.remove("hint");
        let (cursor, hint) = match self.resume {
            Resume::Wait => (
                None,
                "The task runs on: call wait again to keep waiting (timeout_s at most 50), or logs with after: cursor to read what it printed meanwhile.",
            ),
            Resume::Logs(cursor) => (
                Some(cursor),
                "No new output yet and the task runs on: call logs again with after: cursor and follow: true.",
            ),
            Resume::Events {
                cursor,
                next_sequence,
            } => {
                details.insert("next_sequence".into(), json!(next_sequence));
                (
                    Some(cursor),
                    "Nothing new yet and the task runs on: call events again with after: next_sequence - 1 and follow: true.",
                )
            }
        };
        if let Some(cursor) = cursor {
            details.insert("cursor".into(), json!(cursor.to_string()));
        }
        details.insert("hint".into(), json!(hint));
        if let Some(retryable) = retryable {
            details.insert("retryable".into(), retryable);
        }
        object
    }
}

/// What a tool call answers: the answer, or the error object.
pub type Answer = std::result::Result<Value, Failed>;

/// What every call needs: its request (cancellation, progress token) and the server's
/// shutdown.
pub struct Call<'a> {
    pub ctx: &'a RequestContext<RoleServer>,
    pub shutdown: &'a CancellationToken,
}

impl Call<'_> {
    /// Runs `work` on the blocking pool (see [`blocking::run`]).
    async fn run<T: Serialize + Send + 'static>(
        &self,
        bound: Option<Duration>,
        work: impl FnOnce(Tasks, Cancel, Reporter) -> std::result::Result<T, Failed> + Send + 'static,
    ) -> Answer {
        let answer = blocking::run(self.ctx, self.shutdown, bound, move |cancel, reporter| {
            let tasks = Tasks::open()?;
            Ok(work(tasks, cancel, reporter))
        })
        .await?;
        answer.and_then(|answer| Ok(encode(&answer)?))
    }
}

/// Dispatches a tool call by name; `None` for a name that is no tool.
pub async fn call(call: &Call<'_>, name: &str, mut args: JsonObject) -> Option<Answer> {
    let entry = catalog::TOOLS.iter().find(|t| t.name == name)?;
    let extra = match tools::take_extra(entry, &mut args) {
        Ok(extra) => extra,
        Err(error) => return Some(Err(error.into())),
    };
    Some(match name {
        "start" => start(call, args, extra).await,
        "status" => status(call, args).await,
        "list" => list(call, args).await,
        "wait" => wait(call, args, extra).await,
        "stop" => stop(call, args, extra).await,
        "restart" => restart(call, args, extra).await,
        "logs" => logs(call, args, extra).await,
        "events" => events(call, args, extra).await,
        "rm" => rm(call, args).await,
        "prune" => prune(call, args).await,
        _ => return None,
    })
}

async fn start(call: &Call<'_>, mut args: JsonObject, extra: Extra) -> Answer {
    const EXAMPLE: &str = r#"{"id":"web","command":"npm","args":["run","dev"]}"#;
    let Extra {
        bound,
        wait,
        concurrency,
        ..
    } = extra;
    let waiting = wait.then_some(bound);
    match take_items::<StartInput>(&mut args, EXAMPLE)? {
        Some(inputs) => {
            let fields: Vec<Option<Vec<String>>> =
                inputs.iter().map(|i| i.fields.clone()).collect();
            call.run(waiting, move |tasks, cancel, _| {
                let items = tasks.start_batch(StartBatchArgs {
                    inputs,
                    wait,
                    timeout: Some(bound),
                    concurrency,
                    cancel,
                })?;
                let items = items
                    .into_iter()
                    .map(|item| {
                        let fields = fields.get(item.index).and_then(Option::as_deref);
                        let answer = item.result.map(|s| start_answer(s, fields));
                        Item::new(item.index, item.target, answer)
                    })
                    .collect();
                Ok(batch_answer(items, concurrency, |answer| answer)?)
            })
            .await
        }
        None => {
            if concurrency.is_some() {
                return Err(Error::input_at(
                    "concurrency",
                    "concurrency: only with items",
                    "Give items (several tasks) with concurrency, or leave concurrency out.",
                )
                .into());
            }
            let input: StartInput = parse(args, EXAMPLE)?;
            let fields = input.fields.clone();
            call.run(waiting, move |tasks, cancel, reporter| {
                let started = tasks.start(StartArgs {
                    input,
                    wait: false,
                    timeout: None,
                    cancel: cancel.clone(),
                })?;
                if !wait {
                    return Ok(start_answer(started, fields.as_deref()));
                }
                let task = wait_started(
                    &tasks,
                    &started.task.id,
                    started.condition,
                    bound,
                    cancel,
                    &reporter,
                )?;
                Ok(StartAnswer::new(task, started.reused, fields.as_deref()))
            })
            .await
        }
    }
}

fn start_answer(started: Started, fields: Option<&[String]>) -> StartAnswer {
    StartAnswer::new(started.task, started.reused, fields)
}

/// `start --wait`'s wait, with progress; running out of `bound` is `TaskWaitTimedOut`
/// (`TaskNotReady` when the task's own `ready.timeout_s` ran out first).
fn wait_started(
    tasks: &Tasks,
    id: &str,
    condition: Option<ReadySpecRecord>,
    bound: Duration,
    cancel: Cancel,
    reporter: &Reporter,
) -> std::result::Result<Task, Failed> {
    let id = task_id(id)?;
    tasks
        .wait_started(WaitStartedArgs {
            id,
            timeout: Some(bound),
            cancel,
            progress: Some(reporter.on_task()),
            condition,
        })
        .map_err(|e| ran_out(tasks, e))
}

async fn status(call: &Call<'_>, args: JsonObject) -> Answer {
    let input: IdInput = parse(args, r#"{"id":"web"}"#)?;
    call.run(None, move |tasks, _, _| {
        Ok(TaskAnswer::new(tasks.status(StatusArgs { id: input.id })?))
    })
    .await
}

async fn list(call: &Call<'_>, args: JsonObject) -> Answer {
    let input: ListInput = parse(args, r#"{"status":"running"}"#)?;
    input.validate()?;
    call.run(None, move |tasks, _, _| {
        let fields = input.fields.clone();
        let listed = tasks.list(ListArgs { filter: input })?;
        let tasks: Vec<Shown> = listed
            .tasks
            .into_iter()
            .map(|task| Shown::new(task, fields.as_deref()))
            .collect();
        Ok(ListAnswer {
            total: tasks.len(),
            tasks,
            unreadable: listed.unreadable,
        })
    })
    .await
}

async fn wait(call: &Call<'_>, args: JsonObject, extra: Extra) -> Answer {
    let input: WaitInput = parse(args, r#"{"id":"web","until":{"port":3000}}"#)?;
    crate::payload::input::check_fields(input.fields.as_deref())?;
    let fields = input.fields.clone();
    let bound = extra.bound;
    call.run(Some(bound), move |tasks, cancel, reporter| {
        let waited = tasks
            .wait(WaitArgs {
                input,
                timeout: Some(bound),
                cancel,
                progress: Some(reporter.on_task()),
            })
            .map_err(|e| ran_out(&tasks, e))?;
        let fields = fields.as_deref();
        Ok(match waited {
            Waited::One { task, matched } => WaitAnswer::One(Box::new(TaskAnswer {
                matched,
                ..TaskAnswer::shown(*task, fields)
            })),
            Waited::Several { mode, tasks, ended } => {
                WaitAnswer::several(mode, tasks, ended, fields)
            }
        })
    })
    .await
}

async fn stop(call: &Call<'_>, mut args: JsonObject, extra: Extra) -> Answer {
    const EXAMPLE: &str = r#"{"id":"web"}"#;
    let bound = extra.bound;
    let stop_one = move |tasks: &Tasks, input: StopInput, cancel: Cancel| {
        let fields = input.fields.clone();
        let mut args = StopArgs::from_input(input, Some(bound))?;
        args.cancel = cancel;
        let stopped = tasks.stop(args)?;
        Ok(StopAnswer::new(
            stopped.task,
            stopped.already_terminal,
            stopped.children,
            fields.as_deref(),
        ))
    };
    let stop_all = move |tasks: &Tasks, inputs: Vec<StopInput>, cancel: Cancel| {
        let items = run_items(
            inputs,
            |i: &StopInput| i.id.as_ref(),
            |input| stop_one(tasks, input, cancel.clone()),
        );
        batch_answer(items, None, |answer| answer)
    };
    match take_items::<StopInput>(&mut args, EXAMPLE)? {
        Some(inputs) => {
            call.run(Some(bound), move |tasks, cancel, _| {
                Ok(stop_all(&tasks, inputs, cancel)?)
            })
            .await
        }
        None => {
            let input: StopInput = parse(args, EXAMPLE)?;
            if input.id.is_none()
                && let Some(selector) = input.selector()
            {
                input.validate()?;
                return call
                    .run(Some(bound), move |tasks, cancel, _| {
                        let ids = tasks.select(&selector, true)?;
                        Ok(stop_all(&tasks, input.for_each(ids), cancel)?)
                    })
                    .await;
            }
            call.run(Some(bound), move |tasks, cancel, reporter| {
                if let Some(id) = &input.id {
                    reporter.say(format!("stopping {id}"));
                }
                stop_one(&tasks, input, cancel).map_err(|e| ran_out(&tasks, e))
            })
            .await
        }
    }
}

async fn restart(call: &Call<'_>, mut args: JsonObject, extra: Extra) -> Answer {
    const EXAMPLE: &str = r#"{"id":"web"}"#;
    let Extra { bound, wait, .. } = extra;
    let waiting = wait.then_some(bound);
    let restart_one = |tasks: &Tasks, input: RestartInput| {
        input.validate()?;
        let fields = input.fields.clone();
        Ok((tasks.restart(RestartArgs { input })?, fields))
    };
    match take_items::<RestartInput>(&mut args, EXAMPLE)? {
        Some(inputs) => {
            call.run(waiting, move |tasks, cancel, reporter| {
                // Restart them all first, then wait, with one deadline for the whole call.
                let restarted = run_items(
                    inputs,
                    |i: &RestartInput| Some(&i.id),
                    |input| restart_one(&tasks, input),
                );
                let deadline = Instant::now() + bound;
                let items = restarted
                    .into_iter()
                    .map(|item| {
                        let result = item.result.and_then(|(task, fields)| {
                            if !wait {
                                return Ok(TaskAnswer::shown(task, fields.as_deref()));
                            }
                            let left = deadline.saturating_duration_since(Instant::now());
                            wait_started(&tasks, &task.id, None, left, cancel.clone(), &reporter)
                                .map(|task| TaskAnswer::shown(task, fields.as_deref()))
                                .map_err(|failed| *failed.error)
                        });
                        Item::new(item.index, item.target, result)
                    })
                    .collect();
                Ok(batch_answer(items, None, |answer| answer)?)
            })
            .await
        }
        None => {
            let input: RestartInput = parse(args, EXAMPLE)?;
            call.run(waiting, move |tasks, cancel, reporter| {
                let (task, fields) = restart_one(&tasks, input)?;
                let task = if wait {
                    wait_started(&tasks, &task.id, None, bound, cancel, &reporter)?
                } else {
                    task
                };
                Ok(TaskAnswer::shown(task, fields.as_deref()))
            })
            .await
        }
    }
}

async fn logs(call: &Call<'_>, args: JsonObject, extra: Extra) -> Answer {
    let input: LogsInput = parse(args, r#"{"id":"web","lines":50}"#)?;
    let shape = match extra.output.as_deref() {
        Some("inline") => LogsShape::Inline,
        Some("artifact") => LogsShape::Artifact,
        _ => LogsShape::Auto,
    };
    let Extra { bound, follow, .. } = extra;
    call.run(follow.then_some(bound), move |tasks, cancel, reporter| {
        let LogsInput {
            id,
            lines,
            after,
            grep,
            ansi,
        } = input;
        let page = |after: Option<String>| {
            tasks.logs(LogsArgs {
                input: LogsInput {
                    id: id.clone(),
                    lines,
                    after,
                    grep: grep.clone(),
                    ansi,
                },
                shape,
            })
        };
        let mut answer = page(after)?;
        if !follow {
            return Ok(answer);
        }
        reporter.say(format!("{id}: waiting for new output"));
        let deadline = Instant::now() + bound;
        loop {
            let (shown, status, cursor) = (answer.shown_lines, answer.status, answer.next_cursor);
            if shown > 0 || status.is_terminal() {
                return Ok(answer);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || cancel.is_cancelled() {
                return Err(Failed {
                    error: Box::new(timed_out(&id, status, bound)),
                    resume: Resume::Logs(cursor),
                });
            }
            // Until a line comes after the cursor, the run ends, or the time runs out.
            let after = Some(cursor.to_string());
            let follow = FollowArgs::for_logs(
                &LogsInput {
                    id: id.clone(),
                    lines: None,
                    after: after.clone(),
                    grep: grep.clone(),
                    ansi,
                },
                Some(left),
                cancel.clone(),
            )?;
            tasks.follow(follow, &mut |_| ControlFlow::Break(()))?;
            answer = page(after)?;
        }
    })
    .await
}

async fn events(call: &Call<'_>, args: JsonObject, extra: Extra) -> Answer {
    let input: EventsInput = parse(args, r#"{"id":"web","after":12}"#)?;
    let Extra { bound, follow, .. } = extra;
    if follow && input.id.is_none() {
        return Err(Error::input_at(
            "follow",
            "follow: only with an id",
            "Give {\"id\":..} to wait for one task's next frames; to wait for the first of several tasks to end, use wait {\"ids\":[..],\"mode\":\"any\"}.",
        )
        .into());
    }
    call.run(follow.then_some(bound), move |tasks, cancel, reporter| {
        let args = match tasks.events_of(&input, None, cancel.clone())? {
            EventsOf::One(args) => args,
            EventsOf::Every => {
                return Ok(serde_json::to_value(tasks.all_events()?).map_err(encoding)?);
            }
            EventsOf::Several(_) => {
                return Err(Error::input_at(
                    "ids",
                    "ids, tag, tags, status: several tasks are followed only in the CLI's events --stream",
                    "Call list with the same ids or selector for their status now, events {\"id\":..} for one task's frames, or wait {\"ids\":[..],\"mode\":\"any\"} for the first to end.",
                )
                .into());
            }
        };
        let mut answer = tasks.events(args.clone())?;
        if !follow {
            return Ok(serde_json::to_value(answer).map_err(encoding)?);
        }
        reporter.say(format!("{}: waiting for new frames", args.id));
        let deadline = Instant::now() + bound;
        loop {
            if !answer.frames.is_empty() || answer.ended {
                return Ok(serde_json::to_value(answer).map_err(encoding)?);
            }
            let after = answer.next_sequence.saturating_sub(1);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || cancel.is_cancelled() {
                let status = tasks.record(&args.id)?.status.into();
                return Err(Failed {
                    error: Box::new(timed_out(&args.id, status, bound)),
                    resume: Resume::Events {
                        cursor: answer.next_cursor,
                        next_sequence: answer.next_sequence,
                    },
                });
            }
            let resume = EventsInput {
                id: Some(args.id.clone()),
                after: Some(AfterInput::Sequence(after)),
                lines: input.lines,
                ansi: input.ansi,
                ..EventsInput::default()
            };
            let EventsOf::One(follow) = tasks.events_of(&resume, Some(left), cancel.clone())?
            else {
                unreachable!("an id was given")
            };
            tasks.follow(follow.clone(), &mut |_| ControlFlow::Break(()))?;
            answer = tasks.events(follow)?;
        }
    })
    .await
}

async fn rm(call: &Call<'_>, mut args: JsonObject) -> Answer {
    const EXAMPLE: &str = r#"{"id":"web"}"#;
    let rm_one = |tasks: &Tasks, input: RmInput| {
        let removed = tasks.rm(RmArgs { input })?;
        Ok(RmAnswer {
            task_id: removed.task_id.to_string(),
            removed: true,
            status: removed.status,
        })
    };
    match take_items::<RmInput>(&mut args, EXAMPLE)? {
        Some(inputs) => {
            call.run(None, move |tasks, _, _| {
                let items = run_items(
                    inputs,
                    |i: &RmInput| Some(&i.id),
                    |input| rm_one(&tasks, input),
                );
                Ok(batch_answer(items, None, |answer| answer)?)
            })
            .await
        }
        None => {
            let input: RmInput = parse(args, EXAMPLE)?;
            call.run(None, move |tasks, _, _| Ok(rm_one(&tasks, input)?))
                .await
        }
    }
}

async fn prune(call: &Call<'_>, args: JsonObject) -> Answer {
    let input: PruneInput = parse(args, r#"{"older_than_s":86400,"keep_last":10}"#)?;
    input.validate()?;
    call.run(None, move |tasks, _, _| {
        let pruned = tasks.prune(PruneArgs { input })?;
        Ok(PruneAnswer {
            total_removed: pruned.removed.len(),
            removed: pruned.removed,
            skipped: pruned.skipped,
        })
    })
    .await
}

/// `TaskWaitTimedOut` for a follow that ran out.
fn timed_out(id: &TaskId, status: Status, bound: Duration) -> Error {
    Error::TaskWaitTimedOut {
        id: id.to_string(),
        status: status.as_str().to_owned(),
        timeout_s: bound.as_secs_f64(),
        cursor: None,
    }
}

/// A wait's error; a running-out carries the log position reached (the lifecycle put it
/// in the error's `cursor`).
fn ran_out(tasks: &Tasks, error: Error) -> Failed {
    Failed {
        error: Box::new(tasks.with_cursor(error)),
        resume: Resume::Wait,
    }
}

fn task_id(id: &str) -> Result<TaskId> {
    TaskId::parse(id).map_err(|e| Error::input_at("id", e, "Give a task id."))
}

/// The arguments (less the tool's own) as the command's payload, through the CLI's parser:
/// the same messages, with the JSON path of a bad value.
fn parse<T: DeserializeOwned>(args: JsonObject, example: &str) -> Result<T> {
    let bytes = serde_json::to_vec(&Value::Object(args)).map_err(encoding)?;
    payload::parse(&bytes, example)
}

/// A batch's `items`, each parsed as the command's payload; `None` without `items`.
fn take_items<T: DeserializeOwned>(args: &mut JsonObject, example: &str) -> Result<Option<Vec<T>>> {
    let Some(items) = args.remove("items") else {
        return Ok(None);
    };
    if let Some(other) = args.keys().next() {
        return Err(Error::input_at(
            other.clone(),
            format!("{other}: not beside items; give each task's fields in its item"),
            format!("Use {{\"items\":[{example}]}}, or one task's fields without items."),
        ));
    }
    let Value::Array(items) = items else {
        return Err(Error::input_at(
            "items",
            format!("items: invalid type: {items}, expected an array"),
            format!("Use {{\"items\":[{example}]}}."),
        ));
    };
    if items.is_empty() {
        return Err(Error::input_at(
            "items",
            "items: the batch is empty",
            format!("Give at least one item, e.g. {{\"items\":[{example}]}}."),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let bytes = serde_json::to_vec(&item).map_err(encoding)?;
            payload::parse(&bytes, example).map_err(|error| at_item(i, error))
        })
        .collect::<Result<Vec<T>>>()
        .map(Some)
}

/// An item's error, its path under `items[i]`.
fn at_item(index: usize, error: Error) -> Error {
    let Error::CommandInput {
        message,
        hint,
        path,
    } = error
    else {
        return error;
    };
    let at = match path.as_deref() {
        None | Some(".") | Some("") => format!("items[{index}]"),
        Some(path) => format!("items[{index}].{path}"),
    };
    // The parser's message starts with the path, or is about the item as a whole ("unknown
    // field ..." names the field already).
    let message = match message.strip_prefix(path.as_deref().unwrap_or("\0")) {
        Some(rest) if rest.starts_with(':') => format!("{at}{rest}"),
        _ => format!("items[{index}]: {message}"),
    };
    Error::input_at(at, message, hint)
}

/// Runs a batch's items, a few at a time, in input order.
fn run_items<T: Send, A: Send>(
    inputs: Vec<T>,
    id: impl Fn(&T) -> Option<&TaskId> + Sync,
    work: impl Fn(T) -> Result<A> + Sync,
) -> Vec<Item<A>> {
    let items = inputs.into_iter().enumerate().collect();
    batch::run_items(
        items,
        batch::WORKERS,
        |t| id(t).map(ToString::to_string),
        work,
    )
}

/// The batch answer for `items`, each answered by `answer`.
fn batch_answer<T, A: Serialize>(
    items: Vec<Item<T>>,
    concurrency: Option<usize>,
    answer: impl Fn(T) -> A,
) -> Result<BatchAnswer> {
    let results = items
        .into_iter()
        .map(|item| {
            let result = item
                .result
                .and_then(|t| serde_json::value::to_raw_value(&answer(t)).map_err(encoding));
            ItemResult::new(item.index, item.target, result)
        })
        .collect();
    Ok(BatchAnswer::new(results, concurrency))
}

fn encode(answer: &impl Serialize) -> Result<Value> {
    serde_json::to_value(answer).map_err(encoding)
}

/// Answers are plain structs of strings and numbers; encoding them cannot fail.
fn encoding(e: serde_json::Error) -> Error {
    Error::input(
        format!("could not encode the answer: {e}"),
        "This is a bug; please report it.",
    )
}
