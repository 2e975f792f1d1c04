//! Reading a task's output log: cursors, lines and tails.
//!
//! The log holds the bytes exactly as the task wrote them. Here they become lines:
//! - a line ends at `\n`; a `\r\n` ending loses its `\r`;
//! - a `\r` inside a line is a progress bar redrawing itself, so the line shows what a
//!   terminal would: the text after the last `\r` that is followed by something (the bytes
//!   on disk keep every redraw);
//! - invalid UTF-8 becomes U+FFFD;
//! - a last line without a newline is a line once the task has ended; while it runs, such
//!   a line is still being written and is held back, so a line is never split across two
//!   answers.
//!
//! Followers of a running task (the supervisor, `logs --stream`, `events --stream`, `wait
//! {until: {log}}`) read the log with a [`LineReader`]: forward, each byte once, however long
//! a line grows before its `\n` (a `\r` progress bar may redraw one line for hours). A line
//! being built keeps at most [`LINE_BUDGET`] bytes of what it shows, so memory stays bounded
//! whatever the task prints; a longer line is shown cut, saying how many bytes were left out.
//!
//! A [`Cursor`] is a position in one run's log: `"<run>:<byte offset>"`. It belongs to that
//! run: a cursor from another run, or one past the end of a log that was truncated, starts
//! again from the beginning of the current run and says so.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A position in one run's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub run: u32,
    pub offset: u64,
}

impl Cursor {
    pub fn parse(text: &str) -> Result<Cursor> {
        let invalid = || {
            Error::input_at(
                "after",
                format!("after: {text:?} is not a cursor"),
                "Pass the next_cursor (or a frame's cursor) of an earlier answer unchanged, or leave after out to start from the end.",
            )
        };
        let (run, offset) = text.split_once(':').ok_or_else(invalid)?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(run) || !digits(offset) {
            return Err(invalid());
        }
        Ok(Cursor {
            run: run.parse().map_err(|_| invalid())?,
            offset: offset.parse().map_err(|_| invalid())?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.run, self.offset)
    }
}

impl serde::Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl schemars::JsonSchema for Cursor {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cursor".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        crate::wire_schema::cursor(generator)
    }
}

/// Why a cursor was not used as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CursorReset {
    /// The cursor belongs to an earlier run; reading starts at the current run's beginning.
    NewRun,
    /// The log is shorter than the cursor (it was truncated); reading starts at 0.
    Truncated,
}

/// Where to start reading for a cursor, given the current run and log size.
pub fn resolve(cursor: Cursor, run: u32, size: u64) -> (u64, Option<CursorReset>) {
    if cursor.run != run {
        (0, Some(CursorReset::NewRun))
    } else if cursor.offset > size {
        (0, Some(CursorReset::Truncated))
    } else {
        (cursor.offset, None)
    }
}

/// One line and where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    /// Byte offset just past this line (and its newline): the cursor to resume after it.
    pub end: u64,
}

/// Lines in bytes that start at `base`; `complete_only` holds back a last line without `\n`.
/// Returns the lines and the offset just past the last one returned.
pub fn split(bytes: &[u8], base: u64, complete_only: bool) -> (Vec<Line>, u64) {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let (body, next) = match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(i) => (&bytes[start..start + i], start + i + 1),
            None if complete_only => break,
            None => (&bytes[start..], bytes.len()),
        };
        lines.push(Line {
            text: render(body),
            end: base + next as u64,
        });
        start = next;
    }
    (lines, base + start as u64)
}

/// Whether `text` is at most the line budget followed by a cut's marker.
fn already_cut(text: &str) -> bool {
    let Some((kept, marker)) = text.rsplit_once("…[") else {
        return false;
    };
    let count = marker.strip_suffix(" more bytes]").unwrap_or_default();
    kept.len() <= MAX_LINE_BYTES && !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit())
}

/// What a terminal would show for one line's bytes: the last non-empty redraw (the text
/// between two `\r`, or after the last one). A line ending in `\r` (a `\r\n` ending, or a
/// bar that left its last drawing) keeps its last drawn text.
pub fn render(body: &[u8]) -> String {
    let shown = body
        .rsplit(|&b| b == b'\r')
        .find(|segment| !segment.is_empty())
        .unwrap_or_default();
    String::from_utf8_lossy(shown).into_owned()
}

