//! Waiting: until a task has ended, until it is ready, until conditions hold, or until all
//! (or any) of several tasks have ended.
//!
//! Waiting for the end polls the supervisor's pidfd ([`exits`](crate::lifecycle::exits)), so
//! it wakes the instant the supervisor exits, with no polling loop and no thread; several
//! tasks are one `poll` over their pidfds. Waiting for conditions (`until: {log?, port?,
//! http?}`) reads the current run's output as it is written (notify) and tries ports and
//! URLs on a short timer; if the task ends first, the answer is `TaskNotReady` with the
//! last lines of its log. A log condition may count only lines after a cursor
//! (`until.after`) and answers the line that met it, with its cursor. Every wait is bounded
//! by a timeout (`TaskWaitTimedOut`, retryable, with the cursor the log reached; the task
//! runs on) and can be cancelled from outside, which ends it the same way. A progress
//! callback, when given, hears of each change to the task while it waits.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::time::deadline_after;

use crate::error::{Error, Result};
use crate::follow::DirWatch;
use crate::lifecycle::exits::{Exits, Wake};
use crate::lifecycle::{Cancel, Tasks};
use crate::output_log::{self, Cursor, LineReader, MAX_INLINE_BYTES, MAX_LINE_BYTES};
use crate::paths::{TaskId, TaskPaths, names};
use crate::payload::answer::LogMatch;
use crate::payload::input::{Until, WaitInput, WaitMode};
use crate::payload::task::{Status, Task};
use crate::procfs::Identity;
use crate::ready::{self, Probe};
use crate::state::record::ReadySpecRecord;
use crate::state::{TaskRecord, observe};

/// How many lines of output a `TaskNotReady` error carries.
pub const LOG_TAIL_LINES: u64 = 20;

/// How often a wait for a task's end looks at the task for its progress callback.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Hears of the task while a wait blocks: called with the task as it is at the start, and
/// again whenever its record changed (status, progress, readiness).
pub type OnProgress = Box<dyn FnMut(&Task) + Send>;

/// `wait`: one task (`id`, and what to wait for) or several (`ids`, all or any).
pub struct WaitArgs {
    pub input: WaitInput,
    /// At most this long (`None`: no bound); then `TaskWaitTimedOut`.
    pub timeout: Option<Duration>,
    pub cancel: Cancel,
    pub progress: Option<OnProgress>,
}

/// What a wait ends with.
#[derive(Debug)]
pub enum Waited {
    /// `wait {id}`: the task, ended (or ready, with conditions), and with a log condition
    /// the line that met it.
    One {
        task: Box<Task>,
        matched: Option<LogMatch>,
    },
    /// `wait {ids, mode}`: every task of `ids`, in that order, as it is now, and the ids of
    /// those that have ended: all of them with `all`, at least one with `any`.
    Several {
        mode: WaitMode,
        tasks: Vec<Task>,
        ended: Vec<String>,
    },
}

