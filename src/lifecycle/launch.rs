//! Launching: start one task, or a batch, each under a new supervisor.
//!
//! `start` validates the payload, takes the task's lock, hands it to a freshly spawned
//! supervisor and answers only once the task has exec'd (`running`, with its pid), failed to
//! (`SpawnFailed`, with the OS reason; the record says `failed`), or been queued. With
//! `if_running`, a task already running under the id is an error, is answered as it is
//! (`reuse`, when it runs the same command), or is stopped first (`restart`).
//!
//! A batch starts its items in parallel. With a concurrency, at most that many of them run
//! at once: `start` creates the batch's slot and turn locks, takes every turn lock itself and
//! hands turn `i` to task `i` (see `supervisor::queue`), so the queue's order is fixed before
//! any supervisor runs.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::lifecycle::batch::{self, Item};
use crate::lifecycle::restart::started_meanwhile;
use crate::lifecycle::stop::{StopArgs, stop_record};
use crate::lifecycle::wait::{Bound, OnProgress, until_ready, until_terminal};
use crate::lifecycle::{Cancel, Tasks};
use crate::paths::{BatchPaths, StateDir, TaskId, TaskPaths, names};
use crate::payload::input::{DEFAULT_GRACE_S, IfRunning, StartInput};
use crate::payload::policy::{RateLimit, RestartPolicy};
use crate::payload::task::Task;
use crate::procfs::Identity;
use crate::state::folder::Folder;
use crate::state::lock::{self, TaskLock};
use crate::state::owners::OwnerRequest;
use crate::state::ready::ReadyRequest;
use crate::state::reconcile::reconcile_in;
use crate::state::record::{BatchSlot, ReadySpecRecord};
use crate::state::{Reason, Status, TaskRecord};
use crate::supervisor::launch::{LaunchError, launch};
use crate::supervisor::queue::open_lock;
use crate::supervisor::{Report, Spec};
use crate::time::{deadline_after, now_ms};

/// How long a `start` waits for a lock held only for an instant (a reader's probe, or a
/// supervisor writing its last record) before it reports the task as running.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// `start`: one task.
#[derive(Debug)]
pub struct StartArgs {
    pub input: StartInput,
    /// Answer once the task has ended, or (with `ready`) once it is ready.
    pub wait: bool,
    /// With `wait`: wait at most this long (`None`: no bound); the task runs on.
    pub timeout: Option<Duration>,
    pub cancel: Cancel,
}

/// `start` with an array: a batch.
#[derive(Debug)]
pub struct StartBatchArgs {
    pub inputs: Vec<StartInput>,
    /// Answer once every task has ended (or is ready).
    pub wait: bool,
    /// With `wait`: the bound of the whole call, not of each item.
    pub timeout: Option<Duration>,
    /// At most this many of the batch's tasks run at once; the rest are queued.
    pub concurrency: Option<usize>,
    pub cancel: Cancel,
}

/// [`Tasks::wait_started`]: which task, how long, and who hears of its progress.
pub struct WaitStartedArgs {
    pub id: TaskId,
    /// At most this long (`None`: no bound); then `TaskWaitTimedOut`, or `TaskNotReady`
    /// when it has `ready` conditions.
    pub timeout: Option<Duration>,
    pub cancel: Cancel,
    pub progress: Option<OnProgress>,
    /// [`Started::condition`] of the start it waits for.
    pub condition: Option<ReadySpecRecord>,
}

impl std::fmt::Debug for WaitStartedArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitStartedArgs")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .field("cancel", &self.cancel)
            .field("progress", &self.progress.is_some())
            .field("condition", &self.condition)
            .finish()
    }
}

/// A started task.
#[derive(Debug)]
pub struct Started {
    pub task: Task,
    /// `true` when `if_running: "reuse"` answered the task that was already running.
    pub reused: bool,
    /// The ready condition a reused run was given in place of its own: the one a later
    /// [`Tasks::wait_started`] waits for.
    pub condition: Option<ReadySpecRecord>,
}

