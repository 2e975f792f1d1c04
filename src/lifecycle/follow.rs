//! Following: a task's lifecycle frames and log lines in one order ([`crate::timeline`]),
//! as a page (`events`) or as they happen (`events --stream`, `logs --stream`); and every
//! task's status, as a snapshot or as it changes.
//!
//! A follow of one task ends by itself after the run's `task.ended` frame (and a final read
//! of its log); a follow of every task ends only by its bound or from outside. Both end
//! when their [`Cancel`] is cancelled, or when the sink stops taking frames.
//!
//! There are three ways to take the frames: hand a sink to [`Tasks::follow`] (the CLI: each
//! frame is printed the moment it is read), iterate [`Frames`] (a server: the follow runs
//! on a thread of its own, a bounded number of frames ahead of the reader, and ends when the
//! iterator is dropped), or take them in batches, one per read, from
//! [`Tasks::follow_batches`] (a server that sends each read as one message, and must know
//! at once whether anything will come). [`Tasks::follow_tasks`] follows every task's whole
//! record (a snapshot, then changes and removals), for a view of all tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::error::{Error, Result};
use crate::follow::DirWatch;
use crate::lifecycle::logs::grep;
use crate::lifecycle::observe::listening_ports_of;
use crate::lifecycle::{Cancel, Tasks};
use crate::output_log::{Cursor, MAX_INLINE_BYTES};
use crate::paths::{TaskId, names};
use crate::payload::answer::{AllEventsAnswer, EventsAnswer};
use crate::payload::frame::{Event, Frame, StreamEndData, StreamEndReason};
use crate::payload::input::{AfterInput, EventsInput, LogsInput};
use crate::payload::task::Task;
use crate::state::{Status, TaskRecord, observe};
use crate::timeline::{After, Flow, Selection, Timeline, first_sequence};

/// Takes each frame as it comes; `Break` ends the follow (the reader went away).
pub type Sink<'a> = dyn FnMut(Frame) -> ControlFlow<()> + 'a;

/// How many frames a [`Frames`] iterator's thread may run ahead of its reader.
const FRAMES_AHEAD: usize = 256;

/// A follow of one task: which frames, for how long.
#[derive(Debug, Clone)]
pub struct FollowArgs {
    pub id: TaskId,
    pub selection: Selection,
    /// Only log lines matching this (`logs --stream {grep}`).
    pub grep: Option<Regex>,
    /// Stop following after this long (`None`: until the run has ended).
    pub timeout: Option<Duration>,
    pub cancel: Cancel,
}

impl FollowArgs {
    /// `logs --stream`: log line frames only, from the last `lines` lines or after a cursor.
    pub fn for_logs(input: &LogsInput, timeout: Option<Duration>, cancel: Cancel) -> Result<Self> {
        let grep = grep(input.grep.as_deref())?;
        let after = input.after.as_deref().map(Cursor::parse).transpose()?;
        Ok(FollowArgs {
            id: input.id.clone(),
            selection: Selection {
                after: after.map(After::Cursor),
                lines: if after.is_some() { None } else { input.lines },
                only_lines: true,
                budget: None,
                ansi: input.ansi,
            },
            grep,
            timeout,
            cancel,
        })
    }

    /// `events {id, after?, lines?}`: every frame, from the last `lines` log lines or after
    /// a frame's sequence number or a line's cursor.
    pub fn for_events(
        id: TaskId,
        input: &EventsInput,
        timeout: Option<Duration>,
        cancel: Cancel,
    ) -> Result<Self> {
        let after = input.after.clone().map(resume_point).transpose()?;
        Ok(FollowArgs {
            id,
            selection: Selection {
                after,
                lines: input.lines,
                only_lines: false,
                budget: None,
                ansi: input.ansi,
            },
            grep: None,
            timeout,
            cancel,
        })
    }
}

/// What an `events` payload asks for ([`Tasks::events_of`]).
#[derive(Debug, Clone)]
pub enum EventsOf {
    /// One task's frames (`id`).
    One(FollowArgs),
    /// Several tasks' frames (`ids`, or the tasks a selector chooses now).
    Several(FollowManyArgs),
    /// Every task's status (nothing chosen).
    Every,
}

