//! `wait {id}`: block until the task has ended.
//!
//! The wait blocks on the supervisor's lock, so it wakes the instant the supervisor exits,
//! with no polling. `--timeout` bounds it with `TaskWaitTimedOut` (retryable); the task runs on.

use std::time::{Duration, Instant};

use crate::commands::open_state;
use crate::commands::status::TaskAnswer;
use crate::error::{Error, Result};
use crate::paths::{TaskId, TaskPaths};
use crate::payload::input::IdInput;
use crate::payload::task::Task;
use crate::state::lock;
use crate::state::{TaskRecord, observe};

pub fn run(input: IdInput, timeout: Option<Duration>) -> Result<TaskAnswer> {
    let paths = open_state()?.task(&input.id);
    let record = until_terminal(&paths, &input.id, timeout)?;
    Ok(TaskAnswer::new(Task::from_record(&record, &paths)))
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
