//! Runs in the supervisor of a queued task: waits for a slot of its batch, in order.
//!
//! `start --concurrency N` runs at most N tasks of a batch at once, with no daemon. The
//! batch's folder holds N slot locks (`slot.<k>.lock`); a running task's supervisor holds
//! one for its whole life, and the kernel frees it however the supervisor ends. Order comes
//! from turn locks (`turn.<i>.lock`): `start` takes every one of them before any supervisor
//! runs and hands turn `i` to task `i`, which holds it until it has a slot. The first
//! `concurrency` tasks start at once; task `concurrency` looks for a slot only once all of
//! them hold one, and every later task once the task before it does (or has ended): tasks
//! start in input order, each as soon as a slot frees up.
//!
//! Waiting for "any of N locks" is done by one helper thread per slot, each blocked in
//! `flock`; the first to get its lock hands it over and wakes the poll loop through a
//! pipe. The others, when they later get theirs, find nobody listening and let go at once.
//! The poll loop keeps serving signals and the owner's pidfd meanwhile, so a queued task can
//! be stopped.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signalfd::SignalFd;

use crate::state::folder::{Folder, Write as Access};
use crate::state::record::BatchSlot;

/// How the wait for a slot ended.
#[derive(Debug)]
pub enum Waited {
    /// A slot is ours while this file stays open.
    Slot(File),
    /// A signal asked us to stop first (its number).
    Signal(i32),
    /// The owner process exited.
    OwnerExited,
}

/// The names of a batch's files; paths are resolved in `paths.rs`, the only place that does.
pub use crate::paths::BatchPaths;

/// Opens (creating, 0600) the lock file `name` in the batch's open `folder`, following no
/// symlink.
pub fn open_lock(folder: &Folder, name: &str) -> crate::error::Result<File> {
    folder.write_file(name, Access::Lock)
}

/// Opens the existing lock file `name` in the batch's open `folder`.
fn open_existing(folder: &Folder, name: &str) -> Option<File> {
    folder.read_file(name).ok().flatten()
}

/// The turns a task waits for before it looks for a slot. The first `concurrency` tasks
/// need none: there is a slot for each. Task `concurrency` waits until every one of them
/// holds its slot, and each later task waits for the one before it. So no task can take a
/// slot meant for an earlier one, whatever order their supervisors come up in.
fn turns_before(slot: &BatchSlot) -> std::ops::Range<usize> {
    match slot.index {
        i if i < slot.concurrency => 0..0,
        i if i == slot.concurrency => 0..i,
        i => i - 1..i,
    }
}

/// A slot at once, if this task's turn has come and one is free; `None` means queue.
pub fn try_now(batch: &Folder, slot: &BatchSlot) -> Option<File> {
    for before in turns_before(slot) {
        let turn = open_existing(batch, &BatchPaths::turn(before))?;
        turn.try_lock_shared().ok()?;
    }
    (0..slot.concurrency).find_map(|k| {
        let file = open_lock(batch, &BatchPaths::slot(k)).ok()?;
        file.try_lock().ok().map(|()| file)
    })
}

/// Waits until this task may run: its turn has come and a slot is free. Signals and the
/// owner's exit end the wait early.
pub fn wait_for_slot(
    batch: &Folder,
    slot: &BatchSlot,
    signal_fd: &SignalFd,
    owner: Option<BorrowedFd<'_>>,
) -> io::Result<Waited> {
    let (wake_read, wake_write) = pipe()?;
    let slots = acquire_in_background(batch.clone(), slot.clone(), wake_write)?;
    let mut wake = File::from(wake_read);
    loop {
        let mut fds = vec![
            PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(owner) = owner {
            fds.push(PollFd::new(owner, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let (signalled, woken, owner_gone) = (ready(0), ready(1), ready(2));
        if owner_gone {
            return Ok(Waited::OwnerExited);
        }
        if signalled {
            while let Ok(Some(info)) = signal_fd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo != libc::SIGCHLD {
                    return Ok(Waited::Signal(signo));
                }
            }
        }
        if woken {
            let mut byte = [0u8; 1];
            let _ = wake.read(&mut byte);
            if let Ok(file) = slots.try_recv() {
                // Dropping the receiver lets every other helper's lock go when it arrives.
                drop(slots);
                return Ok(Waited::Slot(file));
            }
        }
    }
}

/// Starts the helper that waits for our turn and then for any slot. The first lock won is
/// sent on the returned channel, and the wake pipe is written.
fn acquire_in_background(
    batch: Folder,
    slot: BatchSlot,
    wake: OwnedFd,
) -> io::Result<Receiver<File>> {
    let (sender, receiver) = mpsc::channel();
    let wake = File::from(wake);
    std::thread::Builder::new()
        .name("turn".into())
        .spawn(move || {
            // Our turn comes when the tasks before us hold a slot (or have ended).
            for before in turns_before(&slot) {
                if let Some(turn) = open_existing(&batch, &BatchPaths::turn(before)) {
                    let _ = turn.lock_shared();
                }
            }
            for k in 0..slot.concurrency {
                let sender = sender.clone();
                let mut wake = match wake.try_clone() {
                    Ok(wake) => wake,
                    Err(_) => continue,
                };
                let batch = batch.clone();
                let _ = std::thread::Builder::new()
                    .name(format!("slot-{k}"))
                    .spawn(move || {
                        if let Ok(file) = open_lock(&batch, &BatchPaths::slot(k))
                            && file.lock().is_ok()
                            && sender.send(file).is_ok()
                        {
                            let _ = wake.write_all(b"!");
                        }
                    });
            }
        })?;
    Ok(receiver)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created by pipe2 and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Opens a pidfd for the owner process, if it is still the process that was named (same
/// start time). `None` when it has already gone.
pub fn open_owner(pid: i32, start_ticks: Option<u64>) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just returned by pidfd_open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pidfd pins the process; check it is the one `start` saw, not a reused pid.
    let same = crate::procfs::stat(pid).is_some_and(|s| Some(s.start_ticks) == start_ticks);
    same.then_some(fd)
}
