//! Runs in the supervisor process (`__supervise`): the life of one task.
//!
//! One thread, one `poll` that never blocks on anything but itself: the signalfd (SIGCHLD:
//! the task or an escapee ended; SIGUSR1: a stop request is waiting in `stop.json`;
//! SIGTERM/SIGINT/SIGHUP/SIGQUIT: we are told to end, so stop the task first), the
//! `stop_with_pid` pidfd, the log's inotify watch and the sockets of port and URL tries.
//! Timers (the SIGKILL deadline of a stop, `timeout_s`, throttled reads, tries) set its
//! timeout. The task's end is observed with `waitid(WNOWAIT)`, so its pid (and so its
//! process group id) stays reserved until the rest of the group has been killed.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::error::Error;
use crate::paths::{StateDir, TaskId, TaskPaths, set_private_mode};
use crate::procfs::{self, Identity};
use crate::state::journal::{Journal, kind};
use crate::state::{Reason, Status, TaskRecord, atomic};
use crate::supervisor::output::OutputWatch;
use crate::supervisor::{
    CONTROL_FD, LOCK_FD, Report, Spec, StopRequest, TURN_FD, child, fds, output, queue, signals,
};
use crate::time::{deadline_after, now_ms, poll_timeout};

/// The supervisor's entry point, `__supervise <id>`. It never prints: its stdio is
/// /dev/null.
pub fn run(named: &OsStr) -> ExitCode {
    match supervise(named) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn supervise(named: &OsStr) -> io::Result<()> {
    signals::reset_all();
    // A write to the control socket after `start` died must not kill us.
    // SAFETY: ignoring a signal installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let handled = signals::handled();
    handled.thread_block().map_err(io::Error::from)?;
    let signal_fd = SignalFd::with_flags(&handled, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(io::Error::from)?;

    // SAFETY: launch.rs placed the task's lock at LOCK_FD and our end of the control socket
    // at CONTROL_FD for this process alone; nothing else owns them.
    let (lock, mut control) = unsafe {
        (
            File::from_raw_fd(LOCK_FD),
            UnixStream::from_raw_fd(CONTROL_FD),
        )
    };
    fds::mark_cloexec_from(3);
    std::env::set_current_dir("/")?;
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only changes this process's own attribute.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut bytes = Vec::new();
    control.read_to_end(&mut bytes)?;
    let spec: Spec = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
    let id = TaskId::parse(&spec.record.id).map_err(io::Error::other)?;
    if named != OsStr::new(id.as_str()) {
        return Err(io::Error::other(
            "the command line names another task than the spec",
        ));
    }
    let state = StateDir::open(spec.home).map_err(|e| io::Error::other(e.full_message()))?;
    let paths = state.task(&id);
    atomic::remove_stale_temps(&paths.record());
    let _ = fs::remove_file(paths.stop_request());

    let me = std::process::id() as i32;
    let mut record = spec.record;
    record.supervisor_pid = Some(me);
    record.supervisor_start_ticks = Identity::of(me).map(|i| i.start_ticks);
    record.boot_id = procfs::boot_id();
    let mut control = Some(control);
    let mut journal = Journal::open(&paths).ok();
    let owner = match record.owner_pid {
        Some(pid) => match queue::open_owner(pid, record.owner_start_ticks) {
            Some(fd) => Some(fd),
            None => {
                return end_unstarted(&paths, record, journal, control, Reason::OwnerExited);
            }
        },
        None => None,
    };

    // A queued task: say so, then wait for its turn and a free slot of its batch.
    let mut _slot = None;
    let mut turn = None;
    if let Some(slot) = record.batch.clone() {
        // SAFETY: launch.rs placed this task's turn lock at TURN_FD for this process alone.
        turn = Some(unsafe { File::from_raw_fd(TURN_FD) });
        fds::set_cloexec(TURN_FD, true);
        let batch = queue::BatchPaths {
            dir: state.batch_dir(&slot.id),
        };
        if let Some(file) = queue::try_now(&batch, &slot) {
            _slot = Some(file);
        } else {
            record.status = Status::Queued;
            record
                .write(&paths)
                .map_err(|e| io::Error::other(e.full_message()))?;
            if let Some(journal) = journal.as_mut() {
                let _ = journal.status(&record, 0);
            }
            report(control.take(), &Report::Queued);
            let owner_fd = owner.as_ref().map(AsFd::as_fd);
            match queue::wait_for_slot(&batch, &slot, &signal_fd, owner_fd)? {
                queue::Waited::Slot(file) => _slot = Some(file),
                queue::Waited::OwnerExited => {
                    return end_unstarted(&paths, record, journal, control, Reason::OwnerExited);
                }
                queue::Waited::Signal(libc::SIGUSR1) => {
                    return end_unstarted(&paths, record, journal, control, Reason::Stop);
                }
                queue::Waited::Signal(_) => {
                    return end_unstarted(
                        &paths,
                        record,
                        journal,
                        control,
                        Reason::SupervisorSignal,
                    );
                }
            }
        }
    }

    let spawned = open_log(&paths)
        .map_err(|source| child::SpawnFailure {
            cause: "log".into(),
            source,
        })
        .and_then(|log| child::spawn(&record, &spec.env, &log, me));
    let pid = match spawned {
        Ok(pid) => pid,
        Err(failure) => {
            let message = format!("{}: {}", failure.cause, failure.source);
            record.finish(Status::Failed, Reason::SpawnError, now_ms());
            record.error = Some(message.clone());
            // The journal's end first, then the record (see `finish`); `start` reads the
            // record once we report.
            if let Some(journal) = journal.as_mut() {
                let _ = journal.ended(&record, 0);
            }
            let written = record.write(&paths);
            report(
                control.take(),
                &Report::SpawnFailed {
                    cause: failure.cause,
                    os_error: failure.source.raw_os_error(),
                    message: failure.source.to_string(),
                },
            );
            return written.map_err(|e| io::Error::other(e.full_message()));
        }
    };
    record.status = Status::Running;
    record.pid = Some(pid);
    record.pgid = Some(pid);
    record.pid_start_ticks = procfs::stat(pid).map(|s| s.start_ticks);
    record.started_at_ms = Some(now_ms());
    // The rename makes the record visible; its directory is synced once `start` has its
    // answer, off the path every caller waits on.
    let replaced = match record.replace(&paths) {
        Ok(replaced) => replaced,
        Err(e) => {
            // Without a record nobody can find the task: do not leave it running untracked.
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
                control.take(),
                &Report::SpawnFailed {
                    cause,
                    os_error,
                    message: e.full_message(),
                },
            );
            sweep(Pid::from_raw(pid), me);
            return Err(io::Error::other(e.full_message()));
        }
    };
    // The journal is a courtesy to followers; the record is the truth, so a journal that
    // cannot be written does not stop the task.
    if let Some(journal) = journal.as_mut() {
        let _ = journal.status(&record, 0);
    }
    report(control.take(), &Report::Running { pid });
    // Our turn is over once the task runs: the next task of the batch may look for a slot,
    // and so tasks start in input order.
    drop(turn);
    let _ = replaced.sync();

    let timeout_at = record
        .timeout_ms
        .and_then(|ms| deadline_after(Duration::from_millis(ms)));
    // Readiness and progress come from the task's output (and its ports).
    let probe = record
        .ready_spec
        .as_ref()
        .and_then(|spec| spec.probe("ready").ok());
    let give_up_at = record
        .ready_spec
        .as_ref()
        .and_then(|spec| spec.timeout("ready").ok().flatten())
        .and_then(deadline_after);
    let output = OutputWatch::open(&paths, probe, give_up_at);
    let mut supervision = Supervision {
        paths,
        record,
        main: Pid::from_raw(pid),
        me,
        journal,
        stop: None,
        kill_at: None,
        timeout_at,
        owner,
        output,
    };
    let result = supervision.watch(&signal_fd);
    // The end is recorded: let waiters go now, before the rest is torn down (closing an
    // inotify descriptor waits for a kernel grace period, several milliseconds).
    drop(lock);
    result
}

/// Ends a task that never started (stopped while queued, or its owner already gone).
fn end_unstarted(
    paths: &TaskPaths,
    mut record: TaskRecord,
    mut journal: Option<Journal>,
    control: Option<UnixStream>,
    reason: Reason,
) -> io::Result<()> {
    record.finish(Status::Killed, reason, now_ms());
    if let Some(journal) = journal.as_mut() {
        let _ = journal.ended(&record, 0);
    }
    let written = record.write(paths);
    report(control, &Report::Ended);
    written.map_err(|e| io::Error::other(e.full_message()))
}

fn open_log(paths: &TaskPaths) -> io::Result<File> {
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(paths.log())?;
    set_private_mode(&paths.log(), 0o600).map_err(|e| io::Error::other(e.full_message()))?;
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

/// Why a stop began.
#[derive(Debug, Clone, Copy)]
enum StopCause {
    Request,
    SupervisorSignal,
    Timeout,
    OwnerExited,
}

/// How the task's main process ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Exited(i32),
    Signaled(Signal, bool),
    /// The process could no longer be waited for (someone else reaped it).
    Unknown,
}

struct Supervision {
    paths: TaskPaths,
    record: TaskRecord,
    main: Pid,
    me: i32,
    journal: Option<Journal>,
    stop: Option<StopCause>,
    kill_at: Option<Instant>,
    /// When `timeout_s` runs out.
    timeout_at: Option<Instant>,
    /// The `stop_with_pid` process, as a pidfd: readable once it has exited.
    owner: Option<OwnedFd>,
    /// Readiness and progress, read from the task's output.
    output: Option<OutputWatch>,
}

impl Supervision {
    fn watch(&mut self, signal_fd: &SignalFd) -> io::Result<()> {
        let ending = loop {
            if let Some(ending) = self.main_ended() {
                break ending;
            }
            let next = [
                self.kill_at,
                self.timeout_at,
                self.output.as_ref().and_then(OutputWatch::next_deadline),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = match next {
                None => PollTimeout::NONE,
                Some(at) => poll_timeout(at.saturating_duration_since(Instant::now())),
            };
            let mut fds = vec![PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
            let owner_at = self.owner.as_ref().map(|owner| {
                fds.push(PollFd::new(owner.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let interest = self.output.as_ref().map(OutputWatch::fds);
            let output_at = interest.as_ref().and_then(|i| i.log).map(|fd| {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                fds.len() - 1
            });
            // Port and URL tries: whatever wakes us, the output watch moves them on.
            for (fd, flags) in interest.iter().flat_map(|i| &i.network) {
                fds.push(PollFd::new(*fd, *flags));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let ready = |at: Option<usize>| {
                at.and_then(|i| fds.get(i))
                    .and_then(PollFd::revents)
                    .is_some_and(|r| !r.is_empty())
            };
            let (owner_gone, written) = (ready(owner_at), ready(output_at));
            drop(fds);
            drop(interest);
            if let Some(output) = self.output.as_mut() {
                let changes = output.on_wake(written, Instant::now());
                self.apply(changes);
            }
            let mut pending = Vec::new();
            while let Ok(Some(info)) = signal_fd.read_signal() {
                pending.push(info.ssi_signo as i32);
            }
            // A stop that races the task's own exit must not rewrite an exit as a kill.
            if let Some(ending) = self.main_ended() {
                break ending;
            }
            for signo in pending {
                self.on_signal(signo);
            }
            if owner_gone {
                self.owner = None;
                self.begin_stop(
                    StopCause::OwnerExited,
                    Signal::SIGTERM,
                    self.record.grace_ms,
                );
            }
            let now = Instant::now();
            if self.timeout_at.is_some_and(|at| now >= at) {
                self.timeout_at = None;
                self.begin_stop(StopCause::Timeout, Signal::SIGTERM, self.record.grace_ms);
            }
            if self.kill_at.is_some_and(|at| now >= at) {
                self.signal_all(Signal::SIGKILL);
                self.kill_at = None;
            }
        };
        self.finish(ending)
    }

    /// Records readiness and progress, and announces them in the journal.
    fn apply(&mut self, changes: output::Changes) {
        if !changes.ready && changes.progress.is_none() {
            return;
        }
        let log_size = fs::metadata(self.paths.log()).map_or(0, |m| m.len());
        if changes.ready {
            self.record.ready = Some(true);
            self.record.ready_at_ms = Some(now_ms());
            if let Some(journal) = self.journal.as_mut() {
                let data = serde_json::json!({"ready": true, "run": self.record.run});
                let _ = journal.append(kind::READY, self.record.run, log_size, data);
            }
        }
        if let Some(progress) = changes.progress {
            if let Some(journal) = self.journal.as_mut()
                && let Ok(data) = serde_json::to_value(&progress)
            {
                let _ = journal.append(kind::PROGRESS, self.record.run, log_size, data);
            }
            self.record.progress = Some(progress);
        }
        let _ = self.record.write(&self.paths);
    }

    fn on_signal(&mut self, signo: i32) {
        match signo {
            libc::SIGUSR1 => {
                let request = read_stop_request(&self.paths);
                let signal = request
                    .as_ref()
                    .and_then(|r| Signal::try_from(r.signal).ok())
                    .unwrap_or(Signal::SIGTERM);
                let grace = request.map_or(self.record.grace_ms, |r| r.grace_ms);
                self.begin_stop(StopCause::Request, signal, grace);
            }
            libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT => {
                self.begin_stop(
                    StopCause::SupervisorSignal,
                    Signal::SIGTERM,
                    self.record.grace_ms,
                );
            }
            _ => {} // SIGCHLD: the loop reaps.
        }
    }

    fn begin_stop(&mut self, cause: StopCause, signal: Signal, grace_ms: u64) {
        self.stop.get_or_insert(cause);
        self.signal_all(signal);
        // A grace period too long for the clock never ends: no SIGKILL deadline then.
        if let Some(at) = deadline_after(Duration::from_millis(grace_ms)) {
            self.kill_at = Some(self.kill_at.map_or(at, |old| old.min(at)));
        }
    }

    /// Signals the task's group and every escapee that was reparented to us.
    fn signal_all(&self, signal: Signal) {
        // The main process is not reaped yet, so its pid, the group id, is still ours.
        let _ = kill(Pid::from_raw(-self.main.as_raw()), signal);
        for child in procfs::children_of(self.me) {
            if child != self.main.as_raw() {
                let _ = kill(Pid::from_raw(child), signal);
            }
        }
    }

    /// Reaps ended escapees; reports the main process's end without reaping it.
    fn main_ended(&self) -> Option<Ending> {
        loop {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            match waitid(Id::All, flags) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.main => {
                    return Some(Ending::Exited(code));
                }
                Ok(WaitStatus::Signaled(pid, signal, core)) if pid == self.main => {
                    return Some(Ending::Signaled(signal, core));
                }
                Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => {
                    let _ = waitpid(pid, None);
                }
                Err(Errno::EINTR) => {}
                // No child at all: the main process cannot be waited for any more.
                Err(Errno::ECHILD) => return Some(Ending::Unknown),
                _ => return None,
            }
        }
    }

    fn finish(&mut self, ending: Ending) -> io::Result<()> {
        let ended_at = now_ms();
        // The last words of the task: its final progress.
        if let Some(progress) = self.output.as_mut().and_then(OutputWatch::final_read) {
            let log_size = fs::metadata(self.paths.log()).map_or(0, |m| m.len());
            if let Some(journal) = self.journal.as_mut()
                && let Ok(data) = serde_json::to_value(&progress)
            {
                let _ = journal.append(kind::PROGRESS, self.record.run, log_size, data);
            }
            self.record.progress = Some(progress);
        }
        // Kill the rest of the group while the leader's zombie still reserves its id.
        let _ = kill(Pid::from_raw(-self.main.as_raw()), Signal::SIGKILL);
        let record = &mut self.record;
        match ending {
            Ending::Exited(code) => record.exit_code = Some(code),
            Ending::Signaled(signal, core) => {
                record.signal = Some(signals::name(signal as i32));
                record.core_dumped = core;
            }
            Ending::Unknown => {
                record.error = Some("the task's exit status could not be collected".into());
            }
        }
        let (status, reason) = match (self.stop, ending) {
            (Some(StopCause::Request), _) => (Status::Killed, Reason::Stop),
            (Some(StopCause::SupervisorSignal), _) => (Status::Killed, Reason::SupervisorSignal),
            (Some(StopCause::Timeout), _) => (Status::TimedOut, Reason::Timeout),
            (Some(StopCause::OwnerExited), _) => (Status::Killed, Reason::OwnerExited),
            (None, Ending::Signaled(..)) => (Status::Killed, Reason::Signal),
            (None, Ending::Exited(_) | Ending::Unknown) => (Status::Exited, Reason::Exit),
        };
        record.finish(status, reason, ended_at);
        // Sweep before recording, so that a terminal record means nothing of the task is
        // left: whoever wakes on it (`wait`, `stop`) finds every process gone.
        sweep(self.main, self.me);
        let _ = fs::remove_file(self.paths.stop_request());
        // The journal's end first, then the record: a follower that sees a terminal record
        // finds `task.ended` already journaled (or knows it never will be), and one that
        // sees `task.ended` waits only for this supervisor to write the record and exit.
        if let Some(journal) = self.journal.as_mut() {
            let log_size = fs::metadata(self.paths.log()).map_or(0, |m| m.len());
            let _ = journal.ended(&self.record, log_size);
        }
        self.record
            .write(&self.paths)
            .map_err(|e| io::Error::other(e.full_message()))
    }
}

/// Reaps the main process and kills and reaps every process still parented to us
/// (escapees that left the group but were reparented to us as subreaper), until none is
/// left.
fn sweep(main: Pid, me: i32) {
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

fn read_stop_request(paths: &TaskPaths) -> Option<StopRequest> {
    let bytes = fs::read(paths.stop_request()).ok()?;
    serde_json::from_slice(&bytes).ok()
}
