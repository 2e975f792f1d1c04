//! Processes that left their task's process group, found after its supervisor died.
//!
//! While a supervisor lives, a process that leaves the task's group or session (`setsid`,
//! `setpgid`, a double fork) is still found: it is reparented to the supervisor, the child
//! subreaper. Once the supervisor is SIGKILLed (or OOM-killed), such a process is adopted by
//! init and nothing ties it to the task any more, except its environment: the supervisor
//! gives the task a cookie in [`env::RUN`], naming the task, the run and the supervisor
//! (pid and start time: unique on this boot), and every process the task starts inherits
//! it, as Jenkins' ProcessTreeKiller does with its own variable. Whoever records the task
//! `lost` scans /proc for processes that carry the cookie and kills them, after checking
//! that each is the user's own, of this boot, and started after the supervisor.
//!
//! A process that clears its environment (`env -i`) or replaces it on exec escapes this;
//! so does one that runs as another user. The scan reads the environment of every process
//! of the user (see `reconcile`: it runs once per lost task, never on a plain read).

use nix::sys::signal::{Signal, kill as signal};
use nix::unistd::Pid;

use crate::paths::env;
use crate::procfs;
use crate::state::TaskRecord;
use crate::state::reconcile::Leftovers;

/// The cookie of a run, as the supervisor puts it in the task's environment; `None` for a
/// record that names no supervisor (it never ran).
pub fn cookie(record: &TaskRecord) -> Option<String> {
    let (pid, ticks) = record.supervisor_pid.zip(record.supervisor_start_ticks)?;
    Some(format!("{}:{}:{pid}:{ticks}", record.id, record.run))
}

/// Kills the processes of a lost run that carry its cookie, and adds them to what the
/// group's cleanup (`group`) killed. Nothing is signalled for a record of another boot, nor
/// the caller, its ancestors or its process group (a task's script that asks for its own
/// status through a pipe).
pub fn kill(record: &TaskRecord, group: Leftovers) -> Leftovers {
    let killed = match (cookie(record), record.supervisor_start_ticks) {
        (Some(cookie), Some(since))
            if record.boot_id.is_some() && record.boot_id == procfs::boot_id() =>
        {
            let spared = procfs::ancestors(std::process::id() as i32);
            let own_group = nix::unistd::getpgrp().as_raw();
            let me = nix::unistd::geteuid().as_raw();
            procfs::carrying(env::RUN, &cookie, me, since)
                .into_iter()
                .filter(|p| !spared.contains(&p.pid) && p.pgrp != own_group)
                .filter(|p| signal(Pid::from_raw(p.pid), Signal::SIGKILL).is_ok())
                .count()
        }
        _ => 0,
    };
    match group {
        Leftovers::Killed(n) => Leftovers::Killed(n + killed),
        Leftovers::NotOurs(_) if killed > 0 => Leftovers::Killed(killed),
        not_ours => not_ours,
    }
}
