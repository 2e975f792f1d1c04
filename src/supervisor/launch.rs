//! Runs in the `start` process: spawns the supervisor and waits for its report.
//!
//! The supervisor is a fresh exec of our own binary (no `fork()` of a process that may have
//! threads), in a new session (it calls `setsid` itself), with stdout and stderr on
//! /dev/null and a control socket as its stdin. Nothing else of ours reaches it. So the
//! spawn needs no hook between fork and exec, and std spawns it with `posix_spawn`
//! (`vfork`-fast, whatever our own size).
//!
//! Once it runs, `start` hands it the task's lock (the same open file `start` locked, passed
//! over the socket, so the lock passes to the supervisor without ever being free), a queued
//! task's turn lock, and the [`Spec`], and reads back the [`Report`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, IoSlice, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use crate::state::lock::TaskLock;
use crate::supervisor::{ENTRY, Report, Spec, fds};

/// How long `start` waits for the supervisor to report. Exec takes milliseconds; this only
/// bounds a supervisor wedged on a hung filesystem.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// The first byte on the control socket, carrying the locks: the lock alone, or the lock
/// and a turn.
pub const LOCK_ONLY: u8 = b'L';
pub const LOCK_AND_TURN: u8 = b'T';

/// Why no report arrived.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("could not spawn the supervisor")]
    Spawn(#[source] io::Error),
    #[error("the supervisor did not report")]
    NoReport(#[source] io::Error),
}

/// Spawns the supervisor for `spec`, hands it `lock` (and, for a queued task of a batch,
/// its `turn` lock) and the spec, and returns its report.
#[expect(
    clippy::disallowed_methods,
    reason = "the one place a supervisor is spawned"
)]
pub fn launch(spec: &Spec, lock: &TaskLock, turn: Option<&File>) -> Result<Report, LaunchError> {
    let exe = std::env::current_exe().map_err(LaunchError::Spawn)?;
    let (ours, theirs) = UnixStream::pair().map_err(LaunchError::Spawn)?;
    // Descriptors our caller gave us (an agent's pipe) must not reach the supervisor.
    fds::mark_cloexec_from(3);
    let mut command = Command::new(exe);
    // The task id names the supervisor on its command line (`ps`, `pgrep -f`); the spec
    // itself travels over the socket.
    command
        .arg(ENTRY)
        .arg(&spec.record.id)
        // A task started from inside a task is a task of its own: it must not carry the
        // starting task's cookie, or it would die with it.
        .env_remove(crate::paths::env::RUN)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The Child handle is dropped without waiting: the supervisor outlives us, and once we
    // exit it is reparented away from our caller.
    command.spawn().map_err(LaunchError::Spawn)?;
    send_locks(&ours, lock.file().as_raw_fd(), turn.map(AsRawFd::as_raw_fd))
        .and_then(|()| send_spec(&ours, spec))
        .map_err(LaunchError::NoReport)?;
    read_report(ours).map_err(LaunchError::NoReport)
}

/// Sends the locks as the socket's first byte, with the descriptors beside it.
fn send_locks(socket: &UnixStream, lock: RawFd, turn: Option<RawFd>) -> io::Result<()> {
    let (tag, fds) = match turn {
        Some(turn) => (LOCK_AND_TURN, vec![lock, turn]),
        None => (LOCK_ONLY, vec![lock]),
    };
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(&[tag])],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io::Error::from)?;
    if sent != 1 {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the locks were not sent",
        ));
    }
    Ok(())
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
