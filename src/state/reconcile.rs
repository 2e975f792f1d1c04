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
use crate::paths::{TaskId, TaskPaths, names};
use crate::procfs;
use crate::state::atomic;
use crate::state::folder::Folder;
use crate::state::journal::{self, Journal, record_end_in};
use crate::state::lock::{self, Liveness, TaskLock};
use crate::state::record::{Reason, Status, TaskRecord};
use crate::time::now_ms;

/// The truthful record of a task; `TaskNotFound` if it has none.
///
/// A reader answers what it observes even when it cannot record it: a task found `lost`
/// on a full disk is answered `lost` (and its leftovers killed), and the next reader with
/// room records it; nothing is journaled that the record does not then say.
pub fn observe(paths: &TaskPaths, id: &TaskId) -> Result<TaskRecord> {
    let folder = paths
        .open()?
        .ok_or_else(|| Error::TaskNotFound { id: id.to_string() })?;
    observe_in(&folder, id)
}

/// [`observe`] for a task whose folder the caller has open (`list` opens `tasks/` once
/// for all of them).
pub fn observe_in(folder: &Folder, id: &TaskId) -> Result<TaskRecord> {
    let not_found = || Error::TaskNotFound { id: id.to_string() };
    let record = TaskRecord::read_in(folder)?.ok_or_else(not_found)?;
    // A held lock means a live supervisor, unless the supervisor the record names is dead:
    // then another reader holds it for a moment to record the task lost.
    if record.status.is_terminal()
        || (lock::probe_in(folder)? == Liveness::Alive && !record.supervisor_dead())
    {
        return Ok(record);
    }
    // A record a newer version wrote is answered as the truth now stands, and left as it is.
    if !record.understood() {
        return Ok(lost_newer(record));
    }
    // The supervisor is gone. Record it under the lock; if another reader (or a new start)
    // holds the lock this instant, still answer the truth and let them write it.
    match TaskLock::try_acquire_in(folder) {
        Ok(Some(lock)) => match reconcile_in(folder, &lock) {
            // Only `rm` and `prune` delete a record; if one did so this instant, the task
            // is gone.
            Ok(record) => record.ok_or_else(not_found),
            // It could not be recorded (a full disk): answered all the same.
            Err(Error::Store { .. }) => Ok(unrecorded_end(folder, record)),
            Err(e) => Err(e),
        },
        Ok(None) => Ok(unrecorded_end(folder, record)),
        // `rm` or `prune` moved the folder away this instant.
        Err(e) if lock::is_removed(&e) => Err(not_found()),
        Err(e) => Err(e),
    }
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

/// How a task whose supervisor is gone ended, for an answer that is not recorded: the end
/// its journal holds, else `lost`.
fn unrecorded_end(folder: &Folder, record: TaskRecord) -> TaskRecord {
    match journal::journaled_end(folder, record.run) {
        Some(end) => end.applied_to(record),
        None => {
            let mut record = lost(record, now_ms());
            record.error = Some(VANISHED.into());
            record
        }
    }
}

/// The end a running task's journal already holds, when its process has ended and its
/// supervisor, still alive, has not recorded it yet (on a full disk, it may be retrying).
/// Only worth asking once the task's process is known gone.
pub fn known_end(paths: &TaskPaths, record: &TaskRecord) -> Option<TaskRecord> {
    if record.status.is_terminal() {
        return None;
    }
    let folder = paths.open().ok()??;
    let end = journal::journaled_end(&folder, record.run)?;
    Some(end.applied_to(record.clone()))
}

const VANISHED: &str = "the supervisor vanished without recording an end";

/// With the lock held: if the record still says the task is alive, kill its leftovers and
/// record its end: the one its journal holds (a supervisor that journaled its end but
/// could not record it, on a full disk), else `lost`. Returns the record as it now stands.
pub fn reconcile_locked(paths: &TaskPaths, lock: &TaskLock) -> Result<Option<TaskRecord>> {
    match paths.open()? {
        Some(folder) => reconcile_in(&folder, lock),
        None => Ok(None),
    }
}

/// [`reconcile_locked`], in the task's open folder.
pub fn reconcile_in(folder: &Folder, _lock: &TaskLock) -> Result<Option<TaskRecord>> {
    // Only the lock holder writes the record, and we hold the lock: a temp file beside the
    // record is a dead writer's, killed between its write and its rename (or the room a
    // dead supervisor set aside for its end).
    atomic::remove_stale_temps(folder, names::RECORD);
    let Some(record) = TaskRecord::read_in(folder)? else {
        return Ok(None);
    };
    // A record a newer version wrote is never rewritten here (see `TaskRecord::understood`).
    if record.status.is_terminal() || !record.understood() {
        return Ok(Some(record));
    }
    let killed = crate::escapees::kill(&record, kill_leftovers(&record));
    if let Some(end) = journal::journaled_end(folder, record.run) {
        // The end is journaled already: record it, and journal nothing more.
        let record = end.applied_to(record);
        record.write_in(folder)?;
        return Ok(Some(record));
    }
    let mut record = lost(record, now_ms());
    record.error = Some(match killed {
        Leftovers::Killed(0) => VANISHED.into(),
        Leftovers::Killed(n) => format!("{VANISHED}; {n} leftover process(es) killed"),
        Leftovers::NotOurs(why) => format!("{VANISHED}; nothing signalled: {why}"),
    });
    let mut journal = Journal::open_in(folder).ok();
    record_end_in(folder, journal.as_mut(), &record)?;
    if let Some(journal) = journal.as_mut() {
        journal.release();
    }
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
