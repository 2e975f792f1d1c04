//! Runs in the supervisor: every write it makes to its task's folder, and the run's end
//! recorded whatever the disk's state (RELIABILITY 25).
//!
//! A task may fill the disk that holds the state directory (its own log lives there). Its
//! end must still be recorded, so the supervisor sets the room aside when the run begins:
//! a [`Reserve`] for the terminal record (a temp file allocated to the record's size and
//! some, grown with the record) and room past the journal's end for the end's two lines
//! ([`Journal::reserve`]). The end is written into that room in place and renamed over
//! the record, which needs no new room. Writes along the way (the queued and running
//! records, progress, readiness) are allowed to fail on a full disk: they never end the
//! supervisor, and the journal leaves out a line rather than eat into the end's room.
//!
//! Should the end still not fit (the record outgrew its reserve on a disk with no room
//! left), the supervisor journals the end, which the room past the journal's end holds,
//! and keeps trying to record it, backing off to every [`MAX_PAUSE`], while it holds the
//! lock. Readers meanwhile see the task as its record says (`running`; `status` answers the
//! journaled end once the task's process is gone), and once there is room the record says
//! the real end. A supervisor told to end meanwhile (SIGTERM) leaves it to whoever next
//! reads the task: reconciliation takes the end from the journal, never `lost`.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signalfd::SignalFd;

use crate::error::{Error, Result};
use crate::paths::names;
use crate::state::TaskRecord;
use crate::state::atomic::{self, Replaced, Reserve, Staged};
use crate::state::folder::Folder;
use crate::state::journal::{self, Journal};
use crate::state::record::{ProgressRecord, StepRecord};
use crate::time::poll_timeout;

/// Room set aside for the end beyond the record's size when it was last written: what the
/// end adds (exit code, signal, reason, times, an error message, the final progress).
const END_SLACK: u64 = 16 * 1024;

/// The longest pause between two tries to record an end on a full disk.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A record written but not yet durable (see [`Recorder::replace_unsynced`]).
#[derive(Debug)]
#[must_use = "settle() makes the record durable"]
pub struct Unsettled {
    replaced: Replaced,
    size: u64,
}

/// The supervisor's writer: its task's open folder, the journal, and the room set aside for
/// the end.
#[derive(Debug)]
pub struct Recorder {
    folder: Folder,
    journal: Option<Journal>,
    reserve: Option<Reserve>,
}

impl Recorder {
    /// Opens the journal in the task's `folder` (a journal that cannot be opened is done
    /// without: it is a courtesy to followers) and sets room aside past its end.
    pub fn new(folder: Folder) -> Recorder {
        let mut journal = Journal::open_in(&folder).ok();
        if let Some(journal) = journal.as_mut() {
            // Where the filesystem cannot allocate ahead, the end's lines may be missed.
            let _ = journal.reserve();
        }
        Recorder {
            folder,
            journal,
            reserve: None,
        }
    }

    pub fn folder(&self) -> &Folder {
        &self.folder
    }

    /// Sets room aside for `record`'s end. Fails on a disk that has no room for it: a run
    /// whose end could not be recorded is not begun.
    pub fn reserve_end(&mut self, record: &TaskRecord) -> Result<()> {
        if crate::fault::injected("no_end_reserve") {
            // The tests' way to a full disk that the end does not fit (see `keep_ending`).
            return Ok(());
        }
        let size = record.encode()?.len() as u64 + END_SLACK;
        match self.reserve.as_mut() {
            // A run after an automatic restart: the room set aside for the first run's end
            // was never used, and is kept (grown if the record grew), not made again.
            Some(reserve) => reserve.grow(size),
            None => {
                self.reserve = Some(Reserve::new(&self.folder, names::RECORD, size)?);
                Ok(())
            }
        }
    }

    /// Replaces the record without waiting for the disk, for a record a crash makes stale
    /// anyway (a run's first `running` record: after a reboot the task reads `lost` whatever
    /// it says). [`Recorder::settle`] makes it durable and grows the end's room, once `start`
    /// has its answer.
    pub fn replace_unsynced(&mut self, record: &TaskRecord) -> Result<Unsettled> {
        let bytes = record.encode()?;
        let replaced = atomic::replace_unsynced(&self.folder, names::RECORD, &bytes)?;
        Ok(Unsettled {
            replaced,
            size: bytes.len() as u64,
        })
    }

    /// Makes a record from [`Recorder::replace_unsynced`] durable, and grows the end's room
    /// with it.
    pub fn settle(&mut self, unsettled: Unsettled) -> Result<()> {
        self.grow_reserve(unsettled.size);
        unsettled.replaced.sync()
    }

    /// Replaces the record, durably; the end's room grows with it.
    pub fn write(&mut self, record: &TaskRecord) -> Result<()> {
        let bytes = record.encode()?;
        let replaced = atomic::replace(&self.folder, names::RECORD, &bytes)?;
        self.grow_reserve(bytes.len() as u64);
        replaced.sync()
    }

    /// Grows the end's room to a record of `size` bytes and the end's slack.
    fn grow_reserve(&mut self, size: u64) {
        if let Some(reserve) = self.reserve.as_mut() {
            // On a full disk the reserve stays as it is: the end may still fit.
            let _ = reserve.grow(size + END_SLACK);
        }
    }

    /// The size of the current run's log, where a journal entry made now belongs.
    pub fn log_size(&self) -> u64 {
        self.folder.size(names::LOG).unwrap_or(0)
    }

