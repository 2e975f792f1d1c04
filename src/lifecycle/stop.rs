//! Stopping: end a task's whole process tree, and answer once the run it stopped has ended.
//!
//! The signalling is left to the supervisor, so the SIGKILL after the grace period happens
//! even if the caller is killed while it waits. `stop` pins the supervisor the record names
//! with a pidfd (checking its start time first, as before any signal), sends it `SIGUSR1`
//! carrying the first signal and the grace period in the signal's own value
//! ([`StopRequest`]; no file is written, so a task that fills the disk can still be
//! stopped), and waits on that pidfd: for the run it signalled, never for a newer run a
//! racing `start` or `restart` began meanwhile. The answer is that run as it ended. A task
//! that had already ended is answered as it is, with nothing signalled.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::lifecycle::exits::{Exits, Supervisor, Wake};
use crate::lifecycle::wait::Bound;
use crate::lifecycle::{Cancel, Tasks};
use crate::paths::{TaskId, TaskPaths};
use crate::payload::input::StopInput;
use crate::payload::task::{ChildTask, Task};
use crate::pidfd;
use crate::procfs::Identity;
use crate::state::journal::{self, EndedEntry, kind};
use crate::state::{TaskRecord, observe};
use crate::supervisor::StopRequest;

/// Time allowed past the grace period for the supervisor to record the end.
const STOP_SLACK: Duration = Duration::from_secs(10);

