//! `start`: launch one task under a new supervisor.
//!
//! `start` validates the payload, takes the task's lock, hands it to a freshly spawned
//! supervisor and answers only once the task has exec'd (`running`, with its pid) or failed
//! to (`SpawnFailed`, with the OS reason; the record says `failed`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::commands::{open_state, wait};
use crate::error::{Error, Result};
use crate::paths::{StateDir, TaskId, TaskPaths};
use crate::payload::input::{DEFAULT_GRACE_S, StartInput};
use crate::payload::task::Task;
use crate::procfs::Identity;
use crate::state::lock::TaskLock;
use crate::state::reconcile::reconcile_locked;
use crate::state::record::FORMAT_VERSION;
use crate::state::{Reason, Status, TaskRecord};
use crate::supervisor::launch::{LaunchError, launch};
use crate::supervisor::{Report, Spec};
use crate::time::now_ms;

/// How long a `start` waits for a lock held only for an instant (a reader's probe, or a
/// supervisor writing its last record) before it reports the task as running.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize)]
pub struct StartAnswer {
    pub task: Task,
}

/// Starts the task; with `wait = Some(timeout)`, answers once it has ended.
pub fn run(input: StartInput, wait: Option<Option<Duration>>) -> Result<StartAnswer> {
    input.validate()?;
    let state = open_state()?;
    let id = match input.id.clone() {
        Some(id) => id,
        None => fresh_id(&state),
    };
    let workdir = resolve_workdir(input.workdir.as_deref())?;
    let template = TaskRecord {
        format_version: FORMAT_VERSION,
        id: id.to_string(),
        name: input.name,
        command: input.command,
        args: input.args,
        shell: input.shell,
        workdir,
        env_keys: input.env.keys().cloned().collect(),
        tags: input.tags,
        grace_ms: (input.grace_s.unwrap_or(DEFAULT_GRACE_S) * 1000.0).round() as u64,
        status: Status::Running,
        run: 1,
        pid: None,
        pgid: None,
        pid_start_ticks: None,
        supervisor_pid: None,
        supervisor_start_ticks: None,
        boot_id: None,
        exit_code: None,
        signal: None,
        core_dumped: false,
        reason: None,
        error: None,
        created_at_ms: now_ms(),
        started_at_ms: None,
        ended_at_ms: None,
    };
    let paths = state.task(&id);
    let mut record = launch_run(&state, &id, template, input.env)?;
    if let Some(timeout) = wait {
        record = wait::until_terminal(&paths, &id, timeout)?;
    }
    Ok(StartAnswer {
        task: Task::from_record(&record, &paths),
    })
}

/// Starts the next run of `id` from `template` (whose `run` and `created_at_ms` are
/// replaced when the task ran before). Shared by `start` and `restart`.
pub fn launch_run(
    state: &StateDir,
    id: &TaskId,
    mut template: TaskRecord,
    env: BTreeMap<String, String>,
) -> Result<TaskRecord> {
    let paths = state.task(id);
    paths.create()?;
    let lock = acquire_for_start(&paths, id)?;
    // A previous run whose supervisor died is recorded `lost` (and its leftovers killed)
    // before the new run replaces it.
    if let Some(prior) = reconcile_locked(&paths, &lock)? {
        template.run = prior.run.saturating_add(1);
        template.created_at_ms = prior.created_at_ms;
        keep_previous_log(&paths, prior.run)?;
    }
    let run = template.run;
    let spec = Spec {
        home: state.root().to_path_buf(),
        record: template,
        env,
    };
    let spawn_failed = |cause: String, source: io::Error| Error::SpawnFailed {
        id: id.to_string(),
        cause,
        source,
    };
    match launch(&spec, &lock) {
        Ok(Report::Running { .. }) => TaskRecord::read(&paths)?.ok_or_else(|| {
            Error::store(
                "read the record",
                paths.record(),
                io::Error::from(io::ErrorKind::NotFound),
            )
        }),
        Ok(Report::SpawnFailed {
            cause,
            os_error,
            message,
        }) => Err(spawn_failed(
            cause,
            os_error.map_or_else(|| io::Error::other(message), io::Error::from_raw_os_error),
        )),
        Err(error) => {
            // No supervisor is running this run, and we still hold the lock: record the failure
            // so the task is not left without a record or stuck in `running`.
            let current = TaskRecord::read(&paths).ok().flatten();
            if current.is_none_or(|r| r.run != run) {
                let mut failed = spec.record;
                failed.finish(Status::Failed, Reason::SpawnError, now_ms());
                failed.error = Some(
                    Error::SpawnFailed {
                        id: id.to_string(),
                        cause: "supervisor".into(),
                        source: io::Error::other(error.to_string()),
                    }
                    .full_message(),
                );
                failed.write(&paths)?;
            }
            let source = match error {
                LaunchError::Spawn(e) | LaunchError::NoReport(e) => e,
            };
            Err(spawn_failed("supervisor".into(), source))
        }
    }
}

/// Takes the task's lock for a new run, or reports the task as running.
fn acquire_for_start(paths: &TaskPaths, id: &TaskId) -> Result<TaskLock> {
    let deadline = Instant::now() + LOCK_PATIENCE;
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(lock) = TaskLock::try_acquire(paths)? {
            return Ok(lock);
        }
        // Someone holds the lock. If it is a live supervisor of a running task, that is the
        // answer; otherwise it is a reader probing, a supervisor writing its last record, or
        // another start, and the lock is free again in moments.
        let record = TaskRecord::read(paths).ok().flatten();
        let running = record.as_ref().filter(|r| !r.status.is_terminal());
        if let Some(record) = running {
            let supervisor = record.supervisor_pid.zip(record.supervisor_start_ticks);
            if supervisor.is_some_and(|(pid, start_ticks)| Identity { pid, start_ticks }.is_alive())
            {
                return Err(Error::TaskAlreadyRunning {
                    id: id.to_string(),
                    pid: record.pid.map_or(0, i64::from),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::TaskAlreadyRunning {
                id: id.to_string(),
                pid: running.and_then(|r| r.pid).map_or(0, i64::from),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Keeps the previous run's output as `output.<run>.log`, and only that one.
fn keep_previous_log(paths: &TaskPaths, prior_run: u32) -> Result<()> {
    if prior_run > 1 {
        let _ = fs::remove_file(paths.old_log(prior_run - 1));
    }
    match fs::rename(paths.log(), paths.old_log(prior_run)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::store("keep the previous log", paths.log(), e)),
    }
}

fn fresh_id(state: &StateDir) -> TaskId {
    loop {
        let id = TaskId::generate();
        if !state.task(&id).dir.exists() {
            return id;
        }
    }
}

fn resolve_workdir(workdir: Option<&str>) -> Result<String> {
    let cwd = || {
        std::env::current_dir().map_err(|e| {
            Error::input(
                format!("could not read the current directory: {e}"),
                "Give an absolute workdir.",
            )
        })
    };
    let path = match workdir {
        Some(dir) if Path::new(dir).is_absolute() => Path::new(dir).to_path_buf(),
        Some(dir) => cwd()?.join(dir),
        None => cwd()?,
    };
    path.into_os_string().into_string().map_err(|_| {
        Error::input_at(
            "workdir",
            "workdir: the path is not valid UTF-8",
            "Use a UTF-8 path.",
        )
    })
}
