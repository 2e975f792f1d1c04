//! Reading a task's log: lines of the current run's output (`logs`).
//!
//! Without `after`, the last `lines` lines; with `after` (a cursor), the lines that came
//! after it, at most `lines` of them. Every answer carries `next_cursor`. While the task
//! runs, a line still being written is held back, so no line is ever split across answers.
//!
//! [`LogsShape::Auto`] (the default) answers inline when nothing asked for was left out and
//! the lines fit the byte budget; otherwise it answers the lines it can show together with
//! a pointer to the whole log: one shape either way, `lines` and `next_cursor` at the top,
//! with `kind: "summary+artifact"`, `summary` and `artifact` added beside them, and what was
//! left out counted by where it is (`omitted: {before, after}`). Each line shown is cut to
//! [`MAX_LINE_BYTES`] and all of them to [`MAX_INLINE_BYTES`], so one 10 MB line cannot
//! flood an agent, and reading holds no more than those budgets (and one line's first
//! [`LINE_BUDGET`] bytes) in memory. [`LogsShape::Inline`] never cuts (the caller asked for
//! whole lines, and their memory); [`LogsShape::Artifact`] always points. Following the log
//! as it grows is [`crate::lifecycle::follow`]'s.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;

use regex::Regex;

use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::output_log::{self, Cursor, CursorReset, LINE_BUDGET, LineReader, ShownLine};
use crate::paths::TaskId;
use crate::paths::names;
use crate::payload::answer::{Artifact, LogsAnswer, Omitted};
use crate::payload::input::{DEFAULT_LOG_LINES, LogsInput};
use crate::payload::task::LogInfo;
use crate::state::observe;

/// The line budget (longest line shown whole in an `auto` answer) and the answer budget
/// (most bytes of lines in one): every answer that carries task output shares them.
pub use crate::output_log::{MAX_INLINE_BYTES, MAX_LINE_BYTES};

/// How the lines are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogsShape {
    /// Inline when the answer is whole and small, else summary+artifact.
    #[default]
    Auto,
    /// Always inline, nothing cut.
    Inline,
    /// Always summary+artifact.
    Artifact,
}

/// `logs`: which lines, and how to answer them.
#[derive(Debug)]
pub struct LogsArgs {
    pub input: LogsInput,
    pub shape: LogsShape,
}

/// `grep` as a regular expression.
pub fn grep(pattern: Option<&str>) -> Result<Option<Regex>> {
    pattern
        .map(|pattern| {
            Regex::new(pattern).map_err(|e| {
                Error::input_at(
                    "grep",
                    format!("grep: not a regular expression: {e}"),
                    "Give a valid regex, e.g. \"error|warn\".",
                )
            })
        })
        .transpose()
}

impl Tasks {
    /// Lines of the current run's output.
    pub fn logs(&self, args: LogsArgs) -> Result<LogsAnswer> {
        let LogsArgs { input, shape } = args;
        let paths = self.paths(&input.id);
        let grep = grep(input.grep.as_deref())?;
        let after = input.after.as_deref().map(Cursor::parse).transpose()?;
        let record = observe(&paths, &input.id)?;
        let wanted = input.lines.unwrap_or(DEFAULT_LOG_LINES);
        let path = paths.log();
        let mut file = paths.read_file(names::LOG)?;
        let read = |file: &mut File| -> io::Result<Selected> {
            let size = file.metadata()?.len();
            let end = if record.status.is_terminal() {
                size
            } else {
                output_log::complete_end(file, 0, size)?
            };
            let (from, reset) = match after {
                Some(cursor) => output_log::resolve(cursor, record.run, size),
                None => (0, None),
            };
            let mut selected = select(
                file,
                Range {
                    from,
                    end: end.max(from),
                },
                wanted,
                after.is_some(),
                grep.as_ref(),
                shape != LogsShape::Inline,
                input.ansi,
            )?;
            selected.cursor_reset = reset;
            selected.size = size;
            Ok(selected)
        };
        let selected = match file.as_mut() {
            Some(file) => read(file).map_err(|e| Error::store("read the log", &path, e))?,
            None => {
                Selected::empty(after.map_or(0, |c| if c.run == record.run { c.offset } else { 0 }))
            }
        };
        let mut answer = LogsAnswer {
            kind: "inline",
            summary: None,
            task_id: record.id.clone(),
            run: record.run,
            status: record.status.into(),
            total_lines: selected.total,
            shown_lines: selected.lines.len() as u64,
            omitted: selected.omitted,
            lines: selected.lines,
            next_cursor: Cursor {
                run: record.run,
                offset: selected.next,
            },
            cursor_reset: selected.cursor_reset,
            truncated_lines: selected.truncated,
            grep: input.grep.clone(),
            log: LogInfo {
                path: path.clone(),
                size_bytes: selected.size,
            },
            artifact: None,
        };
        let whole = answer.omitted == Omitted::default() && answer.truncated_lines == 0;
        if shape == LogsShape::Inline || (shape == LogsShape::Auto && whole) {
            return Ok(answer);
        }
        let relative_path = path
            .strip_prefix(self.state.root())
            .map(PathBuf::from)
            .unwrap_or_else(|_| path.clone());
        answer.kind = "summary+artifact";
        answer.summary = Some(summary(&answer, after.is_some()));
        answer.artifact = Some(Artifact {
            key: format!("task.{}.logs", record.id),
            kind: "text",
            absolute_path: path,
            relative_path,
            size_bytes: answer.log.size_bytes,
        });
        Ok(answer)
    }

