//! Removing finished tasks and their files: one (`rm`) or in bulk (`prune`).
//!
//! A task is removed only under its lock, taken without waiting: a lock held by a live
//! supervisor means a run is going on, and retention never waits on one (`rm` refuses it,
//! or with `force` stops it first; `prune` skips it and says so). Under the lock the record
//! is looked at again and must still be the ended run that was chosen (same run, same
//! supervisor, still terminal, still matching `prune`'s filters), so a run that began after
//! `rm` or `prune` looked is never removed.
//!
//! Still under the lock, the folder is moved away, to a hidden name beside the task folders
//! ([`StateDir::removal_name`], a `renameat` in `tasks/`), and deleted once the lock is let
//! go, entry by entry through its descriptor: a link in it is removed itself, never what it
//! points at. So the id is at once
//! either the whole task or free, and a `start` racing the removal either took the lock
//! first (the run is then kept) or finds the lock it took no longer at its path and
//! carries on in a fresh folder ([`TaskLock::try_acquire`]).

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::lifecycle::stop::{StopArgs, stop_record};
use crate::paths::{REMOVAL_PREFIX, StateDir, TaskId, TaskPaths};
use crate::payload::answer::{SkipReason, Skipped};
use crate::payload::input::{PruneInput, RmInput};
use crate::payload::task::Status;
use crate::state::lock::{self, TaskLock};
use crate::state::reconcile::reconcile_locked;
use crate::state::{TaskRecord, observe};
use crate::time::now_ms;

/// How long a lock held by something other than a live supervisor (a reader for an instant,
/// a start about to launch) may stay held before the task is left as busy.
const BUSY_PATIENCE: Duration = Duration::from_millis(100);

/// `rm`: one task, stopped first with `force`.
#[derive(Debug)]
pub struct RmArgs {
    pub input: RmInput,
}

/// A removed task.
#[derive(Debug)]
pub struct Removed {
    pub task_id: TaskId,
    /// The task's last status.
    pub status: Status,
}

/// `prune`: every filter given must match.
#[derive(Debug, Default)]
pub struct PruneArgs {
    pub input: PruneInput,
}

/// The ids of the tasks removed, and of those chosen but left.
#[derive(Debug)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub skipped: Vec<Skipped>,
}

impl Tasks {
    /// Removes a finished task and its files.
    pub fn rm(&self, args: RmArgs) -> Result<Removed> {
        let input = args.input;
        let id = input.id;
        let paths = self.paths(&id);
        let mut record = observe(&paths, &id)?;
        let mut stopped = false;
        if !record.status.is_terminal() {
            if !input.force {
                return Err(running(&id, &record, RUNNING));
            }
            record = stop_record(&paths, &StopArgs::new(id.clone()), self.lock_threads)?.0;
            stopped = true;
        }
        // A run that began and ended while `rm` looked is looked at once more; one that
        // runs is never removed.
        for _ in 0..2 {
            match remove_ended(&self.state, &id, &record, |_| true)? {
                Removal::Removed(removed) => {
                    return Ok(Removed {
                        task_id: id,
                        status: removed.status.into(),
                    });
                }
                Removal::Gone => return Err(Error::TaskNotFound { id: id.to_string() }),
                Removal::Skipped(SkipReason::Newer, now) => return Err(now.newer()),
                Removal::Skipped(SkipReason::Changed, now) if now.status.is_terminal() => {
                    record = now;
                }
                Removal::Skipped(_, now) => {
                    let hint = if stopped { STARTED_AFTER_STOP } else { STARTED };
                    return Err(running(&id, &now, hint));
                }
            }
        }
        Err(running(&id, &record, STARTED))
    }

