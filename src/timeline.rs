//! One run's frames in one order, read from the task's journal and its log.
//!
//! The timeline of a run is its journal entries and its log lines as they happened: an
//! entry written when the log was `X` bytes long comes after every line that ends at or
//! before `X`. Items are numbered from [`first_sequence`]`(run)`, which is
//! `(run - 1) * 2^32 + 1`, so a frame's number never changes and never repeats across
//! restarts: `events` and `logs --stream` number the same line the same way, `after:
//! <sequence>` resumes, and a number from an earlier run is recognised (and starts over at
//! the current run, saying so) instead of silently skipping frames.
//!
//! Only the current run is shown: a restart replaces the old run's output, as it does for
//! `logs`. The log is read forward by one [`LineReader`], each byte once: a line that is
//! still being written (a `\r` progress bar) is never scanned again on the next wake, and
//! what it holds of such a line is bounded by [`output_log::LINE_BUDGET`]. A line's frame
//! shows at most the line budget of it ([`output_log::MAX_LINE_BYTES`], saying how much was
//! left out), and a page (`events` without `--stream`) at most its byte budget of frames
//! ([`Selection::budget`]). The log's file handle is kept for the whole follow, so a
//! restart that renames the log away cannot switch a follower to the next run's output.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::follow::DirWatch;
use crate::output_log::{self, Cursor, CursorReset, LineReader, ShownLine};
use crate::paths::{TaskId, TaskPaths, names};
use crate::payload::frame::{Event, Frame};
use crate::state::journal::{self, JournalEntry, kind};

use crate::state::{TaskRecord, observe};

/// How long a follower waits for its supervisor to write the record after `task.ended`.
const SUPERVISOR_EXIT: Duration = Duration::from_secs(2);

/// The first sequence number of a run's frames.
pub fn first_sequence(run: u32) -> u64 {
    ((u64::from(run.max(1)) - 1) << 32) | 1
}

/// Where an answer or stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// After the frame with this sequence number.
    Sequence(u64),
    /// After the log line this cursor points past.
    Cursor(Cursor),
}

/// What to include.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    pub after: Option<After>,
    /// Without `after`: how many of the latest log lines to include first. With `after`:
    /// at most this many log lines (then the answer stops; its `next_cursor` continues).
    pub lines: Option<u64>,
    /// Only `task.log.line` frames (for `logs --stream`); the numbering is the same.
    pub only_lines: bool,
    /// For one answer (a page, not a stream): the most bytes of frames it holds. Past it,
    /// the oldest frames give way in a tail (without `after`), and a page after `after`
    /// stops before the first frame that does not fit. The first frame always fits.
    pub budget: Option<usize>,
    /// Log lines with their ANSI escape sequences (the payload's `"ansi": true`, the
    /// browser view, which renders the colours); else without them.
    pub ansi: bool,
}

/// The fewest bytes a log line's frame takes (its keys, a sequence, a timestamp and a
/// cursor, with an empty line): a page of `budget` bytes shows at most `budget / this`.
const MIN_LINE_FRAME_BYTES: usize = 100;

/// What one answer (a page) has taken of its byte budget.
#[derive(Debug, Clone, Copy)]
struct Page {
    budget: usize,
    used: usize,
    frames: usize,
}

impl Page {
    fn new(budget: usize) -> Page {
        Page {
            budget,
            used: 0,
            frames: 0,
        }
    }

    /// Takes `frame` if it fits; the first frame always does (a frame is at most one line
    /// budget and its JSON), so every page moves on.
    fn admits(&mut self, frame: &Frame) -> bool {
        let size = frame_bytes(frame);
        if self.frames > 0 && self.used + size > self.budget {
            return false;
        }
        self.used += size;
        self.frames += 1;
        true
    }
}

/// A frame's share of an answer: its JSON and the comma between frames.
fn frame_bytes(frame: &Frame) -> usize {
    frame.encoded_len() + 1
}

/// Whether a reader should go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The task may still say more.
    Open,
    /// The run has ended and everything it said was delivered.
    Ended,
    /// The reader went away (stdout closed), or an answer reached its line limit.
    Stopped,
}

/// A frame sink: `Break` stops the walk.
pub type Sink<'a> = dyn FnMut(Frame) -> ControlFlow<()> + 'a;