/// The most bytes of one line kept in memory by a [`LineReader`]: what a line shows is cut
/// there, and a `ready` log condition (and `logs {grep}`) is matched against the first
/// `LINE_BUDGET` bytes of what a long line shows.
pub const LINE_BUDGET: usize = 64 * 1024;

/// The line budget: the most bytes of one line that an answer or a frame shows (`logs`,
/// `events`, stream frames, `TaskNotReady`'s `log_tail`, a progress message). A longer
/// line is cut there and says how many bytes were left out ([`mark_cut`]).
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// The answer budget: the most bytes of lines (or frames) in one answer. Past it, the
/// oldest give way in a tail, and a page after a cursor stops early and its cursor
/// continues.
pub const MAX_INLINE_BYTES: usize = 64 * 1024;

/// What one line shows, cut to a reader's budget ([`LINE_BUDGET`] unless told otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownLine {
    /// The text, valid UTF-8, at most the budget's bytes of the line's bytes.
    pub text: String,
    /// Bytes of the shown text left out past the budget (0 for a whole line).
    pub cut: u64,
}

impl ShownLine {
    /// The line cut further, to at most `max` bytes of text (at a character boundary).
    pub fn cut_to(mut self, max: usize) -> ShownLine {
        self.cut += truncate(&mut self.text, max);
        self
    }

    /// The line without ANSI escape sequences, unless `keep_ansi` ([`crate::ansi`]); `cut`
    /// still counts the bytes left out of the line as written.
    pub fn clean(mut self, keep_ansi: bool) -> ShownLine {
        self.text = crate::ansi::shown(self.text, keep_ansi);
        self
    }

