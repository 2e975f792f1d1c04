//! Waiting for supervisors to exit, with no thread left behind.
//!
//! A task's end is recorded by its supervisor, which then lets go of its lock and exits; so
//! a wait for the end is a wait for the supervisor. Each supervisor waited for is pinned by
//! a pidfd opened on the pid its record names, after checking its start time, and one
//! `poll` covers them all, a descriptor the [`Cancel`] writes to, and the deadline. A
//! readable pidfd says that supervisor exited; the caller then looks at the record through
//! `observe` (which probes the lock), and that stays the truth. A wait given up on leaves
//! nothing: its descriptors close with it.
//!
//! Two additions, both bounded:
//! - where the kernel has no pidfds (before 5.3), a helper thread blocked on the lock
//!   ([`lock::notify_released`], at most [`lock::MAX_LOCK_THREADS`] per process) takes the
//!   pidfd's place, and beyond those the lock is probed every [`PROBE_EVERY`];
//! - a process that exits once its call returns (the CLI: [`Tasks::exiting_after_call`])
//!   also blocks a helper on the lock beside the pidfd. The supervisor lets go of its lock
//!   the moment the end is recorded; its exit, which the pidfd sees, comes several
//!   milliseconds later (the kernel first tears down its inotify watch: 8 to 28 ms measured
//!   on a 6.18 kernel). Such a process loses nothing by leaving a helper blocked when its
//!   wait runs out: it exits right after.
//!
//! [`Tasks::exiting_after_call`]: crate::lifecycle::Tasks::exiting_after_call

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Error, Result};
use crate::lifecycle::Cancel;
use crate::lifecycle::cancel::WakeGuard;
use crate::paths::TaskPaths;
use crate::pidfd::{Opened, Pidfd};
use crate::procfs::Identity;
use crate::state::lock::{self, Notify};
use crate::time::poll_timeout;

/// How often a lock is probed for a supervisor that neither a pidfd nor a helper thread
/// watches (a kernel without pidfds, every helper busy).
pub const PROBE_EVERY: Duration = Duration::from_millis(100);

/// How often a cancel handle with a check ([`Cancel::when`]) is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// A supervisor, as found when it is about to be waited for (or signalled).
#[derive(Debug)]
pub(crate) enum Supervisor {
    /// Running, pinned by a pidfd.
    Pinned(Pidfd),
    /// Running, as far as /proc says; the kernel has no pidfds.
    Unpinned(Identity),
    /// No longer the running process the record names.
    Gone,
}

impl Supervisor {
    /// Finds the supervisor `identity` names. Out of descriptors is an error naming the
    /// task's lock, retryable.
    pub(crate) fn find(paths: &TaskPaths, identity: Identity) -> Result<Supervisor> {
        match Pidfd::open(identity) {
            Ok(Opened::Process(pidfd)) => Ok(Supervisor::Pinned(pidfd)),
            Ok(Opened::Gone) => Ok(Supervisor::Gone),
            Ok(Opened::Unsupported) if identity.is_alive() => Ok(Supervisor::Unpinned(identity)),
            Ok(Opened::Unsupported) => Ok(Supervisor::Gone),
            Err(e) => Err(Error::store("wait for the supervisor of", paths.lock(), e)),
        }
    }
}

/// What ended a [`Exits::wait`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The supervisors of these keys may have exited (or their lock is free, or it was time
    /// to probe it): look at each again. Their watches are gone; watch again what still
    /// runs. Empty when only the caller's `slice` passed.
    Look(Vec<usize>),
    TimedOut,
    Cancelled,
}

/// What a lock helper found: still waiting, the lock let go, or `flock` failed (then the
/// watch goes on without it).
const WAITING: u8 = 0;
const RELEASED: u8 = 1;
const FAILED: u8 = 2;

/// One supervisor watched.
struct Watch {
    key: usize,
    pidfd: Option<Pidfd>,
    /// Set by its lock helper ([`RELEASED`] or [`FAILED`]) once its `flock` returned.
    released: Option<Arc<AtomicU8>>,
}

impl Watch {
    /// Neither a pidfd nor a helper tells of this one's exit: its lock is probed.
    fn probed(&self) -> bool {
        self.pidfd.is_none() && self.released.is_none()
    }
}

/// Supervisors being waited for, with the caller's cancel handle.
pub(crate) struct Exits {
    cancel: Cancel,
    watches: Vec<Watch>,
    /// Written when the cancel handle is cancelled (`None` until there is a watch, and for
    /// a handle nothing can cancel).
    cancelled: Option<Arc<OwnedFd>>,
    _on_cancel: Option<WakeGuard>,
    /// Written by lock helpers when their lock is let go (`None` until one is started).
    released: Option<Arc<OwnedFd>>,
}

