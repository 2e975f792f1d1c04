//! `wait {id, until?}`: block until the task has ended, or until conditions hold.
//! `wait {ids, mode?}`: block until all (or any) of several tasks have ended.
//!
//! Waiting for the end blocks on the supervisor's lock, so it wakes the instant the
//! supervisor exits, with no polling. Waiting for conditions (`until: {log?, port?,
//! http?}`) reads the current run's output as it is written (notify) and tries ports and
//! URLs on a short timer; if the task ends first, the answer is `TaskNotReady` with the
//! last lines of its log. `--timeout` bounds either with `TaskWaitTimedOut` (retryable);
//! the task runs on.

use std::fs::File;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::commands::open_state;
use crate::commands::status::TaskAnswer;
use crate::error::{Error, Result};
use crate::follow::DirWatch;
use crate::output_log;
use crate::paths::StateDir;
use crate::paths::{TaskId, TaskPaths};
use crate::payload::input::{Until, WaitInput, WaitMode};
use crate::payload::task::Task;
use crate::ready::{self, Probe};
use crate::state::lock;
use crate::state::{TaskRecord, observe};
use crate::time::deadline_after;

/// What `wait` answers: one task, or several.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum WaitAnswer {
    /// `wait {id}`.
    One(Box<TaskAnswer>),
    /// `wait {ids}`.
    Several(SeveralAnswer),
}

/// `wait {ids, mode}`'s answer.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SeveralAnswer {
    pub mode: WaitMode,
    /// Every task of `ids`, in that order, as it is now.
    pub tasks: Vec<Task>,
    /// The ids of those that have ended: all of them with `all`, at least one with `any`.
    pub ended: Vec<String>,
}

pub fn run(input: WaitInput, timeout: Option<Duration>) -> Result<WaitAnswer> {
    let state = open_state()?;
    match (input.id, input.ids) {
        (Some(id), None) if input.mode.is_none() => {
            one(&state.task(&id), &id, input.until, timeout).map(|a| WaitAnswer::One(Box::new(a)))
        }
        (Some(_), None) => Err(Error::input_at(
            "mode",
            "mode: only with ids",
            "Use {\"ids\":[\"a\",\"b\"],\"mode\":\"any\"}, or leave mode out.",
        )),
        (None, Some(ids)) => several(
            &state,
            ids,
            input.mode.unwrap_or_default(),
            input.until,
            timeout,
        )
        .map(WaitAnswer::Several),
        (Some(_), Some(_)) => Err(Error::input_at(
            "ids",
            "ids: give id or ids, not both",
            "Use {\"id\":\"web\"} for one task or {\"ids\":[\"a\",\"b\"]} for several.",
        )),
        (None, None) => Err(Error::input_at(
            "id",
            "id: missing; give id or ids",
            "Use {\"id\":\"web\"} for one task or {\"ids\":[\"a\",\"b\"]} for several.",
        )),
    }
}

/// Until all (or any) of `ids` have ended.
fn several(
    state: &StateDir,
    ids: Vec<TaskId>,
    mode: WaitMode,
    until: Until,
    timeout: Option<Duration>,
) -> Result<SeveralAnswer> {
    match until {
        Until::Exit => {}
        Until::Word(word) if word == "exit" => {}
        _ => {
            return Err(Error::input_at(
                "until",
                "until: with ids, only \"exit\"",
                "Wait for conditions one task at a time: {\"id\":\"web\",\"until\":{\"port\":3000}}.",
            ));
        }
    }
    if ids.is_empty() {
        return Err(Error::input_at(
            "ids",
            "ids: give at least one id",
            "Use {\"ids\":[\"a\",\"b\"]}.",
        ));
    }
    // Every task must exist before any waiting starts.
    for id in &ids {
        observe(&state.task(id), id)?;
    }
    match mode {
        WaitMode::All => {
            let deadline = timeout.and_then(deadline_after);
            for id in &ids {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                until_terminal(&state.task(id), id, left).map_err(|e| whole_timeout(e, timeout))?;
            }
        }
        WaitMode::Any => first_to_end(state, &ids, timeout)?,
    }
    let mut tasks = Vec::with_capacity(ids.len());
    for id in &ids {
        let paths = state.task(id);
        tasks.push(Task::from_record(&observe(&paths, id)?, &paths));
    }
    let ended = tasks
        .iter()
        .filter(|t| t.status.is_terminal())
        .map(|t| t.id.clone())
        .collect();
    Ok(SeveralAnswer { mode, tasks, ended })
}

