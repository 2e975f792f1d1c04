//! Makes a record truthful before anyone reads it.
//!
//! A record that says `queued` or `running` while nobody holds its lock belongs to a
//! supervisor that died without recording an end (SIGKILL, OOM, reboot). It is `lost`. So is
//! one whose lock is held while the supervisor it names is dead: the holder is a reader
//! recording it `lost` this instant.
//! Whoever finds it takes the lock, kills what is left of the task's process group (after
//! checking it is really ours), removes any temp file the dead writer left beside the
//! record, records `lost` and lets go.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::paths::{TaskId, TaskPaths};
use crate::procfs;
use crate::state::atomic;
use crate::state::journal::{Journal, record_end};
use crate::state::lock::{self, Liveness, TaskLock};
use crate::state::record::{Reason, Status, TaskRecord};
use crate::time::now_ms;

/// The truthful record of a task; `TaskNotFound` if it has none.
pub fn observe(paths: &TaskPaths, id: &TaskId) -> Result<TaskRecord> {
    let record =
        TaskRecord::read(paths)?.ok_or_else(|| Error::TaskNotFound { id: id.to_string() })?;
    // A held lock means a live supervisor, unless the supervisor the record names is dead:
    // then another reader holds it for a moment to record the task lost.
    if record.status.is_terminal()
        || (lock::probe(paths)? == Liveness::Alive && !record.supervisor_dead())
    {
        return Ok(record);
    }
    // A record a newer version wrote is answered as the truth now stands, and left as it is.
    if !record.understood() {
        return Ok(lost_newer(record));
    }
    // The supervisor is gone. Record it under the lock; if another reader (or a new start)
    // holds the lock this instant, still answer the truth and let them write it.
    match TaskLock::try_acquire(paths) {
        Ok(Some(lock)) => reconcile_locked(paths, &lock),
        Ok(None) => Ok(Some(lost(record, now_ms()))),
        // `rm` or `prune` moved the folder away this instant.
        Err(e) if lock::is_removed(&e) => Ok(None),
        Err(e) => Err(e),
    }
    // Only `rm` and `prune` delete a record; if one did so this instant, the task is gone.
    .and_then(|record| record.ok_or_else(|| Error::TaskNotFound { id: id.to_string() }))
}

/// A task a newer version recorded, whose supervisor is gone: `lost`, in the answer only.
/// Its record is not rewritten and nothing is signalled: the newer version reconciles it.
fn lost_newer(record: TaskRecord) -> TaskRecord {
    let why = record.newer().to_string();
    let mut record = lost(record, now_ms());
    record.error = Some(format!(
        "the supervisor vanished without recording an end; {why}, so its record is left for that version to reconcile (upgrade)"
    ));
    record
}

/// With the lock held: if the record still says the task is alive, kill its leftovers and
/// record it `lost`. Returns the record as it now stands.
pub fn reconcile_locked(paths: &TaskPaths, _lock: &TaskLock) -> Result<Option<TaskRecord>> {
    // Only the lock holder writes the record, and we hold the lock: a temp file beside the
    // record is a dead writer's, killed between its write and its rename.
    atomic::remove_stale_temps(&paths.record());
    let Some(record) = TaskRecord::read(paths)? else {
        return Ok(None);
    };
    // A record a newer version wrote is never rewritten here (see `TaskRecord::understood`).
    if record.status.is_terminal() || !record.understood() {
        return Ok(Some(record));
    }
    let killed = crate::escapees::kill(&record, kill_leftovers(&record));
    let mut record = lost(record, now_ms());
    record.error = Some(match killed {
        Leftovers::Killed(0) => "the supervisor vanished without recording an end".into(),
        Leftovers::Killed(n) => format!(
            "the supervisor vanished without recording an end; {n} leftover process(es) killed"
        ),
        Leftovers::NotOurs(why) => {
            format!("the supervisor vanished without recording an end; nothing signalled: {why}")
        }
    });
    record_end(paths, Journal::open(paths).ok().as_mut(), &record)?;
    Ok(Some(record))
}

fn lost(mut record: TaskRecord, at: i64) -> TaskRecord {
    record.finish(Status::Lost, Reason::SupervisorLost, at);
    record
}

/// What became of a dead supervisor's processes.
#[derive(Debug, PartialEq, Eq)]
pub enum Leftovers {
    Killed(usize),
    NotOurs(&'static str),
}

/// SIGKILLs every process left in the task's group, after checking the group is still ours:
/// same boot, the leader (if it is still there) has the recorded start time, and each member
/// started no earlier than the leader and belongs to us.
pub fn kill_leftovers(record: &TaskRecord) -> Leftovers {
    let Some(pgid) = record.pgid.filter(|&p| p > 1) else {
        return Leftovers::Killed(0);
    };
    if record.boot_id.is_none() || record.boot_id != procfs::boot_id() {
        return Leftovers::NotOurs("the record is from another boot");
    }
    let Some(leader_start) = record.pid_start_ticks else {
        return Leftovers::NotOurs("the record holds no start time");
    };
    if let Some(leader) = procfs::stat(pgid)
        && leader.start_ticks != leader_start
    {
        return Leftovers::NotOurs("its pid now belongs to another process");
    }
    let me = nix::unistd::geteuid().as_raw();
    let own_group = nix::unistd::getpgrp().as_raw();
    if pgid == own_group {
        return Leftovers::NotOurs("it is the caller's own process group");
    }
    let members: Vec<i32> = procfs::all()
        .into_iter()
        .filter(|p| p.pgrp == pgid && p.start_ticks >= leader_start && p.state != b'Z')
        .filter(|p| procfs::owner(p.pid) == Some(me))
        .map(|p| p.pid)
        .collect();
    let killed = members
        .iter()
        .filter(|&&pid| kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok())
        .count();
    Leftovers::Killed(killed)
}