    /// Where a task's log stands now (after its last whole line): what `logs {after}`
    /// continues from. `None` when the task or its log cannot be read.
    pub fn log_position(&self, id: &TaskId) -> Option<Cursor> {
        let answer = self
            .logs(LogsArgs {
                input: LogsInput {
                    id: id.clone(),
                    lines: Some(0),
                    after: None,
                    grep: None,
                    ansi: false,
                },
                shape: LogsShape::Inline,
            })
            .ok()?;
        Some(answer.next_cursor)
    }
}

/// Lines chosen from the log, as the answer shows them.
#[derive(Debug)]
struct Selected {
    lines: Vec<String>,
    total: u64,
    /// Lines asked for that were left out: earlier ones (a tail), ones past `lines` or
    /// the answer budget (after a cursor).
    omitted: Omitted,
    /// Lines shown cut to the line budget.
    truncated: u64,
    next: u64,
    size: u64,
    cursor_reset: Option<CursorReset>,
}

impl Selected {
    fn empty(next: u64) -> Selected {
        Selected {
            lines: Vec::new(),
            total: 0,
            omitted: Omitted::default(),
            truncated: 0,
            next,
            size: 0,
            cursor_reset: None,
        }
    }
}

/// The bytes of the log considered: `[from, end)`.
#[derive(Debug, Clone, Copy)]
struct Range {
    from: u64,
    end: u64,
}

/// The lines kept for an answer, oldest first, and what they take of the answer budget.
#[derive(Debug, Default)]
struct Kept {
    /// Each line's text and whether it was cut.
    lines: VecDeque<(String, bool)>,
    bytes: usize,
}

impl Kept {
    fn push(&mut self, text: String, cut: bool) {
        self.bytes += text.len();
        self.lines.push_back((text, cut));
    }

    fn pop_front(&mut self) {
        if let Some((text, _)) = self.lines.pop_front() {
            self.bytes -= text.len();
        }
    }

    fn len(&self) -> u64 {
        self.lines.len() as u64
    }

    /// The texts, and how many of them were cut.
    fn into_lines(self) -> (Vec<String>, u64) {
        let truncated = self.lines.iter().filter(|(_, cut)| *cut).count() as u64;
        (
            self.lines.into_iter().map(|(text, _)| text).collect(),
            truncated,
        )
    }
}

