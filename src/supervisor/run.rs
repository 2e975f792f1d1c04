//! Runs in the supervisor process (`__supervise <id>`): the life of one task, in phases.
//!
//! 1. Setup: default signal dispositions, then every signal we do not read ignored; the
//!    inherited lock (fd 3) and control socket (fd 4); the spec read from the socket; the
//!    state directory. From here on a failure or a panic is recorded ([`failure`]).
//! 2. Queue (a task of a batch started with `--concurrency`): wait for a slot ([`queue`]).
//! 3. Spawn: start the task ([`child`]), write its running record, report to `start`.
//! 4. Watch: one thread, one `poll` ([`watch`]) until the task has ended; record the end.
//!
//! Each phase fails with its own [`SupervisorError`]; [`run`] writes the cause into the
//! record (stopping the task first if it runs) instead of exiting with nothing said.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::Error;
use crate::paths::{StateDir, TaskId, TaskPaths, set_private_mode};
use crate::procfs::{self, Identity};
use crate::state::journal::Journal;
use crate::state::{Reason, Status, TaskRecord, atomic, record_end};
use crate::supervisor::error::SupervisorError;
use crate::supervisor::watch::Supervision;
use crate::supervisor::{
    CONTROL_FD, LOCK_FD, Report, Spec, TURN_FD, child, failure, fds, queue, signals,
};
use crate::time::now_ms;

type Result<T, E = SupervisorError> = std::result::Result<T, E>;

/// The supervisor's entry point, `__supervise <id>`. It never prints: its stdio is
/// /dev/null, so what goes wrong is written into the task's record.
pub fn run(named: &OsStr) -> ExitCode {
    let Ok((supervisor, lock)) = Supervisor::set_up(named) else {
        // Nothing is known to record into; `start` records that we did not report.
        return ExitCode::FAILURE;
    };
    let (paths, handed, me) = (
        supervisor.paths.clone(),
        supervisor.record.clone(),
        supervisor.me,
    );
    // The lock is let go only once the end is recorded: a waiter that finds it free takes
    // the record as final (and one that still says `running` as `lost`).
    let mut lock = Some(lock);
    match supervisor.supervise(&mut lock) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if !matches!(error, SupervisorError::Record(_)) {
                failure::record(&paths, &handed, me, &error.full_message());
            }
            drop(lock);
            ExitCode::FAILURE
        }
    }
}

/// One task's supervisor, between its phases.
struct Supervisor {
    state: StateDir,
    paths: TaskPaths,
    /// The run, as it will be recorded.
    record: TaskRecord,
    /// The task's extra environment (values: never written anywhere).
    env: BTreeMap<String, String>,
    /// To `start`, until the one report is sent.
    control: Option<UnixStream>,
    signal_fd: SignalFd,
    journal: Option<Journal>,
    me: i32,
}

impl Supervisor {
    /// Phase 1: takes over the process state `start` handed us and reads the spec. Returns
    /// the supervisor and the task's lock (held for our whole life).
    fn set_up(named: &OsStr) -> Result<(Supervisor, File)> {
        signals::reset_all();
        let handled = signals::handled();
        handled
            .thread_block()
            .map_err(|e| SupervisorError::setup("block signals", e))?;
        // A stray signal must not end us and leave the task `lost`; a write to the control
        // socket after `start` died must not either (SIGPIPE).
        signals::ignore_unused(&handled);
        let signal_fd =
            SignalFd::with_flags(&handled, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
                .map_err(|e| SupervisorError::setup("create a signalfd", e))?;

        // SAFETY: launch.rs placed the task's lock at LOCK_FD and our end of the control
        // socket at CONTROL_FD for this process alone; nothing else owns them.
        let (lock, mut control) = unsafe {
            (
                File::from_raw_fd(LOCK_FD),
                UnixStream::from_raw_fd(CONTROL_FD),
            )
        };
        fds::mark_cloexec_from(3);
        std::env::set_current_dir("/")
            .map_err(|e| SupervisorError::setup("change to the root directory", e))?;
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only changes this process's own attribute.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
            let error = std::io::Error::last_os_error();
            return Err(SupervisorError::setup("become a child subreaper", error));
        }

        let mut bytes = Vec::new();
        control
            .read_to_end(&mut bytes)
            .map_err(|e| SupervisorError::setup("read the spec", e))?;
        let spec: Spec = serde_json::from_slice(&bytes)
            .map_err(|e| SupervisorError::setup("parse the spec", e))?;
        let id = TaskId::parse(&spec.record.id)
            .map_err(|e| SupervisorError::setup("read the task id", e))?;
        if named != OsStr::new(id.as_str()) {
            return Err(SupervisorError::setup(
                "match the spec",
                "the command line names another task",
            ));
        }
        let state = StateDir::open(spec.home)
            .map_err(|e| SupervisorError::setup("open the state directory", e))?;
        let paths = state.task(&id);

        let me = std::process::id() as i32;
        let mut record = spec.record;
        record.supervisor_pid = Some(me);
        record.supervisor_start_ticks = Identity::of(me).map(|i| i.start_ticks);
        record.boot_id = procfs::boot_id();
        // From here on, a panic stops the task and records it.
        failure::arm(&paths, &record, me);
        atomic::remove_stale_temps(&paths.record());
        let _ = fs::remove_file(paths.stop_request());
        let journal = Journal::open(&paths).ok();
        let supervisor = Supervisor {
            state,
            paths,
            record,
            env: spec.env,
            control: Some(control),
            signal_fd,
            journal,
            me,
        };
        Ok((supervisor, lock))
    }