/// How a follow of one task ended ([`Tasks::follow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowEnd {
    /// `Some`: the run ended, or the bound ran out; `None`: it was stopped from outside
    /// (cancelled, or the sink broke), and no `stream.end` is due.
    pub reason: Option<StreamEndReason>,
    /// Where it stood in the log.
    pub cursor: Cursor,
    /// The next frame's sequence.
    pub next_sequence: u64,
}

impl FollowEnd {
    /// The `stream.end` frame of this follow of `task_id`; `None` when it was stopped from
    /// outside.
    pub fn frame(&self, task_id: &str) -> Option<Frame> {
        let reason = self.reason?;
        Some(Frame::stream_end(
            task_id,
            StreamEndData {
                reason,
                cursor: self.cursor,
                next_sequence: self.next_sequence,
            },
        ))
    }
}

/// A follow of every task's status.
#[derive(Debug, Clone, Default)]
pub struct FollowAllArgs {
    /// Stop following after this long (`None`: until cancelled).
    pub timeout: Option<Duration>,
    pub cancel: Cancel,
}

/// A follow of several tasks at once (`events --stream {ids}` or a selector): each task's
/// own frames, numbered as its own follow numbers them, until each has ended.
#[derive(Debug, Clone)]
pub struct FollowManyArgs {
    /// The tasks, as chosen when the follow begins.
    pub ids: Vec<TaskId>,
    /// `Some(n)`: log lines too, the last `n` of each task's run first; `None`: lifecycle
    /// frames only (status, progress, ready, ended).
    pub lines: Option<u64>,
    /// Log lines with their ANSI escape sequences.
    pub ansi: bool,
    /// Stop following after this long (`None`: until every task has ended).
    pub timeout: Option<Duration>,
    pub cancel: Cancel,
}

/// Where `after` resumes: a frame's sequence number as given, or a log cursor parsed.
pub fn resume_point(after: AfterInput) -> Result<After> {
    Ok(match after {
        AfterInput::Sequence(n) => After::Sequence(n),
        AfterInput::Cursor(text) => After::Cursor(Cursor::parse(&text)?),
    })
}

impl Tasks {
    /// What an `events` payload asks for: one task, several (each id checked now, a
    /// selector's tasks chosen now, oldest first), or every task's status. Several tasks are
    /// only followed (`--stream`): their status now is `list`'s answer.
    pub fn events_of(
        &self,
        input: &EventsInput,
        timeout: Option<Duration>,
        cancel: Cancel,
    ) -> Result<EventsOf> {
        input.validate()?;
        let ids = match (&input.id, &input.ids, input.selector()) {
            (Some(id), _, _) => {
                return Ok(EventsOf::One(FollowArgs::for_events(
                    id.clone(),
                    input,
                    timeout,
                    cancel,
                )?));
            }
            (None, Some(ids), _) => {
                let mut chosen: Vec<TaskId> = Vec::with_capacity(ids.len());
                for id in ids {
                    if !chosen.contains(id) {
                        self.record(id)?;
                        chosen.push(id.clone());
                    }
                }
                chosen
            }
            (None, None, Some(selector)) => self.select(&selector, false)?,
            (None, None, None) => return Ok(EventsOf::Every),
        };
        Ok(EventsOf::Several(FollowManyArgs {
            ids,
            lines: input.lines,
            ansi: input.ansi,
            timeout,
            cancel,
        }))
    }

    /// One task's frames so far (`events` without `--stream`): a page, with where to resume.
    /// A page holds at most [`MAX_INLINE_BYTES`] of frames, each line cut to the line budget:
    /// without `after`, the newest frames that fit; after a sequence or cursor, the frames
    /// that fit from there, and `next_sequence`/`next_cursor` continue with the rest.
    pub fn events(&self, args: FollowArgs) -> Result<EventsAnswer> {
        let paths = self.paths(&args.id);
        let mut frames = Vec::new();
        let record = observe(&paths, &args.id)?;
        let selection = Selection {
            budget: Some(MAX_INLINE_BYTES),
            ..args.selection
        };
        let (timeline, flow) = Timeline::open(&paths, &record, selection, &mut |frame| {
            frames.push(frame);
            ControlFlow::Continue(())
        })?;
        Ok(EventsAnswer {
            task_id: args.id.to_string(),
            frames,
            ended: flow == Flow::Ended,
            has_more: timeline.left_out,
            truncated_lines: timeline.truncated_lines,
            next_sequence: timeline.next_sequence(),
            next_cursor: timeline.next_cursor(),
            cursor_reset: timeline.cursor_reset,
        })
    }