/// A task `start` launched (or found running, with `reuse`), before any wait.
struct Launched {
    id: TaskId,
    record: TaskRecord,
    reused: bool,
    /// A ready condition given to a reused run in place of its own (see
    /// [`ask_for_condition`]): the one this call waits for.
    condition: Option<ReadySpecRecord>,
}

impl Tasks {
    /// Starts one task.
    pub fn start(&self, args: StartArgs) -> Result<Started> {
        let launched = self.start_one(args.input, None)?;
        let wait = args.wait.then_some(args.timeout);
        self.finish(launched, wait, &args.cancel)
    }

    /// Starts a batch: items in parallel, results in input order.
    pub fn start_batch(&self, args: StartBatchArgs) -> Result<Vec<Item<Started>>> {
        let state = &self.state;
        // Ids are fixed first, so that a duplicate inside the batch is known before anything
        // starts: the first occurrence wins.
        let mut seen = HashSet::new();
        let mut items = Vec::with_capacity(args.inputs.len());
        let mut results = Vec::new();
        for (index, mut input) in args.inputs.into_iter().enumerate() {
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
                results.push(Item::new(index, Some(id.to_string()), Err(error)));
                continue;
            }
            input.id = Some(id);
            items.push((index, input));
        }
        let queue = match args.concurrency {
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
            (target, self.start_one(input, queued))
        });
        // The timeout bounds the whole call, not each item.
        let deadline = args.timeout.and_then(deadline_after);
        for (index, (target, launched)) in launched {
            let wait = args
                .wait
                .then(|| deadline.map(|d| d.saturating_duration_since(Instant::now())));
            let started = launched.and_then(|l| self.finish(l, wait, &args.cancel));
            results.push(Item::new(index, target, started));
        }
        results.sort_by_key(|item| item.index);
        Ok(results)
    }

    /// Waits for the end (or, with `ready`, for readiness) if asked, and says how it is.
    fn finish(
        &self,
        launched: Launched,
        wait: Option<Option<Duration>>,
        cancel: &Cancel,
    ) -> Result<Started> {
        let paths = self.paths(&launched.id);
        let condition = launched.condition.as_ref();
        let waited = match wait {
            Some(timeout) => settle(
                &paths,
                &launched.id,
                &launched.record,
                condition,
                &mut self.bound(timeout, cancel, None),
            ),
            None => Ok(launched.record),
        };
        let record = settled(&paths, waited).map_err(|e| self.with_cursor(e))?;
        Ok(Started {
            task: Task::from_record(&record, &paths),
            reused: launched.reused,
            condition: launched.condition,
        })
    }

    /// `start --wait`'s wait on its own, for a task already started or restarted: until it
    /// is ready (when its run has `ready` conditions) or has ended. A front end that reports
    /// progress while it waits starts without waiting, then calls this.
    pub fn wait_started(&self, args: WaitStartedArgs) -> Result<Task> {
        let paths = self.paths(&args.id);
        let record = self.record(&args.id)?;
        let mut bound = self.bound(args.timeout, &args.cancel, args.progress);
        let waited = settle(
            &paths,
            &args.id,
            &record,
            args.condition.as_ref(),
            &mut bound,
        );
        let record = settled(&paths, waited).map_err(|e| self.with_cursor(e))?;
        Ok(Task::from_record(&record, &paths))
    }

    /// Starts one task; `queue` places it in a batch with its turn lock.
    fn start_one(&self, input: StartInput, queue: Option<Queued>) -> Result<Launched> {
        let state = &self.state;
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
        let rate_limit = input.rate_limit;
        let mut template = template(&id, input, slot)?;
        let parent = self.caller_parent(&id);
        template.parent = parent.as_ref().map(ToString::to_string);
        if let Some(parent) = &parent {
            self.note_child(parent, &id);
        }
        let ready = template.ready_spec.clone();
        let owner = template.all_owners().pop();
        let (record, reused) = self.launch_run(Run {
            id: &id,
            template,
            env,
            if_running,
            turn,
            rate_limit,
        })?;
        let condition = match ready {
            Some(ready) if reused && record.ready_spec.as_ref() != Some(&ready) => {
                ask_for_condition(&self.paths(&id), &record, &ready)?;
                Some(ready)
            }
            _ => None,
        };
        let record = match owner {
            Some(owner) if reused => self.add_owner(&id, record, owner)?,
            _ => record,
        };
        Ok(Launched {
            id,
            record,
            reused,
            condition,
        })
    }
}