impl std::fmt::Debug for WaitArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitArgs")
            .field("input", &self.input)
            .field("timeout", &self.timeout)
            .field("cancel", &self.cancel)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Tasks {
    /// Blocks until the task(s) of `args.input` have ended, or its conditions hold.
    pub fn wait(&self, args: WaitArgs) -> Result<Waited> {
        let WaitArgs {
            input,
            timeout,
            cancel,
            progress,
        } = args;
        let mut bound = self.bound(timeout, &cancel, progress);
        if let Some(selector) = input.selector() {
            if input.id.is_some() || input.ids.is_some() {
                let at = if input.id.is_some() { "id" } else { "ids" };
                return Err(Error::input_at(
                    at,
                    format!(
                        "{at}: give id, ids or a selector (tag, tags, status), only one of them"
                    ),
                    "Use {\"ids\":[\"a\",\"b\"]} for those tasks or {\"tag\":\"session-7\"} for every task tagged so.",
                ));
            }
            // The tasks chosen as they are now; none chosen is nothing to wait for.
            let ids = self.select(&selector, false)?;
            let mode = input.mode.unwrap_or_default();
            if ids.is_empty() {
                return Ok(Waited::Several {
                    mode,
                    tasks: Vec::new(),
                    ended: Vec::new(),
                });
            }
            return self
                .wait_several(ids, mode, input.until, &mut bound)
                .map_err(|e| self.with_cursor(e));
        }
        let waited = match (input.id, input.ids) {
            (Some(id), None) if input.mode.is_none() => self
                .wait_one(&id, input.until, &mut bound)
                .map(|(task, matched)| Waited::One {
                    task: Box::new(task),
                    matched,
                }),
            (Some(_), None) => Err(Error::input_at(
                "mode",
                "mode: only with ids",
                "Use {\"ids\":[\"a\",\"b\"],\"mode\":\"any\"}, or leave mode out.",
            )),
            (None, Some(ids)) => {
                self.wait_several(ids, input.mode.unwrap_or_default(), input.until, &mut bound)
            }
            (Some(_), Some(_)) => Err(Error::input_at(
                "ids",
                "ids: give id or ids, not both",
                "Use {\"id\":\"web\"} for one task or {\"ids\":[\"a\",\"b\"]} for several.",
            )),
            (None, None) => Err(Error::input_at(
                "id",
                "id: missing; give id or ids",
                "Use {\"id\":\"web\"} for one task or {\"ids\":[\"a\",\"b\"]} for several.",
            )),
        };
        waited.map_err(|e| self.with_cursor(e))
    }

    /// `wait {id}`: the task, and the line that met a log condition.
    fn wait_one(
        &self,
        id: &TaskId,
        until: Until,
        bound: &mut Bound<'_>,
    ) -> Result<(Task, Option<LogMatch>)> {
        let paths = self.paths(id);
        // The payload is checked before the task is looked for.
        let probe = match until {
            Until::Exit => None,
            Until::Word(word) if word == "exit" => None,
            Until::Word(word) => {
                return Err(Error::input_at(
                    "until",
                    format!("until: {word:?} is not \"exit\" or conditions"),
                    "Use \"exit\", or conditions like {\"log\":\"ready\"} or {\"port\":3000}.",
                ));
            }
            Until::Ready(conditions) => {
                let (spec, after) = conditions.split();
                let probe = spec.probe("until")?;
                bound.limit(spec.timeout("until")?);
                let after = after
                    .as_deref()
                    .map(|text| {
                        Cursor::parse(text).map_err(|_| {
                            Error::input_at(
                                "until.after",
                                format!("until.after: {text:?} is not a cursor"),
                                "Pass a next_cursor, match.cursor or a line's cursor unchanged, or leave after out.",
                            )
                        })
                    })
                    .transpose()?;
                Some((probe, after))
            }
        };
        // Found now, so a task gone later was removed while this call waited.
        self.record(id)?;
        let (record, matched) = match probe {
            None => until_terminal(&paths, id, bound).map(|record| (record, None)),
            Some((probe, after)) => until_conditions(&paths, id, probe, after, bound),
        }
        .map_err(Error::removed_meanwhile)?;
        let mut task = Task::from_record(&record, &paths);
        // A task waited for until conditions held runs on: its ports as they are now.
        if !record.status.is_terminal() {
            task.ports = Some(crate::lifecycle::observe::listening_ports(&record));
        }
        Ok((task, matched))
    }

    /// Until all (or any) of `ids` have ended.
    fn wait_several(
        &self,
        ids: Vec<TaskId>,
        mode: WaitMode,
        until: Until,
        bound: &mut Bound<'_>,
    ) -> Result<Waited> {
        match until {
            Until::Exit => {}
            Until::Word(word) if word == "exit" => {}
            _ => {
                return Err(Error::input_at(
                    "until",
                    "until: with ids, only \"exit\"",
                    "Wait for conditions one task at a time: {\"id\":\"web\",\"until\":{\"port\":3000}}.",
                ));
            }
        }
        if ids.is_empty() {
            return Err(Error::input_at(
                "ids",
                "ids: give at least one id",
                "Use {\"ids\":[\"a\",\"b\"]}.",
            ));
        }
        // Every task must exist before any waiting starts.
        for id in &ids {
            self.record(id)?;
        }
        match mode {
            // One deadline for the whole wait: a timeout met on one task is the whole
            // wait's timeout.
            WaitMode::All => {
                for id in &ids {
                    until_terminal(&self.paths(id), id, bound).map_err(Error::removed_meanwhile)?;
                }
            }
            WaitMode::Any => self
                .first_to_end(&ids, bound)
                .map_err(Error::removed_meanwhile)?,
        }
        let mut tasks = Vec::with_capacity(ids.len());
        for id in &ids {
            let paths = self.paths(id);
            let record = observe(&paths, id).map_err(Error::removed_meanwhile)?;
            tasks.push(Task::from_record(&record, &paths));
        }
        let ended = tasks
            .iter()
            .filter(|t| t.status.is_terminal())
            .map(|t| t.id.clone())
            .collect();
        Ok(Waited::Several { mode, tasks, ended })
    }

    /// Waits on every task at once, one `poll` over their supervisors' pidfds; returns when
    /// the first has ended.
    fn first_to_end(&self, ids: &[TaskId], bound: &Bound<'_>) -> Result<()> {
        let mut exits = Exits::new(bound.cancel);
        let mut statuses = vec![None; ids.len()];
        // A supervisor found gone an instant ago, per task: its end is looked at again at
        // once, once.
        let mut gone: Vec<Option<Identity>> = vec![None; ids.len()];
        // The tasks to look at now: all of them first, then those whose supervisor may have
        // exited, and those no pidfd watches (looked at every `PROBE_EVERY`).
        let mut look: Vec<usize> = (0..ids.len()).collect();
        loop {
            let (mut unwatched, mut again) = (Vec::new(), Vec::new());
            for &i in &look {
                let paths = self.paths(&ids[i]);
                let record = observe(&paths, &ids[i])?;
                if record.status.is_terminal() {
                    return Ok(());
                }
                statuses[i] = Some(record.status);
                let supervisor = record.supervisor();
                match supervisor {
                    Some(identity) if exits.watch(i, &paths, identity, self.lock_threads)? => {}
                    Some(_) if gone[i] != supervisor => {
                        gone[i] = supervisor;
                        again.push(i);
                    }
                    _ => unwatched.push(i),
                }
            }
            if !again.is_empty() {
                look = again;
                look.extend(unwatched);
                continue;
            }
            match bound.wait(&mut exits, !unwatched.is_empty())? {
                Wake::Look(keys) => {
                    look = keys;
                    look.extend(unwatched);
                }
                Wake::TimedOut | Wake::Cancelled => {
                    let status = statuses[0].map_or(Status::Running, Status::from);
                    return Err(Error::TaskWaitTimedOut {
                        id: ids[0].to_string(),
                        status: status.as_str().to_owned(),
                        timeout_s: bound.timeout_s(),
                        cursor: None,
                    });
                }
            }
        }
    }

    /// A wait's error as it is answered: a `TaskWaitTimedOut` gets the log position the
    /// task reached ([`Tasks::log_position`]), from which `logs {after}` reads what it
    /// printed meanwhile. Other errors are left as they are.
    pub fn with_cursor(&self, error: Error) -> Error {
        match error {
            Error::TaskWaitTimedOut {
                id,
                status,
                timeout_s,
                cursor: None,
            } => {
                let cursor = TaskId::parse(&id)
                    .ok()
                    .and_then(|task| self.log_position(&task));
                Error::TaskWaitTimedOut {
                    id,
                    status,
                    timeout_s,
                    cursor,
                }
            }
            other => other,
        }
    }

    /// A bound for a wait of these tasks: `timeout` from now, `cancel`, `progress`.
    pub(crate) fn bound<'a>(
        &self,
        timeout: Option<Duration>,
        cancel: &'a Cancel,
        progress: Option<OnProgress>,
    ) -> Bound<'a> {
        let mut bound = Bound::new(timeout, cancel, progress);
        bound.lock_threads = self.lock_threads;
        bound
    }
}

