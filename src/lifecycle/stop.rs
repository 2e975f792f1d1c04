//! Stopping: end a task's whole process tree, and answer once it has ended.
//!
//! The signalling is left to the supervisor, so the SIGKILL after the grace period happens
//! even if the caller is killed while it waits: `stop` writes the stop request, sends the
//! supervisor SIGUSR1 (after checking the supervisor is the process the record names), and
//! waits on the lock for the end. A task that already ended is answered as it is.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::lifecycle::wait::{Bound, until_terminal};
use crate::lifecycle::{Cancel, Tasks};
use crate::paths::{TaskId, TaskPaths};
use crate::payload::input::StopInput;
use crate::payload::task::Task;
use crate::procfs::Identity;
use crate::state::lock;
use crate::state::stop::StopRequest;
use crate::state::{TaskRecord, observe};

/// Time allowed past the grace period for the supervisor to record the end.
const STOP_SLACK: Duration = Duration::from_secs(10);

/// How long a lock left by a supervisor that has just gone may stay held (by a reader
/// recording the task `lost`) before `stop` gives up on it.
const SETTLE: Duration = Duration::from_secs(2);

/// `stop`: which task, how to signal it, and how long to wait for its end.
#[derive(Debug, Clone)]
pub struct StopArgs {
    pub id: TaskId,
    /// The first signal; SIGTERM when `None`.
    pub signal: Option<Signal>,
    /// Time between the first signal and SIGKILL; the task's own `grace_s` when `None`.
    pub grace: Option<Duration>,
    /// How long to wait for the end; the grace period and 10 s when `None`.
    pub timeout: Option<Duration>,
    pub cancel: Cancel,
}

impl StopArgs {
    /// Stop `id` the task's own way: SIGTERM, its grace period, the default wait.
    pub fn new(id: TaskId) -> StopArgs {
        StopArgs {
            id,
            signal: None,
            grace: None,
            timeout: None,
            cancel: Cancel::never(),
        }
    }

    /// The args of a `stop` payload (checked first), waiting at most `timeout` for the end.
    pub fn from_input(input: StopInput, timeout: Option<Duration>) -> Result<StopArgs> {
        input.validate()?;
        Ok(StopArgs {
            grace: input.grace_s.map(Duration::from_secs_f64),
            signal: input.signal,
            timeout,
            ..StopArgs::new(input.id)
        })
    }
}

/// A stopped task.
#[derive(Debug)]
pub struct Stopped {
    /// The task as it ended.
    pub task: Task,
    /// `true` when it had already ended and nothing was signalled.
    pub already_terminal: bool,
}

impl Tasks {
    /// Stops the task and waits for its end.
    pub fn stop(&self, args: StopArgs) -> Result<Stopped> {
        let paths = self.paths(&args.id);
        let (record, already_terminal) = stop_record(&paths, &args)?;
        Ok(Stopped {
            task: Task::from_record(&record, &paths),
            already_terminal,
        })
    }
}

/// Stops the task and waits for its end. Returns the final record and whether it had
/// already ended.
pub(crate) fn stop_record(paths: &TaskPaths, args: &StopArgs) -> Result<(TaskRecord, bool)> {
    let id = &args.id;
    let record = observe(paths, id)?;
    if record.status.is_terminal() {
        return Ok((record, true));
    }
    // A run a newer version supervises is stopped by that version: how it takes a stop
    // request may have changed.
    if !record.understood() {
        return Err(record.newer());
    }
    let Some(supervisor) = record.supervisor().filter(Identity::is_alive) else {
        return ended_meanwhile(
            paths,
            id,
            "the record's supervisor is not the running process",
        );
    };
    let grace = args.grace.unwrap_or(Duration::from_millis(record.grace_ms));
    let request = StopRequest {
        signal: args.signal.unwrap_or(Signal::SIGTERM) as i32,
        grace_ms: grace.as_millis().try_into().unwrap_or(u64::MAX),
    };
    request.write(paths)?;
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
    let timeout = Some(args.timeout.unwrap_or(grace + STOP_SLACK));
    let record = until_terminal(paths, id, &mut Bound::new(timeout, &args.cancel, None))?;
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
