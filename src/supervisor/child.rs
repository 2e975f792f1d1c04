//! Runs in the supervisor: spawns the task.
//!
//! The task is the leader of its own session and process group, so a stop can signal the
//! whole tree it grows. Its stdin is /dev/null; stdout and stderr share one open file
//! description of the log opened for append, so the two streams interleave in the order
//! they were written. It gets default signal dispositions, an empty signal mask,
//! `PR_SET_PDEATHSIG(SIGKILL)` and no descriptor above 2.
//!
//! Its environment carries the run's cookie ([`env::RUN`]), which every process it starts
//! inherits: if this supervisor dies without recording an end, whoever finds the task `lost`
//! finds the processes that left its group by it (`escapees`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::escapees;
use crate::paths::env;
use crate::state::TaskRecord;
use crate::supervisor::signals;

/// Why the task could not be started.
#[derive(Debug)]
pub struct SpawnFailure {
    /// What could not be used: "command `x`", "workdir `/y`".
    pub cause: String,
    pub source: io::Error,
}

/// Starts the task and returns its pid once it has exec'd.
pub fn spawn(
    record: &TaskRecord,
    env: &BTreeMap<String, String>,
    home: &Path,
    log: &File,
    supervisor_pid: i32,
) -> Result<i32, SpawnFailure> {
    // The supervisor enters the workdir itself and the task inherits it: a workdir that
    // is missing, not a directory or not searchable is then blamed on the workdir (the
    // child's own chdir would fail like its exec, and read as the command's fault). We go
    // back to / once the task has started.
    if let Err(source) = std::env::set_current_dir(Path::new(&record.workdir)) {
        return Err(SpawnFailure {
            cause: format!("workdir `{}`", record.workdir),
            source,
        });
    }
    let spawned = spawn_here(record, env, home, log, supervisor_pid);
    let _ = std::env::set_current_dir("/");
    spawned
}

/// Spawns the task in the current directory.
#[expect(clippy::disallowed_methods, reason = "the one place a task is spawned")]
fn spawn_here(
    record: &TaskRecord,
    env: &BTreeMap<String, String>,
    home: &Path,
    log: &File,
    supervisor_pid: i32,
) -> Result<i32, SpawnFailure> {
    let (mut command, program) = match (&record.shell, &record.command) {
        (Some(line), _) => {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(line);
            (command, "/bin/sh".to_owned())
        }
        (None, Some(program)) => {
            let mut command = Command::new(program);
            command.args(&record.args);
            (command, program.clone())
        }
        (None, None) => {
            return Err(SpawnFailure {
                cause: "command".into(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "no command or shell"),
            });
        }
    };
    let io_failure = |source| SpawnFailure {
        cause: "log".into(),
        source,
    };
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_failure)?)
        .stderr(log.try_clone().map_err(io_failure)?)
        .envs(env);
    // Ours last: a payload cannot set them. The task's id and state directory, so that a
    // task it starts records it as its parent, in the same state directory.
    command.env(env::HOME, home).env(env::TASK_ID, &record.id);
    // A task started from inside another task gets its own cookie (`launch` does not hand
    // the parent's to the supervisor).
    if let Some(cookie) = escapees::cookie(record) {
        command.env(env::RUN, cookie);
    }
    // SAFETY: the hook runs between fork and exec and calls only async-signal-safe
    // functions (setsid, signal, sigprocmask, prctl, getppid, syscall); it allocates nothing.
    unsafe {
        command.pre_exec(move || prepare_task(supervisor_pid));
    }
    match command.spawn() {
        Ok(child) => Ok(child.id() as i32),
        Err(source) => Err(SpawnFailure {
            cause: format!("command `{program}`"),
            source,
        }),
    }
}

/// Between fork and exec, in the task. Async-signal-safe only.
fn prepare_task(supervisor_pid: i32) -> io::Result<()> {
    // SAFETY: each call is async-signal-safe and touches only the calling process.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        signals::reset_all();
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        // The supervisor may have died before PDEATHSIG was armed: then nobody supervises.
        if libc::getppid() != supervisor_pid {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // The supervisor's descriptors are all close-on-exec already; this is the guard for
        // any that a future change forgets. Failure (an old kernel) is not fatal.
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Ok(())
}
