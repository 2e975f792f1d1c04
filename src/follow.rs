//! Waking up when a watched directory changes: notify (inotify) events, with a polling
//! fallback because events can be missed or coalesced (and a watch can fail to start on
//! some filesystems). Only changes wake a waiter (writes, creations, renames, removals),
//! never mere opens and reads, which the waiter itself makes. Callers always re-read the files after a wake, so a spurious wake
//! costs one read and a missed event costs at most one fallback interval.

use std::ffi::OsString;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// How often to look again when no event arrived.
pub const FALLBACK_POLL: Duration = Duration::from_millis(250);

/// A watch on one directory.
#[derive(Debug)]
pub struct DirWatch {
    // Dropping the watcher ends its thread; it must live as long as we wait.
    _watcher: Option<RecommendedWatcher>,
    events: Receiver<notify::Result<notify::Event>>,
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
        let (sender, events) = mpsc::channel();
        let names: Vec<OsString> = names.iter().map(OsString::from).collect();
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
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        let watcher = notify::recommended_watcher(sender)
            .and_then(|mut w| w.watch(dir, mode).map(|()| w))
            .ok();
        DirWatch {
            _watcher: watcher,
            events,
        }
    }

    /// Whether file notifications are set up (else waits only poll).
    pub fn is_watching(&self) -> bool {
        self._watcher.is_some()
    }

    /// Whether a change is reported within `timeout` (for `doctor`: does a real watch fire).
    pub fn changed_within(&self, timeout: Duration) -> bool {
        self.events.recv_timeout(timeout).is_ok()
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
        match self.events.recv_timeout(timeout) {
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            // The watcher is gone: poll.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
        }
        // Drain what piled up: one re-read covers them all.
        while self.events.try_recv().is_ok() {}
        true
    }
}