/// How long a reusing `start` waits for the run's supervisor to take a new owner, so that
/// its answer names it.
const OWNER_PATIENCE: Duration = Duration::from_secs(2);

impl Tasks {
    /// Adds `owner` to the owners of the reused run of `record` (a `start` that reused it
    /// with `stop_with_pid`): the task is then stopped once the last of them has exited.
    /// Only the supervisor writes the record, so the request goes to it (as a new ready
    /// condition does, [`ask_for_condition`]); this waits a moment for the supervisor to
    /// record it, and answers the record as it is then. A task started without
    /// `stop_with_pid` outlives its callers by design, and gains no owner.
    fn add_owner(
        &self,
        id: &TaskId,
        record: TaskRecord,
        owner: crate::state::record::OwnerRecord,
    ) -> Result<TaskRecord> {
        let owners = record.all_owners();
        if owners.is_empty() || owners.iter().any(|o| o.pid == owner.pid) {
            return Ok(record);
        }
        let paths = self.paths(id);
        let Some(folder) = paths.open()? else {
            return Err(Error::TaskNotFound { id: id.to_string() });
        };
        let watch = crate::follow::DirWatch::new_for(&paths.dir, false, &[names::RECORD]);
        OwnerRequest {
            run: record.run,
            pid: owner.pid,
            start_ticks: owner.start_ticks,
        }
        .write(&folder)?;
        let deadline = Instant::now() + OWNER_PATIENCE;
        loop {
            let now = crate::state::observe(&paths, id)?;
            let taken = now.all_owners().iter().any(|o| o.pid == owner.pid);
            if taken || now.run != record.run || now.status.is_terminal() {
                return Ok(now);
            }
            if !watch.wait_at_most(Some(deadline), crate::follow::FALLBACK_POLL)
                && Instant::now() >= deadline
            {
                return Ok(now);
            }
        }
    }
}

/// Until the run of `record` is ready (with `ready` conditions: `condition`, given to a
/// reused run, in place of its own) or has ended.
fn settle(
    paths: &TaskPaths,
    id: &TaskId,
    record: &TaskRecord,
    condition: Option<&ReadySpecRecord>,
    bound: &mut Bound<'_>,
) -> Result<TaskRecord> {
    match condition.or(record.ready_spec.as_ref()) {
        Some(spec) => {
            bound.limit(spec.timeout("ready")?);
            until_ready(paths, id, bound, condition)
        }
        None => until_terminal(paths, id, bound),
    }
}

/// What a start's wait answers. Gone now, the task was removed meanwhile (this call started
/// it). A batch item queued for a slot is started later, by its supervisor: if it could not
/// start then, the wait finds it `failed`; it answers what the same item answers unqueued,
/// where `start` hears of the failure at once: `SpawnFailed`.
fn settled(paths: &TaskPaths, waited: Result<TaskRecord>) -> Result<TaskRecord> {
    match waited.map_err(Error::removed_meanwhile) {
        Ok(record) => match spawn_failure(&record) {
            Some(error) => Err(error),
            None => Ok(record),
        },
        Err(error @ Error::TaskNotReady { .. }) => {
            let record = TaskRecord::read(paths).ok().flatten();
            Err(record.as_ref().and_then(spawn_failure).unwrap_or(error))
        }
        Err(error) => Err(error),
    }
}

/// Gives a reused run the ready condition of this `start` in place of its own: "a different
/// `ready` is not a difference: the new condition is what this call waits for" (DESIGN §4).
///
/// The condition is stored for the run, not only checked by this call: the run's
/// supervisor takes it (`ready.json`), checks it against the run's output from its start
/// and records it with `ready` following it, so `status`, `list` and later waits answer for
/// the condition the caller last gave, instead of `ready: false` for good for one that was
/// wrong. Only the supervisor writes the record, so the request goes to it; a supervisor of
/// an older version does not take it, and a wait for the new condition then runs out.
fn ask_for_condition(
    paths: &TaskPaths,
    record: &TaskRecord,
    ready: &ReadySpecRecord,
) -> Result<()> {
    let Some(folder) = paths.open()? else {
        return Err(Error::TaskNotFound {
            id: record.id.clone(),
        });
    };
    ReadyRequest {
        run: record.run,
        ready: ready.clone(),
    }
    .write(&folder)
}