/// The read position in one task's timeline.
#[derive(Debug)]
pub struct Timeline {
    paths: TaskPaths,
    task_id: String,
    run: u32,
    log: Option<File>,
    journal_offset: u64,
    /// Entries of the current run not yet placed among the lines.
    pending: VecDeque<JournalEntry>,
    /// How far the log has been walked: its position is just past the last line walked.
    lines: LineReader,
    next_sequence: u64,
    selection: Selection,
    /// Items at or before this position are skipped (from `after`).
    skip: Option<After>,
    /// Log lines still allowed (from `lines` with `after`).
    lines_left: Option<u64>,
    /// Set when `after` was a cursor that could not be used as given.
    pub cursor_reset: Option<CursorReset>,
    /// The byte budget of a page, and what it took so far.
    page: Option<Page>,
    /// Frames were left out of the page: by its budget, or (after `after`) past `lines`.
    pub left_out: bool,
    /// Log line frames delivered cut to the line budget.
    pub truncated_lines: u64,
    ended: bool,
}

/// One item of the walk. A visit that breaks leaves its item where it was: the next walk
/// starts with it, under the same number.
enum Item<'a> {
    Entry(&'a JournalEntry),
    Line { line: ShownLine, end: u64 },
}

impl Timeline {
    /// Opens the timeline of the task in `record` and delivers everything selected so far.
    pub fn open(
        paths: &TaskPaths,
        record: &TaskRecord,
        selection: Selection,
        sink: &mut Sink<'_>,
    ) -> Result<(Timeline, Flow)> {
        let log = paths.read_file(names::LOG)?;
        let (entries, journal_offset) = journal::read_from(paths, 0)?;
        let run = record.run;
        let mut timeline = Timeline {
            paths: paths.clone(),
            task_id: record.id.clone(),
            run,
            log,
            journal_offset,
            // Entries of other runs are not ours: earlier runs' output is gone, and a newer
            // run began after the record was read.
            pending: entries.into_iter().filter(|e| e.run == run).collect(),
            lines: LineReader::new(0).keeping_ansi(selection.ansi),
            next_sequence: first_sequence(run),
            selection,
            skip: selection.after,
            lines_left: selection.after.and(selection.lines),
            cursor_reset: None,
            page: selection.budget.map(Page::new),
            left_out: false,
            truncated_lines: 0,
            ended: false,
        };
        match selection.after {
            Some(After::Cursor(cursor)) => {
                let size = timeline.log_size()?;
                let (offset, reset) = output_log::resolve(cursor, run, size);
                timeline.cursor_reset = reset;
                // A reset cursor reads the current run from its beginning.
                timeline.skip = Some(After::Cursor(Cursor { run, offset }));
            }
            Some(After::Sequence(n)) if n < first_sequence(run) - 1 => {
                // A number from an earlier run: everything of this run is new.
                timeline.cursor_reset = Some(CursorReset::NewRun);
                timeline.skip = None;
            }
            _ => {}
        }
        let flow = match selection.after {
            Some(_) => timeline.advance(false, sink)?,
            None => timeline.open_at_tail(sink)?,
        };
        Ok((timeline, flow))
    }

