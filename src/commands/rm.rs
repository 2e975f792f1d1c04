//! `rm {id, force?}` and `prune {older_than_s?, keep_last?, status?}`: remove finished
//! tasks and their files.
//!
//! A task is removed under its lock, so no supervisor can be writing it meanwhile: a running
//! or queued task is refused (or, with `force`, stopped first). Removing takes the whole
//! task folder: record, logs, journal, lock.

use std::fs;
use std::io;
use std::time::Duration;

use crate::commands::open_state;
use crate::commands::stop::stop_task;
use crate::error::{Error, Result};
use crate::paths::{StateDir, TaskId};
use crate::payload::answer::{PruneAnswer, RmAnswer};
use crate::payload::input::{PruneInput, RmInput};
use crate::state::lock::TaskLock;
use crate::state::{TaskRecord, observe};
use crate::time::now_ms;

/// How long `rm` waits for a lock held only for an instant (a reader probing, or a
/// supervisor writing its last record and exiting).
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

pub fn run(input: RmInput) -> Result<RmAnswer> {
    let state = open_state()?;
    let mut record = observe(&state.task(&input.id), &input.id)?;
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
        record = stop_task(&state.task(&input.id), &input.id, None, None, None)?.0;
    }
    remove(&state, &input.id)?;
    Ok(RmAnswer {
        task_id: input.id.to_string(),
        removed: true,
        status: record.status,
    })
}

/// Removes a terminal task's folder, under its lock.
fn remove(state: &StateDir, id: &TaskId) -> Result<()> {
    let paths = state.task(id);
    let lock = TaskLock::acquire_within(&paths, LOCK_PATIENCE)?
        .ok_or_else(|| Error::already_running(id, None))?;
    // Under the lock, the record cannot change: check once more that it has ended.
    if let Some(record) = TaskRecord::read(&paths)?
        && !record.status.is_terminal()
    {
        return Err(Error::already_running(id, record.pid.map(i64::from)));
    }
    let removed = fs::remove_dir_all(&paths.dir);
    drop(lock);
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::store("remove", &paths.dir, e)),
    }
}

pub fn prune(input: PruneInput) -> Result<PruneAnswer> {
    if let Some(age) = input.older_than_s
        && !(age.is_finite() && age >= 0.0)
    {
        return Err(Error::input_at(
            "older_than_s",
            format!("older_than_s: {age} is out of range"),
            "Give a number of seconds, 0 or more.",
        ));
    }
    let state = open_state()?;
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
            && input.status.is_none_or(|s| s == record.status)
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
        if remove(&state, &id).is_ok() {
            removed.push(record.id);
        }
    }
    prune_batches(&state);
    Ok(PruneAnswer {
        total_removed: removed.len(),
        removed,
    })
}

/// Removes batch folders no supervisor uses any more (every one of their locks is free).
fn prune_batches(state: &StateDir) {
    let Ok(entries) = fs::read_dir(state.batches_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(locks) = fs::read_dir(entry.path()) else {
            continue;
        };
        let idle = locks
            .flatten()
            .all(|lock| fs::File::open(lock.path()).is_ok_and(|f| f.try_lock().is_ok()));
        if idle {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
