//! Runs in the supervisor: reads the task's output for readiness and progress.
//!
//! An inotify watch on the log wakes the supervisor's poll loop when the task writes.
//! While a log condition is pending, every new line is checked at once (readiness must not
//! miss a line). Otherwise the log is read at most every [`THROTTLE`], and a burst is
//! skipped to its last [`TAIL`] bytes, since only the newest progress line matters: a task
//! that writes a gigabyte costs the supervisor a few small reads. Progress is published
//! at most every [`THROTTLE`], and once more when the task ends. Ports and URLs are tried
//! on a timer: every 50 ms for the first 5 s, then backing off to 1 s.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use crate::output_log::render;
use crate::paths::TaskPaths;
use crate::progress::{self, Progress};
use crate::ready::{self, Probe};

/// The least time between two reads of a busy log, and between two progress updates.
pub const THROTTLE: Duration = Duration::from_millis(250);
/// How much of a burst is read for progress when no log condition is pending.
const TAIL: u64 = 64 * 1024;
/// The longest pause between two tries of a port or URL.
const MAX_RETRY: Duration = Duration::from_secs(1);
/// How long ports and URLs are tried at the quickest pace before backing off.
const QUICK_RETRIES: Duration = Duration::from_secs(5);

/// What changed since the last call.
#[derive(Debug, Default)]
pub struct Changes {
    /// Every ready condition holds now.
    pub ready: bool,
    /// Progress to record and announce.
    pub progress: Option<Progress>,
}

/// The supervisor's view of its task's output.
#[derive(Debug)]
pub struct OutputWatch {
    inotify: OwnedFd,
    log: File,
    offset: u64,
    probe: Option<Probe>,
    /// Stop trying ports and URLs after this (`ready.timeout_s`).
    give_up_at: Option<Instant>,
    retry_at: Option<Instant>,
    retry_pause: Duration,
    started: Instant,
    /// A throttled read of the log is due then.
    read_at: Option<Instant>,
    last_read: Option<Instant>,
    newest: Option<Progress>,
    published: Option<Progress>,
    publish_at: Option<Instant>,
    last_publish: Option<Instant>,
}

impl OutputWatch {
    /// Watches the log of `paths`; `None` if the log or inotify cannot be opened (the task
    /// then simply has no progress, and readiness is left to the waiters).
    pub fn open(
        paths: &TaskPaths,
        probe: Option<Probe>,
        give_up_at: Option<Instant>,
    ) -> Option<OutputWatch> {
        let log = File::open(paths.log()).ok()?;
        // SAFETY: inotify_init1 returns a new descriptor, owned by nobody else, or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just created above.
        let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = CString::new(paths.log().as_os_str().as_bytes()).ok()?;
        // SAFETY: `path` is a valid C string that outlives the call.
        if unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_MODIFY) } < 0 {
            return None;
        }
        let retry_at = probe
            .as_ref()
            .filter(|p| p.wants_network())
            .map(|_| Instant::now());
        Some(OutputWatch {
            inotify,
            log,
            offset: 0,
            probe,
            give_up_at,
            retry_at,
            retry_pause: ready::RETRY,
            started: Instant::now(),
            // The task may have written before the watch existed: read once at once.
            read_at: Some(Instant::now()),
            last_read: None,
            newest: None,
            published: None,
            publish_at: None,
            last_publish: None,
        })
    }

    /// The descriptor to poll, or `None` while a throttled read is pending (events then
    /// pile up in the kernel, merged, instead of waking us).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.read_at.is_none().then(|| self.inotify.as_fd())
    }

    /// The next moment a timer of ours is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.retry_at, self.read_at, self.publish_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The log was written to.
    pub fn on_event(&mut self) -> Changes {
        let mut buffer = [0u8; 4096];
        // Drain the queue: one read of the log covers every event in it.
        while self.inotify_read(&mut buffer) > 0 {}
        let urgent = self.probe.as_ref().is_some_and(Probe::wants_lines);
        if urgent {
            self.read_log(false);
        } else if self.read_at.is_none() {
            // At most one read per THROTTLE: the next one comes THROTTLE after the last.
            let now = Instant::now();
            self.read_at = Some(self.last_read.map_or(now, |t| (t + THROTTLE).max(now)));
        }
        self.changes()
    }

    /// Timers: a throttled read, a retry of ports and URLs, a pending progress update.
    pub fn on_time(&mut self, now: Instant) -> Changes {
        if self.read_at.is_some_and(|at| now >= at) {
            self.read_at = None;
            self.read_log(false);
        }
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
            if self.give_up_at.is_none_or(|at| now < at)
                && let Some(probe) = self.probe.as_mut()
            {
                probe.try_network();
                if probe.wants_network() {
                    // A refused local connect costs microseconds: keep trying every 50 ms
                    // while a server is likely still starting, then back off.
                    if now.duration_since(self.started) > QUICK_RETRIES {
                        self.retry_pause = (self.retry_pause * 2).min(MAX_RETRY);
                    }
                    self.retry_at = Some(now + self.retry_pause);
                }
            }
        }
        self.changes()
    }

    /// The task has ended: read what is left, and publish the final progress.
    pub fn final_read(&mut self) -> Option<Progress> {
        self.read_log(true);
        (self.newest != self.published)
            .then(|| self.newest.clone())
            .flatten()
    }

    fn inotify_read(&self, buffer: &mut [u8]) -> isize {
        // SAFETY: reads into a buffer we own, of its length, from our own descriptor.
        unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.inotify),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        }
    }

    /// Reads the new part of the log: complete lines only, until the end, when a last
    /// unterminated line counts too.
    fn read_log(&mut self, end: bool) {
        self.last_read = Some(Instant::now());
        let Ok(size) = self.log.metadata().map(|m| m.len()) else {
            return;
        };
        if size < self.offset {
            self.offset = 0; // Truncated.
        }
        if size == self.offset {
            return;
        }
        // Without a log condition only the newest progress matters: skip to the tail.
        let pending_log = self.probe.as_ref().is_some_and(Probe::wants_lines);
        let skip = !pending_log && size - self.offset > TAIL;
        let from = if skip { size - TAIL } else { self.offset };
        let mut bytes = Vec::new();
        if self.log.seek(SeekFrom::Start(from)).is_err()
            || (&self.log)
                .take(size - from)
                .read_to_end(&mut bytes)
                .is_err()
        {
            return;
        }
        // Lines start after the first newline when we skipped into the middle of one...
        let start = match skip {
            true => bytes
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |i| i + 1),
            false => 0,
        };
        // ...and stop after the last newline, or at the very end once the task has ended.
        let stop = match end {
            true => bytes.len(),
            false => bytes
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(start, |i| i + 1),
        }
        .max(start);
        for line in bytes[start..stop]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let text = render(line);
            if let Some(probe) = self.probe.as_mut() {
                probe.line(&text);
            }
            if let Some(progress) = progress::parse(&text) {
                self.newest = Some(progress);
            }
        }
        self.offset = from + stop as u64;
    }

    /// Turns what was seen into changes to record, throttling progress.
    fn changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        if let Some(probe) = &self.probe
            && probe.ready()
        {
            changes.ready = true;
            self.probe = None;
            self.retry_at = None;
        }
        if self.newest != self.published && self.newest.is_some() {
            let now = Instant::now();
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
        changes
    }
}