    /// Follows one task: hands `sink` each frame as it happens, until the run has ended
    /// (after its `task.ended` frame), the bound runs out, the follow is cancelled or the
    /// sink breaks. Answers why it ended and where it stood (for a `stream.end` frame).
    pub fn follow(&self, args: FollowArgs, sink: &mut Sink<'_>) -> Result<FollowEnd> {
        let paths = self.paths(&args.id);
        let deadline = args.timeout.map(|t| Instant::now() + t);
        // Watch before the first read, so nothing that happens in between is missed.
        let watch = DirWatch::new(&paths.dir, false);
        let record = observe(&paths, &args.id)?;
        let grep = args.grep;
        let mut sink = |frame: Frame| {
            let shown = grep.as_ref().is_none_or(|re| match &frame.event {
                Event::LogLine(data) => re.is_match(&crate::ansi::strip(&data.line)),
                _ => false,
            });
            if shown {
                sink(frame)
            } else {
                ControlFlow::Continue(())
            }
        };
        let (mut timeline, mut flow) = Timeline::open(&paths, &record, args.selection, &mut sink)?;
        let mut timed_out = false;
        while flow == Flow::Open && !args.cancel.is_cancelled() {
            if !watch.wait(deadline) {
                timed_out = !args.cancel.is_cancelled();
                break;
            }
            if args.cancel.is_cancelled() {
                break;
            }
            flow = timeline.poll(&mut sink)?;
        }
        let reason = match flow {
            Flow::Ended => Some(StreamEndReason::Ended),
            Flow::Open if timed_out => Some(StreamEndReason::Timeout),
            _ => None,
        };
        Ok(FollowEnd {
            reason,
            cursor: timeline.next_cursor(),
            next_sequence: timeline.next_sequence(),
        })
    }

