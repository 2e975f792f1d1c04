//! Runs in the supervisor: watches the running task until it has ended, and records the end.
//!
//! One thread, one `poll`, and nothing in the loop ever blocks: the signalfd (SIGCHLD: the
//! task or an escapee ended; SIGUSR1: a stop request, carried in the signal's value (see
//! [`StopRequest`]); SIGTERM/SIGINT/SIGHUP/SIGQUIT: we are told to end, so stop the task
//! first), the pidfds of the processes it is stopped with (`stop_with_pid`), the log's and the task folder's inotify
//! watch (a new ready condition in `ready.json`) and the sockets of port and URL tries
//! ([`OutputWatch`]). Timers (the SIGKILL deadline of a stop, `timeout_s`, throttled
//! reads, tries) set the poll's timeout. The task's end is observed with
//! `waitid(WNOWAIT)`, so its pid (and so its process group id) stays reserved until the
//! rest of the group has been killed, and its end time is taken the moment it is seen.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::paths::names;
use crate::procfs;
use crate::state::owners::OwnerRequest;
use crate::state::ready::ReadyRequest;
use crate::state::record::{OwnerRecord, ProgressRecord};
use crate::state::{Reason, Status, TaskRecord};
use crate::supervisor::error::SupervisorError;
use crate::supervisor::output::{self, OutputWatch};
use crate::supervisor::queue::open_owner;
use crate::supervisor::recorder::Recorder;
use crate::supervisor::restarts::Cause;
use crate::supervisor::run::sweep;
use crate::supervisor::{StopRequest, signals};
use crate::time::{deadline_after, now_ms, poll_timeout};

/// Why a stop began.
#[derive(Debug, Clone, Copy)]
enum StopCause {
    Request,
    SupervisorSignal,
    Timeout,
    OwnerExited,
    /// Its `ready` conditions did not hold in time, and its restart policy restarts it.
    ReadyTimeout,
}

/// How the task's main process ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Exited(i32),
    Signaled(Signal, bool),
    /// The process could no longer be waited for (someone else reaped it).
    Unknown,
}

/// The running task, as its supervisor sees it.
#[derive(Debug)]
pub struct Supervision {
    record: TaskRecord,
    main: Pid,
    me: i32,
    /// Every write to the task's folder, and the room set aside for the end.
    recorder: Recorder,
    stop: Option<StopCause>,
    kill_at: Option<Instant>,
    /// When `timeout_s` runs out.
    timeout_at: Option<Instant>,
    /// The processes the task is stopped with (`stop_with_pid`, and owners a reusing
    /// `start` added), each as a pidfd (readable once it has exited): the task is stopped
    /// when the last one has exited.
    owners: Vec<(OwnerRecord, OwnedFd)>,
    /// Readiness and progress, read from the task's output.
    output: Option<OutputWatch>,
    /// With a restart policy that restarts failures: when the run is stopped (and so
    /// restarted) if it is not ready by then (its `ready.timeout_s`).
    ready_by: Option<Instant>,
    /// A stop request or a terminating signal that came with the task's own end: the run
    /// ended by itself, but it is not restarted.
    stop_after_end: bool,
}

impl Supervision {
    /// The task `main` runs as `record` says; starts watching its output.
    pub fn new(record: TaskRecord, main: Pid, me: i32, recorder: Recorder) -> Supervision {
        let timeout_at = record
            .timeout_ms
            .and_then(|ms| deadline_after(Duration::from_millis(ms)));
        // Readiness and progress come from the task's output (and its ports).
        let ready = record.ready_spec.as_ref();
        let probe = ready.and_then(|spec| spec.probe("ready").ok());
        let give_up_at = ready
            .and_then(|spec| spec.timeout("ready").ok().flatten())
            .and_then(deadline_after);
        let output = OutputWatch::open(recorder.folder(), probe, give_up_at);
        Supervision {
            record,
            main,
            me,
            recorder,
            stop: None,
            kill_at: None,
            timeout_at,
            owners: Vec::new(),
            output,
            ready_by: None,
            stop_after_end: false,
        }
    }

    /// The run is stopped, to be restarted, if its `ready` conditions do not hold within
    /// their `timeout_s` (a restart policy that restarts failures).
    pub fn stop_when_not_ready(&mut self) {
        self.ready_by = self
            .record
            .ready_spec
            .as_ref()
            .and_then(|spec| spec.timeout("ready").ok().flatten())
            .and_then(deadline_after);
    }

    /// The run as it will be recorded.
    pub fn record(&self) -> &TaskRecord {
        &self.record
    }

