//! Runs in the supervisor: reads the task's output for readiness and progress, and tries
//! its ports and URLs.
//!
//! An inotify watch on the log wakes the supervisor's poll loop when the task writes.
//! While a log condition is pending, every new line is checked at once (readiness must not
//! miss a line). Otherwise the log is read at most every [`THROTTLE`], and a burst is
//! skipped to its last [`TAIL`] bytes, since only the newest progress line matters: a task
//! that writes a gigabyte costs the supervisor a few small reads. Either way the log is read
//! forward by a [`LineReader`], each byte at most once: a `\r` progress bar that redraws one
//! line every millisecond costs a read every [`PACE`](crate::output_log::PACE), never a
//! rescan of the line, and the line's newest whole drawing is parsed for progress. Progress is published at most every
//! [`THROTTLE`], and once more when the task ends; its message is cut to the line budget
//! first, so the record and the journal never carry more of it.
//!
//! Step lines (`crate::steps`) are read apart from that, every byte once (every step line
//! counts, not only the newest: [`StepScanner`]), whenever the log is read; the steps are
//! published like progress, at most every [`THROTTLE`] with what changed meanwhile, and
//! once more when the task ends (each step still running closed with the run's outcome).
//!
//! Ports and URLs are tried by the [`Probe`] with non-blocking sockets that the supervisor
//! polls beside its signals ([`OutputWatch::fds`]), so a server that accepts and never
//! answers never holds up a stop or the task's end.
//!
//! Without an inotify instance (the per-user limit, `fs.inotify.max_user_instances`, is
//! often 128, and every supervisor holds one) the watch polls instead: the log is looked at
//! every [`POLL_FOR_LINES`] while a log condition is pending and every [`THROTTLE`]
//! otherwise, and the folder for requests as often. Readiness and progress then come a
//! little later, never not at all.
//!
//! The same inotify descriptor watches the task folder for owner requests
//! (`owner.<pid>.json`, [`crate::state::owners`]) and for a ready request (`ready.json`,
//! renamed into place by a `start` that reuses the run with another `ready`): the watch
//! says so ([`Changes::request`]), and a new condition it is given ([`OutputWatch::adopt`])
//! is checked against the run's output from its start, read again in slices so that a
//! signal never waits for a long log.

use std::ffi::CString;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use crate::output_log::{self, LineReader};
use crate::paths::names;
use crate::progress::{self, Progress};
use crate::ready::Probe;
use crate::state::folder::Folder;
use crate::state::owners::OwnerRequest;
use crate::state::record::StepRecord;
use crate::supervisor::steps::StepScanner;

/// Progress as it is recorded: its message cut to the line budget (saying how much was left
/// out). The record is rewritten and the journal appended with every update, and `status`
/// and `list` answer it: a task's output must never make them megabytes.
fn bounded(mut progress: Progress) -> Progress {
    progress.message = progress.message.as_deref().map(output_log::shorten);
    progress
}

/// The least time between two reads of a busy log, and between two progress updates.
pub const THROTTLE: Duration = Duration::from_millis(250);
/// How much of a burst is read for progress when no log condition is pending.
const TAIL: u64 = 64 * 1024;
/// How often the log is looked at without inotify while a log condition is pending.
pub const POLL_FOR_LINES: Duration = Duration::from_millis(50);
/// The most of the log one wake reads (but the last): a long catch-up goes in slices, with
/// signals and stops seen between them.
const SLICE: u64 = 4 << 20;

/// What changed since the last call.
#[derive(Debug, Default)]
pub struct Changes {
    /// Every ready condition holds now.
    pub ready: bool,
    /// Progress to record and announce.
    pub progress: Option<Progress>,
    /// A ready request may be waiting in the task folder (it appeared, or the watch began).
    pub request: bool,
    /// Owner requests may be waiting in the task folder (one appeared, or the watch began).
    pub owners: bool,
    /// Steps to record and announce.
    pub steps: Option<StepsUpdate>,
}

/// The run's steps after a change.
#[derive(Debug)]
pub struct StepsUpdate {
    /// Every step, for the record.
    pub all: Vec<StepRecord>,
    /// Those changed since the last update, for the journal.
    pub changed: Vec<StepRecord>,
    /// Steps and step lines left out so far.
    pub dropped: u64,
}

/// What one drain of the inotify queue saw.
#[derive(Debug, Default)]
struct Woken {
    log: bool,
    request: bool,
    owners: bool,
}

