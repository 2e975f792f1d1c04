//! `events {id?, after?, lines?}`: a task's lifecycle frames and log lines in one order;
//! without an id, every task's status.
//!
//! With `--stream`, frames are printed as NDJSON as they happen: for one task until its
//! `task.ended` frame (after a final read of its log); for every task until `--timeout`, or
//! for ever.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::commands::{Reply, encode, open_state};
use crate::envelope::Output;
use crate::error::{Error, Result};
use crate::follow::DirWatch;
use crate::output_log::Cursor;
use crate::paths::{StateDir, TaskId};
use crate::payload::answer::{AllEventsAnswer, EventsAnswer};
use crate::payload::frame::Frame;
use crate::payload::input::{AfterInput, EventsInput};
use crate::state::{Status, TaskRecord, journal, observe};
use crate::time::{now_ms, rfc3339};
use crate::timeline::{After, Flow, Selection, Timeline};

pub fn run(input: EventsInput, output: &Output, stream: Option<Option<Duration>>) -> Result<Reply> {
    let state = open_state()?;
    let deadline = stream.flatten().map(|t| Instant::now() + t);
    let Some(id) = input.id.clone() else {
        if input.after.is_some() || input.lines.is_some() {
            return Err(Error::input(
                "after and lines need an id",
                "Give {\"id\":..} to resume one task's frames; without an id, events shows every task's status.",
            ));
        }
        return all_tasks(&state, output, stream.is_some(), deadline);
    };
    let after = input.after.map(resume_point).transpose()?;
    let selection = Selection {
        after,
        lines: input.lines,
        only_lines: false,
    };
    let paths = state.task(&id);
    if stream.is_none() {
        let mut frames = Vec::new();
        let record = observe(&paths, &id)?;
        let (timeline, flow) = Timeline::open(&paths, &record, selection, &mut |frame| {
            frames.push(frame);
            ControlFlow::Continue(())
        })?;
        let answer = EventsAnswer {
            task_id: id.to_string(),
            frames,
            ended: flow == Flow::Ended,
            next_sequence: timeline.next_sequence(),
            next_cursor: timeline.next_cursor(),
            cursor_reset: timeline.cursor_reset,
        };
        return Ok(Reply::Data(encode(answer)?));
    }
    // Watch before the first read, so nothing that happens in between is missed.
    let watch = DirWatch::new(&paths.dir, false);
    let record = observe(&paths, &id)?;
    let mut sink = |frame: Frame| match output.frame(&frame) {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(()),
    };
    let (mut timeline, mut flow) = Timeline::open(&paths, &record, selection, &mut sink)?;
    while flow == Flow::Open && watch.wait(deadline) && !output.reader_gone() {
        flow = timeline.poll(&mut sink)?;
    }
    Ok(Reply::Streamed)
}

/// Where `after` resumes: a frame's sequence number as given, or a log cursor parsed.
pub fn resume_point(after: AfterInput) -> Result<After> {
    Ok(match after {
        AfterInput::Sequence(n) => After::Sequence(n),
        AfterInput::Cursor(text) => After::Cursor(Cursor::parse(&text)?),
    })
}

/// Every task's status: a snapshot, then (streaming) each change.
fn all_tasks(
    state: &StateDir,
    output: &Output,
    stream: bool,
    deadline: Option<Instant>,
) -> Result<Reply> {
    let tasks_dir = state.tasks_dir();
    let watch = stream.then(|| {
        // A new task's folder may be the first thing to appear.
        let _ = std::fs::create_dir_all(&tasks_dir);
        DirWatch::new_for(&tasks_dir, true, &["task.json"])
    });
    let mut seen: BTreeMap<TaskId, (Status, u32)> = BTreeMap::new();
    let mut sequence = 0u64;
    let mut frames = Vec::new();
    let emit = |frames: &mut Vec<Frame>, frame: Frame| -> bool {
        if stream {
            output.frame(&frame).is_ok()
        } else {
            frames.push(frame);
            true
        }
    };
    loop {
        let mut changed = Vec::new();
        for id in state.task_ids()? {
            let Ok(record) = observe(&state.task(&id), &id) else {
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
            for frame in status_frames(&record, &mut sequence) {
                if !emit(&mut frames, frame) {
                    return Ok(Reply::Streamed);
                }
            }
        }
        match &watch {
            Some(watch) if watch.wait(deadline) && !output.reader_gone() => continue,
            Some(_) => return Ok(Reply::Streamed),
            None => break,
        }
    }
    Ok(Reply::Data(encode(AllEventsAnswer { frames })?))
}

fn status_frames(record: &TaskRecord, sequence: &mut u64) -> Vec<Frame> {
    let mut next = || {
        *sequence += 1;
        *sequence
    };
    let mut frames = vec![Frame {
        kind: journal::kind::STATUS.to_owned(),
        task_id: record.id.clone(),
        sequence: next(),
        timestamp: rfc3339(now_ms()),
        data: json!({"status": record.status, "run": record.run, "pid": record.pid}),
    }];
    if record.status.is_terminal() {
        frames.push(Frame {
            kind: journal::kind::ENDED.to_owned(),
            task_id: record.id.clone(),
            sequence: next(),
            timestamp: rfc3339(record.ended_at_ms.unwrap_or_else(now_ms)),
            data: journal::ended_data(record),
        });
    }
    frames
}
