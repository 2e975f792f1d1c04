//! Removing finished tasks and their files: one (`rm`) or in bulk (`prune`).
//!
//! A task is removed under its lock, so no supervisor can be writing it meanwhile: a running
//! or queued task is refused (or, with `force`, stopped first). Removing takes the whole
//! task folder: record, logs, journal, lock.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::lifecycle::stop::{StopArgs, stop_record};
use crate::paths::{StateDir, TaskId};
use crate::payload::input::{PruneInput, RmInput};
use crate::payload::task::Status;
use crate::state::lock::TaskLock;
use crate::state::{TaskRecord, observe};
use crate::time::now_ms;

/// How long `rm` waits for a lock held only for an instant (a reader probing, or a
/// supervisor writing its last record and exiting).
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

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

/// The ids of the tasks removed.
#[derive(Debug)]
pub struct Pruned {
    pub removed: Vec<String>,
}

impl Tasks {
    /// Removes a finished task and its files.
    pub fn rm(&self, args: RmArgs) -> Result<Removed> {
        let input = args.input;
        let paths = self.paths(&input.id);
        let mut record = observe(&paths, &input.id)?;
        if !record.status.is_terminal() {
            if !input.force {
                return Err(Error::TaskAlreadyRunning {
                    id: input.id.to_string(),
                    pid: record.pid.map(i64::from),
                    differences: Vec::new(),
                    hint: Some(
                        "A task is removed once it has ended: stop it first, or pass force: true.",
                    ),
                });
            }
            record = stop_record(&paths, &StopArgs::new(input.id.clone()))?.0;
        }
        remove(&self.state, &input.id)?;
        Ok(Removed {
            task_id: input.id,
            status: record.status.into(),
        })
    }

    /// Removes finished tasks by age and status, keeping the most recently ended; never a
    /// running or queued one.
    pub fn prune(&self, args: PruneArgs) -> Result<Pruned> {
        let input = args.input;
        input.validate()?;
        let state = &self.state;
        let now = now_ms();
        let mut finished: Vec<TaskRecord> = Vec::new();
        for id in state.task_ids()? {
            let Ok(record) = observe(&state.task(&id), &id) else {
                continue;
            };
            let ended = record.ended_at_ms.unwrap_or(record.created_at_ms);
            let old_enough = input
                .older_than_s
                .is_none_or(|age| (now - ended) as f64 >= age * 1000.0);
            if record.status.is_terminal()
                && input
                    .status
                    .is_none_or(|s| s == Status::from(record.status))
                && old_enough
            {
                finished.push(record);
            }
        }
        // Newest first, so that `keep_last` keeps the most recently ended.
        finished.sort_by_key(|r| {
            std::cmp::Reverse((r.ended_at_ms.unwrap_or(r.created_at_ms), r.id.clone()))
        });
        let mut removed = Vec::new();
        for record in finished.into_iter().skip(input.keep_last.unwrap_or(0)) {
            let Ok(id) = TaskId::parse(&record.id) else {
                continue;
            };
            // A task restarted meanwhile is refused under its lock, and kept.
            if remove(state, &id).is_ok() {
                removed.push(record.id);
            }
        }
        prune_batches(state);
        Ok(Pruned { removed })
    }
}

/// Removes a terminal task's folder, under its lock.
fn remove(state: &StateDir, id: &TaskId) -> Result<()> {
    let paths = state.task(id);
    let lock = TaskLock::acquire_within(&paths, LOCK_PATIENCE)?
        .ok_or_else(|| Error::already_running(id, None))?;
    // Under the lock, the record cannot change: check once more that it has ended. One a
    // newer version recorded, not known to have ended, is left for that version to
    // reconcile (and clean up after).
    if let Some(record) = TaskRecord::read(&paths)?
        && !record.status.is_terminal()
    {
        if !record.understood() {
            return Err(record.newer());
        }
        return Err(Error::already_running(id, record.pid.map(i64::from)));
    }
    // Entry by entry through the folder's descriptor: a link in it is removed itself,
    // never what it points at.
    let removed = paths.remove();
    drop(lock);
    removed
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