    /// Without `after`: the last `lines` log lines (and every lifecycle entry), in order.
    /// With a budget, the newest of them that fit: older ones give way first.
    fn open_at_tail(&mut self, sink: &mut Sink<'_>) -> Result<Flow> {
        let wanted = self
            .selection
            .lines
            .unwrap_or(crate::payload::input::DEFAULT_LOG_LINES);
        let budget = self.selection.budget;
        // A page cannot show more lines than this, however many are asked for: memory stays
        // bounded by the page, not by `lines`.
        let kept_lines = budget.map_or(wanted, |b| wanted.min((b / MIN_LINE_FRAME_BYTES) as u64));
        let only_lines = self.selection.only_lines;
        let (task_id, run) = (self.task_id.clone(), self.run);
        // Walk everything: keep the frames of entries (with a budget, only those that newer
        // entries alone do not push out of the page) and the positions of the last lines.
        let terminal = self.is_terminal(false)?;
        let mut entries: VecDeque<(u64, Frame, usize)> = VecDeque::new();
        let mut entry_bytes = 0;
        let mut ring: VecDeque<(u64, u64, u64)> = VecDeque::new();
        let mut line_start = self.lines.position();
        let (mut ended, mut left_out) = (false, false);
        self.walk(terminal, &mut |item, sequence| {
            match item {
                Item::Entry(entry) => {
                    ended |= entry.kind == kind::ENDED && entry.run == run;
                    let frame = (!only_lines)
                        .then(|| Frame::from_entry(&task_id, sequence, entry.clone()))
                        .flatten();
                    if let Some(frame) = frame {
                        let size = frame_bytes(&frame);
                        entry_bytes += size;
                        entries.push_back((sequence, frame, size));
                        while budget.is_some_and(|b| entry_bytes > b) && entries.len() > 1 {
                            if let Some((_, _, size)) = entries.pop_front() {
                                entry_bytes -= size;
                                left_out = true;
                            }
                        }
                    }
                }
                Item::Line { end, .. } => {
                    if kept_lines > 0 {
                        if ring.len() as u64 == kept_lines {
                            ring.pop_front();
                            left_out |= kept_lines < wanted;
                        }
                        ring.push_back((sequence, line_start, end));
                    }
                    line_start = end;
                }
            }
            ControlFlow::Continue(())
        })?;
        self.ended |= ended;
        // Read the kept lines (they follow one another) again and merge them with the
        // entries by number; each is cut to the line budget.
        let mut items: Vec<(u64, Frame)> = entries
            .into_iter()
            .map(|(sequence, frame, _)| (sequence, frame))
            .collect();
        if let (Some(&(_, first, _)), Some(&(_, _, last)), Some(file)) =
            (ring.front(), ring.back(), self.log.as_mut())
        {
            let mut ring = ring.into_iter();
            LineReader::new(first)
                .keeping_ansi(self.selection.ansi)
                .read(file, last, true, |line, end| {
                    if let Some((sequence, _, _)) = ring.next() {
                        items.push((
                            sequence,
                            Frame::log_line(&task_id, run, line, end, sequence),
                        ));
                    }
                    ControlFlow::Continue(())
                })
                .map_err(|e| Error::store("read the log", self.paths.log(), e))?;
        }
        items.sort_by_key(|(sequence, _)| *sequence);
        if let Some(budget) = budget {
            // The newest frames that fit; the first kept always does.
            let mut used = 0;
            let mut first_kept = items.len();
            while first_kept > 0 {
                let size = frame_bytes(&items[first_kept - 1].1);
                if first_kept < items.len() && used + size > budget {
                    break;
                }
                used += size;
                first_kept -= 1;
            }
            left_out |= first_kept > 0;
            items.drain(..first_kept);
        }
        self.left_out |= left_out;
        for (_, frame) in items {
            let truncated = is_truncated_line(&frame);
            if sink(frame).is_break() {
                return Ok(Flow::Stopped);
            }
            self.truncated_lines += u64::from(truncated);
        }
        self.close(terminal, sink)
    }

    /// Reads what was added since the last call and delivers it.
    pub fn poll(&mut self, sink: &mut Sink<'_>) -> Result<Flow> {
        if self.ended {
            return Ok(Flow::Ended);
        }
        // A line only being redrawn (a `\r` bar) is read at a pace, not at every redraw.
        self.lines.pace();
        let (entries, offset) = journal::read_from(&self.paths, self.journal_offset)?;
        self.journal_offset = offset;
        let mut superseded = false;
        for entry in entries {
            if entry.run == self.run {
                self.pending.push_back(entry);
            } else if entry.run > self.run {
                superseded = true;
            }
        }
        // Truncated under us (`: > output.log`): start over from its beginning.
        if self.log_size()? < self.lines.read_to() {
            self.lines = LineReader::new(0).keeping_ansi(self.selection.ansi);
        }
        self.advance(superseded, sink)
    }

