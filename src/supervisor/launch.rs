//! Runs in the `start` process: spawns the supervisor and waits for its report.
//!
//! The supervisor is a fresh exec of our own binary (no `fork()` of a process that may have
//! threads), in a new session, with stdin, stdout and stderr on /dev/null and only two
//! inherited descriptors: the task's lock (fd 3, the same open file `start` locked, so the
//! lock passes to the supervisor without ever being free) and a control socket (fd 4).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::state::lock::TaskLock;
use crate::supervisor::{CONTROL_FD, ENTRY, LOCK_FD, Report, Spec, TURN_FD, fds};

/// How long `start` waits for the supervisor to report. Exec takes milliseconds; this only
/// bounds a supervisor wedged on a hung filesystem.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no report arrived.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("could not spawn the supervisor")]
    Spawn(#[source] io::Error),
    #[error("the supervisor did not report")]
    NoReport(#[source] io::Error),
}

/// Spawns the supervisor for `spec`, handing it `lock` (and, for a queued task of a batch,
/// its `turn` lock at fd 5), and returns its report.
#[expect(
    clippy::disallowed_methods,
    reason = "the one place a supervisor is spawned"
)]
pub fn launch(spec: &Spec, lock: &TaskLock, turn: Option<&File>) -> Result<Report, LaunchError> {
    let exe = std::env::current_exe().map_err(LaunchError::Spawn)?;
    let (ours, theirs) = UnixStream::pair().map_err(LaunchError::Spawn)?;
    // Move both descriptors above the target numbers so that placing them at 3 and 4 in the
    // child cannot overwrite one with the other.
    let lock_fd = dup_above(lock.file().as_raw_fd(), 10).map_err(LaunchError::Spawn)?;
    let control_fd = dup_above(theirs.as_raw_fd(), 10).map_err(LaunchError::Spawn)?;
    let turn_fd = turn
        .map(|t| dup_above(t.as_raw_fd(), 10))
        .transpose()
        .map_err(LaunchError::Spawn)?;
    drop(theirs);
    // Descriptors our caller gave us (an agent's pipe) must not reach the supervisor.
    fds::mark_cloexec_from(3);

    let (lock_raw, control_raw) = (lock_fd.as_raw_fd(), control_fd.as_raw_fd());
    let turn_raw = turn_fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let mut command = Command::new(exe);
    // The task id names the supervisor on its command line (`ps`, `pgrep -f`); the spec
    // itself still travels over the socket.
    command
        .arg(ENTRY)
        .arg(&spec.record.id)
        // A task started from inside a task is a task of its own: it must not carry the
        // starting task's cookie, or it would die with it.
        .env_remove(crate::paths::env::RUN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the hook runs between fork and exec and calls only setsid and dup2, both
    // async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0
                || libc::dup2(lock_raw, LOCK_FD) < 0
                || libc::dup2(control_raw, CONTROL_FD) < 0
                || (turn_raw >= 0 && libc::dup2(turn_raw, TURN_FD) < 0)
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The Child handle is dropped without waiting: the supervisor outlives us, and once we
    // exit it is reparented away from our caller.
    command.spawn().map_err(LaunchError::Spawn)?;
    drop((lock_fd, control_fd, turn_fd));

    send_spec(&ours, spec).map_err(LaunchError::NoReport)?;
    read_report(ours).map_err(LaunchError::NoReport)
}

fn send_spec(mut socket: &UnixStream, spec: &Spec) -> io::Result<()> {
    let bytes = serde_json::to_vec(spec).map_err(io::Error::other)?;
    socket.write_all(&bytes)?;
    socket.shutdown(Shutdown::Write)
}

fn read_report(socket: UnixStream) -> io::Result<Report> {
    socket.set_read_timeout(Some(REPORT_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(socket).read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "it exited before starting the task",
        ));
    }
    serde_json::from_str(&line).map_err(io::Error::other)
}

/// A close-on-exec duplicate of `fd` numbered at least `min`.
fn dup_above(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor that nothing else owns.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        let error = io::Error::last_os_error();
        // F_DUPFD fails with EINVAL when `min` is not below the open-file limit: the caller
        // may not open that many files, and EMFILE says so ("Invalid argument" does not).
        if error.raw_os_error() == Some(libc::EINVAL) {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        return Err(error);
    }
    // SAFETY: `new` was just created above and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}