impl Exits {
    pub(crate) fn new(cancel: &Cancel) -> Exits {
        Exits {
            cancel: cancel.clone(),
            watches: Vec::new(),
            cancelled: None,
            _on_cancel: None,
            released: None,
        }
    }

    /// Watches the supervisor `identity` names, under `key`. `false` when it is no longer
    /// running: look at the task again. With `lock_thread`, also blocks a helper thread on
    /// the task's lock (if one is free) for an earlier wake.
    pub(crate) fn watch(
        &mut self,
        key: usize,
        paths: &TaskPaths,
        identity: Identity,
        lock_thread: bool,
    ) -> Result<bool> {
        let supervisor = Supervisor::find(paths, identity)?;
        self.watch_found(key, paths, supervisor, lock_thread)
    }

    /// As [`Exits::watch`], with the supervisor already found (and perhaps signalled).
    pub(crate) fn watch_found(
        &mut self,
        key: usize,
        paths: &TaskPaths,
        supervisor: Supervisor,
        lock_thread: bool,
    ) -> Result<bool> {
        let pidfd = match supervisor {
            Supervisor::Gone => return Ok(false),
            Supervisor::Pinned(pidfd) => Some(pidfd),
            Supervisor::Unpinned(_) => None,
        };
        self.forget(key);
        self.arm_cancel(paths)?;
        let released = if lock_thread || pidfd.is_none() {
            self.lock_helper(paths)?
        } else {
            None
        };
        self.watches.push(Watch {
            key,
            pidfd,
            released,
        });
        Ok(true)
    }

    /// Stops watching `key`.
    pub(crate) fn forget(&mut self, key: usize) {
        self.watches.retain(|w| w.key != key);
    }

    /// Blocks until a watched supervisor exits, `slice` passes (from now), `deadline`
    /// passes, or the wait is cancelled.
    pub(crate) fn wait(
        &mut self,
        deadline: Option<Instant>,
        slice: Option<Duration>,
    ) -> Result<Wake> {
        let slice_end = slice.map(|s| Instant::now() + s);
        // When the locks no pidfd or helper watches are probed next.
        let mut probe_at: Option<Instant> = None;
        loop {
            if self.cancel.is_cancelled() {
                return Ok(Wake::Cancelled);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(Wake::TimedOut);
            }
            if self.watches.iter().any(Watch::probed) {
                probe_at.get_or_insert(now + PROBE_EVERY);
            }
            let check_at = self.cancel.has_check().then(|| now + CHECK_EVERY);
            let wake_at = [deadline, slice_end, probe_at, check_at]
                .into_iter()
                .flatten()
                .min();
            let timeout = match wake_at {
                None => PollTimeout::NONE,
                Some(at) => poll_timeout(at.saturating_duration_since(now)),
            };
            let (cancelled, released, exited) = self.poll(timeout)?;
            if cancelled || self.cancel.is_cancelled() {
                return Ok(Wake::Cancelled);
            }
            let mut look: Vec<usize> = exited;
            if released {
                if let Some(fd) = &self.released {
                    drain(fd);
                }
                for watch in &mut self.watches {
                    match watch.released.as_ref().map(|r| r.load(Ordering::Acquire)) {
                        Some(RELEASED) => look.push(watch.key),
                        // The pidfd (or probing the lock) goes on alone.
                        Some(FAILED) => watch.released = None,
                        _ => {}
                    }
                }
            }
            let now = Instant::now();
            if look.is_empty() && probe_at.is_some_and(|at| now >= at) {
                look.extend(self.watches.iter().filter(|w| w.probed()).map(|w| w.key));
            }
            if !look.is_empty() {
                look.sort_unstable();
                look.dedup();
                self.watches.retain(|w| !look.contains(&w.key));
                return Ok(Wake::Look(look));
            }
            if slice_end.is_some_and(|at| now >= at) {
                return Ok(Wake::Look(Vec::new()));
            }
        }
    }

