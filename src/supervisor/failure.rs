//! Runs in the supervisor: the last word of a supervisor that fails or panics.
//!
//! A supervisor that exits without recording an end leaves its task `lost`, its processes
//! unsupervised. So whatever ends it early, an error returned from any phase or a panic
//! (the release build aborts on panic, but the panic hook still runs first), stops what runs
//! of its task and records the end in the record, with the cause in `error` and the reason
//! `supervisor_error`. This is a last resort: it reads the record from disk, so progress
//! noted in memory since the last write may be missing from it.

use std::panic::PanicHookInfo;
use std::sync::OnceLock;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::error::Error;
use crate::paths::TaskPaths;
use crate::state::journal::Journal;
use crate::state::{Reason, Status, TaskRecord, record_end};
use crate::supervisor::signals;
use crate::time::now_ms;

/// What the panic hook needs to know, set once the task's record is known.
#[derive(Debug)]
struct Armed {
    paths: TaskPaths,
    /// The run as `start` handed it over, for a panic before our first write.
    record: TaskRecord,
    me: i32,
}

static ARMED: OnceLock<Armed> = OnceLock::new();

/// From now on a panic stops the task and records it, then aborts (in every build, so a
/// panic on a helper thread cannot leave the supervisor running without its loop).
pub fn arm(paths: &TaskPaths, record: &TaskRecord, me: i32) {
    let _ = ARMED.set(Armed {
        paths: paths.clone(),
        record: record.clone(),
        me,
    });
    std::panic::set_hook(Box::new(on_panic));
}

fn on_panic(info: &PanicHookInfo<'_>) {
    if let (Some(armed), Error::Internal { location, message }) =
        (ARMED.get(), Error::from_panic(info))
    {
        let message = format!("the supervisor panicked at {location}: {message}");
        record(&armed.paths, &armed.record, armed.me, &message);
    }
    std::process::abort();
}

/// Stops the task of this supervisor (`me`) if it runs and records its end with `message`
/// as the error. A record that is already terminal is left as it is: the end it holds is
/// the truth. `handed` is the run as `start` handed it over, used when the record on disk
/// is not yet this supervisor's.
pub fn record(paths: &TaskPaths, handed: &TaskRecord, me: i32, message: &str) {
    let on_disk = TaskRecord::read(paths).ok().flatten();
    let mut record = match on_disk {
        // Ours: this run's, or a later run's this supervisor began itself (`restart_policy`).
        Some(record) if record.run >= handed.run && record.supervisor_pid == Some(me) => record,
        // Ours, but not written yet: the previous run's record (or none) is on disk.
        Some(record) if record.run < handed.run => handed.clone(),
        None => handed.clone(),
        // Another run's, or another supervisor's: not ours to write.
        Some(_) => return,
    };
    if record.status.is_terminal() {
        return;
    }
    let status = match record.pid.filter(|&p| p > 1) {
        Some(pid) => stop(&mut record, Pid::from_raw(pid), me),
        None => Status::Failed,
    };
    record.finish(status, Reason::SupervisorError, now_ms());
    record.error = Some(message.to_owned());
    let _ = record_end(paths, Journal::open(paths).ok().as_mut(), &record);
}

/// Kills the task's group and everything parented to us, and reaps them. Returns the status
/// to record: how the main process ended if it ended by itself first, else `killed`.
fn stop(record: &mut TaskRecord, main: Pid, me: i32) -> Status {
    // The main process is our child and not reaped yet, so its pid and group are ours.
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    let status = match waitid(Id::Pid(main), flags) {
        Ok(WaitStatus::Exited(_, code)) => {
            record.exit_code = Some(code);
            Status::Exited
        }
        Ok(WaitStatus::Signaled(_, signal, core)) => {
            record.signal = Some(signals::name(signal as i32));
            record.core_dumped = core;
            Status::Killed
        }
        _ => {
            record.signal = Some(signals::name(libc::SIGKILL));
            Status::Killed
        }
    };
    let _ = kill(Pid::from_raw(-main.as_raw()), Signal::SIGKILL);
    crate::supervisor::run::sweep(main, me);
    status
}
