//! Runs in the supervisor process (`__supervise <id>`): the life of one task, in phases.
//!
//! 1. Setup: default signal dispositions, then every signal we do not read ignored; the
//!    inherited lock (fd 3) and control socket (fd 4); the spec read from the socket; the
//!    state directory. From here on a failure or a panic is recorded ([`failure`]).
//! 2. Queue (a task of a batch started with `--concurrency`): wait for a slot ([`queue`]).
//! 3. Spawn: start the task ([`child`]), write its running record, report to `start`.
//! 4. Watch: one thread, one `poll` ([`watch`]) until the task has ended; record the end.
//! 5. With a `restart_policy` that restarts the run ([`restarts`]): journal the run's end,
//!    keep its log as `output.<run>.log`, record the next run pending (`running`, no pid,
//!    `next_restart_at_ms`), journal `task.restarting`, wait the delay while serving stop
//!    requests, signals and the owners' exit (each ends the task, never restarted), then
//!    phases 3 and 4 again for the next run. The same process, holding the same lock.
//!
//! Each phase fails with its own [`SupervisorError`]; [`run`] writes the cause into the
//! record (stopping the task first if it runs) instead of exiting with nothing said.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::Error;
use crate::paths::{StateDir, TaskId, TaskPaths, names};
use crate::procfs::{self, Identity};
use crate::state::folder::{Folder, Write as Access};
use crate::state::journal::RestartingEntry;
use crate::state::record::OwnerRecord;
use crate::state::{Reason, Status, TaskRecord, atomic};
use crate::supervisor::error::SupervisorError;
use crate::supervisor::recorder::Recorder;
use crate::supervisor::restarts::{Cause, Decision, Restarts};
use crate::supervisor::watch::Supervision;
use crate::supervisor::{
    CONTROL_FD, LOCK_FD, Report, Spec, TURN_FD, child, failure, fds, queue, signals,
};
use crate::time::{deadline_after, now_ms, poll_timeout};

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
    /// Every write to the task's folder, and the room set aside for the end.
    recorder: Recorder,
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
        let folder = paths
            .open()
            .and_then(|folder| {
                folder.ok_or_else(|| {
                    Error::store(
                        "open",
                        &paths.dir,
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    )
                })
            })
            .map_err(|e| SupervisorError::setup("open the task's folder", e))?;

        let me = std::process::id() as i32;
        let mut record = spec.record;
        record.supervisor_pid = Some(me);
        record.supervisor_start_ticks = Identity::of(me).map(|i| i.start_ticks);
        record.boot_id = procfs::boot_id();
        // From here on, a panic stops the task and records it.
        failure::arm(&paths, &record, me);
        atomic::remove_stale_temps(&folder, names::RECORD);
        // A stop request an older version left in a file (stop now sends it in the signal).
        let _ = folder.remove(names::STOP_REQUEST);
        let supervisor = Supervisor {
            state,
            paths,
            record,
            env: spec.env,
            control: Some(control),
            signal_fd,
            recorder: Recorder::new(folder),
            me,
        };
        Ok((supervisor, lock))
    }

    /// Phases 2 to 4. `lock` is let go as soon as the end is recorded.
    fn supervise(mut self, lock: &mut Option<File>) -> Result<()> {
        // Room for the end first: a run whose end could not be recorded is not begun.
        if let Err(e) = self.recorder.reserve_end(&self.record) {
            report(self.control.take(), &record_failure(&e));
            return Err(SupervisorError::spawn(
                "set room aside for the task's end",
                e,
            ));
        }
        // The processes it is stopped with: those still running. With none left of those
        // named, the task does not start.
        let named = self.record.all_owners();
        let owners: Vec<_> = named
            .iter()
            .filter_map(|o| queue::open_owner(o.pid, o.start_ticks).map(|fd| (o.clone(), fd)))
            .collect();
        if !named.is_empty() && owners.is_empty() {
            return self.end_unstarted(Reason::OwnerExited);
        }
        let owner = owners.first().map(|(_, fd)| fd);
        // Held while the task runs (across its automatic restarts): a slot of its batch.
        let (_slot, mut turn) = match self.wait_for_slot(owner)? {
            Queued::Ready { slot, turn } => (slot, turn),
            Queued::Ended(reason) => return self.end_unstarted(reason),
        };
        let mut owners = owners;
        let mut restarts = Restarts::new(self.record.restart_policy.clone());
        loop {
            let Some(pid) = self.spawn(turn.take())? else {
                return Ok(());
            };
            let mut supervision =
                Supervision::new(self.record, Pid::from_raw(pid), self.me, self.recorder);
            supervision.stop_with(owners);
            if restarts.restarts_on(Cause::ReadyTimeout) {
                supervision.stop_when_not_ready();
            }
            supervision.watch(&self.signal_fd)?;
            let ran = supervision.record();
            let uptime = ran
                .ended_at_ms
                .zip(ran.started_at_ms)
                .map_or(0, |(end, start)| (end - start).max(0));
            let cause = supervision.restart_cause();
            let decision = restarts.decide(cause, Duration::from_millis(uptime as u64));
            let Decision::Restart { delay, unstable } = decision else {
                if decision == Decision::GiveUp {
                    supervision.give_up();
                }
                supervision.record_end(&self.signal_fd)?;
                // The end is recorded: let waiters go now, before the rest is torn down
                // (closing an inotify descriptor waits for a kernel grace period, several
                // milliseconds).
                drop(lock.take());
                drop(supervision);
                return Ok(());
            };
            let (ended, recorder, kept) = supervision.into_parts();
            self.record = ended;
            self.recorder = recorder;
            owners = kept;
            let pause = Pause {
                cause: cause.unwrap_or(Cause::Failed),
                uptime_ms: uptime,
                delay,
                unstable,
            };
            if self.back_off(&pause, &mut owners)? == BackedOff::Ended {
                drop(lock.take());
                return Ok(());
            }
        }
    }

    /// Phase 5: between a run that ended and the next one its restart policy starts. Says
    /// so (the run's end and `task.restarting` in the journal, the next run pending in the
    /// record), then waits `pause.delay`, serving stop requests, signals and the owners'
    /// exit, any of which ends the task instead (recorded `killed`, the next run never
    /// started).
    fn back_off(
        &mut self,
        pause: &Pause,
        owners: &mut Vec<(OwnerRecord, OwnedFd)>,
    ) -> Result<BackedOff> {
        let ended = self.record.clone();
        self.recorder.journal_run_end(&ended);
        // The next run's output starts empty; this run's is kept beside it.
        crate::output_log::keep_previous(self.recorder.folder(), ended.run)
            .map_err(|e| SupervisorError::watch("keep the run's log for a restart", e))?;
        let start_at = deadline_after(pause.delay);
        let start_at_ms = now_ms().saturating_add(pause.delay.as_millis() as i64);
        let mut next = ended.clone();
        next.begin_run();
        next.supervisor_pid = ended.supervisor_pid;
        next.supervisor_start_ticks = ended.supervisor_start_ticks;
        next.boot_id = ended.boot_id.clone();
        next.run = ended.run.saturating_add(1);
        next.restarts = ended.restarts.saturating_add(1);
        next.next_restart_at_ms = Some(start_at_ms);
        if let Err(e) = self.recorder.write(&next) {
            // Without a record of the next run nobody could see or stop it: the ended run
            // is the task's end, saying why it was not restarted. Its end is journaled
            // already, and its output goes back where the record says it is.
            let mut ended = ended;
            ended.error = Some(format!(
                "the restart could not be recorded: {}",
                e.full_message()
            ));
            let _ = self
                .recorder
                .folder()
                .rename(&names::old_log(ended.run), names::LOG);
            self.recorder
                .end_journaled(&ended, Some(&self.signal_fd))
                .map_err(SupervisorError::Record)?;
            return Err(SupervisorError::watch("record the restart", e));
        }
        self.record = next;
        self.recorder.journal_restarting(&RestartingEntry {
            run: self.record.run,
            reason: pause.cause.as_str().to_owned(),
            exit_code: ended.exit_code,
            signal: ended.signal.clone(),
            uptime_ms: Some(pause.uptime_ms),
            delay_ms: pause.delay.as_millis() as u64,
            restarts: self.record.restarts,
            unstable_runs: pause.unstable,
            next_restart_at_ms: start_at_ms,
        });
        loop {
            let left = start_at.map(|at| at.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                break;
            }
            let mut fds = vec![PollFd::new(self.signal_fd.as_fd(), PollFlags::POLLIN)];
            for (_, owner) in owners.iter() {
                fds.push(PollFd::new(owner.as_fd(), PollFlags::POLLIN));
            }
            let timeout = left.map_or(PollTimeout::NONE, poll_timeout);
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(SupervisorError::watch("poll between runs", e)),
            }
            let gone: Vec<usize> = fds[1..]
                .iter()
                .enumerate()
                .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(i, _)| i)
                .collect();
            let mut reason = None;
            while let Ok(Some(info)) = self.signal_fd.read_signal() {
                reason = reason.or(match info.ssi_signo as i32 {
                    libc::SIGUSR1 => Some(Reason::Stop),
                    libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT => {
                        Some(Reason::SupervisorSignal)
                    }
                    _ => None, // SIGCHLD: nothing of the task is left to reap.
                });
            }
            if !gone.is_empty() {
                let mut place = 0;
                owners.retain(|_| {
                    let keep = !gone.contains(&place);
                    place += 1;
                    keep
                });
                if owners.is_empty() {
                    reason = reason.or(Some(Reason::OwnerExited));
                }
            }
            if let Some(reason) = reason {
                self.record.next_restart_at_ms = None;
                self.record.finish(Status::Killed, reason, now_ms());
                self.recorder
                    .end(&self.record, Some(&self.signal_fd))
                    .map_err(SupervisorError::Record)?;
                return Ok(BackedOff::Ended);
            }
        }
        self.record.next_restart_at_ms = None;
        // Room for the next run's end, as for the first run.
        if let Err(e) = self.recorder.reserve_end(&self.record) {
            self.record
                .finish(Status::Failed, Reason::SpawnError, now_ms());
            self.record.error = Some(format!(
                "set room aside for the task's end: {}",
                e.full_message()
            ));
            self.recorder
                .end(&self.record, Some(&self.signal_fd))
                .map_err(SupervisorError::Record)?;
            return Ok(BackedOff::Ended);
        }
        Ok(BackedOff::Restart)
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
        let batch = self
            .state
            .batch(&slot.id)
            .open()
            .and_then(|folder| {
                folder.ok_or_else(|| {
                    Error::store(
                        "open",
                        self.state.batches_dir().join(&slot.id),
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    )
                })
            })
            .map_err(|e| SupervisorError::queue("open the batch's folder", e))?;
        if let Some(file) = queue::try_now(&batch, &slot) {
            return Ok(Queued::Ready {
                slot: Some(file),
                turn,
            });
        }
        self.record.status = Status::Queued;
        self.recorder
            .write(&self.record)
            .map_err(|e| SupervisorError::queue("record the task queued", e))?;
        self.recorder.journal_status(&self.record);
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
        let spawned = open_log(self.recorder.folder())
            .map_err(|source| child::SpawnFailure {
                cause: "log".into(),
                source,
            })
            .and_then(|log| {
                child::spawn(&self.record, &self.env, self.state.root(), &log, self.me)
            });
        let pid = match spawned {
            Ok(pid) => pid,
            Err(failure) => {
                let message = format!("{}: {}", failure.cause, failure.source);
                self.record
                    .finish(Status::Failed, Reason::SpawnError, now_ms());
                self.record.error = Some(message);
                // `start` reads the record once we report: record first, if there is room.
                let written = self.recorder.try_end(&self.record);
                report(
                    self.control.take(),
                    &Report::SpawnFailed {
                        cause: failure.cause,
                        os_error: failure.source.raw_os_error(),
                        message: failure.source.to_string(),
                    },
                );
                return self.end_written(written).map(|()| None);
            }
        };
        let record = &mut self.record;
        record.status = Status::Running;
        record.pid = Some(pid);
        record.pgid = Some(pid);
        record.pid_start_ticks = procfs::stat(pid).map(|s| s.start_ticks);
        record.started_at_ms = Some(now_ms());
        // The rename makes the record visible; it is made durable once `start` has its
        // answer, off the path every caller waits on. A crash before then leaves an empty or
        // torn record at worst, which reads `lost` after the reboot, as a durable `running`
        // one would.
        let unsettled = match self.recorder.replace_unsynced(record) {
            Ok(replaced) => replaced,
            Err(e) => {
                // Without a record nobody can find the task: do not leave it running
                // untracked.
                let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
                report(self.control.take(), &record_failure(&e));
                sweep(Pid::from_raw(pid), self.me);
                return Err(SupervisorError::spawn("record the task running", e));
            }
        };
        // The journal is a courtesy to followers; the record is the truth, so a journal that
        // cannot be written does not stop the task.
        self.recorder.journal_status(&self.record);
        report(self.control.take(), &Report::Running { pid });
        // Our turn is over once the task runs: the next task of the batch may look for a
        // slot, and so tasks start in input order.
        drop(turn);
        let _ = self.recorder.settle(unsettled);
        Ok(Some(pid))
    }

    /// Ends a task that never started (stopped while queued, or its owner already gone).
    fn end_unstarted(mut self, reason: Reason) -> Result<()> {
        self.record.finish(Status::Killed, reason, now_ms());
        let written = self.recorder.try_end(&self.record);
        report(self.control.take(), &Report::Ended);
        self.end_written(written)
    }

    /// After a first try to record an end, made before `start` was told: on a full disk,
    /// keeps trying now that `start` has its answer (see [`Recorder::keep_ending`]).
    fn end_written(&mut self, written: crate::error::Result<()>) -> Result<()> {
        match written {
            Err(e) if e.is_disk_full() => {
                self.recorder
                    .keep_ending(&self.record, Some(&self.signal_fd), e)
            }
            other => other,
        }
        .map_err(SupervisorError::Record)
    }
}

