//! `start`: launch one task, or a batch, each under a new supervisor.
//!
//! `start` validates the payload, takes the task's lock, hands it to a freshly spawned
//! supervisor and answers only once the task has exec'd (`running`, with its pid), failed to
//! (`SpawnFailed`, with the OS reason; the record says `failed`), or been queued.
//!
//! A batch starts its items in parallel. With `--concurrency N`, at most N of them run at
//! once: `start` creates the batch's slot and turn locks, takes every turn lock itself and
//! hands turn `i` to task `i` (see `supervisor::queue`), so the queue's order is fixed before
//! any supervisor runs.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::commands::batch::{self, ItemResult};
use crate::commands::stop::stop_task;
use crate::commands::{Reply, encode, open_state, wait};
use crate::error::{Error, Result};
use crate::paths::{StateDir, TaskId, TaskPaths, set_private_mode};
use crate::payload::input::{DEFAULT_GRACE_S, IfRunning, StartInput, StartPayload};
use crate::payload::task::Task;
use crate::procfs::Identity;
use crate::state::lock::TaskLock;
use crate::state::reconcile::reconcile_locked;
use crate::state::record::{BatchSlot, FORMAT_VERSION};
use crate::state::{Reason, Status, TaskRecord};
use crate::supervisor::launch::{LaunchError, launch};
use crate::supervisor::queue::{BatchPaths, open_lock};
use crate::supervisor::{Report, Spec};
use crate::time::now_ms;

/// How long a `start` waits for a lock held only for an instant (a reader's probe, or a
/// supervisor writing its last record) before it reports the task as running.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// `--wait`, `--timeout` and `--concurrency`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// `Some(timeout)`: answer once the task has ended (waiting at most `timeout`).
    pub wait: Option<Option<Duration>>,
    /// At most this many tasks of a batch run at once.
    pub concurrency: Option<usize>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StartAnswer {
    pub task: Task,
    /// `true` when `if_running: "reuse"` answered the task that was already running.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reused: bool,
}

pub fn run(payload: StartPayload, options: StartOptions) -> Result<Reply> {
    let state = open_state()?;
    match payload {
        StartPayload::One(input) => {
            let started = start_one(&state, *input, None)?;
            Ok(Reply::Data(encode(finish(&state, started, options.wait)?)?))
        }
        StartPayload::Batch(inputs) => start_batch(&state, inputs, options),
    }
}

/// A task `start` launched (or found running, with `reuse`).
struct Started {
    id: TaskId,
    record: TaskRecord,
    reused: bool,
}

/// Waits for the end (or, with `ready`, for readiness) if asked, and builds the answer.
fn finish(
    state: &StateDir,
    started: Started,
    wait: Option<Option<Duration>>,
) -> Result<StartAnswer> {
    let paths = state.task(&started.id);
    let record = match (wait, &started.record.ready_spec) {
        (Some(timeout), Some(spec)) => {
            let limit = spec.timeout("ready")?;
            let timeout = [timeout, limit].into_iter().flatten().min();
            wait::until_ready(&paths, &started.id, timeout)?
        }
        (Some(timeout), None) => wait::until_terminal(&paths, &started.id, timeout)?,
        (None, _) => started.record,
    };
    Ok(StartAnswer {
        task: Task::from_record(&record, &paths),
        reused: started.reused,
    })
}

/// A batch item's place in its queue, and its turn lock.
type Queued = (BatchSlot, File);

/// Starts one task; `queue` places it in a batch with its turn lock.
fn start_one(state: &StateDir, input: StartInput, queue: Option<Queued>) -> Result<Started> {
    input.validate()?;
    let id = match input.id.clone() {
        Some(id) => id,
        None => fresh_id(state),
    };
    let if_running = input.if_running;
    if let Some(port) = input.ready.as_ref().and_then(|r| r.port) {
        check_port_free(state, port, &id)?;
    }
    let (slot, turn) = queue.unzip();
    let env = input.env.clone();
    let template = template(&id, input, slot)?;
    let (record, reused) = launch_run(state, &id, template, env, if_running, turn)?;
    Ok(Started { id, record, reused })
}

/// The record of a new run, before the supervisor fills in its process.
fn template(id: &TaskId, input: StartInput, batch: Option<BatchSlot>) -> Result<TaskRecord> {
    let workdir = resolve_workdir(input.workdir.as_deref())?;
    let owner_start_ticks = input
        .stop_with_pid
        .and_then(Identity::of)
        .map(|i| i.start_ticks);
    Ok(TaskRecord {
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
        timeout_ms: input.timeout_s.map(|s| (s * 1000.0).round() as u64),
        owner_pid: input.stop_with_pid,
        owner_start_ticks,
        batch,
        ready: input.ready.as_ref().map(|_| false),
        ready_spec: input.ready,
        ready_at_ms: None,
        progress: None,
    })
}

