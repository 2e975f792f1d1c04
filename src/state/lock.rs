//! `supervisor.lock`: the supervisor's proof of life.
//!
//! `start` takes the lock exclusively and hands the very same open file to the supervisor,
//! which holds it until it exits; the kernel releases it however the supervisor dies. So a
//! reader that can take the lock (even shared) knows the supervisor is gone, and a waiter
//! that blocks on it wakes the instant the supervisor exits: no polling, no sleeps.
//!
//! The file is never replaced (a lock on a file replaced by rename protects nothing).

use std::fs::{File, TryLockError};
use std::io;
use std::sync::mpsc;
use std::time::Duration;

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
    pub fn try_acquire(paths: &TaskPaths) -> Result<Option<TaskLock>> {
        TaskLock::try_acquire_in(&task_folder(paths)?)
    }

    /// [`TaskLock::try_acquire`], in the task's open folder.
    pub fn try_acquire_in(folder: &Folder) -> Result<Option<TaskLock>> {
        let file = folder.write_file(names::LOCK, Write::Lock)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(TaskLock { file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(Error::store("lock", folder.file_path(names::LOCK), e))
            }
        }
    }

    /// Takes the lock, waiting at most `patience` for its holder to let go.
    pub fn acquire_within(paths: &TaskPaths, patience: Duration) -> Result<Option<TaskLock>> {
        let folder = task_folder(paths)?;
        if let Some(lock) = TaskLock::try_acquire_in(&folder)? {
            return Ok(Some(lock));
        }
        let file = folder.write_file(names::LOCK, Write::Lock)?;
        let path = paths.lock();
        match block_on(move || file.lock().map(|()| file), patience) {
            Some(Ok(file)) => Ok(Some(TaskLock { file })),
            Some(Err(e)) => Err(Error::store("lock", path, e)),
            None => Ok(None),
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

/// The lock file, open for a shared lock; `None` when the task has none (no supervisor).
fn open_shared(paths: &TaskPaths) -> Result<Option<File>> {
    match paths.open()? {
        Some(folder) => folder.read_file(names::LOCK),
        None => Ok(None),
    }
}

/// Blocks until the supervisor has exited, or `timeout` passes (`None`: no limit).
/// Returns whether it exited.
pub fn wait_released(paths: &TaskPaths, timeout: Option<Duration>) -> Result<bool> {
    let Some(file) = open_shared(paths)? else {
        return Ok(true);
    };
    let result = match timeout {
        None => Some(file.lock_shared()),
        Some(timeout) => block_on(move || file.lock_shared(), timeout),
    };
    match result {
        Some(Ok(())) => Ok(true),
        Some(Err(e)) => Err(Error::store("lock", paths.lock(), e)),
        None => Ok(false),
    }
}

/// Starts waiting for the supervisor's exit on a helper thread, which calls `released` with
/// the outcome once the lock is free. Returns `false` (and calls nothing) when the task has
/// no lock file, so no supervisor to wait for. The caller waits on whatever `released`
/// signals, next to its own deadline and cancellation; the helper stays blocked until the
/// supervisor exits, however soon the caller gives up.
pub fn notify_released(
    paths: &TaskPaths,
    released: impl FnOnce(io::Result<()>) + Send + 'static,
) -> Result<bool> {
    let Some(file) = open_shared(paths)? else {
        return Ok(false);
    };
    std::thread::Builder::new()
        .name("lock-wait".into())
        .spawn(move || released(file.lock_shared()))
        .map_err(|e| Error::store("wait for the lock of", paths.lock(), e))?;
    Ok(true)
}

/// Runs a blocking call on a helper thread and gives up on it after `timeout`. A call given
/// up on stays blocked until the process exits, which is soon: every command is short-lived.
fn block_on<T: Send + 'static>(
    call: impl FnOnce() -> io::Result<T> + Send + 'static,
    timeout: Duration,
) -> Option<io::Result<T>> {
    let (sender, receiver) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("lock-wait".into())
        .spawn(move || {
            let _ = sender.send(call());
        });
    if let Err(e) = spawned {
        return Some(Err(e));
    }
    receiver.recv_timeout(timeout).ok()
}

/// The task's folder, which must exist: the lock is taken to start or remove a task.
fn task_folder(paths: &TaskPaths) -> Result<Folder> {
    paths.open()?.ok_or_else(|| {
        Error::store(
            "open",
            paths.lock(),
            io::Error::from(io::ErrorKind::NotFound),
        )
    })
}
