//! Runs in the supervisor and in the task's pre-exec: signal dispositions and names.
//!
//! A caller may hand us a hostile signal state: `SIGCHLD` ignored (then `wait` fails and the
//! exit code is lost), or `SIGINT`/`SIGQUIT` ignored (as `bash -c 'x &'` does). Both the
//! supervisor and the task start from defaults, real-time signals included.
//!
//! The supervisor then ignores every signal it does not read from its signalfd: a stray
//! `SIGUSR2`, `SIGALRM`, `SIGPROF` or real-time signal would otherwise end it by default and
//! leave its task `lost`, and `SIGTSTP`/`SIGTTIN`/`SIGTTOU` would stop it. The task's
//! `pre_exec` resets all of them to default again.

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

/// Ignores, in the supervisor, every signal that is not in `handled` (which is blocked and
/// read from a signalfd). `SIGKILL` and `SIGSTOP` cannot be ignored; `SIGCONT` keeps its
/// default (it only resumes). Ignoring a fault signal (`SIGSEGV`, `SIGBUS`, `SIGFPE`,
/// `SIGILL`) ignores only one sent by `kill`: the kernel still delivers a real fault with
/// its default action, and `abort` resets `SIGABRT` before it raises it again.
pub fn ignore_unused(handled: &SigSet) {
    let ignore = KernelSigaction {
        handler: libc::SIG_IGN,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signo in 1..=SIGNAL_MAX {
        let used = Signal::try_from(signo).is_ok_and(|s| handled.contains(s));
        if used || [libc::SIGKILL, libc::SIGSTOP, libc::SIGCONT].contains(&signo) {
            continue;
        }
        // SAFETY: as in `reset_all`; SIG_IGN installs no handler.
        unsafe { set_action(signo, &ignore) };
    }
}

/// The highest signal number on Linux (SIGRTMAX).
const SIGNAL_MAX: libc::c_int = 64;

/// The kernel's `struct sigaction` (not glibc's, which is laid out differently). The same
/// layout on x86_64 and aarch64: handler, flags, restorer, mask.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Resets every signal (1 to 64, except KILL and STOP) to its default action and unblocks
/// all signals. Async-signal-safe: raw `rt_sigaction` and `sigprocmask` only.
///
/// The raw syscall, not glibc's `signal`, because glibc refuses signals 32 and 33 (its own
/// internal ones), and a caller can still hand them down ignored: children that a Rust
/// program spawns inherit signal 32 ignored. An ignored disposition survives exec, so the
/// task would inherit it.
pub fn reset_all() {
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signo in 1..=SIGNAL_MAX {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `default` installs no handler.
        unsafe { set_action(signo, &default) };
    }
    // SAFETY: an all-zero sigset_t is the empty set (sigemptyset would also do); setting an
    // empty mask has no memory effects.
    unsafe {
        let empty: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Sets the disposition of `signo`. Async-signal-safe.
///
/// # Safety
/// `action` must not install a handler (only `SIG_DFL` or `SIG_IGN`).
unsafe fn set_action(signo: libc::c_int, action: &KernelSigaction) {
    // SAFETY: rt_sigaction reads `action` (a valid kernel sigaction that installs no
    // handler, by the caller's promise) and writes nothing (null old action); the size is
    // that of the kernel's 64-bit signal mask.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signo,
            action as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            std::mem::size_of::<u64>(),
        );
    }
}

/// Whether `signal` stops a process (then a stop must not follow it with `SIGCONT`).
pub fn is_stop(signal: Signal) -> bool {
    matches!(
        signal,
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU
    )
}

/// `"SIGTERM"` for a signal number; `"SIG<n>"` for one without a name.
pub fn name(signo: i32) -> String {
    Signal::try_from(signo)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("SIG{signo}"))
}
