//! `supervisor.lock`: the supervisor's proof of life.
//!
//! `start` takes the lock exclusively and hands the very same open file to the supervisor,
//! which holds it until it exits; the kernel releases it however the supervisor dies. So a
//! reader that can take the lock (even shared) knows the supervisor is gone. A waiter
//! watches the supervisor's exit through a pidfd (`lifecycle::exits`), with a thread
//! blocked on the lock only where one costs nothing ([`notify_released`]).
//!
//! The file is never replaced (a lock on a file replaced by rename protects nothing); the
//! whole folder is moved away only by `rm`/`prune`, under the lock, and a lock taken on a
//! file that is no longer at its path does not count ([`TaskLock::try_acquire`]).

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::paths::{TaskPaths, names};
use crate::state::folder::{Folder, Write};

/// The exclusive lock of one task, held by `start` and then by its supervisor.
#[derive(Debug)]
pub struct TaskLock {
    file: File,
}

impl TaskLock {
    /// Takes the lock if nobody holds it; `None` if a supervisor (or a reader, for a moment)
    /// holds it.
    ///
    /// `rm` and `prune` move a task's folder away while they hold its lock, so a lock won
    /// after theirs may be on a file that is no longer the task's: the lock counts only if
    /// the file locked is still the one at the lock's path. A folder removed meanwhile (or
    /// before) is a `StoreError` whose cause is `NotFound`; see [`is_removed`].
    pub fn try_acquire(paths: &TaskPaths) -> Result<Option<TaskLock>> {
        TaskLock::try_acquire_in(&task_folder(paths)?)
    }

    /// [`TaskLock::try_acquire`], in the task's open folder (opened through the state
    /// directory; a folder moved away since is found out by the lock's path).
    pub fn try_acquire_in(folder: &Folder) -> Result<Option<TaskLock>> {
        let file = folder.write_file(names::LOCK, Write::Lock)?;
        let path = folder.file_path(names::LOCK);
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(Error::store("lock", &path, e)),
        }
        let locked = file
            .metadata()
            .map_err(|e| Error::store("inspect", &path, e))?;
        match std::fs::symlink_metadata(&path) {
            Ok(now) if now.dev() == locked.dev() && now.ino() == locked.ino() => {
                Ok(Some(TaskLock { file }))
            }
            // Planted, not removed: refused as opening it without following would be.
            Ok(now) if now.file_type().is_symlink() => Err(Error::store(
                "lock",
                &path,
                io::Error::from_raw_os_error(libc::ELOOP),
            )),
            Ok(_) => Err(removed(&path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(removed(&path)),
            Err(e) => Err(Error::store("inspect", &path, e)),
        }
    }

    /// The open file, to hand to the supervisor.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Whether a supervisor is alive for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Gone,
}

/// Probes the lock without disturbing its holder. A shared probe never conflicts with
/// other readers, and it succeeds only when no supervisor holds the lock.
pub fn probe(paths: &TaskPaths) -> Result<Liveness> {
    match paths.open()? {
        Some(folder) => probe_in(&folder),
        None => Ok(Liveness::Gone),
    }
}

/// [`probe`], in the task's open folder.
pub fn probe_in(folder: &Folder) -> Result<Liveness> {
    let Some(file) = folder.read_file(names::LOCK)? else {
        return Ok(Liveness::Gone);
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Liveness::Gone),
        Err(TryLockError::WouldBlock) => Ok(Liveness::Alive),
        Err(TryLockError::Error(e)) => Err(Error::store("lock", folder.file_path(names::LOCK), e)),
    }
}

/// Helper threads blocked on a lock at once in this process ([`notify_released`]); a wait
/// that finds them all taken goes without one.
pub const MAX_LOCK_THREADS: usize = 16;

/// Live helper threads of [`notify_released`].
static LOCK_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Stack of a helper thread: it only blocks in `flock` and then calls back.
const LOCK_THREAD_STACK: usize = 64 * 1024;

/// What [`notify_released`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// A helper thread waits for the lock and will call back.
    Started,
    /// The task has no lock file, so no supervisor to wait for; nothing will call back.
    NoLock,
    /// No helper thread could be had ([`MAX_LOCK_THREADS`] are busy, or the system refused
    /// one); nothing will call back, and the caller waits another way.
    NoThread,
}

/// Starts waiting for the supervisor to let go of the lock on a helper thread, which calls
/// `released` with the outcome once the lock is free (the instant the supervisor drops it,
/// before its exit has finished). The helper stays blocked until then, however soon the
/// caller gives up: waits use it only where that costs nothing ([`crate::lifecycle::Tasks`]
/// says when), and never more than [`MAX_LOCK_THREADS`] at once. Without one, a failure to
/// get a thread is [`Notify::NoThread`], not an error.
pub fn notify_released(
    paths: &TaskPaths,
    released: impl FnOnce(io::Result<()>) + Send + 'static,
) -> Result<Notify> {
    let file = match paths.open()? {
        Some(folder) => folder.read_file(names::LOCK)?,
        None => None,
    };
    let Some(file) = file else {
        return Ok(Notify::NoLock);
    };
    let taken = LOCK_THREADS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < MAX_LOCK_THREADS).then_some(n + 1)
    });
    if taken.is_err() {
        return Ok(Notify::NoThread);
    }
    let spawned = std::thread::Builder::new()
        .name("lock-wait".into())
        .stack_size(LOCK_THREAD_STACK)
        .spawn(move || {
            let outcome = file.lock_shared();
            // Let go at once: a start or a reader may want the lock next.
            drop(file);
            LOCK_THREADS.fetch_sub(1, Ordering::AcqRel);
            released(outcome);
        });
    if spawned.is_err() {
        LOCK_THREADS.fetch_sub(1, Ordering::AcqRel);
        return Ok(Notify::NoThread);
    }
    Ok(Notify::Started)
}

/// Helper threads of [`notify_released`] alive now, in this process.
pub fn lock_threads() -> usize {
    LOCK_THREADS.load(Ordering::Acquire)
}

/// The action of [`removed`]'s error, by which [`Error::retryable`] knows it.
pub const REMOVED_MEANWHILE: &str = "lock (rm or prune removed its task folder meanwhile)";

/// The folder of the lock at `path` was removed (by `rm` or `prune`) before or while its
/// lock was taken: retryable, since trying again starts from a fresh folder.
pub fn removed(path: &std::path::Path) -> Error {
    Error::store(
        REMOVED_MEANWHILE,
        path,
        io::Error::from(io::ErrorKind::NotFound),
    )
}

/// Whether `error` says the task's folder was removed (by `rm` or `prune`) under the caller,
/// so that a new folder is the way on.
pub fn is_removed(error: &Error) -> bool {
    matches!(error, Error::Store { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// The task's folder, which must exist to take its lock: one that is missing was removed
/// (by `rm` or `prune`), which [`is_removed`] tells.
fn task_folder(paths: &TaskPaths) -> Result<Folder> {
    paths.open()?.ok_or_else(|| removed(&paths.lock()))
}