/// The `SpawnFailed` a record that never started says, built from what its supervisor
/// recorded (`"<cause>: <OS error>"`, the OS error as `io::Error` shows it, "No such file
/// or directory (os error 2)"), so that it reads, and is retried, as the same failure
/// answered at once by an unqueued `start`. `None` for a record that started.
fn spawn_failure(record: &TaskRecord) -> Option<Error> {
    if record.status != Status::Failed || record.reason != Some(Reason::SpawnError) {
        return None;
    }
    let message = record
        .error
        .as_deref()
        .unwrap_or("the task could not start");
    let os_error = message
        .rsplit_once(" (os error ")
        .and_then(|(_, code)| code.strip_suffix(')')?.parse::<i32>().ok())
        .map(io::Error::from_raw_os_error);
    let (cause, source) = match os_error {
        Some(source) => match message.strip_suffix(&format!(": {source}")) {
            Some(cause) => (cause.to_owned(), source),
            None => (message.to_owned(), source),
        },
        None => match message.split_once(": ") {
            Some((cause, rest)) => (cause.to_owned(), io::Error::other(rest.to_owned())),
            None => ("task".to_owned(), io::Error::other(message.to_owned())),
        },
    };
    Some(Error::SpawnFailed {
        id: record.id.clone(),
        cause,
        source,
    })
}

/// A batch item's place in its queue, and its turn lock.
type Queued = (BatchSlot, File);

/// The record of a new run, before the supervisor fills in its process.
fn template(id: &TaskId, input: StartInput, batch: Option<BatchSlot>) -> Result<TaskRecord> {
    let workdir = resolve_workdir(input.workdir.as_deref())?;
    let grace_ms = (input.grace_s.unwrap_or(DEFAULT_GRACE_S) * 1000.0).round() as u64;
    let mut record = TaskRecord::first_run(id.to_string(), workdir, grace_ms, now_ms());
    record.name = input.name;
    record.command = input.command;
    record.args = input.args;
    record.shell = input.shell;
    record.env_keys = input.env.keys().cloned().collect();
    record.tags = input.tags;
    record.timeout_ms = input.timeout_s.map(|s| (s * 1000.0).round() as u64);
    record.owner_pid = input.stop_with_pid;
    record.owner_start_ticks = input
        .stop_with_pid
        .and_then(Identity::of)
        .map(|i| i.start_ticks);
    record.batch = batch;
    record.ready_spec = input.ready.map(Into::into);
    record.restart_policy = input
        .restart_policy
        .as_ref()
        .map(RestartPolicy::resolve)
        .transpose()?;
    Ok(record)
}

/// The slot and turn locks of one batch started with a concurrency.
struct Queue {
    id: String,
    /// The batch's folder, open.
    folder: Folder,
    concurrency: usize,
    size: usize,
}

impl Queue {
    fn create(state: &StateDir, concurrency: usize, size: usize) -> Result<Queue> {
        let id = format!("b_{}", &TaskId::generate().as_str()[3..]);
        let folder = state.batch(&id).create()?;
        for k in 0..concurrency {
            open_lock(&folder, &BatchPaths::slot(k))?;
        }
        Ok(Queue {
            id,
            folder,
            concurrency,
            size,
        })
    }

    fn slot(&self, index: usize) -> BatchSlot {
        BatchSlot {
            id: self.id.clone(),
            index,
            concurrency: self.concurrency,
            extra: Default::default(),
        }
    }

    /// Takes every turn lock, before any supervisor of the batch runs.
    fn turns(&self) -> Result<Vec<Option<File>>> {
        (0..self.size)
            .map(|i| {
                let name = BatchPaths::turn(i);
                let file = open_lock(&self.folder, &name)?;
                file.lock()
                    .map_err(|e| Error::store("lock", self.folder.file_path(&name), e))?;
                Ok(Some(file))
            })
            .collect()
    }
}