/// What `start` is told when the task's record cannot be written. The OS error travels as a
/// number, so that `start` can tell a full disk.
fn record_failure(e: &Error) -> Report {
    let (cause, os_error) = match e {
        Error::Store { path, source, .. } => (
            format!("record `{}`", path.display()),
            source.raw_os_error(),
        ),
        _ => ("record".to_owned(), None),
    };
    Report::SpawnFailed {
        cause,
        os_error,
        message: e.full_message(),
    }
}

/// What a restart waits for, and why.
struct Pause {
    cause: Cause,
    uptime_ms: i64,
    delay: Duration,
    /// Unstable runs in a row, the ended one included.
    unstable: u32,
}

/// How the wait between two runs ended.
#[derive(Debug, PartialEq, Eq)]
enum BackedOff {
    /// The next run starts now.
    Restart,
    /// The task ended meanwhile (stopped, signalled, its owners gone); recorded.
    Ended,
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

/// The log, opened for the task to append to (its own writes go through this descriptor).
fn open_log(folder: &Folder) -> std::io::Result<File> {
    folder
        .write_file(names::LOG, Access::Append)
        .map_err(|e| match e {
            Error::Store { source, .. } => source,
            other => std::io::Error::other(other.full_message()),
        })
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
/// left but the supervisors of child tasks. A task started from inside this one (`start`
/// run by the task) has a supervisor of its own, reparented to us as subreaper once that
/// `start` exited; it is a task of its own, with its own life, and is left running (once we
/// exit it is reparented on, as any orphan is).
pub fn sweep(main: Pid, me: i32) {
    let _ = waitpid(main, None);
    loop {
        // Reap whatever has ended.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return, // ECHILD: nothing left.
            }
        }
        let left: Vec<Pid> = procfs::children_of(me)
            .into_iter()
            .filter(|&child| !procfs::is_supervisor(child))
            .map(Pid::from_raw)
            .collect();
        if left.is_empty() {
            return;
        }
        for &child in &left {
            let _ = kill(child, Signal::SIGKILL);
        }
        // Each one, so that a child task's supervisor (never killed) is never waited for.
        for child in left {
            while let Err(Errno::EINTR) = waitpid(child, None) {}
        }
    }
}
