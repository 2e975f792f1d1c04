//! Runs in both `start` and the supervisor: keeps inherited descriptors from leaking.
//!
//! An agent that runs `start` with a pipe on stdout (or any extra fd) and reads to EOF
//! hangs until every holder of the pipe's write end closes it. So before we exec anything,
//! every descriptor above 2 that we did not choose to hand over is marked close-on-exec.

use std::fs;
use std::os::fd::RawFd;

/// Marks every descriptor `>= first` close-on-exec: `close_range(first, ~0,
/// CLOSE_RANGE_CLOEXEC)` (Linux 5.11), else a walk over /proc/self/fd.
pub fn mark_cloexec_from(first: RawFd) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on our own descriptors;
    // it touches no memory.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    } == 0;
    if done {
        return;
    }
    let Ok(entries) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        set_cloexec(fd, true);
    }
}

/// Sets or clears FD_CLOEXEC on one descriptor. Async-signal-safe.
pub fn set_cloexec(fd: RawFd, on: bool) {
    // SAFETY: fcntl on a descriptor number has no memory effects; a closed fd gives EBADF.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            let flags = if on {
                flags | libc::FD_CLOEXEC
            } else {
                flags & !libc::FD_CLOEXEC
            };
            libc::fcntl(fd, libc::F_SETFD, flags);
        }
    }
}
