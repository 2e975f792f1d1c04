//! `--exit-status`: the exit code of `wait`, `start --wait` and `restart --wait` follows the
//! tasks waited for, as `docker run` and `gh run watch --exit-status` do; the envelope is
//! printed on stdout as usual. One mapping for every command that waits ([`of_tasks`]);
//! `capabilities.exit_codes` lists it ([`CODES`]).

use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::payload::task::{Reason, Status, Task};

/// Exit code of a task that ran out its `timeout_s` (as `timeout(1)`).
pub const TIMED_OUT: u8 = 124;
/// Exit code of a task whose supervisor vanished without recording its end.
pub const LOST: u8 = 125;
/// Exit code of a task that never started (bad command or workdir; as a shell's "not found").
pub const FAILED: u8 = 127;
/// Exit code of an interrupted wait (SIGINT, SIGTERM or SIGHUP), as a shell's 128 + 2: the
/// envelope on stdout holds the tasks as they were, still running.
pub const INTERRUPTED: u8 = 130;
/// A killed task's code is 128 + its signal's number; this when the signal is unknown.
const KILLED_UNKNOWN: u8 = 128 + 9;

/// Every code `--exit-status` gives besides 0 and a task's own exit code, with its meaning,
/// for `capabilities.exit_codes`.
pub const CODES: &[(u8, &str)] = &[
    (
        TIMED_OUT,
        "--exit-status: a task was killed by its timeout_s (status timed_out).",
    ),
    (
        LOST,
        "--exit-status: a task's supervisor vanished without recording its end (status lost).",
    ),
    (
        FAILED,
        "--exit-status: a task never started: bad command or workdir (status failed). A task whose restart policy gave up (status failed, reason restart_limit) gives its last run's code instead.",
    ),
    (
        INTERRUPTED,
        "wait, start --wait, restart --wait interrupted by SIGINT, SIGTERM or SIGHUP: the envelope on stdout holds the tasks as they are (still running) with data.interrupted naming the signal.",
    ),
    (
        KILLED_UNKNOWN,
        "--exit-status: 128 + the signal's number for a task killed by a signal (status killed): 137 SIGKILL, 143 SIGTERM, 130 SIGINT; 137 when the signal is unknown.",
    ),
];

/// The exit code `task` gives under `--exit-status`: 0 unless it ended without success.
pub fn of_task(task: &Task) -> u8 {
    let exited = || {
        task.exit_code
            .map_or(1, |code| u8::try_from(code).unwrap_or(1))
    };
    let killed = || {
        task.signal
            .as_deref()
            .and_then(|name| Signal::from_str(name).ok())
            .and_then(|signal| u8::try_from(128 + signal as i32).ok())
            .unwrap_or(KILLED_UNKNOWN)
    };
    match task.status {
        Status::Queued | Status::Running => 0,
        Status::Exited => exited(),
        Status::Killed => killed(),
        Status::TimedOut => TIMED_OUT,
        // Its restart policy gave up: how its last run ended.
        Status::Failed if task.reason == Some(Reason::RestartLimit) => match task.signal {
            Some(_) => killed(),
            None => exited().max(1),
        },
        Status::Failed => FAILED,
        Status::Lost => LOST,
    }
}

/// The exit code of several tasks: that of the first (in answer order) that did not
/// succeed, or 0.
pub fn of_tasks<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> u8 {
    tasks
        .into_iter()
        .map(of_task)
        .find(|&code| code != 0)
        .unwrap_or(0)
}

/// The exit code of a call that waited for `tasks`: 130 when a signal interrupted it, else
/// with `--exit-status` ([`of_tasks`]) that of the tasks, else 0.
pub fn code<'a>(
    exit_status: bool,
    interrupted: Option<&str>,
    tasks: impl IntoIterator<Item = &'a Task>,
) -> u8 {
    match (interrupted, exit_status) {
        (Some(_), _) => INTERRUPTED,
        (None, true) => of_tasks(tasks),
        (None, false) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_code_is_distinct() {
        let mut codes: Vec<u8> = CODES.iter().map(|(code, _)| *code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CODES.len());
    }
}
