//! Reading a task's log: lines of the current run's output (`logs`).
//!
//! Without `after`, the last `lines` lines; with `after` (a cursor), the lines that came
//! after it, at most `lines` of them. Every answer carries `next_cursor`. While the task
//! runs, a line still being written is held back, so no line is ever split across answers.
//!
//! [`LogsShape::Auto`] (the default) answers inline when nothing asked for was left out and
//! the lines fit the byte budget; otherwise it answers the lines it can show together with
//! a pointer to the whole log (`summary+artifact`). Each line shown is cut to
//! [`MAX_LINE_BYTES`] and all of them to [`MAX_INLINE_BYTES`], so one 10 MB line cannot
//! flood an agent. [`LogsShape::Inline`] never cuts; [`LogsShape::Artifact`] always points.
//! Following the log as it grows is [`crate::lifecycle::follow`]'s.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;

use regex::Regex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::output_log::{self, Cursor, CursorReset};
use crate::paths::names;
use crate::payload::answer::{Artifact, ArtifactAnswer, LogsAnswer};
use crate::payload::input::{DEFAULT_LOG_LINES, LogsInput};
use crate::payload::task::LogInfo;
use crate::state::observe;

/// Longest line shown whole in an `auto` answer; longer lines are cut.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Most bytes of lines in an `auto` answer; earlier lines give way first.
pub const MAX_INLINE_BYTES: usize = 64 * 1024;

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

/// The lines, inline or with a pointer to the whole log.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum LogsPage {
    Inline(LogsAnswer),
    Artifact(ArtifactAnswer),
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
    pub fn logs(&self, args: LogsArgs) -> Result<LogsPage> {
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
                from,
                end.max(from),
                wanted,
                after.is_some(),
                grep.as_ref(),
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
            kind: Some("inline"),
            task_id: record.id.clone(),
            run: record.run,
            status: record.status.into(),
            total_lines: selected.total,
            shown_lines: 0,
            has_more: selected.left_out,
            lines: Vec::new(),
            next_cursor: Cursor {
                run: record.run,
                offset: selected.next,
            },
            cursor_reset: selected.cursor_reset,
            truncated_lines: 0,
            grep: input.grep.clone(),
            log: LogInfo {
                path: path.clone(),
                size_bytes: selected.size,
            },
        };
        let mut lines = selected.lines;
        if shape != LogsShape::Inline {
            fit_budget(&mut answer, &mut lines, after.is_some());
        }
        answer.shown_lines = lines.len() as u64;
        answer.lines = lines.into_iter().map(|(text, _)| text).collect();
        let whole = !answer.has_more && answer.truncated_lines == 0;
        if shape == LogsShape::Inline || (shape == LogsShape::Auto && whole) {
            return Ok(LogsPage::Inline(answer));
        }
        let relative_path = path
            .strip_prefix(self.state.root())
            .map(PathBuf::from)
            .unwrap_or_else(|_| path.clone());
        let artifact = Artifact {
            key: format!("task.{}.logs", record.id),
            kind: "text",
            absolute_path: path,
            relative_path,
            size_bytes: answer.log.size_bytes,
        };
        let summary = summary(&answer, after.is_some());
        // Inside the pointer form the lines carry no `kind` of their own.
        answer.kind = None;
        Ok(LogsPage::Artifact(ArtifactAnswer {
            kind: "summary+artifact",
            summary,
            inline: answer,
            artifact,
        }))
    }
}

/// Lines chosen from the log, with their end offsets.
#[derive(Debug)]
struct Selected {
    lines: Vec<(String, u64)>,
    total: u64,
    left_out: bool,
    next: u64,
    size: u64,
    cursor_reset: Option<CursorReset>,
}

impl Selected {
    fn empty(next: u64) -> Selected {
        Selected {
            lines: Vec::new(),
            total: 0,
            left_out: false,
            next,
            size: 0,
            cursor_reset: None,
        }
    }
}

/// Picks lines in `[from, end)`: the first `wanted` (`forward`, after a cursor) or the
/// last `wanted`, of those matching `grep`.
fn select(
    file: &mut File,
    from: u64,
    end: u64,
    wanted: u64,
    forward: bool,
    grep: Option<&Regex>,
) -> io::Result<Selected> {
    if !forward && grep.is_none() {
        // The common case reads only the tail, plus one counting pass.
        let total = count_range(file, from, end)?;
        let start = output_log::tail_start(file, end, wanted)?.max(from);
        let bytes = output_log::read_range(file, start, end)?;
        let (lines, _) = output_log::split(&bytes, start, false);
        return Ok(Selected {
            left_out: (lines.len() as u64) < total,
            lines: lines.into_iter().map(|l| (l.text, l.end)).collect(),
            total,
            next: end,
            size: end,
            cursor_reset: None,
        });
    }
    let mut kept: VecDeque<(String, u64)> = VecDeque::new();
    let (mut total, mut matched, mut stopped_early) = (0u64, 0u64, false);
    let reached = output_log::each_line(file, from, end, |bytes, line_end| {
        let text = output_log::render(bytes);
        let matches = grep.is_none_or(|re| re.is_match(&text));
        if matches && forward && kept.len() as u64 == wanted {
            // A line past the limit: the answer stops before it.
            stopped_early = true;
            return ControlFlow::Break(());
        }
        total += 1;
        if matches {
            matched += 1;
            if kept.len() as u64 == wanted {
                kept.pop_front();
            }
            if wanted > 0 {
                kept.push_back((text, line_end));
            }
        }
        ControlFlow::Continue(())
    })?;
    let left_out = stopped_early || matched > kept.len() as u64;
    Ok(Selected {
        lines: kept.into_iter().collect(),
        total,
        left_out,
        next: if forward { reached } else { end },
        size: end,
        cursor_reset: None,
    })
}

fn count_range(file: &mut File, from: u64, end: u64) -> io::Result<u64> {
    if from == 0 {
        return output_log::count_lines(file, end);
    }
    let bytes = output_log::read_range(file, from, end)?;
    Ok(output_log::split(&bytes, from, false).0.len() as u64)
}

/// Cuts long lines and drops lines past the byte budget: the oldest for a tail, the newest
/// after a cursor (whose `next_cursor` then stops before them).
fn fit_budget(answer: &mut LogsAnswer, lines: &mut Vec<(String, u64)>, forward: bool) {
    for (text, _) in lines.iter_mut() {
        if text.len() > MAX_LINE_BYTES {
            let cut = floor_char_boundary(text, MAX_LINE_BYTES);
            let dropped = text.len() - cut;
            text.truncate(cut);
            text.push_str(&format!("…[{dropped} more bytes]"));
            answer.truncated_lines += 1;
        }
    }
    // Every line is at most MAX_LINE_BYTES (plus a short marker) by now, far below the
    // budget, so at least one line always fits.
    let mut used: usize = lines.iter().map(|(t, _)| t.len()).sum();
    while used > MAX_INLINE_BYTES && lines.len() > 1 {
        let (text, _) = if forward {
            let dropped = lines.pop().unwrap_or_default();
            // The next answer starts with the first line this one left out.
            if let Some((_, end)) = lines.last() {
                answer.next_cursor.offset = *end;
            }
            dropped
        } else {
            lines.remove(0)
        };
        used -= text.len();
        answer.has_more = true;
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn summary(answer: &LogsAnswer, forward: bool) -> String {
    let mut summary = if forward {
        format!(
            "Showing {} new log lines for {}{}.",
            answer.shown_lines,
            answer.task_id,
            if answer.has_more {
                "; more follow after next_cursor"
            } else {
                ""
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