    /// Walks to the end of what can be read now and delivers what the selection keeps. A
    /// page stops before the first frame past its budget (or its `lines`), which stays
    /// unread: the answer's `next_sequence` and `next_cursor` continue with it.
    fn advance(&mut self, superseded: bool, sink: &mut Sink<'_>) -> Result<Flow> {
        let terminal = self.is_terminal(superseded)?;
        let mut stopped = false;
        let log_path = self.paths.log();
        let run = self.run;
        let task_id = self.task_id.clone();
        let (skip, only_lines) = (self.skip, self.selection.only_lines);
        let mut lines_left = self.lines_left;
        let mut page = self.page;
        let (mut ended, mut left_out, mut truncated_lines) = (false, false, 0);
        let walked = self.walk(terminal, &mut |item, sequence| {
            let keep_by_position = |position: u64, is_line: bool| match skip {
                None => true,
                Some(After::Sequence(n)) => sequence > n,
                Some(After::Cursor(c)) if is_line => position > c.offset,
                Some(After::Cursor(c)) => position >= c.offset,
            };
            let (frame, is_end) = match item {
                Item::Entry(entry) => {
                    let frame = (!only_lines && keep_by_position(entry.log_offset, false))
                        .then(|| Frame::from_entry(&task_id, sequence, entry.clone()))
                        .flatten();
                    (frame, entry.kind == kind::ENDED)
                }
                Item::Line { line, end } => {
                    if !keep_by_position(end, true) {
                        return ControlFlow::Continue(());
                    }
                    if lines_left == Some(0) {
                        left_out = true;
                        stopped = true;
                        return ControlFlow::Break(());
                    }
                    (Some(line_frame(&task_id, run, line, end, sequence)), false)
                }
            };
            if let Some(frame) = frame {
                if page.as_mut().is_some_and(|page| !page.admits(&frame)) {
                    left_out = true;
                    stopped = true;
                    return ControlFlow::Break(());
                }
                let is_line = matches!(frame.event, Event::LogLine(_));
                let truncated = is_truncated_line(&frame);
                // Handed on as it comes, so a long catch-up streams instead of piling up.
                if sink(frame).is_break() {
                    stopped = true;
                    return ControlFlow::Break(());
                }
                if is_line {
                    lines_left = lines_left.map(|n| n - 1);
                }
                truncated_lines += u64::from(truncated);
            }
            ended |= is_end;
            ControlFlow::Continue(())
        });
        walked.map_err(|e| match e {
            Error::Store { .. } => e,
            other => Error::store(
                "read the log",
                log_path,
                io::Error::other(other.full_message()),
            ),
        })?;
        self.lines_left = lines_left;
        self.page = page;
        self.left_out |= left_out;
        self.truncated_lines += truncated_lines;
        self.ended |= ended;
        if stopped {
            return Ok(Flow::Stopped);
        }
        self.close(terminal, sink)
    }

    /// Whether the run is over: its journal says so, a newer run began, or its record is
    /// terminal. The supervisor appends `task.ended` before it writes the terminal record,
    /// so a record that is terminal while the journal has no end means the end was never
    /// journaled (a reader found the task lost, or the append failed): [`Timeline::close`]
    /// then says it from the record.
    fn is_terminal(&mut self, superseded: bool) -> Result<bool> {
        if superseded || self.pending.iter().any(|e| e.kind == kind::ENDED) {
            return Ok(true);
        }
        let record = observe(&self.paths, &self.id()?)?;
        if record.run == self.run && !record.status.is_terminal() {
            return Ok(false);
        }
        // Read in what was journaled meanwhile, so the walk places it.
        let (entries, offset) = journal::read_from(&self.paths, self.journal_offset)?;
        self.journal_offset = offset;
        self.pending
            .extend(entries.into_iter().filter(|e| e.run == self.run));
        Ok(true)
    }

    /// Once `task.ended` has been delivered, its supervisor writes the terminal record next.
    /// Wait (briefly) until the record says so, so that a follower's next `status` agrees
    /// with the stream it just read. The wait is on the record itself (its rename wakes a
    /// watch), not on the lock: the lock may pass to the next run's `start` at once.
    fn settle(&self) -> Result<()> {
        let pending = |record: Option<TaskRecord>| {
            record.is_some_and(|r| r.run == self.run && !r.status.is_terminal())
        };
        if !pending(TaskRecord::read(&self.paths)?) {
            return Ok(());
        }
        // Watch before reading again, so the rename cannot slip between the two.
        let watch = DirWatch::new(&self.paths.dir, false);
        let deadline = Instant::now() + SUPERVISOR_EXIT;
        while pending(TaskRecord::read(&self.paths)?) && watch.wait(Some(deadline)) {}
        Ok(())
    }

    /// After a walk of an ended run: if the journal held no end (the supervisor died before
    /// writing it, or an older version ran the task), say it from the record.
    fn close(&mut self, terminal: bool, sink: &mut Sink<'_>) -> Result<Flow> {
        if self.ended {
            self.settle()?;
        } else if terminal {
            // The truthful record, not the file: a task found lost by another reader that
            // holds the lock this instant is lost, though its file still says running.
            let record = self.observed()?.filter(|r| r.run == self.run);
            if let Some(record) = record {
                let frame = self.ended_frame(&record, self.next_sequence);
                if !self.selection.only_lines && sink(frame).is_break() {
                    return Ok(Flow::Stopped);
                }
                self.take_sequence();
            }
            self.ended = true;
        }
        Ok(if self.ended { Flow::Ended } else { Flow::Open })
    }

