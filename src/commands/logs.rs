//! `logs {id, lines?, after?, grep?}`: lines of the current run's output.
//!
//! Without `after`, the last `lines` lines; with `after` (a cursor), the lines that came
//! after it, at most `lines` of them. Every answer carries `next_cursor`. While the task
//! runs, a line still being written is held back, so no line is ever split across answers.
//!
//! `--output auto` (the default) answers inline when nothing asked for was left out and the
//! lines fit the byte budget; otherwise it answers the lines it can show together with a
//! pointer to the whole log (`summary+artifact`). Each line shown is cut to
//! [`MAX_LINE_BYTES`] and all of them to [`MAX_INLINE_BYTES`], so one 10 MB line cannot
//! flood an agent. `--output inline` never cuts; `--output artifact` always points.
//! `--stream` follows the log as NDJSON `task.log.line` frames until the task has ended.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::cli::OutputMode;
use crate::commands::{Reply, encode, open_state};
use crate::envelope::Output;
use crate::error::{Error, Result};
use crate::follow::DirWatch;
use crate::output_log::{self, Cursor, CursorReset};
use crate::payload::answer::{Artifact, ArtifactAnswer, LogsAnswer};
use crate::payload::input::{DEFAULT_LOG_LINES, LogsInput};
use crate::payload::task::LogInfo;
use crate::state::observe;
use crate::timeline::{After, Flow, Selection, Timeline};

/// Longest line shown whole in an `auto` answer; longer lines are cut.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Most bytes of lines in an `auto` answer; earlier lines give way first.
pub const MAX_INLINE_BYTES: usize = 64 * 1024;

pub fn run(
    input: LogsInput,
    mode: OutputMode,
    output: &Output,
    stream: Option<Option<Duration>>,
) -> Result<Reply> {
    let state = open_state()?;
    let paths = state.task(&input.id);
    let grep = match &input.grep {
        Some(pattern) => Some(Regex::new(pattern).map_err(|e| {
            Error::input_at(
                "grep",
                format!("grep: not a regular expression: {e}"),
                "Give a valid regex, e.g. \"error|warn\".",
            )
        })?),
        None => None,
    };
    let after = input.after.as_deref().map(Cursor::parse).transpose()?;
    if let Some(timeout) = stream {
        return follow(&paths, &input, after, grep.as_ref(), output, timeout);
    }
    let record = observe(&paths, &input.id)?;
    let wanted = input.lines.unwrap_or(DEFAULT_LOG_LINES);
    let path = paths.log();
    let mut file = match File::open(&path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::store("open the log", &path, e)),
    };
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
        status: record.status,
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
    if mode != OutputMode::Inline {
        fit_budget(&mut answer, &mut lines, after.is_some());
    }
    answer.shown_lines = lines.len() as u64;
    answer.lines = lines.into_iter().map(|(text, _)| text).collect();
    let whole = !answer.has_more && answer.truncated_lines == 0;
    if mode == OutputMode::Inline || (mode == OutputMode::Auto && whole) {
        return Ok(Reply::Data(encode(answer)?));
    }
    let relative_path = path
        .strip_prefix(state.root())
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
    Ok(Reply::Data(encode(ArtifactAnswer {
        kind: "summary+artifact",
        summary,
        inline: answer,
        artifact,
    })?))
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

/// `logs --stream`: NDJSON line frames until the run has ended (or `timeout`).
fn follow(
    paths: &crate::paths::TaskPaths,
    input: &LogsInput,
    after: Option<Cursor>,
    grep: Option<&Regex>,
    output: &Output,
    timeout: Option<Duration>,
) -> Result<Reply> {
    let deadline = timeout.map(|t| Instant::now() + t);
    // Watch before the first read, so nothing written in between is missed.
    let watch = DirWatch::new(&paths.dir, false);
    let record = observe(paths, &input.id)?;
    let selection = Selection {
        after: after.map(After::Cursor),
        lines: if after.is_some() { None } else { input.lines },
        only_lines: true,
    };
    let mut sink = |frame: crate::payload::frame::Frame| {
        let shown =
            grep.is_none_or(|re| frame.data["line"].as_str().is_some_and(|l| re.is_match(l)));
        if shown && output.frame(&frame).is_err() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    };
    let (mut timeline, mut flow) = Timeline::open(paths, &record, selection, &mut sink)?;
    while flow == Flow::Open && watch.wait(deadline) && !output.reader_gone() {
        flow = timeline.poll(&mut sink)?;
    }
    Ok(Reply::Streamed)
}