/// How long a wait may block, whether it was cancelled, and who hears of progress.
pub(crate) struct Bound<'a> {
    /// As asked, for the error that says it ran out.
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// Whether a condition's own `timeout_s` narrowed the caller's bound (see
    /// [`Bound::limit`]): its running out is then the condition's, not the call's.
    narrowed: bool,
    pub(crate) cancel: &'a Cancel,
    progress: Option<OnProgress>,
    /// The record last reported to `progress`.
    reported: Option<TaskRecord>,
    /// Waits for a supervisor's exit may also block a helper on its lock (see
    /// [`Tasks::exiting_after_call`]).
    pub(crate) lock_threads: bool,
}

impl<'a> Bound<'a> {
    pub(crate) fn new(
        timeout: Option<Duration>,
        cancel: &'a Cancel,
        progress: Option<OnProgress>,
    ) -> Bound<'a> {
        Bound {
            timeout,
            deadline: timeout.and_then(deadline_after),
            narrowed: false,
            cancel,
            progress,
            reported: None,
            lock_threads: false,
        }
    }

    /// Narrows the bound to `limit` from now (a condition's own `timeout_s`), if shorter.
    pub(crate) fn limit(&mut self, limit: Option<Duration>) {
        let Some(limit) = limit else { return };
        let Some(until) = deadline_after(limit) else {
            return;
        };
        if self.deadline.is_none_or(|d| until < d) {
            self.timeout = Some(self.timeout.map_or(limit, |t| t.min(limit)));
            self.deadline = Some(until);
            self.narrowed = true;
        }
    }

    /// Time left; `None` without a bound.
    pub(crate) fn left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the time ran out or the wait was cancelled.
    pub(crate) fn over(&self) -> bool {
        self.cancel.is_cancelled() || self.left() == Some(Duration::ZERO)
    }

    /// Whether the caller's own bound ran out (not a condition's `timeout_s`, not a
    /// cancel).
    fn call_ran_out(&self) -> bool {
        !self.narrowed && !self.cancel.is_cancelled() && self.left() == Some(Duration::ZERO)
    }

    fn timeout_s(&self) -> f64 {
        self.timeout.unwrap_or_default().as_secs_f64()
    }

    /// `TaskWaitTimedOut` for `record`, saying the bound asked for.
    pub(crate) fn timed_out(&self, id: &TaskId, record: &TaskRecord) -> Error {
        Error::TaskWaitTimedOut {
            id: id.to_string(),
            status: Status::from(record.status).as_str().to_owned(),
            timeout_s: self.timeout_s(),
            cursor: None,
        }
    }

    /// Tells the progress callback about `record` if it changed since last told.
    pub(crate) fn report(&mut self, paths: &TaskPaths, record: &TaskRecord) {
        let Some(progress) = self.progress.as_mut() else {
            return;
        };
        if self.reported.as_ref() != Some(record) {
            progress(&Task::from_record(record, paths));
            self.reported = Some(record.clone());
        }
    }

    /// Blocks until a supervisor `exits` watches has exited, the time runs out, the wait is
    /// cancelled, or (with a progress callback) [`PROGRESS_EVERY`] passed; with `probe`,
    /// also once [`PROBE_EVERY`](crate::lifecycle::exits::PROBE_EVERY) passed, to look at a
    /// task no pidfd watches.
    pub(crate) fn wait(&self, exits: &mut Exits, probe: bool) -> Result<Wake> {
        let mut slice = self.progress.as_ref().map(|_| PROGRESS_EVERY);
        if probe {
            let every = crate::lifecycle::exits::PROBE_EVERY;
            slice = Some(slice.map_or(every, |s| s.min(every)));
        }
        exits.wait(self.deadline, slice)
    }

    /// Waits on a watch until something changed or `pause` passed; `false` once the time
    /// ran out or the wait was cancelled.
    fn wait_watch(&self, watch: &DirWatch, pause: Duration) -> bool {
        !self.cancel.is_cancelled()
            && watch.wait_at_most(self.deadline, pause)
            && !self.cancel.is_cancelled()
    }
}

