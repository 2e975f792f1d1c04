//! `wait {id, until?}`: block until the task has ended, or until conditions hold.
//!
//! Waiting for the end blocks on the supervisor's lock, so it wakes the instant the
//! supervisor exits, with no polling. Waiting for conditions (`until: {log?, port?,
//! http?}`) reads the current run's output as it is written (notify) and tries ports and
//! URLs on a short timer; if the task ends first, the answer is `TaskNotReady` with the
//! last lines of its log. `--timeout` bounds either with `TaskWaitTimedOut` (retryable);
//! the task runs on.

use std::fs::File;
use std::time::{Duration, Instant};

use crate::commands::open_state;
use crate::commands::status::TaskAnswer;
use crate::error::{Error, Result};
use crate::follow::DirWatch;
use crate::output_log;
use crate::paths::{TaskId, TaskPaths};
use crate::payload::input::{Until, WaitInput};
use crate::payload::task::Task;
use crate::ready::{self, Probe};
use crate::state::lock;
use crate::state::{TaskRecord, observe};

pub fn run(input: WaitInput, timeout: Option<Duration>) -> Result<TaskAnswer> {
    let paths = open_state()?.task(&input.id);
    let record = match input.until {
        Until::Exit => until_terminal(&paths, &input.id, timeout)?,
        Until::Word(word) if word == "exit" => until_terminal(&paths, &input.id, timeout)?,
        Until::Word(word) => {
            return Err(Error::input_at(
                "until",
                format!("until: {word:?} is not \"exit\" or conditions"),
                "Use \"exit\", or conditions like {\"log\":\"ready\"} or {\"port\":3000}.",
            ));
        }
        Until::Ready(spec) => {
            let probe = spec.probe("until")?;
            let limit = spec.timeout_s.map(Duration::from_secs_f64);
            let timeout = [timeout, limit].into_iter().flatten().min();
            until_conditions(&paths, &input.id, probe, timeout)?
        }
    };
    Ok(TaskAnswer::new(Task::from_record(&record, &paths)))
}

/// Blocks until the supervisor has recorded the task ready. `TaskNotReady` if it ends
/// first or `timeout` passes.
pub fn until_ready(
    paths: &TaskPaths,
    id: &TaskId,
    timeout: Option<Duration>,
) -> Result<TaskRecord> {
    let deadline = timeout.map(|t| Instant::now() + t);
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
    let deadline = timeout.map(|t| Instant::now() + t);
    let watch = DirWatch::new(&paths.dir, false);
    let first = observe(paths, id)?;
    let mut log = File::open(paths.log()).ok();
    let mut offset = 0;
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
            let size = file.metadata().map_or(0, |m| m.len());
            let end = if record.status.is_terminal() {
                size
            } else {
                output_log::complete_end(file, offset, size).unwrap_or(offset)
            };
            offset = output_log::each_line(file, offset, end, |line, _| {
                probe.line(&output_log::render(line));
                std::ops::ControlFlow::Continue(())
            })
            .unwrap_or(offset);
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
    let deadline = timeout.map(|t| Instant::now() + t);
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