    /// Phases 2 to 4. `lock` is let go as soon as the end is recorded.
    fn supervise(mut self, lock: &mut Option<File>) -> Result<()> {
        let owner = match self.record.owner_pid {
            Some(pid) => match queue::open_owner(pid, self.record.owner_start_ticks) {
                Some(fd) => Some(fd),
                None => return self.end_unstarted(Reason::OwnerExited),
            },
            None => None,
        };
        // Held while the task runs: a slot of its batch.
        let (_slot, turn) = match self.wait_for_slot(owner.as_ref())? {
            Queued::Ready { slot, turn } => (slot, turn),
            Queued::Ended(reason) => return self.end_unstarted(reason),
        };
        let Some(pid) = self.spawn(turn)? else {
            return Ok(());
        };
        let Supervisor {
            paths,
            record,
            signal_fd,
            journal,
            me,
            ..
        } = self;
        let mut supervision = Supervision::new(paths, record, Pid::from_raw(pid), me, journal);
        if let Some(owner) = owner {
            supervision.stop_with(owner);
        }
        supervision.watch(&signal_fd)?;
        // The end is recorded: let waiters go now, before the rest is torn down (closing an
        // inotify descriptor waits for a kernel grace period, several milliseconds).
        drop(lock.take());
        drop(supervision);
        Ok(())
    }

    /// Phase 2, for a task of a batch: says it is queued, then waits for its turn and a
    /// free slot, serving stop requests and its owner's exit meanwhile.
    fn wait_for_slot(&mut self, owner: Option<&OwnedFd>) -> Result<Queued> {
        let Some(slot) = self.record.batch.clone() else {
            return Ok(Queued::Ready {
                slot: None,
                turn: None,
            });
        };
        // SAFETY: launch.rs placed this task's turn lock at TURN_FD for this process alone.
        let turn = Some(unsafe { File::from_raw_fd(TURN_FD) });
        fds::set_cloexec(TURN_FD, true);
        let batch = queue::BatchPaths {
            dir: self.state.batch_dir(&slot.id),
        };
        if let Some(file) = queue::try_now(&batch, &slot) {
            return Ok(Queued::Ready {
                slot: Some(file),
                turn,
            });
        }
        self.record.status = Status::Queued;
        self.record
            .write(&self.paths)
            .map_err(|e| SupervisorError::queue("record the task queued", e))?;
        if let Some(journal) = self.journal.as_mut() {
            let _ = journal.status(&self.record, 0);
        }
        report(self.control.take(), &Report::Queued);
        let owner_fd = owner.map(AsFd::as_fd);
        let waited = queue::wait_for_slot(&batch, &slot, &self.signal_fd, owner_fd)
            .map_err(|e| SupervisorError::queue("wait for a slot", e))?;
        Ok(match waited {
            queue::Waited::Slot(file) => Queued::Ready {
                slot: Some(file),
                turn,
            },
            queue::Waited::OwnerExited => Queued::Ended(Reason::OwnerExited),
            queue::Waited::Signal(libc::SIGUSR1) => Queued::Ended(Reason::Stop),
            queue::Waited::Signal(_) => Queued::Ended(Reason::SupervisorSignal),
        })
    }