    /// What the supervisor keeps for the next run: the record, the writer, the owners.
    pub fn into_parts(self) -> (TaskRecord, Recorder, Vec<(OwnerRecord, OwnedFd)>) {
        (self.record, self.recorder, self.owners)
    }

    /// Stops the task when the processes behind `owners` (pidfds) have all exited.
    pub fn stop_with(&mut self, owners: Vec<(OwnerRecord, OwnedFd)>) {
        self.owners = owners;
    }

    /// Until the task has ended; then says how in the record (recorded by the caller:
    /// [`Supervision::record_end`], unless the run is restarted).
    pub fn watch(&mut self, signal_fd: &SignalFd) -> Result<(), SupervisorError> {
        let ending = loop {
            if let Some(ending) = self.main_ended() {
                break ending;
            }
            if crate::fault::injected("supervisor_panic") {
                panic!("injected fault: supervisor_panic");
            }
            let next = [
                self.kill_at,
                self.timeout_at,
                self.ready_by,
                self.output.as_ref().and_then(OutputWatch::next_deadline),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = match next {
                None => PollTimeout::NONE,
                Some(at) => poll_timeout(at.saturating_duration_since(Instant::now())),
            };
            let (owner_gone, written) = self.poll(signal_fd, timeout)?;
            let now = Instant::now();
            if let Some(output) = self.output.as_mut() {
                let changes = output.on_wake(written, now);
                self.apply(changes);
            }
            let mut pending = Vec::new();
            while let Ok(Some(info)) = signal_fd.read_signal() {
                pending.push(info);
            }
            // A stop that races the task's own exit must not rewrite an exit as a kill; it
            // still keeps the run from being restarted.
            if let Some(ending) = self.main_ended() {
                self.stop_after_end = pending.iter().any(|info| {
                    matches!(
                        info.ssi_signo as i32,
                        libc::SIGUSR1 | libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT
                    )
                });
                break ending;
            }
            for info in pending {
                self.on_signal(&info);
            }
            if !owner_gone.is_empty() {
                self.owners_exited(&owner_gone);
            }
            let now = Instant::now();
            if self.timeout_at.is_some_and(|at| now >= at) {
                self.timeout_at = None;
                self.begin_stop(StopCause::Timeout, Signal::SIGTERM, self.record.grace_ms);
            }
            if self.ready_by.is_some_and(|at| now >= at) {
                self.ready_by = None;
                if self.record.ready != Some(true) {
                    self.begin_stop(
                        StopCause::ReadyTimeout,
                        Signal::SIGTERM,
                        self.record.grace_ms,
                    );
                }
            }
            if self.kill_at.is_some_and(|at| now >= at) {
                self.signal_all(Signal::SIGKILL);
                self.kill_at = None;
            }
        };
        self.conclude(ending);
        Ok(())
    }

    /// One wait for anything to happen. Returns which owners (by place) exited and whether
    /// the log was written.
    fn poll(
        &self,
        signal_fd: &SignalFd,
        timeout: PollTimeout,
    ) -> Result<(Vec<usize>, bool), SupervisorError> {
        let mut fds = vec![PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
        let owners_from = fds.len();
        for (_, owner) in &self.owners {
            fds.push(PollFd::new(owner.as_fd(), PollFlags::POLLIN));
        }
        let interest = self.output.as_ref().map(OutputWatch::fds);
        let log_at = interest.as_ref().and_then(|i| i.log).map(|fd| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        // Port and URL tries: whatever wakes us, the output watch moves them on.
        for (fd, flags) in interest.iter().flat_map(|i| &i.network) {
            fds.push(PollFd::new(*fd, *flags));
        }
        let polled = if crate::fault::injected("supervisor_poll_error") {
            Err(Errno::EINVAL)
        } else {
            poll(&mut fds, timeout)
        };
        match polled {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(SupervisorError::watch("poll for events", e)),
        }
        let ready = |at: Option<usize>| {
            at.and_then(|i| fds.get(i))
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let gone = (0..self.owners.len())
            .filter(|i| ready(Some(owners_from + i)))
            .collect();
        Ok((gone, ready(log_at)))
    }

    /// Owners (by place) exited: they are let go, owners added meanwhile are taken first
    /// (a request written before an owner exited must count), and the task is stopped once
    /// none is left.
    fn owners_exited(&mut self, gone: &[usize]) {
        let mut place = 0;
        self.owners.retain(|_| {
            let keep = !gone.contains(&place);
            place += 1;
            keep
        });
        self.take_owner_requests();
        if self.owners.is_empty() {
            self.begin_stop(
                StopCause::OwnerExited,
                Signal::SIGTERM,
                self.record.grace_ms,
            );
        } else {
            self.record_owners();
        }
    }

    /// Takes the owners `start` added to this run (`if_running: "reuse"` with
    /// `stop_with_pid`): each is watched from now on, and recorded. A request for another
    /// run, for an owner already watched, or for a process that is gone, changes nothing.
    fn take_owner_requests(&mut self) {
        let mut added = false;
        for request in OwnerRequest::take_all(self.recorder.folder()) {
            if request.run != self.record.run
                || self.owners.iter().any(|(o, _)| o.pid == request.pid)
            {
                continue;
            }
            if let Some(fd) = open_owner(request.pid, request.start_ticks) {
                let owner = OwnerRecord {
                    pid: request.pid,
                    start_ticks: request.start_ticks,
                    extra: Default::default(),
                };
                self.owners.push((owner, fd));
                added = true;
            }
        }
        if added {
            self.record_owners();
        }
    }

    /// Records the owners watched now.
    fn record_owners(&mut self) {
        self.record.owners = self.owners.iter().map(|(o, _)| o.clone()).collect();
        let _ = self.recorder.write(&self.record);
    }

    /// Records readiness, progress and steps, and announces them in the journal.
    fn apply(&mut self, changes: output::Changes) {
        if changes.request {
            self.take_ready_request();
        }
        if changes.owners && !self.owners.is_empty() {
            self.take_owner_requests();
        }
        if !changes.ready && changes.progress.is_none() && changes.steps.is_none() {
            return;
        }
        if changes.ready {
            self.record.ready = Some(true);
            self.record.ready_at_ms = Some(now_ms());
            // The ports it listens on now that it is ready: looked for this once, so that
            // every answer carries them, not only `status` (which looks again).
            self.record.ports = Some(self.listening_ports());
            self.recorder.journal_ready(self.record.run);
        }
        if let Some(progress) = changes.progress {
            self.record_progress(progress.into());
        }
        if let Some(steps) = changes.steps {
            self.record_steps(steps);
        }
        // On a full disk this fails and the task goes on; its end has its room set aside.
        let _ = self.recorder.write(&self.record);
    }

    /// Takes a new ready condition for this run, if one is waiting (`if_running: "reuse"`
    /// with another `ready`): from now on it is the run's condition, checked against the
    /// run's output from its start, and the record's `ready` follows it. A request for
    /// another run, or for the condition the run already has, changes nothing.
    fn take_ready_request(&mut self) {
        let Some(request) = ReadyRequest::read(self.recorder.folder()) else {
            return;
        };
        if request.run != self.record.run || self.record.ready_spec.as_ref() == Some(&request.ready)
        {
            return;
        }
        let (Ok(probe), Ok(timeout), Some(output)) = (
            request.ready.probe("ready"),
            request.ready.timeout("ready"),
            self.output.as_mut(),
        ) else {
            return;
        };
        output.adopt(probe, timeout.and_then(deadline_after));
        if self.ready_by.is_some() {
            self.ready_by = timeout.and_then(deadline_after);
        }
        self.record.ready_spec = Some(request.ready);
        self.record.ready = Some(false);
        self.record.ready_at_ms = None;
        let _ = self.recorder.write(&self.record);
    }

    /// Takes the task's newest progress into the record (written by the caller) and
    /// announces it in the journal.
    fn record_progress(&mut self, progress: ProgressRecord) {
        self.recorder.journal_progress(self.record.run, &progress);
        self.record.progress = Some(progress);
    }

    /// Takes the task's steps into the record (written by the caller) and announces those
    /// that changed in the journal.
    fn record_steps(&mut self, steps: output::StepsUpdate) {
        self.recorder.journal_steps(self.record.run, &steps.changed);
        self.record.steps = steps.all;
        self.record.steps_dropped = steps.dropped;
    }

    fn on_signal(&mut self, info: &libc::signalfd_siginfo) {
        match info.ssi_signo as i32 {
            libc::SIGUSR1 => {
                let request = stop_request(info).unwrap_or(StopRequest {
                    signal: Signal::SIGTERM,
                    grace_ms: self.record.grace_ms,
                });
                self.begin_stop(StopCause::Request, request.signal, request.grace_ms);
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

    /// Signals the task's group and every escapee that was reparented to us (not the
    /// supervisors of child tasks). A process
    /// stopped (`SIGSTOP`, `SIGTSTP`) holds a signal until it is continued, so each signal is
    /// followed by `SIGCONT`: a stopped task ends at once instead of after the grace period.
    fn signal_all(&self, signal: Signal) {
        let wake = !signals::is_stop(signal) && signal != Signal::SIGKILL;
        let send = |pid: Pid| {
            let _ = kill(pid, signal);
            if wake {
                let _ = kill(pid, Signal::SIGCONT);
            }
        };
        // The main process is not reaped yet, so its pid, the group id, is still ours.
        send(Pid::from_raw(-self.main.as_raw()));
        // The supervisors of tasks this task started are tasks of their own: a stop of this
        // one leaves them be (`stop {with_children}` stops them, each through its own).
        for child in procfs::children_of(self.me) {
            if child != self.main.as_raw() && !procfs::is_supervisor(child) {
                send(Pid::from_raw(child));
            }
        }
    }

    /// The TCP ports the task's processes listen on: its process group, and the processes
    /// reparented to us. One pass over /proc and the socket tables.
    fn listening_ports(&self) -> Vec<u16> {
        let group = self.main.as_raw();
        let pids: Vec<i32> = procfs::all()
            .into_iter()
            .filter(|p| p.pgrp == group || p.ppid == self.me)
            .map(|p| p.pid)
            .collect();
        crate::ready::ports_of(&pids)
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

    /// Says in the record how the run ended, once nothing of it is left.
    fn conclude(&mut self, ending: Ending) {
        let ended_at = now_ms();
        // The last words of the task: its final progress.
        if let Some(progress) = self.output.as_mut().and_then(OutputWatch::final_read) {
            self.record_progress(progress.into());
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
            (Some(StopCause::ReadyTimeout), _) => (Status::TimedOut, Reason::Timeout),
            (None, Ending::Signaled(..)) => (Status::Killed, Reason::Signal),
            (None, Ending::Exited(_) | Ending::Unknown) => (Status::Exited, Reason::Exit),
        };
        record.finish(status, reason, ended_at);
        // Steps still running end with the run: done after exit 0, failed otherwise. They
        // are journaled before the run's end, after which a follow stops.
        let succeeded = status == Status::Exited && record.exit_code == Some(0);
        if let Some(steps) = self
            .output
            .as_mut()
            .and_then(|output| output.final_steps(succeeded))
        {
            self.record_steps(steps);
        }
        // Sweep before recording, so that a terminal record means nothing of the task is
        // left: whoever wakes on it (`wait`, `stop`) finds every process gone.
        sweep(self.main, self.me);
        // A ready request is for this run only, and so are owner requests.
        let _ = self.recorder.folder().remove(names::READY_REQUEST);
        let _ = OwnerRequest::take_all(self.recorder.folder());
    }

    /// Why the run may be restarted: `None` when it was stopped (by a request, a signal to
    /// us, or its owners' exit), which is never restarted.
    pub fn restart_cause(&self) -> Option<Cause> {
        if self.stop_after_end {
            return None;
        }
        match self.stop {
            Some(StopCause::Request | StopCause::SupervisorSignal | StopCause::OwnerExited) => None,
            Some(StopCause::Timeout) => Some(Cause::Timeout),
            Some(StopCause::ReadyTimeout) => Some(Cause::ReadyTimeout),
            None => Some(match (self.record.exit_code, &self.record.signal) {
                (Some(0), _) => Cause::Exited,
                (_, Some(_)) => Cause::Signal,
                _ => Cause::Failed,
            }),
        }
    }

    /// The restart policy gave up: the task ends `failed` (`restart_limit`), keeping the
    /// last run's exit code or signal.
    pub fn give_up(&mut self) {
        let ended_at = self.record.ended_at_ms.unwrap_or_else(now_ms);
        self.record
            .finish(Status::Failed, Reason::RestartLimit, ended_at);
    }

    /// Records the end, into the room set aside for it, whatever the disk's state (see
    /// `Recorder::end`).
    pub fn record_end(&mut self, signal_fd: &SignalFd) -> Result<(), SupervisorError> {
        self.recorder
            .end(&self.record, Some(signal_fd))
            .map_err(SupervisorError::Record)
    }
}

/// The stop request a `SIGUSR1` carries: `stop` queues it with its value (`SI_QUEUE`); a
/// plain `kill -USR1`, or a value this version cannot read, carries none.
pub fn stop_request(info: &libc::signalfd_siginfo) -> Option<StopRequest> {
    if info.ssi_code != libc::SI_QUEUE {
        return None;
    }
    StopRequest::from_value(info.ssi_int)
}