/// Waits on every task at once (each blocks on its own lock, on its own thread); returns
/// when the first has ended. The threads still blocked end with the process.
fn first_to_end(state: &StateDir, ids: &[TaskId], timeout: Option<Duration>) -> Result<()> {
    let (sender, ended) = mpsc::channel();
    for id in ids {
        let (paths, id, sender) = (state.task(id), id.clone(), sender.clone());
        std::thread::spawn(move || {
            let _ = sender.send(until_terminal(&paths, &id, timeout));
        });
    }
    drop(sender);
    let mut timed_out = None;
    for result in ended {
        match result {
            Ok(_) => return Ok(()),
            Err(e @ Error::TaskWaitTimedOut { .. }) => {
                timed_out.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(timed_out.unwrap_or_else(|| Error::input("no task to wait for", "Give ids.")))
}

/// A timeout met on one task of `all` is the whole wait's timeout.
fn whole_timeout(error: Error, timeout: Option<Duration>) -> Error {
    match error {
        Error::TaskWaitTimedOut { id, status, .. } => Error::TaskWaitTimedOut {
            id,
            status,
            timeout_s: timeout.unwrap_or_default().as_secs_f64(),
        },
        other => other,
    }
}

/// `wait {id}`.
fn one(
    paths: &TaskPaths,
    id: &TaskId,
    until: Until,
    timeout: Option<Duration>,
) -> Result<TaskAnswer> {
    let record = match until {
        Until::Exit => until_terminal(paths, id, timeout)?,
        Until::Word(word) if word == "exit" => until_terminal(paths, id, timeout)?,
        Until::Word(word) => {
            return Err(Error::input_at(
                "until",
                format!("until: {word:?} is not \"exit\" or conditions"),
                "Use \"exit\", or conditions like {\"log\":\"ready\"} or {\"port\":3000}.",
            ));
        }
        Until::Ready(spec) => {
            let probe = spec.probe("until")?;
            let limit = spec.timeout("until")?;
            let timeout = [timeout, limit].into_iter().flatten().min();
            until_conditions(paths, id, probe, timeout)?
        }
    };
    Ok(TaskAnswer::new(Task::from_record(&record, paths)))
}

/// Blocks until the supervisor has recorded the task ready. `TaskNotReady` if it ends
/// first or `timeout` passes.
pub fn until_ready(
    paths: &TaskPaths,
    id: &TaskId,
    timeout: Option<Duration>,
) -> Result<TaskRecord> {
    let deadline = timeout.and_then(deadline_after);
    // Watch first, then look: a change between the two cannot be missed. The fallback poll
    // notices a supervisor that died without writing anything.
    let watch = DirWatch::new_for(&paths.dir, false, &["task.json"]);
    loop {
        let record = observe(paths, id)?;
        if record.ready == Some(true) {
            return Ok(record);
        }
        if record.status.is_terminal() {
            return Err(not_ready(paths, &record, "it ended first"));
        }
        if !watch.wait(deadline) {
            return Err(not_ready(paths, &record, "the time ran out"));
        }
    }
}

/// Blocks until `probe`'s conditions hold for the current run.
fn until_conditions(
    paths: &TaskPaths,
    id: &TaskId,
    mut probe: Probe,
    timeout: Option<Duration>,
) -> Result<TaskRecord> {
    let deadline = timeout.and_then(deadline_after);
    let watch = DirWatch::new(&paths.dir, false);
    let first = observe(paths, id)?;
    let mut log = File::open(paths.log()).ok();
    // Reads each byte once: a line still being written (a `\r` bar) is not read again.
    let mut lines = output_log::LineReader::new(0);
    loop {
        let record = observe(paths, id)?;
        // A queued task has no log yet: open it once it exists.
        if log.is_none() && record.run == first.run {
            log = File::open(paths.log()).ok();
        }
        // Only the run we started with counts: a restart's output is not its output.
        if record.run == first.run
            && let Some(file) = log.as_mut()
        {
            lines.pace();
            let size = file.metadata().map_or(0, |m| m.len());
            let _ = lines.read(file, size, record.status.is_terminal(), |line, _| {
                probe.line(&line.text);
                std::ops::ControlFlow::Continue(())
            });
        }
        if probe.wants_network() {
            probe.try_network();
        }
        if probe.ready() {
            return Ok(record);
        }
        if record.status.is_terminal() || record.run != first.run {
            return Err(not_ready(paths, &record, "it ended first"));
        }
        let pause = if probe.wants_network() {
            ready::RETRY
        } else {
            crate::follow::FALLBACK_POLL
        };
        if !watch.wait_at_most(deadline, pause) {
            return Err(Error::TaskWaitTimedOut {
                id: id.to_string(),
                status: record.status.as_str().to_owned(),
                timeout_s: timeout.unwrap_or_default().as_secs_f64(),
            });
        }
    }
}

/// `TaskNotReady`, with the last lines of the log.
fn not_ready(paths: &TaskPaths, record: &TaskRecord, why: &'static str) -> Error {
    Error::TaskNotReady {
        id: record.id.clone(),
        why,
        status: record.status.as_str().to_owned(),
        exit_code: record.exit_code,
        log_tail: log_tail(paths, LOG_TAIL_LINES),
    }
}

/// The last `lines` lines of the current run's output.
/// How many lines of output a `TaskNotReady` error carries.
pub const LOG_TAIL_LINES: u64 = 20;

pub fn log_tail(paths: &TaskPaths, lines: u64) -> Vec<String> {
    let Ok(mut file) = File::open(paths.log()) else {
        return Vec::new();
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let start = output_log::tail_start(&mut file, size, lines).unwrap_or(0);
    let bytes = output_log::read_range(&mut file, start, size).unwrap_or_default();
    output_log::split(&bytes, start, false)
        .0
        .into_iter()
        .map(|line| line.text)
        .collect()
}

/// Blocks until the task's record is terminal, or `timeout` passes.
pub fn until_terminal(
    paths: &TaskPaths,
    id: &TaskId,
    timeout: Option<Duration>,
) -> Result<TaskRecord> {
    let deadline = timeout.and_then(deadline_after);
    loop {
        let record = observe(paths, id)?;
        if record.status.is_terminal() {
            return Ok(record);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let released = left != Some(Duration::ZERO) && lock::wait_released(paths, left)?;
        if !released {
            return Err(Error::TaskWaitTimedOut {
                id: id.to_string(),
                status: record.status.as_str().to_owned(),
                timeout_s: timeout.unwrap_or_default().as_secs_f64(),
            });
        }
    }
}