    /// Phase 3: starts the task and records it running; `None` if it could not start (then
    /// that is recorded and reported). `turn` is let go once the task runs.
    fn spawn(&mut self, turn: Option<File>) -> Result<Option<i32>> {
        let spawned = open_log(&self.paths)
            .map_err(|source| child::SpawnFailure {
                cause: "log".into(),
                source,
            })
            .and_then(|log| child::spawn(&self.record, &self.env, &log, self.me));
        let pid = match spawned {
            Ok(pid) => pid,
            Err(failure) => {
                let message = format!("{}: {}", failure.cause, failure.source);
                self.record
                    .finish(Status::Failed, Reason::SpawnError, now_ms());
                self.record.error = Some(message);
                // The journal's end first, then the record (see `Supervision::finish`);
                // `start` reads the record once we report.
                let written = record_end(&self.paths, self.journal.as_mut(), &self.record);
                report(
                    self.control.take(),
                    &Report::SpawnFailed {
                        cause: failure.cause,
                        os_error: failure.source.raw_os_error(),
                        message: failure.source.to_string(),
                    },
                );
                return written.map(|()| None).map_err(SupervisorError::Record);
            }
        };
        let record = &mut self.record;
        record.status = Status::Running;
        record.pid = Some(pid);
        record.pgid = Some(pid);
        record.pid_start_ticks = procfs::stat(pid).map(|s| s.start_ticks);
        record.started_at_ms = Some(now_ms());
        // The rename makes the record visible; its directory is synced once `start` has its
        // answer, off the path every caller waits on.
        let replaced = match record.replace(&self.paths) {
            Ok(replaced) => replaced,
            Err(e) => {
                // Without a record nobody can find the task: do not leave it running
                // untracked.
                let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
                // The OS error travels as a number, so that `start` can tell a full disk.
                let (cause, os_error) = match &e {
                    Error::Store { path, source, .. } => (
                        format!("record `{}`", path.display()),
                        source.raw_os_error(),
                    ),
                    _ => ("record".to_owned(), None),
                };
                report(
                    self.control.take(),
                    &Report::SpawnFailed {
                        cause,
                        os_error,
                        message: e.full_message(),
                    },
                );
                sweep(Pid::from_raw(pid), self.me);
                return Err(SupervisorError::spawn("record the task running", e));
            }
        };
        // The journal is a courtesy to followers; the record is the truth, so a journal that
        // cannot be written does not stop the task.
        if let Some(journal) = self.journal.as_mut() {
            let _ = journal.status(&self.record, 0);
        }
        report(self.control.take(), &Report::Running { pid });
        // Our turn is over once the task runs: the next task of the batch may look for a
        // slot, and so tasks start in input order.
        drop(turn);
        let _ = replaced.sync();
        Ok(Some(pid))
    }

    /// Ends a task that never started (stopped while queued, or its owner already gone).
    fn end_unstarted(mut self, reason: Reason) -> Result<()> {
        self.record.finish(Status::Killed, reason, now_ms());
        let written = record_end(&self.paths, self.journal.as_mut(), &self.record);
        report(self.control.take(), &Report::Ended);
        written.map_err(SupervisorError::Record)
    }
}

/// How the wait for a slot ended.
enum Queued {
    /// The task may start; `slot` is held while it runs, `turn` until it has started.
    Ready {
        slot: Option<File>,
        turn: Option<File>,
    },
    /// It ended before it ran.
    Ended(Reason),
}

fn open_log(paths: &TaskPaths) -> std::io::Result<File> {
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(paths.log())?;
    set_private_mode(&paths.log(), 0o600).map_err(|e| std::io::Error::other(e.full_message()))?;
    Ok(log)
}

/// Tells `start` what happened, once; the socket closes after it.
fn report(control: Option<UnixStream>, report: &Report) {
    // If `start` is gone, nobody reads this; the record already says what happened.
    if let (Some(mut control), Ok(mut line)) = (control, serde_json::to_vec(report)) {
        line.push(b'\n');
        let _ = control.write_all(&line);
    }
}

/// Reaps the main process and kills and reaps every process still parented to us
/// (escapees that left the group but were reparented to us as subreaper), until none is
/// left.
pub fn sweep(main: Pid, me: i32) {
    let _ = waitpid(main, None);
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                for child in procfs::children_of(me) {
                    let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
                }
                match waitpid(Pid::from_raw(-1), None) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return, // ECHILD: nothing left.
        }
    }
}