/// Picks lines in `range`: the first `wanted` (`forward`, after a cursor) or the last
/// `wanted`, of those matching `grep` (which sees the first [`LINE_BUDGET`] bytes of a
/// line, whatever the answer's shape). With `cut`, each line is cut to [`MAX_LINE_BYTES`]
/// and all of them kept within [`MAX_INLINE_BYTES`]: the oldest give way in a tail, and a
/// page after a cursor stops before the first line that does not fit (its `next` cursor
/// continues there). The log is read forward by a [`LineReader`], which holds at most
/// [`LINE_BUDGET`] bytes of a line when cutting, so memory is bounded by the budgets, not
/// by the longest line or by `lines`; without `cut` (`--output inline`) lines are whole.
fn select(
    file: &mut File,
    range: Range,
    wanted: u64,
    forward: bool,
    grep: Option<&Regex>,
    cut: bool,
    ansi: bool,
) -> io::Result<Selected> {
    let Range { from, end } = range;
    let reader_budget = if cut { LINE_BUDGET } else { usize::MAX };
    // `grep` matches the text without ANSI escape sequences, whatever the answer shows.
    let matches = |text: &str| {
        let text = &*crate::ansi::strip(text);
        grep.is_none_or(|re| {
            let mut seen = LINE_BUDGET.min(text.len());
            while !text.is_char_boundary(seen) {
                seen -= 1;
            }
            re.is_match(&text[..seen])
        })
    };
    let show = |line: ShownLine| -> (String, bool) {
        if !cut {
            return (line.text, false);
        }
        let line = line.cut_to(MAX_LINE_BYTES);
        let was_cut = line.cut > 0;
        (line.into_text(), was_cut)
    };
    let mut kept = Kept::default();
    let (mut total, mut matched) = (0u64, 0u64);
    if forward {
        let mut full = false;
        let mut reader = LineReader::with_budget(from, reader_budget).keeping_ansi(ansi);
        reader.read(file, end, true, |line, _| {
            if !matches(&line.text) {
                total += 1;
                return ControlFlow::Continue(());
            }
            let (text, was_cut) = show(line);
            full = kept.len() == wanted
                || (cut && kept.len() > 0 && kept.bytes + text.len() > MAX_INLINE_BYTES);
            if full {
                // A line past the limit: the answer stops before it.
                return ControlFlow::Break(());
            }
            total += 1;
            kept.push(text, was_cut);
            ControlFlow::Continue(())
        })?;
        let next = reader.position();
        // What the page left out after it is counted, not kept: the rest of the log is
        // read once more, its newlines counted (with grep, a line's first `LINE_BUDGET`
        // bytes matched at a time).
        let mut after = 0;
        if full && grep.is_none() {
            after = output_log::count_lines_between(file, next, end)?;
            total += after;
        } else if full {
            LineReader::new(next).read(file, end, true, |line, _| {
                total += 1;
                after += u64::from(matches(&line.text));
                ControlFlow::Continue(())
            })?;
        }
        let (lines, truncated) = kept.into_lines();
        return Ok(Selected {
            lines,
            total,
            omitted: Omitted { before: 0, after },
            truncated,
            next,
            size: end,
            cursor_reset: None,
        });
    }
    // A tail. Without grep, only the last `wanted` lines are read (plus one counting pass).
    let start = match grep {
        None => output_log::tail_start(file, end, wanted)?.max(from),
        Some(_) => from,
    };
    LineReader::with_budget(start, reader_budget)
        .keeping_ansi(ansi)
        .read(file, end, true, |line, _| {
            total += 1;
            if !matches(&line.text) {
                return ControlFlow::Continue(());
            }
            matched += 1;
            if wanted == 0 {
                return ControlFlow::Continue(());
            }
            if kept.len() == wanted {
                kept.pop_front();
            }
            let (text, was_cut) = show(line);
            kept.push(text, was_cut);
            while cut && kept.bytes > MAX_INLINE_BYTES && kept.len() > 1 {
                kept.pop_front();
            }
            ControlFlow::Continue(())
        })?;
    if grep.is_none() {
        total = count_lines(file, from, end)?;
        matched = total;
    }
    let before = matched.saturating_sub(kept.len());
    let (lines, truncated) = kept.into_lines();
    Ok(Selected {
        lines,
        total,
        omitted: Omitted { before, after: 0 },
        truncated,
        next: end,
        size: end,
        cursor_reset: None,
    })
}

/// Lines in `[from, end)`; `from` is 0 for a tail.
fn count_lines(file: &mut File, from: u64, end: u64) -> io::Result<u64> {
    if from == 0 {
        return output_log::count_lines(file, end);
    }
    let mut count = 0;
    LineReader::new(from).read(file, end, true, |_, _| {
        count += 1;
        ControlFlow::Continue(())
    })?;
    Ok(count)
}

fn summary(answer: &LogsAnswer, forward: bool) -> String {
    let mut summary = if forward {
        format!(
            "Showing {} new log lines for {}{}.",
            answer.shown_lines,
            answer.task_id,
            if answer.omitted.after > 0 {
                format!("; {} more follow after next_cursor", answer.omitted.after)
            } else {
                String::new()
            }
        )
    } else {
        format!(
            "Showing {} of {} log lines for {}.",
            answer.shown_lines, answer.total_lines, answer.task_id
        )
    };
    if answer.truncated_lines > 0 {
        summary.push_str(&format!(
            " {} long line(s) cut to {} bytes; the artifact holds them whole.",
            answer.truncated_lines, MAX_LINE_BYTES
        ));
    }
    summary
}