/// The descriptors to poll for the output watch.
#[derive(Debug)]
pub struct Interest<'a> {
    /// The log's inotify watch; `None` while a throttled read is pending (events then pile
    /// up in the kernel, merged, instead of waking us).
    pub log: Option<BorrowedFd<'a>>,
    /// Sockets of port and URL tries in flight.
    pub network: Vec<(BorrowedFd<'a>, PollFlags)>,
}

/// The supervisor's view of its task's output.
#[derive(Debug)]
pub struct OutputWatch {
    /// `None` when no inotify instance could be had: the watch then polls (`poll_at`).
    inotify: Option<OwnedFd>,
    /// The log's watch and the task folder's (`-1` when the folder could not be watched).
    log_wd: i32,
    dir_wd: i32,
    /// Without inotify: the next look at the log and the folder.
    poll_at: Option<Instant>,
    /// A ready request may be waiting: say so at the next wake.
    request_due: bool,
    /// Owner requests may be waiting: say so at the next wake.
    owners_due: bool,
    /// Lines that end at or before this offset were read for progress already (before a new
    /// condition made the reader start over).
    progress_from: u64,
    log: File,
    lines: LineReader,
    probe: Option<Probe>,
    /// Stop trying ports and URLs after this (`ready.timeout_s`).
    give_up_at: Option<Instant>,
    /// A throttled read of the log is due then.
    read_at: Option<Instant>,
    last_read: Option<Instant>,
    newest: Option<Progress>,
    published: Option<Progress>,
    publish_at: Option<Instant>,
    last_publish: Option<Instant>,
    /// The run's step lines, read apart from the lines above.
    steps: StepScanner,
    steps_publish_at: Option<Instant>,
    steps_last_publish: Option<Instant>,
}

impl OutputWatch {
    /// Watches the log of `paths`; `None` if the log cannot be opened (the task then simply
    /// has no progress, and readiness is left to the waiters). Without an inotify instance
    /// it polls.
    pub fn open(
        folder: &Folder,
        probe: Option<Probe>,
        give_up_at: Option<Instant>,
    ) -> Option<OutputWatch> {
        let log = folder.read_file(names::LOG).ok()??;
        let (inotify, log_wd, dir_wd) = match watch_inotify(folder, &log) {
            Some((inotify, log_wd, dir_wd)) => (Some(inotify), log_wd, dir_wd),
            None => (None, -1, -1),
        };
        Some(OutputWatch {
            poll_at: inotify.is_none().then(Instant::now),
            inotify,
            log_wd,
            dir_wd,
            // A request written before the watch began is looked for once.
            request_due: true,
            owners_due: true,
            progress_from: 0,
            log,
            lines: LineReader::new(0),
            probe,
            give_up_at,
            // The task may have written before the watch existed: read once at once.
            read_at: Some(Instant::now()),
            last_read: None,
            newest: None,
            published: None,
            publish_at: None,
            last_publish: None,
            steps: StepScanner::default(),
            steps_publish_at: None,
            steps_last_publish: None,
        })
    }