/// The next run of a task: what `start` and `restart` hand to [`Tasks::launch_run`].
pub(crate) struct Run<'a> {
    pub id: &'a TaskId,
    /// The new run's record; its `run` and `created_at_ms` are replaced when the task ran
    /// before.
    pub template: TaskRecord,
    /// The environment's values, for the supervisor alone (never stored).
    pub env: BTreeMap<String, String>,
    pub if_running: IfRunning,
    /// A queued batch item's turn lock, handed to its supervisor.
    pub turn: Option<File>,
    /// `start`'s `rate_limit`: a fresh spawn is counted against it, or refused.
    pub rate_limit: Option<RateLimit>,
}

impl Tasks {
    /// Starts the next run of a task. Returns its record and whether a running task was
    /// reused instead.
    pub(crate) fn launch_run(&self, run: Run<'_>) -> Result<(TaskRecord, bool)> {
        let Run {
            id,
            mut template,
            env,
            if_running,
            turn,
            rate_limit,
        } = run;
        // Whatever the template holds of an earlier run, this run starts afresh; a caller's
        // start or restart also starts the count of automatic restarts over.
        template.begin_run();
        template.restarts = 0;
        let paths = self.paths(id);
        let mut folder = paths.create()?;
        let acquired = acquire_for_start(
            &paths,
            &mut folder,
            id,
            &template,
            if_running,
            self.lock_threads,
        )?;
        let lock = match acquired {
            Acquired::Lock(lock) => lock,
            Acquired::Reused(record) => return Ok((*record, true)),
        };
        // The supervisor opens these through the folder, following no link; a link planted
        // there is refused now, naming it, rather than run without a journal or a log.
        for name in [names::JOURNAL, names::LOG] {
            folder.refuse_link(name)?;
        }
        // A previous run whose supervisor died is recorded `lost` (and its leftovers killed)
        // before the new run replaces it.
        if let Some(prior) = reconcile_in(&folder, &lock)? {
            // A run recorded by a newer version is left as it is.
            if !prior.understood() {
                return Err(prior.newer());
            }
            template.run = prior.run.saturating_add(1);
            template.created_at_ms = prior.created_at_ms;
            crate::output_log::keep_previous(&folder, prior.run)?;
        }
        // A fresh spawn, under the lock: counted against the rate limit, or refused.
        if let Some(limit) = rate_limit.as_ref() {
            crate::state::spawns::admit(&folder, &lock, id.as_str(), limit, now_ms())?;
        }
        let run = template.run;
        let spec = Spec {
            home: self.state.root().to_path_buf(),
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
                let record = TaskRecord::read_in(&folder)?.ok_or_else(|| {
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
                // No supervisor is running this run, and we still hold the lock: record the
                // failure so the task is not left without a record or stuck in `running`.
                let what = error.to_string();
                let source = match error {
                    LaunchError::Spawn(e) | LaunchError::NoReport(e) => e,
                };
                let current = TaskRecord::read_in(&folder).ok().flatten();
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
                    failed.write_in(&folder)?;
                }
                Err(spawn_failed("supervisor".into(), source))
            }
        }
    }
}

/// What `acquire_for_start` found.
enum Acquired {
    Lock(TaskLock),
    /// `if_running: "reuse"`: the running task, which runs the same command.
    Reused(Box<TaskRecord>),
}

