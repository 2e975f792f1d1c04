//! Following: a task's lifecycle frames and log lines in one order ([`crate::timeline`]),
//! as a page (`events`) or as they happen (`events --stream`, `logs --stream`); and every
//! task's status, as a snapshot or as it changes.
//!
//! A follow of one task ends by itself after the run's `task.ended` frame (and a final read
//! of its log); a follow of every task ends only by its bound or from outside. Both end
//! when their [`Cancel`] is cancelled, or when the sink stops taking frames.
//!
//! There are two ways to take the frames: hand a sink to [`Tasks::follow`] (the CLI: each
//! frame is printed the moment it is read), or iterate [`Frames`] (a server: the follow runs
//! on a thread of its own, a bounded number of frames ahead of the reader, and ends when the
//! iterator is dropped).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::error::{Error, Result};
use crate::follow::DirWatch;
use crate::lifecycle::logs::grep;
use crate::lifecycle::{Cancel, Tasks};
use crate::output_log::{Cursor, MAX_INLINE_BYTES};
use crate::paths::TaskId;
use crate::payload::answer::{AllEventsAnswer, EventsAnswer};
use crate::payload::frame::{Event, Frame};
use crate::payload::input::{AfterInput, EventsInput, LogsInput};
use crate::state::{Status, TaskRecord, observe};
use crate::timeline::{After, Flow, Selection, Timeline};

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
            },
            grep,
            timeout,
            cancel,
        })
    }

    /// `events {id, after?, lines?}`: every frame, from the last `lines` log lines or after
    /// a frame's sequence number or a line's cursor. `None` without an id.
    pub fn for_events(
        input: &EventsInput,
        timeout: Option<Duration>,
        cancel: Cancel,
    ) -> Result<Option<Self>> {
        let Some(id) = input.id.clone() else {
            if input.after.is_some() || input.lines.is_some() {
                return Err(Error::input_at(
                    "id",
                    "id: missing; after and lines need an id",
                    "Give {\"id\":..} to resume one task's frames; without an id, events shows every task's status.",
                ));
            }
            return Ok(None);
        };
        let after = input.after.clone().map(resume_point).transpose()?;
        Ok(Some(FollowArgs {
            id,
            selection: Selection {
                after,
                lines: input.lines,
                only_lines: false,
                budget: None,
            },
            grep: None,
            timeout,
            cancel,
        }))
    }
}

/// A follow of every task's status.
#[derive(Debug, Clone, Default)]
pub struct FollowAllArgs {
    /// Stop following after this long (`None`: until cancelled).
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
    /// sink breaks.
    pub fn follow(&self, args: FollowArgs, sink: &mut Sink<'_>) -> Result<()> {
        let paths = self.paths(&args.id);
        let deadline = args.timeout.map(|t| Instant::now() + t);
        // Watch before the first read, so nothing that happens in between is missed.
        let watch = DirWatch::new(&paths.dir, false);
        let record = observe(&paths, &args.id)?;
        let grep = args.grep;
        let mut sink = |frame: Frame| {
            let shown = grep.as_ref().is_none_or(|re| match &frame.event {
                Event::LogLine(data) => re.is_match(&data.line),
                _ => false,
            });
            if shown {
                sink(frame)
            } else {
                ControlFlow::Continue(())
            }
        };
        let (mut timeline, mut flow) = Timeline::open(&paths, &record, args.selection, &mut sink)?;
        while flow == Flow::Open && watch.wait(deadline) && !args.cancel.is_cancelled() {
            flow = timeline.poll(&mut sink)?;
        }
        Ok(())
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
        Frames::spawn(cancel, move |sink| tasks.follow(args, sink))
    }

    /// Follows every task's status on a thread of its own; the frames are this iterator's
    /// items.
    pub fn all_frames(&self, args: FollowAllArgs) -> Frames {
        let tasks = self.clone();
        let cancel = args.cancel.clone();
        Frames::spawn(cancel, move |sink| tasks.follow_all(args, sink))
    }
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
