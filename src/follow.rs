//! Waking up when a watched directory changes: inotify events, with a polling fallback
//! because events can be missed or coalesced (and a watch can fail to start on some
//! filesystems). Only changes wake a waiter (writes, creations, renames, removals), never
//! mere opens and reads, which the waiter itself makes. Callers always re-read the files
//! after a wake, so a spurious wake costs one read and a missed event costs at most one
//! fallback interval.
//!
//! One directory is watched with inotify directly, in the waiting thread: the kernel merges
//! identical events that were not read yet, so a follower that reads a busy log at its own
//! pace (a `\r` progress bar writing every millisecond) pays for one event per read, not one
//! per write, and no thread hands events over. A directory tree (`recursive`) is watched
//! through notify, which adds a watch for each folder as it appears.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// How often to look again when no event arrived.
pub const FALLBACK_POLL: Duration = Duration::from_millis(250);

/// How many descriptors a follow keeps free beyond one per followed task (its watch, its
/// output, and the files each poll opens and closes).
const SPARE_FILES: u64 = 256;

/// Raises this process's soft open-file limit so that `tasks` tasks can be followed at once
/// (each holds its log open), as far as the hard limit allows; never lowers it. A shell's
/// default soft limit (often 1024) would otherwise fail `events --stream {tag}` over a
/// thousand tasks with EMFILE halfway through its frames. Nothing is spawned afterwards that
/// could inherit the higher limit.
pub fn allow_open_files_for(tasks: usize) {
    let wanted = u64::try_from(tasks)
        .unwrap_or(u64::MAX)
        .saturating_add(SPARE_FILES);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= wanted
    {
        return;
    }
    limit.rlim_cur = wanted.min(limit.rlim_max);
    // SAFETY: setrlimit only reads the struct; a soft limit up to the hard one is always
    // allowed. A refusal leaves the limit as it was (a later open fails with a hint).
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
}

/// The inotify events that are changes: not opens, reads or closes.
const CHANGES: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

/// A watch on one directory.
#[derive(Debug)]
pub struct DirWatch {
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// One directory, through our own inotify descriptor.
    Inotify {
        fd: OwnedFd,
        /// Only changes to these names wake a waiter (all when empty).
        names: Vec<OsString>,
    },
    /// A tree, through notify's thread.
    Tree {
        // Dropping the watcher ends its thread; it must live as long as we wait.
        _watcher: RecommendedWatcher,
        events: Receiver<notify::Result<notify::Event>>,
    },
    /// No watch could be set up: waits only poll.
    Polling,
}

impl DirWatch {
    /// Starts watching `dir`. If the watch cannot be set up (no inotify instances left, an
    /// unsupported filesystem), waits fall back to polling alone.
    pub fn new(dir: &Path, recursive: bool) -> DirWatch {
        DirWatch::new_for(dir, recursive, &[])
    }

    /// Like [`DirWatch::new`], but only changes to files with one of `names` wake a waiter
    /// (all changes when `names` is empty): a follower of every task's status should not
    /// wake for each line a task writes to its log.
    pub fn new_for(dir: &Path, recursive: bool, names: &[&str]) -> DirWatch {
        let names: Vec<OsString> = names.iter().map(OsString::from).collect();
        let source = if recursive {
            tree(dir, names)
        } else {
            inotify(&[dir], names)
        };
        DirWatch {
            source: source.unwrap_or(Source::Polling),
        }
    }

    /// Like [`DirWatch::new_for`] on each of `dirs` (not their subfolders), through one
    /// inotify descriptor: a follower of several tasks watches just their folders, whatever
    /// else the state directory holds.
    pub fn new_for_each(dirs: &[&Path], names: &[&str]) -> DirWatch {
        let names: Vec<OsString> = names.iter().map(OsString::from).collect();
        DirWatch {
            source: inotify(dirs, names).unwrap_or(Source::Polling),
        }
    }

    /// Whether file notifications are set up (else waits only poll).
    pub fn is_watching(&self) -> bool {
        !matches!(self.source, Source::Polling)
    }