/// Blocks until the task's record is terminal, or the bound runs out.
pub(crate) fn until_terminal(
    paths: &TaskPaths,
    id: &TaskId,
    bound: &mut Bound<'_>,
) -> Result<TaskRecord> {
    let mut exits = Exits::new(bound.cancel);
    // The supervisor watched now, and one found gone an instant ago (its end is then looked
    // at again at once, once).
    let mut watched: Option<Identity> = None;
    let mut gone: Option<Identity> = None;
    loop {
        let record = observe(paths, id)?;
        bound.report(paths, &record);
        if record.status.is_terminal() {
            return Ok(record);
        }
        if bound.over() {
            return Err(bound.timed_out(id, &record));
        }
        let supervisor = record.supervisor();
        if supervisor != watched {
            exits.forget(0);
            watched = None;
            if let Some(identity) = supervisor {
                if exits.watch(0, paths, identity, bound.lock_threads)? {
                    watched = Some(identity);
                } else if gone != Some(identity) {
                    gone = Some(identity);
                    continue;
                }
            }
        }
        match bound.wait(&mut exits, watched.is_none())? {
            Wake::Look(keys) if keys.contains(&0) => watched = None,
            Wake::Look(_) => {}
            Wake::TimedOut | Wake::Cancelled => return Err(bound.timed_out(id, &record)),
        }
    }
}

