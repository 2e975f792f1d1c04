//! `stop {id, signal?, grace_s?}`: end a task's whole process tree.
//!
//! `stop` leaves the signalling to the supervisor, so the SIGKILL after `grace_s` happens
//! even if this caller is killed while it waits: it writes `stop.json`, sends the supervisor
//! SIGUSR1 (after checking the supervisor is the process the record names), and waits on
//! the lock for the end. A task that already ended is answered as it is.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::commands::open_state;
use crate::commands::wait::until_terminal;
use crate::error::{Error, Result};
use crate::paths::{TaskId, TaskPaths};
use crate::payload::answer::StopAnswer;
use crate::payload::input::StopInput;
use crate::payload::task::Task;
use crate::procfs::Identity;
use crate::state::lock;
use crate::state::{TaskRecord, atomic, observe};
use crate::supervisor::StopRequest;

/// Time allowed past the grace period for the supervisor to record the end.
const STOP_SLACK: Duration = Duration::from_secs(10);

/// How long a lock left by a supervisor that has just gone may stay held (by a reader
/// recording the task `lost`) before `stop` gives up on it.
const SETTLE: Duration = Duration::from_secs(2);

pub fn run(input: StopInput, timeout: Option<Duration>) -> Result<StopAnswer> {
    input.validate()?;
    let paths = open_state()?.task(&input.id);
    let grace = input.grace_s.map(Duration::from_secs_f64);
    let (record, already_terminal) = stop_task(&paths, &input.id, input.signal, grace, timeout)?;
    Ok(StopAnswer {
        task_id: record.id.clone(),
        status: record.status,
        already_terminal,
        task: Task::from_record(&record, &paths),
    })
}

/// Stops the task and waits for its end. Returns the final record and whether it had
/// already ended.
pub fn stop_task(
    paths: &TaskPaths,
    id: &TaskId,
    signal: Option<Signal>,
    grace: Option<Duration>,
    timeout: Option<Duration>,
) -> Result<(TaskRecord, bool)> {
    let record = observe(paths, id)?;
    if record.status.is_terminal() {
        return Ok((record, true));
    }
    let Some(supervisor) = record
        .supervisor_pid
        .zip(record.supervisor_start_ticks)
        .map(|(pid, start_ticks)| Identity { pid, start_ticks })
        .filter(Identity::is_alive)
    else {
        return ended_meanwhile(
            paths,
            id,
            "the record's supervisor is not the running process",
        );
    };
    let grace = grace.unwrap_or(Duration::from_millis(record.grace_ms));
    let request = StopRequest {
        signal: signal.unwrap_or(Signal::SIGTERM) as i32,
        grace_ms: grace.as_millis().try_into().unwrap_or(u64::MAX),
    };
    let bytes = serde_json::to_vec(&request).unwrap_or_default();
    atomic::write(&paths.stop_request(), &bytes)?;
    match kill(Pid::from_raw(supervisor.pid), Signal::SIGUSR1) {
        Ok(()) => {}
        Err(Errno::ESRCH) => {
            return ended_meanwhile(paths, id, "the record's supervisor has exited");
        }
        Err(e) => {
            return Err(Error::SignalRefused {
                id: id.to_string(),
                reason: format!("signalling the supervisor failed: {e}"),
            });
        }
    }
    let record = until_terminal(paths, id, Some(timeout.unwrap_or(grace + STOP_SLACK)))?;
    Ok((record, false))
}

/// The record still said `running`, but the supervisor it names is gone: it recorded the
/// task's end and exited an instant ago (a stop racing the task's own end), or it died and
/// another reader holds the lock while it records the task `lost`. Either way the lock is
/// free in a moment and the record then terminal: answer it as it ended, with nothing
/// signalled. Otherwise the lock is held by something else, and nothing is signalled.
fn ended_meanwhile(paths: &TaskPaths, id: &TaskId, why: &str) -> Result<(TaskRecord, bool)> {
    let refused = || Error::SignalRefused {
        id: id.to_string(),
        reason: why.to_owned(),
    };
    if !lock::wait_released(paths, Some(SETTLE))? {
        return Err(refused());
    }
    let record = observe(paths, id)?;
    if record.status.is_terminal() {
        Ok((record, true))
    } else {
        Err(refused())
    }
}