    /// The text, with a marker saying how much was left out when the line was cut.
    pub fn into_text(self) -> String {
        mark_cut(self.text, self.cut)
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary; returns the bytes left out.
pub fn truncate(text: &mut String, max: usize) -> u64 {
    if text.len() <= max {
        return 0;
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let dropped = text.len() - at;
    text.truncate(at);
    dropped as u64
}

/// `text` followed by the marker every cut line carries, `…[<cut> more bytes]`, when `cut`
/// bytes were left out of it.
pub fn mark_cut(mut text: String, cut: u64) -> String {
    if cut > 0 {
        text.push_str(&format!("…[{cut} more bytes]"));
    }
    text
}

/// `text` cut to the line budget, with the marker when it was cut; copies at most the
/// budget of it. A text this already cut (the budget and its marker) is left as it is, so
/// cutting twice (the supervisor, then the wire) says the first cut's count.
pub fn shorten(text: &str) -> String {
    if already_cut(text) {
        return text.to_owned();
    }
    let mut at = text.len().min(MAX_LINE_BYTES);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    mark_cut(text[..at].to_owned(), (text.len() - at) as u64)
}

/// One redraw of a line (the text between two `\r`), its first `budget` bytes.
#[derive(Debug, Default, Clone)]
struct Segment {
    kept: Vec<u8>,
    len: u64,
}

impl Segment {
    fn push(&mut self, bytes: &[u8], budget: usize) {
        let room = budget.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.len += bytes.len() as u64;
    }

    fn clear(&mut self) {
        self.kept.clear();
        self.len = 0;
    }

    fn shown(&self) -> ShownLine {
        // A multi-byte character cut at the budget is dropped whole, not shown as U+FFFD.
        let kept = match std::str::from_utf8(&self.kept) {
            Err(e) if e.error_len().is_none() && self.len > self.kept.len() as u64 => {
                &self.kept[..e.valid_up_to()]
            }
            _ => &self.kept[..],
        };
        ShownLine {
            text: String::from_utf8_lossy(kept).into_owned(),
            cut: self.len - kept.len() as u64,
        }
    }
}

/// A line being read, built from pieces as they arrive: it keeps only what [`render`] would
/// show (the last non-empty redraw), cut to its budget.
#[derive(Debug)]
struct LineBuilder {
    /// The most bytes of a redraw kept.
    budget: usize,
    /// The redraw being written (after the last `\r`).
    current: Segment,
    /// The last non-empty redraw before it.
    previous: Segment,
    /// Bytes of the whole line so far.
    len: u64,
    /// The line began before where reading started: its first piece is not its start.
    partial: bool,
    /// A redraw was completed (by `\r`) since [`LineBuilder::take_redraw`] last looked.
    fresh_redraw: bool,
}

impl LineBuilder {
    fn new(budget: usize) -> LineBuilder {
        LineBuilder {
            budget,
            current: Segment::default(),
            previous: Segment::default(),
            len: 0,
            partial: false,
            fresh_redraw: false,
        }
    }

    /// Adds bytes of the line (no `\n` among them).
    fn push(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        let mut pieces = bytes.split(|&b| b == b'\r');
        let Some(mut piece) = pieces.next() else {
            return;
        };
        for next in pieces {
            // `piece` ends at a `\r`: a redraw is complete.
            self.current.push(piece, self.budget);
            if self.partial {
                // The redraw began before we started reading: not a whole one.
                self.partial = false;
                self.current.clear();
            } else if self.current.len > 0 {
                std::mem::swap(&mut self.previous, &mut self.current);
                self.current.clear();
                self.fresh_redraw = true;
            }
            piece = next;
        }
        self.current.push(piece, self.budget);
    }

    /// Ends the line: what it shows, or `None` for the rest of a line whose start was not
    /// read and that was never redrawn whole.
    fn finish(&mut self) -> Option<ShownLine> {
        let shown = match (self.partial, self.current.len > 0) {
            (true, _) => None,
            (false, true) => Some(self.current.shown()),
            (false, false) => Some(self.previous.shown()),
        };
        *self = LineBuilder::new(self.budget);
        shown
    }

    /// The newest whole redraw, if one was completed since the last call.
    fn take_redraw(&mut self) -> Option<ShownLine> {
        std::mem::take(&mut self.fresh_redraw).then(|| self.previous.shown())
    }
}

/// Reads a growing log forward, each byte once, handing out complete lines as their `\n`
/// arrives. A line still being written stays in the reader (at most [`LINE_BUDGET`] bytes
/// of it, or the budget given to [`LineReader::with_budget`]), so a follower never scans it
/// again, however often the task redraws it.
///
/// A read that found only more of an unfinished line (a `\r` bar redrawing itself) makes
/// the next one worth doing only [`PACE`] later ([`LineReader::next_read_at`]): a follower
/// woken at every redraw of a bar redrawn each millisecond then reads it every `PACE`, and
/// a line that ends meanwhile is handed out at most `PACE` late.
#[derive(Debug)]
pub struct LineReader {
    /// Where the line being built starts: just past the last line handed out.
    line_start: u64,
    /// How far the log has been read.
    read_to: u64,
    line: LineBuilder,
    /// When the last read found only more of the unfinished line.
    only_unfinished_at: Option<Instant>,
    /// Hand out lines with their ANSI escape sequences (else without: [`crate::ansi`]).
    keep_ansi: bool,
}

/// How long a follower lets a line that is only being redrawn grow before it reads again.
pub const PACE: Duration = Duration::from_millis(10);

/// How many bytes a [`LineReader`] reads at once.
const READ_CHUNK: usize = 32 * 1024;

impl LineReader {
    /// A reader starting at the beginning of a line at `offset`.
    pub fn new(offset: u64) -> LineReader {
        LineReader::with_budget(offset, LINE_BUDGET)
    }

    /// A reader starting at the beginning of a line at `offset` that keeps at most `budget`
    /// bytes of a line (`usize::MAX`: whole lines, however long, for a caller that asked
    /// for them whole and so for their memory).
    pub fn with_budget(offset: u64, budget: usize) -> LineReader {
        LineReader {
            line_start: offset,
            read_to: offset,
            line: LineBuilder::new(budget),
            only_unfinished_at: None,
            keep_ansi: false,
        }
    }

    /// Lines are handed out without their ANSI escape sequences (colours, cursor moves),
    /// as JSON answers give them; `keep` hands them out as written (a payload's
    /// `"ansi": true`, the browser view that renders the colours).
    pub fn keeping_ansi(mut self, keep: bool) -> LineReader {
        self.keep_ansi = keep;
        self
    }

    /// A reader starting at `offset`, which may be in the middle of a line: the rest of that
    /// line is not handed out (only whole redraws of it, by [`LineReader::take_redraw`]).
    pub fn mid_line(offset: u64) -> LineReader {
        let mut reader = LineReader::new(offset);
        reader.line.partial = offset > 0;
        reader
    }

    /// Just past the last line handed out: where a cursor resumes.
    pub fn position(&self) -> u64 {
        self.line_start
    }

    /// How far the log has been read (the unfinished line included).
    pub fn read_to(&self) -> u64 {
        self.read_to
    }

    /// When a next read is worth doing: [`PACE`] after a read that found only more of an
    /// unfinished line; `None` (at once) otherwise.
    pub fn next_read_at(&self) -> Option<Instant> {
        self.only_unfinished_at.map(|at| at + PACE)
    }

    /// Sleeps until [`LineReader::next_read_at`], for a follower with nothing else to do
    /// meanwhile (never in the supervisor, whose loop must not block).
    pub fn pace(&self) {
        if let Some(at) = self.next_read_at() {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
    }

    /// Reads the log from where it stopped up to `to`, calling `visit` with each line that
    /// ends there and the offset just past it (its cursor). With `last` (the run is over), a
    /// final line without `\n` ends at `to`. A line whose visit breaks is not consumed: the
    /// next call reads it again, from its start.
    pub fn read(
        &mut self,
        file: &mut File,
        to: u64,
        last: bool,
        mut visit: impl FnMut(ShownLine, u64) -> ControlFlow<()>,
    ) -> io::Result<()> {
        let (from, handed) = (self.read_to, self.line_start);
        let read = self.read_lines(file, to, last, &mut visit);
        // More of the unfinished line and nothing else: the next read can wait a little.
        let only_unfinished = self.read_to > from && self.line_start == handed;
        self.only_unfinished_at = only_unfinished.then(Instant::now);
        read
    }

    fn read_lines(
        &mut self,
        file: &mut File,
        to: u64,
        last: bool,
        visit: &mut impl FnMut(ShownLine, u64) -> ControlFlow<()>,
    ) -> io::Result<()> {
        if self.read_to < to {
            file.seek(SeekFrom::Start(self.read_to))?;
            let mut buffer = vec![0; READ_CHUNK.min((to - self.read_to) as usize)];
            while self.read_to < to {
                let want = (to - self.read_to).min(buffer.len() as u64) as usize;
                let n = match file.read(&mut buffer[..want]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                let chunk_start = self.read_to;
                let mut rest = &buffer[..n];
                let mut at = chunk_start;
                while let Some(i) = rest.iter().position(|&b| b == b'\n') {
                    self.line.push(&rest[..i]);
                    let end = at + i as u64 + 1;
                    if let Some(shown) = self.line.finish()
                        && visit(shown.clean(self.keep_ansi), end).is_break()
                    {
                        // Not consumed: read it again, from its start, next time.
                        self.read_to = self.line_start;
                        return Ok(());
                    }
                    self.line_start = end;
                    rest = &rest[i + 1..];
                    at = end;
                }
                self.line.push(rest);
                self.read_to = chunk_start + n as u64;
            }
        }
        if last && self.read_to > self.line_start && self.read_to == to {
            let end = self.read_to;
            let refused = self
                .line
                .finish()
                .is_some_and(|shown| visit(shown.clean(self.keep_ansi), end).is_break());
            if refused {
                self.read_to = self.line_start;
            } else {
                self.line_start = end;
            }
        }
        Ok(())
    }

    /// The newest whole redraw of the line being written (a `\r` progress bar's last full
    /// drawing), once per new one.
    pub fn take_redraw(&mut self) -> Option<ShownLine> {
        let keep = self.keep_ansi;
        self.line.take_redraw().map(|shown| shown.clean(keep))
    }
}

const BLOCK: usize = 64 * 1024;

/// Reads bytes `[from, to)` of the log.
pub fn read_range(file: &mut File, from: u64, to: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity(to.saturating_sub(from).min(1 << 24) as usize);
    file.take(to.saturating_sub(from)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Calls `visit` with each line in `[from, to)` (without its `\n`) and the offset just past
/// it, in order; a last line without `\n` is visited too. Reads in blocks, so memory is
/// bounded by the longest line. Returns the offset just past the last line whose visit
/// continued: where a later call should start.
pub fn each_line(
    file: &mut File,
    from: u64,
    to: u64,
    mut visit: impl FnMut(&[u8], u64) -> ControlFlow<()>,
) -> io::Result<u64> {
    const CHUNK: u64 = 1 << 20;
    file.seek(SeekFrom::Start(from))?;
    let mut buffer = vec![0; CHUNK.min(to.saturating_sub(from)).max(1) as usize];
    let mut carry: Vec<u8> = Vec::new();
    let (mut pos, mut done) = (from, from);
    while pos < to {
        let want = (to - pos).min(buffer.len() as u64) as usize;
        let n = file.read(&mut buffer[..want])?;
        if n == 0 {
            break;
        }
        let mut chunk = &buffer[..n];
        pos += n as u64;
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            carry.extend_from_slice(&chunk[..i]);
            chunk = &chunk[i + 1..];
            let end = done + carry.len() as u64 + 1;
            if visit(&carry, end).is_break() {
                return Ok(done);
            }
            carry.clear();
            done = end;
        }
        carry.extend_from_slice(chunk);
    }
    if !carry.is_empty() {
        let end = done + carry.len() as u64;
        if visit(&carry, end).is_continue() {
            done = end;
        }
    }
    Ok(done)
}

/// Number of lines in the first `size` bytes (a final unterminated line counts).
pub fn count_lines(file: &mut File, size: u64) -> io::Result<u64> {
    count_lines_between(file, 0, size)
}

/// Number of lines in bytes `[from, to)`, `from` being a line's start (a final unterminated
/// line counts). Counts newlines in blocks: no line is built.
pub fn count_lines_between(file: &mut File, from: u64, to: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(from))?;
    let mut reader = file.take(to.saturating_sub(from));
    let mut buffer = vec![0; 16 * BLOCK];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buffer[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// The offset at which the last `wanted` lines of the first `end` bytes begin. Reads
/// backwards in blocks, so only the tail is touched.
pub fn tail_start(file: &mut File, end: u64, wanted: u64) -> io::Result<u64> {
    if wanted == 0 {
        return Ok(end);
    }
    // The byte before `end` is the newline of the last line (or part of an unterminated
    // one); it does not start another line.
    let mut newlines = 0;
    let mut pos = end.saturating_sub(1);
    let mut block = vec![0; BLOCK];
    while pos > 0 {
        let start = pos.saturating_sub(BLOCK as u64);
        let chunk = &mut block[..(pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        for (i, &b) in chunk.iter().enumerate().rev() {
            if b == b'\n' {
                newlines += 1;
                if newlines == wanted {
                    return Ok(start + i as u64 + 1);
                }
            }
        }
        pos = start;
    }
    Ok(0)
}

/// The offset just past the last `\n` in `[from, end)`: where complete lines stop.
pub fn complete_end(file: &mut File, from: u64, end: u64) -> io::Result<u64> {
    let mut pos = end;
    let mut block = vec![0; BLOCK];
    while pos > from {
        let start = pos.saturating_sub(BLOCK as u64).max(from);
        let chunk = &mut block[..(pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        pos = start;
    }
    Ok(from)
}

/// Keeps the previous run's output as `output.<run>.log`, and only that one: under the
/// task's lock, before the next run opens a new log (`start` and `restart` before they
/// launch its supervisor; a supervisor before it restarts the task itself). Renamed and
/// removed in the task's folder: a link planted there is moved or removed itself, never
/// followed.
pub fn keep_previous(folder: &crate::state::folder::Folder, prior_run: u32) -> Result<()> {
    use crate::paths::names;
    if prior_run > 1 {
        let _ = folder.remove(&names::old_log(prior_run - 1));
    }
    folder.rename(names::LOG, &names::old_log(prior_run))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(content: &[u8]) -> File {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(content).expect("write");
        file
    }

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn splits_lines_and_holds_back_an_unfinished_one() {
        let (lines, end) = split(b"a\nb\r\nc", 10, true);
        assert_eq!(texts(&lines), ["a", "b"]);
        assert_eq!((lines[0].end, lines[1].end, end), (12, 15, 15));
        let (lines, end) = split(b"a\nb\r\nc", 10, false);
        assert_eq!(texts(&lines), ["a", "b", "c"]);
        assert_eq!(end, 16);
    }

    #[test]
    fn renders_progress_bars_and_bad_bytes() {
        assert_eq!(render(b"10%\r20%\r30%"), "30%");
        assert_eq!(render(b"done\r"), "done");
        assert_eq!(render(b"done\r\r"), "done");
        assert_eq!(render(b"\r\r"), "");
        assert_eq!(render(b"x\xff\xfe\x00y"), "x\u{fffd}\u{fffd}\0y");
        assert_eq!(render(b""), "");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor::parse("3:1024").expect("valid");
        assert_eq!(
            cursor,
            Cursor {
                run: 3,
                offset: 1024
            }
        );
        assert_eq!(cursor.to_string(), "3:1024");
        for bad in [
            "",
            "3",
            ":",
            "3:",
            ":4",
            "a:1",
            "1:-1",
            "1:2:3",
            "1: 2",
            "99999999999:1",
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(resolve(cursor, 3, 2000), (1024, None));
        assert_eq!(resolve(cursor, 4, 2000), (0, Some(CursorReset::NewRun)));
        assert_eq!(resolve(cursor, 3, 10), (0, Some(CursorReset::Truncated)));
    }

    #[test]
    fn tails_and_counts_across_blocks() {
        let mut content = Vec::new();
        for i in 0..50_000 {
            content.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        content.extend_from_slice(b"partial");
        let mut file = file_with(&content);
        let size = content.len() as u64;
        assert_eq!(count_lines(&mut file, size).expect("count"), 50_001);
        let start = tail_start(&mut file, size, 3).expect("tail");
        let bytes = read_range(&mut file, start, size).expect("read");
        assert_eq!(
            texts(&split(&bytes, start, false).0),
            ["line 49998", "line 49999", "partial"]
        );
        let end = complete_end(&mut file, 0, size).expect("complete");
        assert_eq!(end, size - "partial".len() as u64);
        assert_eq!(tail_start(&mut file, size, 1_000_000).expect("all"), 0);
        assert_eq!(tail_start(&mut file, size, 0).expect("none"), size);
    }

    #[test]
    fn visits_each_line_and_stops_where_asked() {
        let mut file = file_with(b"one\ntwo\r\nthree");
        let mut seen = Vec::new();
        let done = each_line(&mut file, 0, 15, |line, end| {
            seen.push((render(line), end));
            ControlFlow::Continue(())
        })
        .expect("walk");
        assert_eq!(
            seen,
            [("one".into(), 4), ("two".into(), 9), ("three".into(), 14)]
        );
        assert_eq!(done, 14);
        let done = each_line(&mut file, 4, 14, |line, _| {
            if line == b"three" {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .expect("walk");
        assert_eq!(done, 9, "a refused line is not consumed");
    }

    /// Every line a reader hands out, reading `content` as it is written in pieces of the
    /// sizes given (repeated), with a read after each.
    fn read_in_pieces(content: &[u8], pieces: &[usize], last: bool) -> Vec<(String, u64)> {
        let mut file = tempfile::tempfile().expect("temp file");
        let mut reader = LineReader::new(0);
        let mut seen = Vec::new();
        let mut written: usize = 0;
        for &size in pieces.iter().cycle() {
            let upto = written.saturating_add(size).min(content.len());
            file.write_all(&content[written..upto]).expect("write");
            written = upto;
            let end = written == content.len();
            reader
                .read(&mut file, written as u64, last && end, |line, at| {
                    seen.push((line.into_text(), at));
                    ControlFlow::Continue(())
                })
                .expect("read");
            if end {
                break;
            }
        }
        seen
    }

    #[test]
    fn a_line_reader_hands_out_what_render_shows_however_the_bytes_arrive() {
        let content = b"one\n10%\r20%\r30%\ntwo\r\nbar\r\r\nlast\rpart";
        let whole = split(content, 0, false).0;
        let expected: Vec<(String, u64)> = whole.into_iter().map(|l| (l.text, l.end)).collect();
        for pieces in [vec![1], vec![2], vec![3], vec![7, 1], vec![content.len()]] {
            assert_eq!(
                read_in_pieces(content, &pieces, true),
                expected,
                "{pieces:?}"
            );
        }
        // While the run goes on, the unfinished line is held back.
        let running = read_in_pieces(content, &[5], false);
        assert_eq!(running, expected[..expected.len() - 1]);
    }

    #[test]
    fn a_long_line_is_cut_to_the_budget_and_says_how_much() {
        let mut content = vec![b'x'; LINE_BUDGET + 10];
        content.extend_from_slice("é\n".as_bytes());
        let lines = read_in_pieces(&content, &[4096], false);
        assert_eq!(lines.len(), 1);
        let (text, end) = &lines[0];
        assert_eq!(*end, content.len() as u64);
        assert_eq!(
            text,
            &format!("{}…[12 more bytes]", "x".repeat(LINE_BUDGET))
        );
        // A character cut in two at the budget is left out whole.
        let mut content = vec![b'y'; LINE_BUDGET - 1];
        content.extend_from_slice("éz\n".as_bytes());
        let (text, _) = read_in_pieces(&content, &[1000], false).remove(0);
        assert_eq!(
            text,
            format!("{}…[3 more bytes]", "y".repeat(LINE_BUDGET - 1))
        );
    }

    #[test]
    fn a_reader_keeps_the_newest_redraw_and_skips_a_partial_line() {
        let mut file = file_with(b"tail of an old line\r 5%\r 6%\r 7");
        let mut reader = LineReader::mid_line(3);
        let mut seen = Vec::new();
        reader
            .read(&mut file, 31, false, |line, _| {
                seen.push(line.text);
                ControlFlow::Continue(())
            })
            .expect("read");
        assert!(seen.is_empty());
        assert_eq!(reader.take_redraw().map(|l| l.text).as_deref(), Some(" 6%"));
        assert_eq!(reader.take_redraw(), None, "once per new redraw");
        // The partial first redraw ("l of an old line") is never shown.
        file.write_all(b"\nnext\n").expect("write");
        reader
            .read(&mut file, 37, false, |line, _| {
                seen.push(line.text);
                ControlFlow::Continue(())
            })
            .expect("read");
        assert_eq!(seen, [" 7", "next"]);
    }

    #[test]
    fn cutting_says_how_much_was_left_out_and_is_done_once() {
        assert_eq!(shorten("short"), "short");
        let long = "é".repeat(MAX_LINE_BYTES);
        let cut = shorten(&long);
        // A character is never split: the cut falls on the boundary below the budget.
        let kept = "é".repeat(MAX_LINE_BYTES / 2);
        assert_eq!(
            cut,
            format!("{kept}…[{} more bytes]", long.len() - kept.len())
        );
        assert_eq!(shorten(&cut), cut, "cutting again changes nothing");
        // A text that merely looks marked but is longer than the budget is still cut.
        let fake = format!("{}…[5 more bytes]", "x".repeat(MAX_LINE_BYTES + 1));
        let dropped = fake.len() - MAX_LINE_BYTES;
        assert_eq!(
            shorten(&fake),
            format!("{}…[{dropped} more bytes]", "x".repeat(MAX_LINE_BYTES))
        );
        let line = ShownLine {
            text: "y".repeat(MAX_LINE_BYTES + 3),
            cut: 7,
        }
        .cut_to(MAX_LINE_BYTES);
        assert_eq!(line.cut, 10);
        assert_eq!(
            line.into_text(),
            format!("{}…[10 more bytes]", "y".repeat(MAX_LINE_BYTES))
        );
    }

    #[test]
    fn a_refused_line_is_read_again() {
        let mut file = file_with(b"a\nb\nc\n");
        let mut reader = LineReader::new(0);
        let mut seen = Vec::new();
        reader
            .read(&mut file, 6, false, |line, _| {
                if line.text == "b" {
                    return ControlFlow::Break(());
                }
                seen.push(line.text);
                ControlFlow::Continue(())
            })
            .expect("read");
        assert_eq!(
            (seen.as_slice(), reader.position()),
            (["a".to_owned()].as_slice(), 2)
        );
        reader
            .read(&mut file, 6, false, |line, _| {
                seen.push(line.text);
                ControlFlow::Continue(())
            })
            .expect("read");
        assert_eq!(seen, ["a", "b", "c"]);
    }

    #[test]
    fn edge_cases_of_empty_and_newline_only_logs() {
        let mut empty = file_with(b"");
        assert_eq!(count_lines(&mut empty, 0).expect("count"), 0);
        assert_eq!(tail_start(&mut empty, 0, 5).expect("tail"), 0);
        let mut blank = file_with(b"\n\n");
        assert_eq!(count_lines(&mut blank, 2).expect("count"), 2);
        assert_eq!(tail_start(&mut blank, 2, 1).expect("tail"), 1);
    }
}
