//! Runs in the supervisor and in the task's pre-exec: signal dispositions and names.
//!
//! A caller may hand us a hostile signal state: `SIGCHLD` ignored (then `wait` fails and the
//! exit code is lost), or `SIGINT`/`SIGQUIT` ignored (as `bash -c 'x &'` does). Both the
//! supervisor and the task start from defaults.

use nix::sys::signal::{SigSet, Signal};

/// Signals that end up in the supervisor's signalfd.
pub fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
    ] {
        set.add(signal);
    }
    set
}

/// Resets every signal (1 up to SIGRTMIN, except KILL and STOP) to its default action and
/// unblocks all signals. Async-signal-safe: only `signal` and `sigprocmask`.
pub fn reset_all() {
    // Linux's SIGRTMIN is 32 (glibc reserves 32 and 33 for itself).
    for signo in 1..32 {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting the default disposition installs no handler and touches no memory.
        unsafe { libc::signal(signo, libc::SIG_DFL) };
    }
    // SAFETY: an all-zero sigset_t is the empty set (sigemptyset would also do); setting an
    // empty mask has no memory effects.
    unsafe {
        let empty: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// `"SIGTERM"` for a signal number; `"SIG<n>"` for one without a name.
pub fn name(signo: i32) -> String {
    Signal::try_from(signo)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("SIG{signo}"))
}