    /// One `poll`: whether the cancel fired, whether a lock helper fired, and the keys
    /// whose pidfd is readable.
    fn poll(&self, timeout: PollTimeout) -> Result<(bool, bool, Vec<usize>)> {
        let mut fds = Vec::with_capacity(self.watches.len() + 2);
        let cancel_at = self.cancelled.as_ref().map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let released_at = self.released.as_ref().map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let mut pidfds = Vec::with_capacity(self.watches.len());
        for watch in &self.watches {
            if let Some(pidfd) = &watch.pidfd {
                fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
                pidfds.push((fds.len() - 1, watch.key));
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(Error::store(
                    "poll the pidfds of",
                    "the supervisors waited for",
                    io::Error::from(e),
                ));
            }
        }
        let ready = |at: usize| {
            fds.get(at)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let exited = pidfds
            .iter()
            .filter(|(at, _)| ready(*at))
            .map(|(_, key)| *key)
            .collect();
        Ok((
            cancel_at.is_some_and(ready),
            released_at.is_some_and(ready),
            exited,
        ))
    }

    /// Makes the cancel handle write a descriptor this wait polls (once).
    fn arm_cancel(&mut self, paths: &TaskPaths) -> Result<()> {
        if self.cancelled.is_some() || !self.cancel.can_cancel() {
            return Ok(());
        }
        let fd = Arc::new(eventfd().map_err(|e| Error::store("wait for", paths.lock(), e))?);
        let wake = fd.clone();
        self._on_cancel = Some(self.cancel.on_cancel(move || notify(&wake)));
        self.cancelled = Some(fd);
        Ok(())
    }

    /// Starts a helper blocked on the task's lock, if one can be had; its flag says when
    /// the lock was let go.
    fn lock_helper(&mut self, paths: &TaskPaths) -> Result<Option<Arc<AtomicU8>>> {
        if self.released.is_none() {
            let fd = eventfd().map_err(|e| Error::store("wait for", paths.lock(), e))?;
            self.released = Some(Arc::new(fd));
        }
        let Some(wake) = self.released.clone() else {
            return Ok(None);
        };
        let flag = Arc::new(AtomicU8::new(WAITING));
        let set = flag.clone();
        let started = lock::notify_released(paths, move |outcome| {
            let found = if outcome.is_ok() { RELEASED } else { FAILED };
            set.store(found, Ordering::Release);
            notify(&wake);
        })?;
        Ok(match started {
            Notify::Started => Some(flag),
            Notify::NoLock | Notify::NoThread => None,
        })
    }
}

/// A new eventfd (close-on-exec, non-blocking).
fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd returns a new descriptor, owned by nobody else, or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes an eventfd readable.
fn notify(fd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer to a descriptor we own; an eventfd takes
    // exactly 8. A full counter (EAGAIN) is readable already.
    unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
}

/// Reads an eventfd back to zero.
fn drain(fd: &OwnedFd) {
    let mut count = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a live buffer of 8; non-blocking.
    unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::StateDir;
    use crate::state::lock::TaskLock;

    /// Where the kernel has no pidfds, a helper blocked on the lock sees the supervisor let
    /// go, and the wait wakes at once.
    #[test]
    fn without_a_pidfd_the_lock_tells_of_the_exit() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let state = StateDir::open(dir.path().join("state")).expect("a state dir");
        let paths = state.task(&crate::paths::TaskId::parse("t").expect("an id"));
        paths.create().expect("the task folder");
        let lock = TaskLock::try_acquire(&paths).expect("lock").expect("free");
        let me = Identity::of(std::process::id() as i32).expect("our identity");
        let mut exits = Exits::new(&Cancel::never());
        let watched = exits
            .watch_found(0, &paths, Supervisor::Unpinned(me), false)
            .expect("watch");
        assert!(watched);
        let short = Instant::now() + Duration::from_millis(50);
        assert_eq!(exits.wait(Some(short), None).expect("wait"), Wake::TimedOut);
        let letting_go = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(lock);
        });
        let started = Instant::now();
        let long = Instant::now() + Duration::from_secs(20);
        assert_eq!(
            exits.wait(Some(long), None).expect("wait"),
            Wake::Look(vec![0])
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        letting_go.join().expect("the thread letting go");
    }

    /// A cancel wakes a wait on a supervisor that never exits, and a slice passes as an
    /// empty look.
    #[test]
    fn a_cancel_and_a_slice_end_a_wait_on_a_supervisor_that_runs_on() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let state = StateDir::open(dir.path().join("state")).expect("a state dir");
        let paths = state.task(&crate::paths::TaskId::parse("t").expect("an id"));
        paths.create().expect("the task folder");
        let me = Identity::of(std::process::id() as i32).expect("our identity");
        let cancel = Cancel::new();
        let mut exits = Exits::new(&cancel);
        assert!(exits.watch(0, &paths, me, false).expect("watch"));
        let slice = Some(Duration::from_millis(20));
        assert_eq!(
            exits.wait(None, slice).expect("wait"),
            Wake::Look(Vec::new())
        );
        let canceller = std::thread::spawn({
            let cancel = cancel.clone();
            move || {
                std::thread::sleep(Duration::from_millis(50));
                cancel.cancel();
            }
        });
        assert_eq!(exits.wait(None, None).expect("wait"), Wake::Cancelled);
        canceller.join().expect("the canceller");
    }
}