    /// Removes finished tasks by age and status, keeping the most recently ended; never a
    /// running or queued one, and never one that began a new run after `prune` looked.
    pub fn prune(&self, args: PruneArgs) -> Result<Pruned> {
        let input = args.input;
        input.validate()?;
        let state = &self.state;
        let now = now_ms();
        let chosen = |record: &TaskRecord, now: i64| {
            let ended = record.ended_at_ms.unwrap_or(record.created_at_ms);
            let old_enough = input
                .older_than_s
                .is_none_or(|age| (now - ended) as f64 >= age * 1000.0);
            record.status.is_terminal()
                && input
                    .status
                    .is_none_or(|s| s == Status::from(record.status))
                && old_enough
        };
        let mut finished: Vec<TaskRecord> = Vec::new();
        for id in state.task_ids()? {
            let Ok(record) = observe(&state.task(&id), &id) else {
                continue;
            };
            if chosen(&record, now) {
                finished.push(record);
            }
        }
        // Newest first, so that `keep_last` keeps the most recently ended.
        finished.sort_by_key(|r| {
            std::cmp::Reverse((r.ended_at_ms.unwrap_or(r.created_at_ms), r.id.clone()))
        });
        let (mut removed, mut skipped) = (Vec::new(), Vec::new());
        for record in finished.into_iter().skip(input.keep_last.unwrap_or(0)) {
            let Ok(id) = TaskId::parse(&record.id) else {
                continue;
            };
            // Checked again under the lock, on the record as it is then.
            let skip = |reason: SkipReason, message: String| Skipped {
                id: record.id.clone(),
                reason,
                message,
            };
            match remove_ended(state, &id, &record, |now| chosen(now, now_ms())) {
                Ok(Removal::Removed(_)) => removed.push(record.id.clone()),
                Ok(Removal::Gone) => {}
                Ok(Removal::Skipped(reason, _)) => {
                    skipped.push(skip(reason, reason.describe().to_owned()));
                }
                Err(error) => skipped.push(skip(SkipReason::Failed, error.full_message())),
            }
        }
        prune_batches(state);
        prune_removals(state);
        Ok(Pruned { removed, skipped })
    }
}

/// The hint of a task `rm` found running (without `force`).
const RUNNING: &str = "A task is removed once it has ended: stop it first, or pass force: true.";
/// The hint of a task that began a new run while `rm` looked.
const STARTED: &str = "A start or restart began a new run of it while rm looked; nothing was removed. Stop it first, or pass force: true.";
/// The hint of a task that began a new run after `rm {force}` stopped the one it found.
const STARTED_AFTER_STOP: &str = "A start or restart began a new run after rm stopped the one it found; that run was neither stopped nor removed. Use status to see it.";

fn running(id: &TaskId, record: &TaskRecord, hint: &'static str) -> Error {
    Error::TaskAlreadyRunning {
        id: id.to_string(),
        pid: record
            .pid
            .filter(|_| !record.status.is_terminal())
            .map(i64::from),
        differences: Vec::new(),
        hint: Some(hint),
    }
}

/// What became of a task chosen for removal.
enum Removal {
    /// Removed; its record as it ended.
    Removed(TaskRecord),
    /// Its folder was already gone (another `rm` or `prune`).
    Gone,
    /// Left, and why; the record as it then stood.
    Skipped(SkipReason, TaskRecord),
}