/// Starts a batch: items in parallel, answered in input order.
fn start_batch(state: &StateDir, inputs: Vec<StartInput>, options: StartOptions) -> Result<Reply> {
    let total = inputs.len();
    // Ids are fixed first, so that a duplicate inside the batch is known before anything
    // starts: the first occurrence wins.
    let mut seen = HashSet::new();
    let mut items = Vec::with_capacity(total);
    let mut results = Vec::new();
    for (index, mut input) in inputs.into_iter().enumerate() {
        let id = input.id.clone().unwrap_or_else(|| fresh_id(state));
        if !seen.insert(id.clone()) {
            let error = Error::TaskAlreadyRunning {
                id: id.to_string(),
                pid: None,
                differences: Vec::new(),
                hint: Some(
                    "An earlier item of this batch has the same id; each id may appear once.",
                ),
            };
            results.push(ItemResult::new(index, Some(id.to_string()), Err(error)));
            continue;
        }
        input.id = Some(id);
        items.push((index, input));
    }
    let queue = match options.concurrency {
        Some(n) if n < items.len() => Some(Queue::create(state, n, items.len())?),
        _ => None,
    };
    // Each item owns its turn lock until its supervisor has it; an item that fails before
    // that lets it go, so the queue behind it moves on.
    let mut turns = queue
        .as_ref()
        .map(|q| q.turns())
        .transpose()?
        .unwrap_or_default();
    let work: Vec<(usize, (StartInput, Option<Queued>))> = items
        .into_iter()
        .enumerate()
        .map(|(position, (index, input))| {
            let slot = queue.as_ref().map(|q| q.slot(position));
            let turn = turns.get_mut(position).and_then(Option::take);
            (index, (input, slot.zip(turn)))
        })
        .collect();
    // Launch everything first, then wait: a worker that waited for its task before taking
    // the next would hold the batch to the number of workers.
    let launched = batch::parallel(work, batch::WORKERS, |(input, queued)| {
        let target = input.id.as_ref().map(ToString::to_string);
        (target, start_one(state, input, queued))
    });
    // `--timeout` bounds the whole call, not each item.
    let deadline = options.wait.flatten().map(|t| Instant::now() + t);
    for (index, (target, started)) in launched {
        let wait = options
            .wait
            .map(|_| deadline.map(|d| d.saturating_duration_since(Instant::now())));
        let answer = started.and_then(|started| encode(finish(state, started, wait)?));
        results.push(ItemResult::new(index, target, answer));
    }
    batch::answer(results, options.concurrency)
}

/// The slot and turn locks of one batch started with `--concurrency`.
struct Queue {
    id: String,
    paths: BatchPaths,
    concurrency: usize,
    size: usize,
}

impl Queue {
    fn create(state: &StateDir, concurrency: usize, size: usize) -> Result<Queue> {
        let id = format!("b_{}", &TaskId::generate().as_str()[3..]);
        let dir = state.batch_dir(&id);
        fs::create_dir_all(&dir).map_err(|e| Error::store("create the batch folder", &dir, e))?;
        set_private_mode(&state.batches_dir(), 0o700)?;
        set_private_mode(&dir, 0o700)?;
        let paths = BatchPaths { dir };
        for k in 0..concurrency {
            let path = paths.slot(k);
            open_lock(&path).map_err(|e| Error::store("create", &path, e))?;
        }
        Ok(Queue {
            id,
            paths,
            concurrency,
            size,
        })
    }

    fn slot(&self, index: usize) -> BatchSlot {
        BatchSlot {
            id: self.id.clone(),
            index,
            concurrency: self.concurrency,
        }
    }

    /// Takes every turn lock, before any supervisor of the batch runs.
    fn turns(&self) -> Result<Vec<Option<File>>> {
        (0..self.size)
            .map(|i| {
                let path = self.paths.turn(i);
                let file = open_lock(&path).map_err(|e| Error::store("create", &path, e))?;
                file.lock().map_err(|e| Error::store("lock", &path, e))?;
                Ok(Some(file))
            })
            .collect()
    }
}