    /// What to poll for: the log's watch and the sockets of tries in flight.
    pub fn fds(&self) -> Interest<'_> {
        Interest {
            log: self
                .inotify
                .as_ref()
                .filter(|_| self.read_at.is_none())
                .map(AsFd::as_fd),
            network: self
                .probe
                .as_ref()
                .map(Probe::network_fds)
                .unwrap_or_default(),
        }
    }

    /// The next moment a timer of ours is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let network = self
            .probe
            .as_ref()
            .filter(|p| p.wants_network())
            .and_then(|p| {
                let next = p.network_deadline()?;
                Some(self.give_up_at.map_or(next, |at| next.min(at)))
            });
        [
            self.read_at,
            self.publish_at,
            self.steps_publish_at,
            self.poll_at,
            network,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// After any wake: reads the log if it was `written` (or a throttled read is due), moves
    /// port and URL tries on, and says what changed.
    pub fn on_wake(&mut self, written: bool, now: Instant) -> Changes {
        let mut woken = if written {
            // Drain the queue: one read of the log covers every event in it.
            self.drain()
        } else {
            Woken::default()
        };
        // Without inotify, a due look stands for both events.
        if self.poll_at.is_some_and(|at| now >= at) {
            woken = Woken {
                log: true,
                request: true,
                owners: true,
            };
            let urgent = self.probe.as_ref().is_some_and(Probe::wants_lines);
            self.poll_at = Some(now + if urgent { POLL_FOR_LINES } else { THROTTLE });
        }
        self.request_due |= woken.request;
        self.owners_due |= woken.owners;
        if woken.log {
            let urgent = self.probe.as_ref().is_some_and(Probe::wants_lines);
            if urgent {
                // A line only being redrawn is read at a pace: the read is due then.
                match self.lines.next_read_at().filter(|&at| at > now) {
                    Some(at) => self.read_at = Some(at),
                    None => self.read_log(false),
                }
            } else if self.read_at.is_none() {
                // At most one read per THROTTLE: the next one comes THROTTLE after the last.
                self.read_at = Some(self.last_read.map_or(now, |t| (t + THROTTLE).max(now)));
            }
        }
        if self.read_at.is_some_and(|at| now >= at) {
            self.read_at = None;
            self.read_log(false);
        }
        if let Some(probe) = self.probe.as_mut()
            && probe.wants_network()
        {
            if self.give_up_at.is_some_and(|at| now >= at) {
                probe.give_up_network();
            } else {
                probe.poll_network(now);
            }
        }
        let mut changes = self.changes(now);
        changes.request = std::mem::take(&mut self.request_due);
        changes.owners = std::mem::take(&mut self.owners_due);
        changes
    }

    /// Checks `probe`, a new ready condition, from now on: against the run's output from its
    /// start (the log is read again, in slices; its lines are not read for progress twice),
    /// and trying its ports and URLs until `give_up_at`.
    pub fn adopt(&mut self, probe: Probe, give_up_at: Option<Instant>) {
        self.probe = Some(probe);
        self.give_up_at = give_up_at;
        self.progress_from = self.progress_from.max(self.lines.read_to());
        self.lines = LineReader::new(0);
        self.read_at = Some(Instant::now());
    }

    /// The task has ended: read what is left, and publish the final progress.
    pub fn final_read(&mut self) -> Option<Progress> {
        self.read_log(true);
        (self.newest != self.published)
            .then(|| self.newest.clone())
            .flatten()
    }

    /// The task has ended (`succeeded`: it exited with 0): after [`OutputWatch::final_read`],
    /// closes each step still running with that outcome, and publishes the steps changed
    /// since the last update.
    pub fn final_steps(&mut self, succeeded: bool) -> Option<StepsUpdate> {
        self.steps
            .tree_mut()
            .close(succeeded, crate::time::now_ms());
        self.steps_update()
    }

    /// The steps changed since the last update, if any.
    fn steps_update(&mut self) -> Option<StepsUpdate> {
        let tree = self.steps.tree_mut();
        if !tree.has_changes() {
            return None;
        }
        let changed = tree.take_changed();
        Some(StepsUpdate {
            all: tree.nodes().to_vec(),
            changed,
            dropped: tree.dropped(),
        })
    }

    /// Reads every queued inotify event: whether the log was written, and whether a ready
    /// request was renamed into the task folder. An overflowed queue may have lost either.
    fn drain(&self) -> Woken {
        // Room for many events; the kernel hands out whole ones (at most 16 + 256 bytes).
        let mut buffer = [0u8; 4096];
        let mut woken = Woken::default();
        while let Ok(n @ 1..) = usize::try_from(self.inotify_read(&mut buffer)) {
            let mut at = 0;
            while let Some(header) = buffer.get(at..at + 16) {
                let field = |i: usize| [header[i], header[i + 1], header[i + 2], header[i + 3]];
                let wd = i32::from_ne_bytes(field(0));
                let mask = u32::from_ne_bytes(field(4));
                let len = u32::from_ne_bytes(field(12)) as usize;
                let name = buffer
                    .get(at + 16..(at + 16 + len).min(n))
                    .unwrap_or_default();
                let name = name.split(|&b| b == 0).next().unwrap_or_default();
                if mask & libc::IN_Q_OVERFLOW != 0 {
                    woken.log = true;
                    woken.request = true;
                    woken.owners = true;
                } else if wd == self.log_wd {
                    woken.log = true;
                } else if wd == self.dir_wd && name == names::READY_REQUEST.as_bytes() {
                    woken.request = true;
                } else if wd == self.dir_wd && OwnerRequest::is_name(name) {
                    woken.owners = true;
                }
                at += 16 + len;
                if at >= n {
                    break;
                }
            }
        }
        woken
    }

    fn inotify_read(&self, buffer: &mut [u8]) -> isize {
        let Some(inotify) = &self.inotify else {
            return 0;
        };
        // SAFETY: reads into a buffer we own, of its length, from our own descriptor.
        unsafe {
            libc::read(
                inotify.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        }
    }

    /// Reads the new part of the log: complete lines, and at the `end` a last unterminated
    /// line too; then the newest whole drawing of a line still being drawn.
    fn read_log(&mut self, end: bool) {
        self.last_read = Some(Instant::now());
        let Ok(size) = self.log.metadata().map(|m| m.len()) else {
            return;
        };
        // Every step line counts: the step scanner reads every byte, whatever is skipped
        // below (in slices; the rest is due at once).
        if self.steps.read(&self.log, size, end, crate::time::now_ms()) {
            self.read_at = Some(Instant::now());
        }
        if size < self.lines.read_to() {
            self.lines = LineReader::new(0); // Truncated.
        }
        // Without a log condition only the newest progress matters: skip to the tail.
        let pending_log = self.probe.as_ref().is_some_and(Probe::wants_lines);
        if !pending_log && size - self.lines.read_to() > TAIL {
            self.lines = LineReader::mid_line(size - TAIL);
        }
        // At most a slice now (all of it at the end); the rest is read at the next wake,
        // which is due at once.
        let to = if end {
            size
        } else {
            size.min(self.lines.read_to().saturating_add(SLICE))
        };
        if to < size {
            self.read_at.get_or_insert_with(Instant::now);
        }
        let (probe, newest, progress_from) =
            (&mut self.probe, &mut self.newest, self.progress_from);
        let _ = self.lines.read(&mut self.log, to, end, |line, line_end| {
            if let Some(probe) = probe.as_mut() {
                probe.line(&line.text);
            }
            if line_end > progress_from
                && let Some(progress) = progress::parse(&line.text)
            {
                *newest = Some(bounded(progress));
            }
            ControlFlow::Continue(())
        });
        if let Some(redraw) = self.lines.take_redraw()
            && let Some(progress) = progress::parse(&redraw.text)
        {
            self.newest = Some(bounded(progress));
        }
    }

    /// Turns what was seen into changes to record, throttling progress.
    fn changes(&mut self, now: Instant) -> Changes {
        let mut changes = Changes::default();
        if let Some(probe) = &self.probe
            && probe.ready()
        {
            changes.ready = true;
            self.probe = None;
        }
        if self.newest != self.published && self.newest.is_some() {
            let due = self.last_publish.map_or(now, |t| t + THROTTLE);
            if now >= due {
                self.published = self.newest.clone();
                self.last_publish = Some(now);
                self.publish_at = None;
                changes.progress = self.newest.clone();
            } else {
                self.publish_at = Some(due);
            }
        } else {
            self.publish_at = None;
        }
        if self.steps.tree().has_changes() {
            let due = self.steps_last_publish.map_or(now, |t| t + THROTTLE);
            if now >= due {
                self.steps_last_publish = Some(now);
                self.steps_publish_at = None;
                changes.steps = self.steps_update();
            } else {
                self.steps_publish_at = Some(due);
            }
        } else {
            self.steps_publish_at = None;
        }
        changes
    }
}

/// An inotify instance watching `log` (for writes) and `folder` (for a ready request renamed
/// into place), with the two watch descriptors (the folder's `-1` when it could not be
/// watched: the run then keeps the condition it started with). `None` when there is no
/// instance to be had (the per-user limit) or the log cannot be watched.
fn watch_inotify(folder: &Folder, log: &File) -> Option<(OwnedFd, i32, i32)> {
    // The tests cannot use up the user's instances without starving every other test.
    if crate::fault::injected("supervisor_no_inotify") {
        return None;
    }
    // SAFETY: inotify_init1 returns a new descriptor, owned by nobody else, or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just created above.
    let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
    // The very file opened, not whatever a path names.
    let path = CString::new(format!("/proc/self/fd/{}", log.as_raw_fd())).ok()?;
    // SAFETY: `path` is a valid C string that outlives the call.
    let log_wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_MODIFY) };
    if log_wd < 0 {
        return None;
    }
    let dir_path = format!("/proc/self/fd/{}", folder.as_fd().as_raw_fd());
    let dir_wd = CString::new(dir_path).map_or(-1, |dir| {
        // SAFETY: `dir` is a valid C string that outlives the call.
        unsafe { libc::inotify_add_watch(fd, dir.as_ptr(), libc::IN_MOVED_TO) }
    });
    Some((inotify, log_wd, dir_wd))
}