/// How much of the journal's end is read first for a run's `task.ended`.
const JOURNAL_TAIL: u64 = 64 * 1024;

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
    /// Stop the tasks started from inside it too, first ([`crate::lifecycle::children`]).
    pub with_children: bool,
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
            with_children: false,
        }
    }

    /// The args of a `stop` payload (checked first), waiting at most `timeout` for the end.
    pub fn from_input(input: StopInput, timeout: Option<Duration>) -> Result<StopArgs> {
        input.validate()?;
        let id = input.id()?.clone();
        Ok(StopArgs {
            grace: input.grace_s.map(Duration::from_secs_f64),
            signal: input.signal,
            timeout,
            with_children: input.with_children,
            ..StopArgs::new(id)
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
    /// With `with_children`: its descendants as they are after their stop.
    pub children: Option<Vec<ChildTask>>,
}

impl Tasks {
    /// Stops the task and waits for the end of the run it stopped.
    pub fn stop(&self, args: StopArgs) -> Result<Stopped> {
        if args.with_children {
            return self.stop_with_children(args);
        }
        let paths = self.paths(&args.id);
        let (record, already_terminal) =
            stop_record(&paths, &args, self.lock_threads).map_err(|e| self.with_cursor(e))?;
        Ok(Stopped {
            task: Task::from_record(&record, &paths),
            already_terminal,
            children: None,
        })
    }
}

/// Stops the task and waits for the end of the run it stopped. Returns that run's final
/// record and whether the task had already ended (nothing was signalled). With
/// `lock_threads`, the wait also blocks a helper on the lock (see
/// [`Tasks::exiting_after_call`]).
///
/// A run whose supervisor is gone by the time it would be signalled has ended by itself: the
/// task is looked at again, and a newer run found then is the one stopped.
pub(crate) fn stop_record(
    paths: &TaskPaths,
    args: &StopArgs,
    lock_threads: bool,
) -> Result<(TaskRecord, bool)> {
    let id = &args.id;
    let mut bound: Option<Bound<'_>> = None;
    // A supervisor found gone an instant ago: its end is looked at again at once, once.
    let mut gone: Option<Identity> = None;
    loop {
        let record = observe(paths, id)?;
        if record.status.is_terminal() {
            return Ok((record, true));
        }
        // A run a newer version supervises is stopped by that version: how it takes a stop
        // request may have changed.
        if !record.understood() {
            return Err(record.newer());
        }
        let grace = args.grace.unwrap_or(Duration::from_millis(record.grace_ms));
        // One bound for the whole call, from the first run looked at.
        let bound = bound.get_or_insert_with(|| {
            let timeout = args.timeout.unwrap_or(grace + STOP_SLACK);
            let mut bound = Bound::new(Some(timeout), &args.cancel, None);
            bound.lock_threads = lock_threads;
            bound
        });
        if bound.over() {
            return Err(bound.timed_out(id, &record));
        }
        let Some(identity) = record.supervisor() else {
            return Err(Error::SignalRefused {
                id: id.to_string(),
                reason: "the record names no supervisor".into(),
            });
        };
        let supervisor = Supervisor::find(paths, identity)?;
        let request = StopRequest {
            signal: args.signal.unwrap_or(Signal::SIGTERM),
            grace_ms: grace.as_millis().try_into().unwrap_or(u64::MAX),
        };
        let sent = match &supervisor {
            Supervisor::Pinned(pidfd) => pidfd.signal(Signal::SIGUSR1, request.to_value()),
            Supervisor::Unpinned(identity) => {
                pidfd::queue_signal(identity.pid, Signal::SIGUSR1, request.to_value())
            }
            Supervisor::Gone => Err(std::io::Error::from_raw_os_error(libc::ESRCH)),
        };
        match sent {
            Ok(()) => {}
            // It ended by itself an instant ago: its record (or the lock) says how, or a
            // newer run has begun, which is the one to stop.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) && gone != Some(identity) => {
                gone = Some(identity);
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(Error::SignalRefused {
                    id: id.to_string(),
                    reason: "the record's supervisor is not the running process".into(),
                });
            }
            Err(e) => {
                return Err(Error::SignalRefused {
                    id: id.to_string(),
                    reason: format!("signalling the supervisor failed: {e}"),
                });
            }
        }
        let ended = until_run_ended(paths, id, &record, supervisor, bound)?;
        return Ok((ended, false));
    }
}

/// Waits until the run of `signalled` (the run whose `supervisor` was signalled) has ended,
/// and returns its end: the record, or, if a newer run has replaced it meanwhile, the run's
/// end as the journal tells it.
fn until_run_ended(
    paths: &TaskPaths,
    id: &TaskId,
    signalled: &TaskRecord,
    supervisor: Supervisor,
    bound: &Bound<'_>,
) -> Result<TaskRecord> {
    let identity = signalled.supervisor();
    let mut exits = Exits::new(bound.cancel);
    let mut watched = exits.watch_found(0, paths, supervisor, bound.lock_threads)?;
    loop {
        match bound.wait(&mut exits, !watched)? {
            Wake::Look(_) => {}
            Wake::TimedOut | Wake::Cancelled => return Err(bound.timed_out(id, signalled)),
        }
        let now = observe(paths, id)?;
        if now.supervisor() != identity {
            return Ok(ended_run(paths, signalled).unwrap_or(now));
        }
        if now.status.is_terminal() {
            return Ok(now);
        }
        // Still the signalled run and not ended (a probe found the lock held): watch again.
        watched = match identity {
            Some(identity) => exits.watch(0, paths, identity, false)?,
            None => false,
        };
    }
}

/// The end of the run `record` describes, from the journal's `task.ended` of that run; for
/// a run whose record a newer run has replaced. `None` if the journal does not say (it
/// could not be written).
fn ended_run(paths: &TaskPaths, record: &TaskRecord) -> Option<TaskRecord> {
    let size = std::fs::metadata(paths.journal()).map_or(0, |m| m.len());
    let from_tail = size.saturating_sub(JOURNAL_TAIL);
    let offsets = if from_tail == 0 {
        vec![0]
    } else {
        vec![from_tail, 0]
    };
    let entry = offsets.into_iter().find_map(|offset| {
        let (entries, _) = journal::read_from(paths, offset).ok()?;
        entries
            .into_iter()
            .rev()
            .filter(|e| e.kind == kind::ENDED && e.run == record.run)
            .find_map(|e| {
                Some((
                    serde_json::from_value::<EndedEntry>(e.data).ok()?,
                    e.timestamp_ms,
                ))
            })
    })?;
    let (ended, at) = entry;
    let mut record = record.clone();
    record.finish(ended.status, ended.reason?, at);
    record.exit_code = ended.exit_code;
    record.signal = ended.signal;
    Some(record)
}
