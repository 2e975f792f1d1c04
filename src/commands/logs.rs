//! `logs {id, lines?}`: the last lines of the current run's output.
//!
//! The log holds bytes exactly as the task wrote them; here they become lines: invalid
//! UTF-8 turns into U+FFFD, and a last line without a newline is still a line. Only the
//! tail is read into memory, so a large log costs one pass to count its lines.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use serde::Serialize;

use crate::commands::open_state;
use crate::error::{Error, Result};
use crate::payload::input::{DEFAULT_LOG_LINES, LogsInput};
use crate::payload::task::LogInfo;
use crate::state::observe;

#[derive(Debug, Serialize)]
pub struct LogsAnswer {
    pub task_id: String,
    pub run: u32,
    pub total_lines: u64,
    pub shown_lines: u64,
    /// Whether earlier lines were left out.
    pub has_more: bool,
    pub lines: Vec<String>,
    pub log: LogInfo,
}

pub fn run(input: LogsInput) -> Result<LogsAnswer> {
    let paths = open_state()?.task(&input.id);
    let record = observe(&paths, &input.id)?;
    let wanted = input.lines.unwrap_or(DEFAULT_LOG_LINES);
    let path = paths.log();
    let (total_lines, tail, size) = match File::open(&path) {
        Ok(mut file) => {
            let read = |file: &mut File| -> io::Result<(u64, Vec<u8>, u64)> {
                let size = file.metadata()?.len();
                let total = count_lines(file, size)?;
                let tail = read_tail(file, size, wanted)?;
                Ok((total, tail, size))
            };
            read(&mut file).map_err(|e| Error::store("read the log", &path, e))?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => (0, Vec::new(), 0),
        Err(e) => return Err(Error::store("open the log", &path, e)),
    };
    let lines = split_lines(&tail);
    let shown_lines = lines.len() as u64;
    Ok(LogsAnswer {
        task_id: record.id,
        run: record.run,
        total_lines,
        shown_lines,
        has_more: shown_lines < total_lines,
        lines,
        log: LogInfo {
            path,
            size_bytes: size,
        },
    })
}

const BLOCK: usize = 64 * 1024;

/// Lines in the first `size` bytes: newlines, plus one for a final unterminated line.
fn count_lines(file: &mut File, size: u64) -> io::Result<u64> {
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

/// The bytes of the last `wanted` lines among the first `size` bytes.
fn read_tail(file: &mut File, size: u64, wanted: u64) -> io::Result<Vec<u8>> {
    if wanted == 0 || size == 0 {
        return Ok(Vec::new());
    }
    let mut tail: Vec<u8> = Vec::new();
    let mut end = size;
    loop {
        let start = end.saturating_sub(BLOCK as u64);
        let mut block = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        end = start;
        // The file's final newline ends the last line; it does not start another.
        let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
        let newlines = body.iter().filter(|&&b| b == b'\n').count() as u64;
        if newlines >= wanted {
            let mut seen = 0;
            let cut = body.iter().rposition(|&b| {
                seen += u64::from(b == b'\n');
                seen == wanted
            });
            return Ok(tail.split_off(cut.map_or(0, |i| i + 1)));
        }
        if start == 0 {
            return Ok(tail);
        }
    }
}

/// Splits bytes into lines; invalid UTF-8 becomes U+FFFD.
fn split_lines(bytes: &[u8]) -> Vec<String> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == b'\n')
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tail_of(content: &[u8], wanted: u64) -> (u64, Vec<String>) {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(content).expect("write");
        let size = content.len() as u64;
        let total = count_lines(&mut file, size).expect("count");
        let tail = read_tail(&mut file, size, wanted).expect("tail");
        (total, split_lines(&tail))
    }

    #[test]
    fn tails_lines_with_and_without_a_final_newline() {
        assert_eq!(tail_of(b"a\nb\nc\n", 2), (3, vec!["b".into(), "c".into()]));
        assert_eq!(tail_of(b"a\nb\nc", 2), (3, vec!["b".into(), "c".into()]));
        assert_eq!(
            tail_of(b"a\nb\nc", 10),
            (3, vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(tail_of(b"", 10), (0, vec![]));
        assert_eq!(tail_of(b"\n", 10), (1, vec![String::new()]));
        assert_eq!(tail_of(b"a\n\n", 1), (2, vec![String::new()]));
        assert_eq!(
            tail_of(b"x\xff\xfe\x00y\n", 1),
            (1, vec!["x\u{fffd}\u{fffd}\0y".into()])
        );
        assert_eq!(tail_of(b"a\nb\n", 0), (2, vec![]));
    }

    #[test]
    fn tails_across_blocks() {
        let mut content = Vec::new();
        for i in 0..50_000 {
            content.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let (total, lines) = tail_of(&content, 20_000);
        assert_eq!(total, 50_000);
        assert_eq!(lines.len(), 20_000);
        assert_eq!(lines[0], "line 30000");
        assert_eq!(lines[19_999], "line 49999");
    }
}