/// Blocks until the supervisor has recorded the task ready (with `condition`, ready for
/// that condition: the record's `ready` counts once its `ready_spec` is this one).
/// `TaskNotReady` if it ends first or the condition's own `timeout_s` runs out;
/// `TaskWaitTimedOut` (retryable) when the caller's bound runs out first.
pub(crate) fn until_ready(
    paths: &TaskPaths,
    id: &TaskId,
    bound: &mut Bound<'_>,
    condition: Option<&ReadySpecRecord>,
) -> Result<TaskRecord> {
    // Watch first, then look: a change between the two cannot be missed. The fallback poll
    // notices a supervisor that died without writing anything.
    let watch = DirWatch::new_for(&paths.dir, false, &["task.json"]);
    loop {
        let record = observe(paths, id)?;
        bound.report(paths, &record);
        let for_condition = condition.is_none_or(|c| record.ready_spec.as_ref() == Some(c));
        if for_condition && record.ready == Some(true) {
            return Ok(record);
        }
        if record.status.is_terminal() {
            return Err(not_ready(paths, &record, "it ended first"));
        }
        if !bound.wait_watch(&watch, crate::follow::FALLBACK_POLL) {
            if bound.call_ran_out() {
                return Err(bound.timed_out(id, &record));
            }
            return Err(not_ready(paths, &record, "the time ran out"));
        }
    }
}

/// Blocks until `probe`'s conditions hold for the current run (with `after`, a log
/// condition counts only lines after that cursor); answers the record and the line that met
/// the log condition.
fn until_conditions(
    paths: &TaskPaths,
    id: &TaskId,
    mut probe: Probe,
    after: Option<Cursor>,
    bound: &mut Bound<'_>,
) -> Result<(TaskRecord, Option<LogMatch>)> {
    let watch = DirWatch::new(&paths.dir, false);
    let first = observe(paths, id)?;
    let mut log = paths.read_file(names::LOG).ok().flatten();
    // Reads each byte once: a line still being written (a `\r` bar) is not read again.
    let mut lines: Option<LineReader> = None;
    let mut matched = None;
    loop {
        let record = observe(paths, id)?;
        bound.report(paths, &record);
        // A queued task has no log yet: open it once it exists.
        if log.is_none() && record.run == first.run {
            log = paths.read_file(names::LOG).ok().flatten();
        }
        // Only the run we started with counts: a restart's output is not its output.
        if record.run == first.run
            && let Some(file) = log.as_mut()
        {
            let size = file.metadata().map_or(0, |m| m.len());
            // Where to start is known once the log is there: a cursor of this run starts
            // at its line (one past the log's end or cut away: at the end, or the start).
            let lines = lines.get_or_insert_with(|| {
                let from = after.map_or(0, |cursor| output_log::resolve(cursor, first.run, size).0);
                LineReader::new(from)
            });
            lines.pace();
            let run = first.run;
            let _ = lines.read(file, size, record.status.is_terminal(), |line, end| {
                if probe.line(&line.text) && matched.is_none() {
                    matched = Some(LogMatch {
                        line: line.cut_to(MAX_LINE_BYTES).into_text(),
                        cursor: Cursor { run, offset: end },
                    });
                }
                ControlFlow::Continue(())
            });
        }
        if probe.wants_network() {
            probe.try_network();
        }
        if probe.ready() {
            return Ok((record, matched));
        }
        if record.status.is_terminal() || record.run != first.run {
            return Err(not_ready(paths, &record, "it ended first"));
        }
        let pause = if probe.wants_network() {
            ready::RETRY
        } else {
            crate::follow::FALLBACK_POLL
        };
        if !bound.wait_watch(&watch, pause) {
            return Err(bound.timed_out(id, &record));
        }
    }
}

/// `TaskNotReady`, with the last lines of the log.
fn not_ready(paths: &TaskPaths, record: &TaskRecord, why: &'static str) -> Error {
    Error::TaskNotReady {
        id: record.id.clone(),
        why,
        status: Status::from(record.status).as_str().to_owned(),
        exit_code: record.exit_code,
        log_tail: log_tail(paths, LOG_TAIL_LINES),
    }
}

/// The last `lines` lines of the current run's output, as an answer shows them: each cut
/// to the line budget (saying how much was left out), and the oldest giving way past the
/// answer budget. The tail is read forward by a [`LineReader`], so a 50 MB line costs one
/// scan of it, never 50 MB of memory.
pub fn log_tail(paths: &TaskPaths, lines: u64) -> Vec<String> {
    let Ok(Some(mut file)) = paths.read_file(names::LOG) else {
        return Vec::new();
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let start = output_log::tail_start(&mut file, size, lines).unwrap_or(0);
    let mut tail = VecDeque::new();
    let mut bytes = 0;
    let _ = LineReader::new(start).read(&mut file, size, true, |line, _| {
        let text = line.cut_to(MAX_LINE_BYTES).into_text();
        bytes += text.len();
        tail.push_back(text);
        while bytes > MAX_INLINE_BYTES && tail.len() > 1 {
            bytes -= tail.pop_front().map_or(0, |t| t.len());
        }
        ControlFlow::Continue(())
    });
    tail.into()
}
