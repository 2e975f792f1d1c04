//! `wait {id}`: block until the task has ended.
//!
//! The wait blocks on the supervisor's lock, so it wakes the instant the supervisor exits,
//! with no polling. `--timeout` bounds it with `TaskWaitTimedOut` (retryable); the task runs on.

use std::time::{Duration, Instant};

use crate::commands::open_state;
use crate::commands::status::TaskAnswer;
use crate::error::{Error, Result};
use crate::follow::DirWatch;
use crate::paths::{TaskId, TaskPaths};
use crate::payload::input::IdInput;
use crate::payload::task::Task;
use crate::state::{TaskRecord, observe};

pub fn run(input: IdInput, timeout: Option<Duration>) -> Result<TaskAnswer> {
    let paths = open_state()?.task(&input.id);
    let record = until_terminal(&paths, &input.id, timeout)?;
    Ok(TaskAnswer::new(Task::from_record(&record, &paths)))
}

/// Blocks until the task's record is terminal, or `timeout` passes.
///
/// Two things wake it: the terminal record's rename (the supervisor renames it in before it
/// syncs its directory and exits, so this is the earliest moment the end is known), and the
/// release of the supervisor's lock (a supervisor that died wrote nothing, and the task is
/// then `lost`). There is no polling.
pub fn until_terminal(
    paths: &TaskPaths,
    id: &TaskId,
    timeout: Option<Duration>,
) -> Result<TaskRecord> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let record = observe(paths, id)?;
    if record.status.is_terminal() {
        return Ok(record);
    }
    // Watch first, then look again: a change between the two cannot be missed.
    let watch = DirWatch::new_for(&paths.dir, false, &["task.json"]);
    watch.wake_when_unlocked(paths.lock());
    loop {
        let record = observe(paths, id)?;
        if record.status.is_terminal() {
            return Ok(record);
        }
        if !watch.block(deadline) {
            return Err(Error::TaskWaitTimedOut {
                id: id.to_string(),
                status: record.status.as_str().to_owned(),
                timeout_s: timeout.unwrap_or_default().as_secs_f64(),
            });
        }
    }
}