    /// Follows several tasks in one stream: each task's frames as [`Tasks::follow`] gives
    /// them (its own sequences, and each log line's cursor), interleaved as they happen,
    /// until every task has ended (a task that goes on in a newer run, restarted by its
    /// restart policy or by a caller, is followed into it from its first frame), the bound runs out, the follow is cancelled or the
    /// sink breaks. A task removed meanwhile is said at once (a `stream.end` frame with
    /// reason `removed`) and the others go on. Answers how each other task's follow ended,
    /// in the order of `ids`, with where to resume it.
    /// The tasks' folders are watched through one inotify descriptor, set up before the
    /// first read, so no task costs an instance of its own and nothing else in the state
    /// directory is watched.
    pub fn follow_many(
        &self,
        args: FollowManyArgs,
        sink: &mut Sink<'_>,
    ) -> Result<Vec<(TaskId, FollowEnd)>> {
        let deadline = args.timeout.map(|t| Instant::now() + t);
        crate::follow::allow_open_files_for(args.ids.len());
        let dirs: Vec<PathBuf> = args.ids.iter().map(|id| self.paths(id).dir).collect();
        let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        let watch = DirWatch::new_for_each(&dirs, &[names::RECORD, names::LOG, names::JOURNAL]);
        let with_lines = args.lines.is_some();
        let mut sink = |frame: Frame| {
            if !with_lines && matches!(frame.event, Event::LogLine(_)) {
                return ControlFlow::Continue(());
            }
            sink(frame)
        };
        let selection = Selection {
            after: None,
            lines: Some(args.lines.unwrap_or(0)),
            only_lines: false,
            budget: None,
            ansi: args.ansi,
        };
        let mut followed = Vec::with_capacity(args.ids.len());
        for id in &args.ids {
            let paths = self.paths(id);
            let opened = observe(&paths, id)
                .and_then(|record| Timeline::open(&paths, &record, selection, &mut sink));
            let (timeline, flow) = match opened {
                Ok(opened) => opened,
                // Removed between the choice and the first read: nothing to follow.
                Err(Error::TaskNotFound { .. } | Error::TaskRemoved { .. }) => continue,
                Err(e) => return Err(e),
            };
            if flow == Flow::Stopped {
                return Ok(Vec::new());
            }
            let mut entry = Followed {
                id: id.clone(),
                timeline,
                flow,
                removed: false,
            };
            if self.follow_next_run(&mut entry, selection, &mut sink)? == Flow::Stopped {
                return Ok(Vec::new());
            }
            followed.push(entry);
        }
        let open = |followed: &[Followed]| followed.iter().any(|f| f.flow == Flow::Open);
        let mut timed_out = false;
        while open(&followed) && !args.cancel.is_cancelled() {
            if !watch.wait(deadline) {
                timed_out = !args.cancel.is_cancelled();
                break;
            }
            for entry in followed.iter_mut().filter(|f| f.flow == Flow::Open) {
                entry.flow = match entry.timeline.poll(&mut sink) {
                    Ok(Flow::Stopped) => return Ok(Vec::new()),
                    Ok(Flow::Ended) => {
                        entry.flow = Flow::Ended;
                        match self.follow_next_run(entry, selection, &mut sink) {
                            Ok(Flow::Stopped) => return Ok(Vec::new()),
                            Ok(flow) => flow,
                            Err(Error::TaskNotFound { .. } | Error::TaskRemoved { .. }) => {
                                Flow::Ended
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(flow) => flow,
                    // Said at once; the others go on.
                    Err(Error::TaskNotFound { .. } | Error::TaskRemoved { .. }) => {
                        entry.removed = true;
                        let end = FollowEnd {
                            reason: Some(StreamEndReason::Removed),
                            cursor: entry.timeline.next_cursor(),
                            next_sequence: entry.timeline.next_sequence(),
                        };
                        if let Some(frame) = end.frame(entry.id.as_str())
                            && sink(frame).is_break()
                        {
                            return Ok(Vec::new());
                        }
                        Flow::Ended
                    }
                    Err(e) => return Err(e),
                };
            }
        }
        if args.cancel.is_cancelled() {
            return Ok(Vec::new());
        }
        Ok(followed
            .into_iter()
            .filter(|f| !f.removed)
            .map(|f| {
                let reason = match f.flow {
                    Flow::Ended => StreamEndReason::Ended,
                    _ if timed_out => StreamEndReason::Timeout,
                    _ => StreamEndReason::Ended,
                };
                let end = FollowEnd {
                    reason: Some(reason),
                    cursor: f.timeline.next_cursor(),
                    next_sequence: f.timeline.next_sequence(),
                };
                (f.id, end)
            })
            .collect())
    }

    /// After a followed run has ended: when the task goes on in a newer run (its restart
    /// policy restarts it, or another caller restarted it), follows that run from its first
    /// frame, so a task counts as ended only when it has. Returns how the follow stands.
    fn follow_next_run(
        &self,
        entry: &mut Followed,
        selection: Selection,
        sink: &mut Sink<'_>,
    ) -> Result<Flow> {
        while entry.flow == Flow::Ended {
            let paths = self.paths(&entry.id);
            let record = observe(&paths, &entry.id)?;
            // A newer run, running, pending or already ended: its frames, its end.
            if record.run <= entry.timeline.run() {
                break;
            }
            let from_its_start = Selection {
                after: Some(After::Sequence(first_sequence(record.run) - 1)),
                lines: None,
                ..selection
            };
            let (timeline, flow) = Timeline::open(&paths, &record, from_its_start, sink)?;
            entry.timeline = timeline;
            entry.flow = flow;
        }
        Ok(entry.flow)
    }

    /// Every task's status now (`events` without an id): a `task.status` frame each, and a
    /// `task.ended` frame for each that has ended, oldest task first.
    pub fn all_events(&self) -> Result<AllEventsAnswer> {
        let mut frames = Vec::new();
        let _ = self.scan_all(&mut BTreeMap::new(), &mut 0, &mut |frame| {
            frames.push(frame);
            ControlFlow::Continue(())
        })?;
        Ok(AllEventsAnswer { frames })
    }

    /// Follows every task's status: a snapshot, then each change, until the bound runs out,
    /// the follow is cancelled or the sink breaks.
    pub fn follow_all(&self, args: FollowAllArgs, sink: &mut Sink<'_>) -> Result<()> {
        let deadline = args.timeout.map(|t| Instant::now() + t);
        let tasks_dir = self.state.tasks_dir();
        // A new task's folder may be the first thing to appear.
        let _ = self.state.create_tasks_dir();
        let watch = DirWatch::new_for(&tasks_dir, true, &["task.json"]);
        let mut seen = BTreeMap::new();
        let mut sequence = 0;
        loop {
            if self.scan_all(&mut seen, &mut sequence, sink)?.is_break() {
                return Ok(());
            }
            if !watch.wait(deadline) || args.cancel.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Delivers the status frames of every task whose status or run changed since `seen`.
    fn scan_all(
        &self,
        seen: &mut BTreeMap<TaskId, (Status, u32)>,
        sequence: &mut u64,
        sink: &mut Sink<'_>,
    ) -> Result<ControlFlow<()>> {
        let mut changed = Vec::new();
        for id in self.state.task_ids()? {
            let Ok(record) = observe(&self.paths(&id), &id) else {
                continue;
            };
            let now = (record.status, record.run);
            if seen.get(&id) != Some(&now) {
                seen.insert(id, now);
                changed.push(record);
            }
        }
        changed.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        for record in changed {
            for frame in status_frames(&record, sequence) {
                if sink(frame).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Follows one task on a thread of its own; the frames are this iterator's items.
    pub fn frames(&self, args: FollowArgs) -> Frames {
        let tasks = self.clone();
        let cancel = args.cancel.clone();
        Frames::spawn(cancel, move |sink| tasks.follow(args, sink).map(|_| ()))
    }

    /// Follows every task's status on a thread of its own; the frames are this iterator's
    /// items.
    pub fn all_frames(&self, args: FollowAllArgs) -> Frames {
        let tasks = self.clone();
        let cancel = args.cancel.clone();
        Frames::spawn(cancel, move |sink| tasks.follow_all(args, sink))
    }
}

/// One task of [`Tasks::follow_many`].
struct Followed {
    id: TaskId,
    timeline: Timeline,
    flow: Flow,
    removed: bool,
}

/// The frames of a follow, read as they happen. The follow runs on its own thread, at most
/// 256 frames ahead; it ends after the last frame (the iterator then ends), on an error
/// (the last item), or when the iterator is dropped (which cancels it).
#[derive(Debug)]
pub struct Frames {
    receiver: Receiver<Result<Frame>>,
    cancel: Cancel,
}

impl Frames {
    fn spawn(
        cancel: Cancel,
        follow: impl FnOnce(&mut Sink<'_>) -> Result<()> + Send + 'static,
    ) -> Frames {
        let (sender, receiver) = mpsc::sync_channel(FRAMES_AHEAD);
        let spawned = std::thread::Builder::new().name("follow".into()).spawn({
            let sender: SyncSender<Result<Frame>> = sender.clone();
            move || {
                let mut sink = |frame| match sender.send(Ok(frame)) {
                    Ok(()) => ControlFlow::Continue(()),
                    // The reader dropped the iterator.
                    Err(_) => ControlFlow::Break(()),
                };
                if let Err(error) = follow(&mut sink) {
                    let _ = sender.send(Err(error));
                }
            }
        });
        if let Err(e) = spawned {
            let _ = sender.send(Err(Error::store("start a follower thread", "", e)));
        }
        Frames { receiver, cancel }
    }

    /// Ends the follow; the frames already read ahead are still returned.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Iterator for Frames {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Result<Frame>> {
        self.receiver.recv().ok()
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A task's status frame, and its ended frame once it has ended.
fn status_frames(record: &TaskRecord, sequence: &mut u64) -> Vec<Frame> {
    let mut next = || {
        *sequence += 1;
        *sequence
    };
    let mut frames = vec![Frame::status(record, next())];
    if record.status.is_terminal() {
        frames.push(Frame::ended(record, next()));
    }
    frames
}

/// One read's frames, as [`Tasks::follow_batches`] hands them.
#[derive(Debug)]
pub struct Batch {
    pub frames: Vec<Frame>,
    /// The last batch: the run has ended and everything it said was delivered.
    pub ended: bool,
}

/// Takes each batch as it comes; `Break` ends the follow (the reader went away).
pub type BatchSink<'a> = dyn FnMut(Batch) -> ControlFlow<()> + 'a;

/// A change to the tasks, as a follower of every task's record sees it
/// ([`Tasks::follow_tasks`]).
#[derive(Debug)]
pub enum TaskChange {
    /// Every task as it is now, oldest first: what a follower gets first.
    Snapshot(Vec<Task>),
    /// A task that appeared, or whose record or ports changed, as it is now.
    Changed(Box<Task>),
    /// A task whose record is gone (`rm`, `prune`).
    Removed(String),
}

/// How often a follower of every task looks again when no record changed: a task found
/// lost, or one that opened a port, changes no file.
const TASKS_FALLBACK: Duration = Duration::from_secs(1);

/// How often a follower of every task looks for the running tasks' ports (in /proc).
const PORTS_EVERY: Duration = Duration::from_secs(2);

impl Tasks {
    /// Follows one task like [`Tasks::follow`], handing its frames in batches: what one read
    /// of the journal and the log found, at most `max` frames a batch. The first batch comes
    /// right after the opening read, even an empty one, so the reader learns at once whether
    /// anything will come: an empty first batch that is `ended` means the run has ended and
    /// nothing came after `after` (a server answers that with no stream at all). Later reads
    /// that found nothing hand no batch.
    pub fn follow_batches(
        &self,
        args: FollowArgs,
        max: usize,
        sink: &mut BatchSink<'_>,
    ) -> Result<()> {
        let paths = self.paths(&args.id);
        let deadline = args.timeout.map(|t| Instant::now() + t);
        // Watch before the first read, so nothing that happens in between is missed.
        let watch = DirWatch::new(&paths.dir, false);
        let record = observe(&paths, &args.id)?;
        let mut batcher = Batcher {
            frames: Vec::new(),
            max: max.max(1),
            grep: args.grep,
            sink,
        };
        let (mut timeline, mut flow) =
            Timeline::open(&paths, &record, args.selection, &mut |f| batcher.push(f))?;
        if batcher.flush(flow, true).is_break() {
            return Ok(());
        }
        while flow == Flow::Open && watch.wait(deadline) && !args.cancel.is_cancelled() {
            flow = timeline.poll(&mut |f| batcher.push(f))?;
            if batcher.flush(flow, false).is_break() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Follows every task's record: a snapshot of every task, then what changed (a task
    /// that appeared, a record that changed in any field, ports opened or closed, a task
    /// removed), one batch per look, oldest task first, until the bound runs out, the follow
    /// is cancelled or the sink breaks. Tasks carry their ports, as `status` answers them.
    /// It looks again when a record changes, and at least every second; ports are looked
    /// for when a record changed and every two seconds (they are seen in /proc, not in a
    /// file). There is no sequence across tasks, so a follower that comes back starts again
    /// from a snapshot.
    pub fn follow_tasks(
        &self,
        args: FollowAllArgs,
        sink: &mut dyn FnMut(Vec<TaskChange>) -> ControlFlow<()>,
    ) -> Result<()> {
        let deadline = args.timeout.map(|t| Instant::now() + t);
        let tasks_dir = self.state.tasks_dir();
        // A new task's folder may be the first thing to appear.
        let _ = self.state.create_tasks_dir();
        let watch = DirWatch::new_for(&tasks_dir, true, &["task.json"]);
        let mut seen = BTreeMap::new();
        let mut ports_looked: Option<Instant> = None;
        let mut first = true;
        loop {
            let ports_due = ports_looked.is_none_or(|at| at.elapsed() >= PORTS_EVERY);
            if ports_due {
                ports_looked = Some(Instant::now());
            }
            let changes = self.look_at_tasks(&mut seen, ports_due, first)?;
            if (first || !changes.is_empty()) && sink(changes).is_break() {
                return Ok(());
            }
            first = false;
            if !watch.wait_at_most(deadline, TASKS_FALLBACK) || args.cancel.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// One look at every task for [`Tasks::follow_tasks`]: what changed since `seen`.
    fn look_at_tasks(
        &self,
        seen: &mut BTreeMap<TaskId, (TaskRecord, Vec<u16>)>,
        ports_due: bool,
        first: bool,
    ) -> Result<Vec<TaskChange>> {
        let mut records: Vec<(TaskId, TaskRecord)> = Vec::new();
        for id in self.state.task_ids()? {
            if let Ok(record) = observe(&self.paths(&id), &id) {
                records.push((id, record));
            }
        }
        records.sort_by(|(_, a), (_, b)| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        // Ports of the running tasks whose record changed, and of all of them when due.
        let asks: Vec<bool> = records
            .iter()
            .map(|(id, record)| {
                !record.status.is_terminal()
                    && (ports_due || seen.get(id).is_none_or(|(old, _)| old != record))
            })
            .collect();
        let asked: Vec<&TaskRecord> = records
            .iter()
            .zip(&asks)
            .filter(|(_, asks)| **asks)
            .map(|((_, record), _)| record)
            .collect();
        let mut found = if asked.is_empty() {
            Vec::new()
        } else {
            listening_ports_of(&asked)
        }
        .into_iter();
        let mut snapshot = Vec::new();
        let mut changes = Vec::new();
        let mut present = BTreeSet::new();
        for ((id, record), asks) in records.into_iter().zip(asks) {
            let ports = match seen.get(&id) {
                _ if asks => found.next().unwrap_or_default(),
                Some((_, ports)) if !record.status.is_terminal() => ports.clone(),
                _ => Vec::new(),
            };
            present.insert(id.clone());
            let changed = seen
                .get(&id)
                .is_none_or(|(old, old_ports)| *old != record || *old_ports != ports);
            if first || changed {
                let mut task = Task::from_record(&record, &self.paths(&id));
                task.ports = Some(ports.clone());
                if first {
                    snapshot.push(task);
                } else {
                    changes.push(TaskChange::Changed(Box::new(task)));
                }
            }
            if changed {
                seen.insert(id, (record, ports));
            }
        }
        let gone: Vec<TaskId> = seen
            .keys()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            seen.remove(&id);
            changes.push(TaskChange::Removed(id.to_string()));
        }
        if first {
            return Ok(vec![TaskChange::Snapshot(snapshot)]);
        }
        Ok(changes)
    }
}

/// Gathers a follow's frames into batches for [`Tasks::follow_batches`].
struct Batcher<'s, 'a> {
    frames: Vec<Frame>,
    max: usize,
    grep: Option<Regex>,
    sink: &'s mut BatchSink<'a>,
}

impl Batcher<'_, '_> {
    fn push(&mut self, frame: Frame) -> ControlFlow<()> {
        let shown = self.grep.as_ref().is_none_or(|re| match &frame.event {
            Event::LogLine(data) => re.is_match(&crate::ansi::strip(&data.line)),
            _ => false,
        });
        if !shown {
            return ControlFlow::Continue(());
        }
        self.frames.push(frame);
        if self.frames.len() < self.max {
            return ControlFlow::Continue(());
        }
        (self.sink)(Batch {
            frames: std::mem::take(&mut self.frames),
            ended: false,
        })
    }

    /// Hands on what one read gathered (`always`: even nothing).
    fn flush(&mut self, flow: Flow, always: bool) -> ControlFlow<()> {
        let ended = match flow {
            Flow::Stopped => return ControlFlow::Break(()),
            Flow::Ended => true,
            Flow::Open => false,
        };
        if self.frames.is_empty() && !always && !ended {
            return ControlFlow::Continue(());
        }
        (self.sink)(Batch {
            frames: std::mem::take(&mut self.frames),
            ended,
        })
    }
}