/// Removes the task if, under its lock, its record is still the ended run `chosen` and
/// `still` holds for it. Never waits on a live supervisor.
fn remove_ended(
    state: &StateDir,
    id: &TaskId,
    chosen: &TaskRecord,
    still: impl Fn(&TaskRecord) -> bool,
) -> Result<Removal> {
    let paths = state.task(id);
    let lock = match lock_unless_running(&paths)? {
        Locked::Yes(lock) => lock,
        Locked::Gone => return Ok(Removal::Gone),
        Locked::No(reason, record) => {
            let record = record.map_or_else(|| chosen.clone(), |r| *r);
            return Ok(Removal::Skipped(reason, record));
        }
    };
    // Under the lock the record cannot change; a run whose supervisor died is recorded
    // `lost` first, as any reader would.
    let Some(now) = reconcile_locked(&paths, &lock)? else {
        return Ok(Removal::Gone);
    };
    if !now.understood() {
        return Ok(Removal::Skipped(SkipReason::Newer, now));
    }
    if !now.status.is_terminal() {
        return Ok(Removal::Skipped(SkipReason::Running, now));
    }
    if !same_run(&now, chosen) || !still(&now) {
        return Ok(Removal::Skipped(SkipReason::Changed, now));
    }
    // Moved away under the lock: from here on the id is free, and whoever took the old
    // lock after us finds it is no longer the task's.
    let Some(tasks) = state.tasks()? else {
        return Ok(Removal::Gone);
    };
    let away = state.removal_name(id);
    let moved = tasks.rename(id.as_str(), &away);
    drop(lock);
    if !moved? {
        return Ok(Removal::Gone);
    }
    // The task is gone from `tasks/` already; what is left of its files, if this fails, is
    // removed by the next `prune`.
    let _ = tasks.remove_below(&away);
    Ok(Removal::Removed(now))
}

/// Whether two records describe the same run: the same run number of the same task folder
/// life (creation time), started by the same supervisor.
fn same_run(a: &TaskRecord, b: &TaskRecord) -> bool {
    a.run == b.run
        && a.created_at_ms == b.created_at_ms
        && a.started_at_ms == b.started_at_ms
        && a.supervisor() == b.supervisor()
}

/// What taking a task's lock for removal found.
enum Locked {
    Yes(TaskLock),
    /// The folder is gone.
    Gone,
    /// Held: by a live supervisor (`Running`), or by something else for longer than
    /// [`BUSY_PATIENCE`] (`Busy`); with the record, if it could be read.
    No(SkipReason, Option<Box<TaskRecord>>),
}

/// Takes the task's lock without ever waiting on a live supervisor. A lock held by
/// something else (a reader for an instant, a start about to launch) is tried again for
/// [`BUSY_PATIENCE`].
fn lock_unless_running(paths: &TaskPaths) -> Result<Locked> {
    let give_up = Instant::now() + BUSY_PATIENCE;
    let mut pause = Duration::from_micros(200);
    loop {
        match TaskLock::try_acquire(paths) {
            Ok(Some(lock)) => return Ok(Locked::Yes(lock)),
            Ok(None) => {}
            Err(error) if lock::is_removed(&error) => return Ok(Locked::Gone),
            Err(error) => return Err(error),
        }
        let record = TaskRecord::read(paths).ok().flatten().map(Box::new);
        if record
            .as_ref()
            .is_some_and(|r| !r.status.is_terminal() && r.supervisor_alive())
        {
            return Ok(Locked::No(SkipReason::Running, record));
        }
        if Instant::now() >= give_up {
            return Ok(Locked::No(SkipReason::Busy, record));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Removes batch folders no supervisor uses any more (every one of their locks is free),
/// opening each folder and lock through its parent, following no symlink.
fn prune_batches(state: &StateDir) {
    let Ok(Some(batches)) = state.batches() else {
        return;
    };
    for name in batches.names().unwrap_or_default() {
        let Some(name) = name.to_str() else { continue };
        let Ok(Some(batch)) = batches.open_below(&[name]) else {
            continue;
        };
        let idle = batch.names().is_ok_and(|locks| {
            locks.iter().all(|lock| {
                lock.to_str()
                    .and_then(|lock| batch.read_file(lock).ok().flatten())
                    .is_some_and(|f| f.try_lock().is_ok())
            })
        });
        if idle {
            let _ = batches.remove_below(name);
        }
    }
}

/// Deletes what is left of folders `rm` or `prune` moved away but could not delete.
fn prune_removals(state: &StateDir) {
    let Ok(Some(tasks)) = state.tasks() else {
        return;
    };
    for name in tasks.names().unwrap_or_default() {
        if let Some(name) = name.to_str()
            && name.starts_with(REMOVAL_PREFIX)
        {
            let _ = tasks.remove_below(name);
        }
    }
}
