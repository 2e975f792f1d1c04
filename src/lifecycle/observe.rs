//! Observing: a task as it truly is now (`status`).
//!
//! A record is trusted only as far as the lock says its supervisor is alive
//! ([`crate::state::observe`]): a task whose supervisor vanished is answered `lost`.

use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::paths::TaskId;
use crate::payload::task::Task;
use crate::state::reconcile::known_end;
use crate::state::{TaskRecord, observe};

/// `status`: one task.
#[derive(Debug, Clone)]
pub struct StatusArgs {
    pub id: TaskId,
}

impl Tasks {
    /// One task, truthfully, with the TCP ports its processes listen on.
    pub fn status(&self, args: StatusArgs) -> Result<Task> {
        let paths = self.paths(&args.id);
        let mut record = observe(&paths, &args.id)?;
        let mut is_stopped = stopped(&record);
        // The task's process is gone but its end is not recorded yet: its supervisor is
        // recording it, or (on a full disk) keeps trying to. Its journal may know the end
        // already; asked only then, so a running task costs nothing more.
        if is_stopped.is_none()
            && record.pid.is_some()
            && let Some(ended) = known_end(&paths, &record)
        {
            record = ended;
            is_stopped = None;
        }
        let mut task = Task::from_record(&record, &paths);
        task.ports = Some(listening_ports(&record));
        task.stopped = is_stopped;
        task.children = Some(self.children(&args.id)?);
        Ok(task)
    }

    /// The truthful record of a task; `TaskNotFound` if it has none.
    pub(crate) fn record(&self, id: &TaskId) -> Result<TaskRecord> {
        observe(&self.paths(id), id)
    }
}

/// Whether a running task's main process is stopped (`None` when it has ended, or its pid
/// is no longer the process recorded).
pub fn stopped(record: &TaskRecord) -> Option<bool> {
    if record.status.is_terminal() {
        return None;
    }
    let identity = crate::procfs::Identity {
        pid: record.pid?,
        start_ticks: record.pid_start_ticks?,
    };
    identity.is_stopped()
}

/// The TCP ports a running task's processes listen on: its process group, and processes
/// its supervisor adopted. Reads /proc, so only `status` asks for it.
pub fn listening_ports(record: &TaskRecord) -> Vec<u16> {
    listening_ports_of(&[record]).pop().unwrap_or_default()
}

/// [`listening_ports`] of several tasks, with one pass over /proc and one read of the
/// socket tables for all of them (a follower of every task).
pub fn listening_ports_of(records: &[&TaskRecord]) -> Vec<Vec<u16>> {
    if records.iter().all(|r| r.status.is_terminal()) {
        return vec![Vec::new(); records.len()];
    }
    let processes = crate::procfs::all();
    let listening = crate::ready::listening_inodes(|_| true);
    records
        .iter()
        .map(|record| {
            if record.status.is_terminal() {
                return Vec::new();
            }
            let pids: Vec<i32> = processes
                .iter()
                .filter(|p| {
                    record.pgid.is_some_and(|g| p.pgrp == g)
                        || record.supervisor_pid == Some(p.ppid)
                })
                .map(|p| p.pid)
                .collect();
            crate::ready::ports_among(&listening, &pids)
        })
        .collect()
}