/// Starts the next run of `id` from `template` (whose `run` and `created_at_ms` are
/// replaced when the task ran before). Shared by `start` and `restart`. Returns the record
/// and whether a running task was reused instead.
pub fn launch_run(
    state: &StateDir,
    id: &TaskId,
    mut template: TaskRecord,
    env: BTreeMap<String, String>,
    if_running: IfRunning,
    turn: Option<File>,
) -> Result<(TaskRecord, bool)> {
    let paths = state.task(id);
    paths.create()?;
    let lock = match acquire_for_start(&paths, id, &template, if_running)? {
        Acquired::Lock(lock) => lock,
        Acquired::Reused(record) => return Ok((*record, true)),
    };
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
    let launched = launch(&spec, &lock, turn.as_ref());
    // The supervisor holds the turn now (or nobody needs it): let ours go.
    drop(turn);
    match launched {
        Ok(Report::Running { .. } | Report::Queued | Report::Ended) => {
            let record = TaskRecord::read(&paths)?.ok_or_else(|| {
                Error::store(
                    "read the record",
                    paths.record(),
                    io::Error::from(io::ErrorKind::NotFound),
                )
            })?;
            Ok((record, false))
        }
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
            let what = error.to_string();
            let source = match error {
                LaunchError::Spawn(e) | LaunchError::NoReport(e) => e,
            };
            let current = TaskRecord::read(&paths).ok().flatten();
            if current.is_none_or(|r| r.run != run) {
                let mut failed = spec.record;
                failed.finish(Status::Failed, Reason::SpawnError, now_ms());
                failed.error = Some(
                    Error::SpawnFailed {
                        id: id.to_string(),
                        cause: "supervisor".into(),
                        // The OS reason too ("Too many open files"), not only what failed.
                        source: io::Error::other(format!("{what}: {source}")),
                    }
                    .full_message(),
                );
                failed.write(&paths)?;
            }
            Err(spawn_failed("supervisor".into(), source))
        }
    }
}

/// What `acquire_for_start` found.
enum Acquired {
    Lock(TaskLock),
    /// `if_running: "reuse"`: the running task, which runs the same command.
    Reused(Box<TaskRecord>),
}

/// Takes the task's lock for a new run, or answers for the task already running.
fn acquire_for_start(
    paths: &TaskPaths,
    id: &TaskId,
    template: &TaskRecord,
    if_running: IfRunning,
) -> Result<Acquired> {
    let mut deadline = Instant::now() + LOCK_PATIENCE;
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(lock) = TaskLock::try_acquire(paths)? {
            return Ok(Acquired::Lock(lock));
        }
        // Someone holds the lock. If it is a live supervisor of a running or queued task,
        // `if_running` decides; otherwise it is a reader probing, a supervisor writing its
        // last record, or another start, and the lock is free again in moments.
        let record = TaskRecord::read(paths).ok().flatten();
        let running = record.as_ref().filter(|r| !r.status.is_terminal());
        if let Some(record) = running.filter(|r| supervisor_alive(r)) {
            let pid = record.pid.map(i64::from);
            match if_running {
                IfRunning::Error => return Err(Error::already_running(id, pid)),
                IfRunning::Reuse => {
                    let differences = differences(record, template);
                    if differences.is_empty() {
                        return Ok(Acquired::Reused(Box::new(record.clone())));
                    }
                    return Err(Error::TaskAlreadyRunning {
                        id: id.to_string(),
                        pid,
                        differences,
                        hint: None,
                    });
                }
                IfRunning::Restart => {
                    stop_task(paths, id, None, None, None)?;
                    deadline = Instant::now() + LOCK_PATIENCE;
                    continue;
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::already_running(
                id,
                running.and_then(|r| r.pid).map(i64::from),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn supervisor_alive(record: &TaskRecord) -> bool {
    record
        .supervisor_pid
        .zip(record.supervisor_start_ticks)
        .is_some_and(|(pid, start_ticks)| Identity { pid, start_ticks }.is_alive())
}

/// What a request names differently from the running task (for `reuse`).
fn differences(running: &TaskRecord, wanted: &TaskRecord) -> Vec<String> {
    let mut differ = Vec::new();
    if running.command != wanted.command {
        differ.push("command".to_owned());
    }
    if running.args != wanted.args {
        differ.push("args".to_owned());
    }
    if running.shell != wanted.shell {
        differ.push("shell".to_owned());
    }
    if running.workdir.trim_end_matches('/') != wanted.workdir.trim_end_matches('/') {
        differ.push("workdir".to_owned());
    }
    differ
}

/// `ready.port` must be free before the task starts: otherwise the task could be "ready"
/// because of someone else's listener. A port held by this very task (a reuse or a
/// restart of it) is its own business.
fn check_port_free(state: &StateDir, port: u32, id: &TaskId) -> Result<()> {
    let Ok(port) = u16::try_from(port) else {
        return Ok(()); // Refused by validation already.
    };
    if !crate::ready::port_accepts(port) {
        return Ok(());
    }
    let holder = crate::ready::port_holder(port);
    let pgrp = holder
        .as_ref()
        .and_then(|(pid, _)| crate::procfs::stat(*pid))
        .map(|s| s.pgrp);
    let task_id = pgrp.and_then(|pgrp| {
        crate::commands::list::all_ids(&state.tasks_dir())
            .ok()?
            .into_iter()
            .find(|other| {
                TaskRecord::read(&state.task(other))
                    .ok()
                    .flatten()
                    .is_some_and(|r| !r.status.is_terminal() && r.pgid == Some(pgrp))
            })
    });
    if task_id.as_ref() == Some(id) {
        return Ok(());
    }
    Err(Error::PortInUse {
        port,
        pid: holder.as_ref().map(|(pid, _)| *pid),
        process: holder.map(|(_, name)| name),
        task_id: task_id.map(|t| t.to_string()),
    })
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