    fn log_size(&mut self) -> Result<u64> {
        if self.log.is_none() {
            self.log = self.paths.read_file(names::LOG).ok().flatten();
        }
        match &self.log {
            Some(file) => file
                .metadata()
                .map(|m| m.len())
                .map_err(|e| Error::store("inspect the log", self.paths.log(), e)),
            None => Ok(0),
        }
    }

    /// Walks the log from where the last walk stopped to its end, numbering lines and
    /// placing pending entries among them; then places the entries due at the position
    /// reached. A line still being written waits (it is held by the reader, not read again),
    /// unless the run is over (`terminal`).
    fn walk(
        &mut self,
        terminal: bool,
        visit: &mut dyn FnMut(Item<'_>, u64) -> ControlFlow<()>,
    ) -> Result<()> {
        let size = self.log_size()?;
        let Some(file) = self.log.as_mut() else {
            let _ = place_entries(
                &mut self.pending,
                &mut self.next_sequence,
                self.lines.position(),
                true,
                visit,
            );
            return Ok(());
        };
        let (pending, next_sequence) = (&mut self.pending, &mut self.next_sequence);
        let mut stopped = false;
        self.lines
            .read(file, size, terminal, |line, end| {
                let mut flow = place_entries(pending, next_sequence, end, false, visit);
                if flow.is_continue() {
                    flow = visit(Item::Line { line, end }, *next_sequence);
                    if flow.is_continue() {
                        take(next_sequence);
                    }
                }
                // A refused line is not consumed: the reader hands it out again.
                stopped = flow.is_break();
                flow
            })
            .map_err(|e| Error::store("read the log", self.paths.log(), e))?;
        if !stopped {
            let _ = place_entries(
                &mut self.pending,
                &mut self.next_sequence,
                self.lines.position(),
                true,
                visit,
            );
        }
        Ok(())
    }

    /// The task's record as `status` would answer it; `None` once it has been removed.
    fn observed(&self) -> Result<Option<TaskRecord>> {
        match observe(&self.paths, &self.id()?) {
            Ok(record) => Ok(Some(record)),
            Err(Error::TaskNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn id(&self) -> Result<TaskId> {
        TaskId::parse(&self.task_id).map_err(|m| Error::input(m, "Use a valid task id."))
    }

    fn take_sequence(&mut self) -> u64 {
        take(&mut self.next_sequence)
    }

    fn ended_frame(&self, record: &TaskRecord, sequence: u64) -> Frame {
        Frame::ended(record, sequence)
    }

    /// Where the next answer should start: just past the last log line delivered.
    pub fn next_cursor(&self) -> Cursor {
        Cursor {
            run: self.run,
            offset: self.lines.position(),
        }
    }

    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The run it follows.
    pub fn run(&self) -> u32 {
        self.run
    }
}

fn take(next_sequence: &mut u64) -> u64 {
    let sequence = *next_sequence;
    *next_sequence += 1;
    sequence
}

/// Delivers pending entries that come before a line ending at `end` (`X < end`), or with
/// `inclusive`, every entry up to the position walked (`X <= end`). An entry whose visit
/// breaks stays pending, and keeps its number.
fn place_entries(
    pending: &mut VecDeque<JournalEntry>,
    next_sequence: &mut u64,
    end: u64,
    inclusive: bool,
    visit: &mut dyn FnMut(Item<'_>, u64) -> ControlFlow<()>,
) -> ControlFlow<()> {
    while let Some(entry) = pending.front() {
        let due = if inclusive {
            entry.log_offset <= end
        } else {
            entry.log_offset < end
        };
        if !due {
            break;
        }
        visit(Item::Entry(entry), *next_sequence)?;
        pending.pop_front();
        take(next_sequence);
    }
    ControlFlow::Continue(())
}

fn line_frame(task_id: &str, run: u32, line: ShownLine, end: u64, sequence: u64) -> Frame {
    Frame::log_line(task_id, run, line, end, sequence)
}

/// Whether `frame` is a log line cut to the line budget.
fn is_truncated_line(frame: &Frame) -> bool {
    matches!(&frame.event, Event::LogLine(data) if data.truncated_bytes.is_some())
}