/// Takes the task's lock for a new run, or answers for the task already running. A folder
/// that `rm` or `prune` removes meanwhile is made again: the start carries on in a fresh
/// one. `if_running: "restart"` stops the run it finds once; a newer run found after that
/// was started by a racing caller, and is answered, not stopped in turn.
fn acquire_for_start(
    paths: &TaskPaths,
    folder: &mut Folder,
    id: &TaskId,
    template: &TaskRecord,
    if_running: IfRunning,
    lock_threads: bool,
) -> Result<Acquired> {
    let mut deadline = Instant::now() + LOCK_PATIENCE;
    let mut pause = Duration::from_micros(200);
    let mut stopped = false;
    loop {
        match TaskLock::try_acquire_in(folder) {
            Ok(Some(lock)) => return Ok(Acquired::Lock(lock)),
            Ok(None) => {}
            Err(error) if lock::is_removed(&error) => {
                if Instant::now() >= deadline {
                    return Err(lock::removed(&paths.lock()));
                }
                // Carry on in a fresh folder, opened anew.
                *folder = paths.create()?;
                continue;
            }
            Err(error) => return Err(error),
        }
        // Someone holds the lock. If it is a live supervisor of a running or queued task,
        // `if_running` decides; otherwise it is a reader probing, a supervisor writing its
        // last record, or another start, and the lock is free again in moments.
        let record = TaskRecord::read_in(folder).ok().flatten();
        let running = record.as_ref().filter(|r| !r.status.is_terminal());
        if let Some(record) = running.filter(|r| r.supervisor_alive()) {
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
                IfRunning::Restart if stopped => {
                    return Err(started_meanwhile(Error::already_running(id, pid)));
                }
                IfRunning::Restart => {
                    stop_record(paths, &StopArgs::new(id.clone()), lock_threads)?;
                    stopped = true;
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

/// What a request names differently from the running task (for `reuse`), by the payload's
/// field names: everything that defines the task (command, args, shell, workdir, the
/// names of `env`, tags as a set, timeout). A different `ready` is not a difference: the new
/// condition is what the call waits for. `stop_with_pid` is not one either: a new owner
/// is added to the run's owners.
fn differences(running: &TaskRecord, wanted: &TaskRecord) -> Vec<String> {
    let tags = |r: &TaskRecord| {
        r.tags
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    let env = |r: &TaskRecord| {
        r.env_keys
            .iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    [
        ("command", running.command != wanted.command),
        ("args", running.args != wanted.args),
        ("shell", running.shell != wanted.shell),
        (
            "workdir",
            running.workdir.trim_end_matches('/') != wanted.workdir.trim_end_matches('/'),
        ),
        ("env", env(running) != env(wanted)),
        ("tags", tags(running) != tags(wanted)),
        ("timeout_s", running.timeout_ms != wanted.timeout_ms),
        (
            "restart_policy",
            running.restart_policy != wanted.restart_policy,
        ),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(field, _)| field.to_owned())
    .collect()
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
        state.task_ids().ok()?.into_iter().find(|other| {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a queued item's supervisor records when its command cannot start reads back as
    /// the very `SpawnFailed` an unqueued start answers: message, hint and retryability.
    #[test]
    fn a_recorded_spawn_failure_reads_back_as_the_error_start_answers() {
        for (cause, source) in [
            ("command `nope`", io::Error::from_raw_os_error(libc::ENOENT)),
            (
                "workdir `/x: y`",
                io::Error::from_raw_os_error(libc::EACCES),
            ),
            ("log", io::Error::from_raw_os_error(libc::EMFILE)),
        ] {
            let mut record = TaskRecord::first_run("t".into(), "/".into(), 0, 0);
            record.finish(Status::Failed, Reason::SpawnError, 1);
            // As the supervisor writes it.
            record.error = Some(format!("{cause}: {source}"));
            let direct = Error::SpawnFailed {
                id: "t".into(),
                cause: cause.into(),
                source: io::Error::from_raw_os_error(source.raw_os_error().expect("os")),
            };
            let read = spawn_failure(&record).expect("a spawn failure");
            assert_eq!(read.to_json(), direct.to_json(), "{cause}");
        }
        let mut odd = TaskRecord::first_run("t".into(), "/".into(), 0, 0);
        odd.finish(Status::Failed, Reason::SpawnError, 1);
        odd.error = None;
        assert_eq!(
            spawn_failure(&odd).map(|e| e.type_name()),
            Some("SpawnFailed")
        );
        let mut exited = TaskRecord::first_run("t".into(), "/".into(), 0, 0);
        exited.finish(Status::Exited, Reason::Exit, 1);
        assert!(spawn_failure(&exited).is_none());
    }
}