    /// Journals the status a run begins with (queued, running), placed before any of its
    /// output (failures are let go).
    pub fn journal_status(&mut self, record: &TaskRecord) {
        if let Some(journal) = self.journal.as_mut() {
            let _ = journal.status(record, 0);
        }
    }

    /// Journals that the run is ready (failures are let go).
    pub fn journal_ready(&mut self, run: u32) {
        let offset = self.log_size();
        if let Some(journal) = self.journal.as_mut() {
            let _ = journal.ready(run, offset);
        }
    }

    /// Journals the run's newest progress (failures are let go).
    pub fn journal_progress(&mut self, run: u32, progress: &ProgressRecord) {
        let offset = self.log_size();
        if let Some(journal) = self.journal.as_mut() {
            let _ = journal.progress(run, offset, progress);
        }
    }

    /// Journals steps of the run as they now stand, one entry each (failures are let go).
    pub fn journal_steps(&mut self, run: u32, steps: &[StepRecord]) {
        let offset = self.log_size();
        if let Some(journal) = self.journal.as_mut() {
            for step in steps {
                let _ = journal.step(run, offset, step);
            }
        }
    }

    /// Journals the end of a run that is not the task's end (its supervisor restarts the
    /// task itself): the record goes on to the next run, so nothing is recorded.
    pub fn journal_run_end(&mut self, record: &TaskRecord) {
        journal::journal_end(&self.folder, self.journal.as_mut(), record);
    }

    /// Journals that the supervisor restarts the task itself (failures are let go).
    pub fn journal_restarting(&mut self, entry: &journal::RestartingEntry) {
        if let Some(journal) = self.journal.as_mut() {
            let _ = journal.restarting(entry);
        }
    }

    /// Records the run's end: the record written into the room set aside for it, then the
    /// journal's end, then the rename (see `state::journal::record_end`). On a disk still
    /// too full for it, journals the end and keeps trying, backing off, until it is recorded
    /// or the supervisor is told to end (a terminating signal on `signals`).
    pub fn end(&mut self, record: &TaskRecord, signals: Option<&SignalFd>) -> Result<()> {
        match self.try_end(record) {
            Err(error) if error.is_disk_full() => self.keep_ending(record, signals, error),
            other => other,
        }
    }

    /// One try to record the run's end; nothing is journaled when it fails.
    pub fn try_end(&mut self, record: &TaskRecord) -> Result<()> {
        let staged = self.stage(record)?;
        journal::journal_end(&self.folder, self.journal.as_mut(), record);
        self.commit(staged)
    }

    /// After [`Recorder::try_end`] failed with `error` for want of room: journals the end
    /// (the journal's room holds it), so that it is known whatever becomes of us, and keeps
    /// trying while we hold the lock.
    pub fn keep_ending(
        &mut self,
        record: &TaskRecord,
        signals: Option<&SignalFd>,
        error: Error,
    ) -> Result<()> {
        journal::journal_end(&self.folder, self.journal.as_mut(), record);
        self.keep_trying(record, signals, error)
    }

    /// Records the end of a run whose end the journal already holds
    /// ([`Recorder::journal_run_end`], before a restart that could not be recorded): as
    /// [`Recorder::end`], without journaling the end a second time.
    pub fn end_journaled(&mut self, record: &TaskRecord, signals: Option<&SignalFd>) -> Result<()> {
        match self.stage(record) {
            Ok(staged) => self.commit(staged),
            Err(error) if error.is_disk_full() => self.keep_trying(record, signals, error),
            Err(error) => Err(error),
        }
    }

    /// Tries to record the end until it fits, backing off, or the supervisor is told to end.
    fn keep_trying(
        &mut self,
        record: &TaskRecord,
        signals: Option<&SignalFd>,
        error: Error,
    ) -> Result<()> {
        let mut pause = Duration::from_millis(50);
        let mut last = error;
        loop {
            if told_to_end(signals, pause) {
                return Err(last);
            }
            match self.stage(record) {
                Ok(staged) => return self.commit(staged),
                Err(error) if error.is_disk_full() => last = error,
                Err(error) => return Err(error),
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// The end written into the reserve (kept for another try if it does not fit), or into
    /// a new temp file when there is none.
    fn stage(&mut self, record: &TaskRecord) -> Result<Staged> {
        let bytes = record.encode()?;
        match self.reserve.as_mut() {
            Some(reserve) => {
                reserve.fill(&bytes)?;
                Ok(self.reserve.take().map(Reserve::staged).ok_or_else(|| {
                    Error::store(
                        "write",
                        self.folder.file_path(names::RECORD),
                        std::io::Error::other("the room set aside for the end is gone"),
                    )
                })?)
            }
            None => atomic::stage(&self.folder, names::RECORD, &bytes),
        }
    }

    fn commit(&mut self, staged: Staged) -> Result<()> {
        let replaced = staged.commit()?;
        // The end is recorded: what is left of the journal's room goes back to the disk.
        if let Some(journal) = self.journal.as_mut() {
            journal.release();
        }
        replaced.sync()
    }
}

/// Waits up to `pause` for a signal telling the supervisor to end (SIGTERM, SIGINT,
/// SIGHUP, SIGQUIT); other signals are let go (the task has ended: nothing to stop).
fn told_to_end(signals: Option<&SignalFd>, pause: Duration) -> bool {
    let Some(signals) = signals else {
        std::thread::sleep(pause); // bounded: MAX_PAUSE
        return false;
    };
    let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, poll_timeout(pause));
    let mut told = false;
    while let Ok(Some(info)) = signals.read_signal() {
        told |= matches!(
            info.ssi_signo as i32,
            libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT
        );
    }
    told
}
