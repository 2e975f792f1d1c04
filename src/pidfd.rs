//! Process descriptors (`pidfd`, Linux 5.3+): a handle on one process that no reuse of its
//! pid can redirect.
//!
//! A pidfd is opened on a pid read from disk and only then checked against the recorded
//! start time: from that moment it names that very process, so signalling it
//! ([`Pidfd::signal`]) can never reach a stranger that inherited the pid, and polling it
//! tells the instant the process has exited, with no thread and no lock. Used by `stop`
//! (signal the supervisor, then wait for it), by every wait for a supervisor's exit, and by
//! the supervisor for its `stop_with_pid` owner.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::signal::Signal;

use crate::procfs::Identity;

/// An open pidfd on a process whose identity was checked after it was opened.
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pid: i32,
}

/// What opening a pidfd found.
#[derive(Debug)]
pub enum Opened {
    /// The process, pinned.
    Process(Pidfd),
    /// No live process has that identity any more (it exited, or its pid was reused).
    Gone,
    /// The kernel has no pidfds (before 5.3): the caller falls back to the pid itself.
    Unsupported,
}

impl Pidfd {
    /// Opens a pidfd on the process `identity` names, if it still runs as that process.
    /// Out of descriptors (`EMFILE`, `ENFILE`) is an error; the caller says what it was
    /// doing.
    pub fn open(identity: Identity) -> io::Result<Opened> {
        if identity.pid <= 1 {
            return Ok(Opened::Gone);
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, identity.pid, 0) };
        if fd < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::ESRCH | libc::EINVAL) => Ok(Opened::Gone),
                Some(libc::ENOSYS) => Ok(Opened::Unsupported),
                _ => Err(error),
            };
        }
        // SAFETY: the descriptor was just returned by pidfd_open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // The pidfd pins the process it was opened on; check that it is the one recorded, not
        // a newer process that was given the same pid (or a zombie, which has exited).
        if !identity.is_alive() {
            return Ok(Opened::Gone);
        }
        Ok(Opened::Process(Pidfd {
            fd,
            pid: identity.pid,
        }))
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` carrying `value` (`sigqueue(3)`'s `si_value`, read by the receiver's
    /// signalfd as `ssi_int` with `ssi_code == SI_QUEUE`). `ESRCH` once the process has
    /// exited.
    pub fn signal(&self, signal: Signal, value: i32) -> io::Result<()> {
        let info = QueuedInfo::new(signal, value);
        // SAFETY: pidfd_send_signal reads `info` (a siginfo_t laid out as the kernel's, see
        // `QueuedInfo`) and writes nothing; the descriptor is a pidfd we own.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as libc::c_int,
                &info as *const QueuedInfo,
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sends `signal` carrying `value` to `pid` with `sigqueue(3)`, for kernels without pidfds;
/// the caller has checked the process's identity just before.
pub fn queue_signal(pid: i32, signal: Signal, value: i32) -> io::Result<()> {
    if pid <= 1 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // `sigval` is a union whose `int` is its first 4 bytes; libc names only its pointer.
    let bits = value as u32 as usize;
    #[cfg(all(target_endian = "big", target_pointer_width = "64"))]
    let bits = bits << 32;
    let value = libc::sigval {
        sival_ptr: bits as *mut libc::c_void,
    };
    // SAFETY: sigqueue takes a pid, a signal number and a value; it has no memory effects.
    let sent = unsafe { libc::sigqueue(pid, signal as libc::c_int, value) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's `siginfo_t` for a queued signal (`SI_QUEUE`): 128 bytes, the `_rt` member
/// of its union after three ints (and, on 64-bit targets, the padding that aligns the
/// union to 8 bytes): pid, uid, then `sigval`, whose `int` is its first 4 bytes.
#[repr(C)]
struct QueuedInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    #[cfg(target_pointer_width = "64")]
    _align: libc::c_int,
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: libc::c_int,
    _rest: [u8; QueuedInfo::REST],
}

impl QueuedInfo {
    /// What follows `value` up to the kernel's 128 bytes.
    const REST: usize = 128
        - 4 * std::mem::size_of::<libc::c_int>()
        - if cfg!(target_pointer_width = "64") {
            4
        } else {
            0
        }
        - std::mem::size_of::<libc::pid_t>()
        - std::mem::size_of::<libc::uid_t>();

    fn new(signal: Signal, value: i32) -> QueuedInfo {
        QueuedInfo {
            signo: signal as libc::c_int,
            errno: 0,
            code: libc::SI_QUEUE,
            #[cfg(target_pointer_width = "64")]
            _align: 0,
            pid: std::process::id() as libc::pid_t,
            uid: nix::unistd::getuid().as_raw(),
            value,
            _rest: [0; QueuedInfo::REST],
        }
    }
}

const _: () = assert!(std::mem::size_of::<QueuedInfo>() == 128);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_is_opened_only_on_the_recorded_process() {
        let me = Identity::of(std::process::id() as i32).expect("our identity");
        assert!(matches!(
            Pidfd::open(me),
            Ok(Opened::Process(_) | Opened::Unsupported)
        ));
        let reused = Identity {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(matches!(
            Pidfd::open(reused),
            Ok(Opened::Gone | Opened::Unsupported)
        ));
        let init = Identity {
            pid: 1,
            start_ticks: 0,
        };
        assert!(matches!(Pidfd::open(init), Ok(Opened::Gone)));
    }
}
