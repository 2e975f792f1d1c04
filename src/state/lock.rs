//! `supervisor.lock`: the supervisor's proof of life.
//!
//! `start` takes the lock exclusively and hands the very same open file to the supervisor,
//! which holds it until it exits; the kernel releases it however the supervisor dies. So a
//! reader that can take the lock (even shared) knows the supervisor is gone, and a waiter
//! that blocks on it wakes the instant the supervisor exits: no polling, no sleeps.
//!
//! The file is never replaced (a lock on a file replaced by rename protects nothing).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::paths::{TaskPaths, set_private_mode};

/// The exclusive lock of one task, held by `start` and then by its supervisor.
#[derive(Debug)]
pub struct TaskLock {
    file: File,
}

impl TaskLock {
    /// Takes the lock if nobody holds it; `None` if a supervisor (or a reader, for a moment)
    /// holds it.
    pub fn try_acquire(paths: &TaskPaths) -> Result<Option<TaskLock>> {
        let file = open_for_locking(paths)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(TaskLock { file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(Error::store("lock", paths.lock(), e)),
        }
    }

    /// Takes the lock, waiting at most `patience` for its holder to let go.
    pub fn acquire_within(paths: &TaskPaths, patience: Duration) -> Result<Option<TaskLock>> {
        if let Some(lock) = TaskLock::try_acquire(paths)? {
            return Ok(Some(lock));
        }
        let file = open_for_locking(paths)?;
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
    let file = match File::open(paths.lock()) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Liveness::Gone),
        Err(e) => return Err(Error::store("open", paths.lock(), e)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Liveness::Gone),
        Err(TryLockError::WouldBlock) => Ok(Liveness::Alive),
        Err(TryLockError::Error(e)) => Err(Error::store("lock", paths.lock(), e)),
    }
}

/// Blocks until the supervisor has exited, or `timeout` passes (`None`: no limit).
/// Returns whether it exited.
pub fn wait_released(paths: &TaskPaths, timeout: Option<Duration>) -> Result<bool> {
    let file = match File::open(paths.lock()) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::store("open", paths.lock(), e)),
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
    let file = match File::open(paths.lock()) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::store("open", paths.lock(), e)),
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

fn open_for_locking(paths: &TaskPaths) -> Result<File> {
    let path = paths.lock();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::store("open", &path, e))?;
    let mode = file
        .metadata()
        .map_err(|e| Error::store("inspect", &path, e))?;
    if std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777 != 0o600 {
        set_private_mode(&path, 0o600)?;
    }
    Ok(file)
}
