//! Interrupts of a call that waits (`wait`, `start --wait`, `restart --wait`).
//!
//! SIGINT, SIGTERM or SIGHUP while such a call waits does not kill it: the wait ends at once
//! (through its [`Cancel`]), the call answers its envelope on stdout with the tasks as they
//! are (still running: the task is the caller's, like `docker run -d`'s) and
//! `data.interrupted` naming the signal, and exits 130 ([`super::exit_status::INTERRUPTED`]).
//! So a script's Ctrl-C never leaves a task behind whose id its caller never heard: the id is
//! in the answer, for `stop`.
//!
//! The handler only records the signal and writes a byte to a pipe; a thread reading the
//! pipe cancels the wait. Handlers are reset by `exec`, so the supervisors `start` spawns do
//! not inherit them; `SA_RESTART` keeps other system calls going.

use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::error::{Error, Result};
use crate::lifecycle::observe::StatusArgs;
use crate::lifecycle::{Cancel, Tasks};
use crate::paths::TaskId;
use crate::payload::task::Task;

/// The signals that interrupt a wait.
const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The first signal received, 0 before any.
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// The pipe's write end, -1 before [`install`].
static PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signo: libc::c_int) {
    let _ = RECEIVED.compare_exchange(0, signo, Ordering::SeqCst, Ordering::SeqCst);
    let fd = PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; it reads one byte of our stack.
        let _ = unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP cancel the handle returned, for the rest of the
/// process's life (a CLI call). Call it before the task is launched: a signal during the
/// launch then ends the wait at once, after the launch, and the answer names the task.
pub fn install() -> Result<Cancel> {
    let cancel = Cancel::new();
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Error::store("create", "a pipe for signals", std::io::Error::from(e)))?;
    PIPE.store(write.into_raw_fd(), Ordering::SeqCst);
    let woken = cancel.clone();
    std::thread::spawn(move || wait_for_signal(&read, &woken));
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in SIGNALS {
        // SAFETY: the handler only touches atomics and calls write(2), both
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }.map_err(|e| {
            Error::store(
                "install a handler of",
                signal.as_str(),
                std::io::Error::from(e),
            )
        })?;
    }
    Ok(cancel)
}

fn wait_for_signal(read: &OwnedFd, cancel: &Cancel) {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reads at most one byte into our buffer from our own descriptor.
        let n = unsafe { libc::read(read.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        if n > 0 {
            cancel.cancel();
            return;
        }
        if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// The signal that interrupted this call, if one did (`"SIGINT"`).
pub fn received() -> Option<&'static str> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signo => Some(Signal::try_from(signo).map_or("signal", Signal::as_str)),
    }
}

/// The task a wait that a signal ended early was waiting for (`TaskWaitTimedOut` or
/// `TaskNotReady` name it), as it is now.
pub fn task_of(tasks: &Tasks, error: &Error) -> Option<Task> {
    let id = match error {
        Error::TaskWaitTimedOut { id, .. } | Error::TaskNotReady { id, .. } => id,
        _ => return None,
    };
    let id = TaskId::parse(id).ok()?;
    tasks.status(StatusArgs { id }).ok()
}
