//! Reading a task's output log: cursors, lines and tails.
//!
//! The log holds the bytes exactly as the task wrote them. Here they become lines:
//! - a line ends at `\n`; a `\r\n` ending loses its `\r`;
//! - a `\r` inside a line is a progress bar redrawing itself, so the line shows what a
//!   terminal would: the text after the last `\r` (the bytes on disk keep every redraw);
//! - invalid UTF-8 becomes U+FFFD;
//! - a last line without a newline is a line once the task has ended; while it runs, such
//!   a line is still being written and is held back, so a line is never split across two
//!   answers.
//!
//! A [`Cursor`] is a position in one run's log: `"<run>:<byte offset>"`. It belongs to that
//! run: a cursor from another run, or one past the end of a log that was truncated, starts
//! again from the beginning of the current run and says so.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::ControlFlow;

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

/// What a terminal would show for one line's bytes.
pub fn render(body: &[u8]) -> String {
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let shown = match body.iter().rposition(|&b| b == b'\r') {
        // A redraw that ends with `\r` followed by nothing keeps the last drawn text.
        Some(i) if i + 1 < body.len() => &body[i + 1..],
        Some(_) | None => body,
    };
    String::from_utf8_lossy(shown).into_owned()
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
    file.seek(SeekFrom::Start(0))?;
    let mut reader = file.take(size);
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