    /// Whether a change is reported within `timeout` (for `doctor`: does a real watch fire).
    pub fn changed_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        match &self.source {
            Source::Inotify { .. } => loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if self.inotify_wait(left) {
                    return true;
                }
                if left.is_zero() {
                    return false;
                }
            },
            Source::Tree { events, .. } => events.recv_timeout(timeout).is_ok(),
            Source::Polling => false,
        }
    }

    /// Waits until something changed, the fallback interval passed, or `deadline`.
    /// Returns `false` once the deadline has passed.
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        self.wait_at_most(deadline, FALLBACK_POLL)
    }

    /// Like [`DirWatch::wait`], with another fallback interval (shorter, for a caller that
    /// also tries ports on a timer).
    pub fn wait_at_most(&self, deadline: Option<Instant>, pause: Duration) -> bool {
        let now = Instant::now();
        let timeout = match deadline {
            Some(d) if d <= now => return false,
            Some(d) => (d - now).min(pause),
            None => pause,
        };
        match &self.source {
            Source::Inotify { .. } => {
                let until = now + timeout;
                // Changes to other names do not count: wait on for a wanted one.
                while !self.inotify_wait(until.saturating_duration_since(Instant::now()))
                    && Instant::now() < until
                {}
            }
            Source::Tree { events, .. } => {
                match events.recv_timeout(timeout) {
                    Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                    // The watcher is gone: poll.
                    Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
                }
                // Drain what piled up: one re-read covers them all.
                while events.try_recv().is_ok() {}
            }
            Source::Polling => std::thread::sleep(timeout),
        }
        true
    }

    /// Waits at most `timeout` for events, reads all that are there, and says whether one
    /// was a wanted change.
    fn inotify_wait(&self, timeout: Duration) -> bool {
        let Source::Inotify { fd, names } = &self.source else {
            return false;
        };
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, crate::time::poll_timeout(timeout)), Ok(n) if n > 0) {
            return false;
        }
        let mut wanted = false;
        // Enough for many events at once; events are never split across reads.
        let mut buffer = [0u8; 4096];
        loop {
            // SAFETY: reads into a buffer we own, of its length, from our own descriptor.
            let n = unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
            let Ok(n) = usize::try_from(n) else {
                // EAGAIN: drained.
                return wanted;
            };
            if n == 0 {
                return wanted;
            }
            wanted |= names.is_empty()
                || events(&buffer[..n]).any(|(mask, name)| {
                    // Overflowed: events were lost, so anything may have changed.
                    mask & libc::IN_Q_OVERFLOW != 0
                        || names.iter().any(|wanted| wanted.as_os_str() == name)
                });
        }
    }
}

/// The mask and name of each event in a buffer of inotify events (the name is empty for an
/// event about the directory itself).
fn events(mut buffer: &[u8]) -> impl Iterator<Item = (u32, &OsStr)> {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    std::iter::from_fn(move || {
        if buffer.len() < HEADER {
            return None;
        }
        // struct inotify_event: wd (i32), mask, cookie, len (u32), then `len` name bytes.
        let field = |at: usize| buffer[at..at + 4].try_into().ok().map(u32::from_ne_bytes);
        let (mask, len) = (field(4)?, field(12)? as usize);
        let name = buffer.get(HEADER..HEADER + len)?;
        buffer = &buffer[HEADER + len..];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        Some((mask, OsStr::from_bytes(name)))
    })
}

/// A watch on each of `dirs` (not their subfolders), through one inotify descriptor of our
/// own.
fn inotify(dirs: &[&Path], names: Vec<OsString>) -> Option<Source> {
    // SAFETY: inotify_init1 returns a new descriptor, owned by nobody else, or -1.
    let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` was just created above.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    for dir in dirs {
        let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: `path` is a valid C string that outlives the call.
        if unsafe { libc::inotify_add_watch(raw, path.as_ptr(), CHANGES) } < 0 {
            return None;
        }
    }
    Some(Source::Inotify { fd, names })
}

/// A watch on the tree under `dir`, through notify.
fn tree(dir: &Path, names: Vec<OsString>) -> Option<Source> {
    let (sender, events) = mpsc::channel();
    let sender = move |event: notify::Result<notify::Event>| {
        let wanted = match &event {
            // Opening or reading a file is no change, and the waiter itself opens the
            // files it watches: waking on that would make it spin.
            Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => false,
            Ok(event) if !names.is_empty() => event
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| names.iter().any(|w| w == n))),
            _ => true,
        };
        if wanted {
            let _ = sender.send(event);
        }
    };
    let watcher = notify::recommended_watcher(sender)
        .and_then(|mut w| w.watch(dir, RecursiveMode::Recursive).map(|()| w))
        .ok()?;
    Some(Source::Tree {
        _watcher: watcher,
        events,
    })
}
