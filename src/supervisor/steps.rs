//! Runs in the supervisor: finds the step lines in its task's output (`crate::steps`).
//!
//! Unlike progress, where only the newest line matters and a burst is skipped to its tail,
//! every step line counts (a step's start may be followed by a megabyte of its output), so
//! the log is read to its end, each byte once. It stays cheap for a task that writes a
//! gigabyte: the bytes are searched for the step line's `type` ([`crate::steps::LINE_TYPE`])
//! with `memchr`'s vectorised search, and only a line that holds it is decoded and parsed.
//! A line still being written is kept (up to [`MAX_LINE`] bytes) until its newline; a longer
//! line is passed over to its end and is never a step. Each read takes at most [`SLICE`]
//! bytes, so a long catch-up goes in slices with signals and stops seen between them.

use std::fs::File;
use std::os::unix::fs::FileExt;

use memchr::memmem::Finder;
use memchr::{memchr, memrchr};

use crate::steps::{LINE_TYPE, MAX_LINE, StepTree};

/// How much of the log one read takes, unless the run has ended.
pub const SLICE: u64 = 16 << 20;
/// How many bytes are read at once.
const CHUNK: usize = 64 * 1024;

/// The step lines of one run's log, folded into its [`StepTree`].
#[derive(Debug)]
pub struct StepScanner {
    /// How far the log has been read.
    offset: u64,
    /// The start of a line still being written.
    carry: Vec<u8>,
    /// In a line longer than [`MAX_LINE`], passed over to its end: whether it held the
    /// step line's type (it is then counted as dropped).
    overlong: Option<bool>,
    finder: Finder<'static>,
    tree: StepTree,
}

impl Default for StepScanner {
    fn default() -> StepScanner {
        StepScanner {
            offset: 0,
            carry: Vec::new(),
            overlong: None,
            finder: Finder::new(LINE_TYPE.as_bytes()),
            tree: StepTree::default(),
        }
    }
}

impl StepScanner {
    pub fn tree(&self) -> &StepTree {
        &self.tree
    }

    pub fn tree_mut(&mut self) -> &mut StepTree {
        &mut self.tree
    }

    /// Reads `log` from where the last read stopped to `size` (at most [`SLICE`] of it,
    /// unless at the `end`, when a last line without a newline is a line too). Returns
    /// whether some is left for the next read.
    pub fn read(&mut self, log: &File, size: u64, end: bool, now_ms: i64) -> bool {
        if size < self.offset {
            // Truncated: read the new content from its start.
            self.offset = 0;
            self.carry.clear();
            self.overlong = None;
        }
        let to = if end {
            size
        } else {
            size.min(self.offset.saturating_add(SLICE))
        };
        if to > self.offset {
            let mut buffer = vec![0u8; CHUNK];
            while self.offset < to {
                let want = usize::try_from(to - self.offset).map_or(CHUNK, |n| n.min(CHUNK));
                let n = match log.read_at(&mut buffer[..want], self.offset) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                self.offset += n as u64;
                self.scan(&buffer[..n], now_ms);
            }
        }
        if end {
            if self.overlong.take() == Some(true) {
                self.tree.drop_overlong();
            }
            let last = std::mem::take(&mut self.carry);
            if !last.is_empty() {
                self.line(&last, now_ms);
            }
        }
        to < size
    }

    /// Folds in the step lines of the next `bytes` of the log.
    fn scan(&mut self, mut bytes: &[u8], now_ms: i64) {
        // The end of a line passed over, or of the line the last chunk left unfinished.
        if let Some(held) = self.overlong {
            match memchr(b'\n', bytes) {
                None => {
                    self.overlong = Some(held || self.finder.find(bytes).is_some());
                    return;
                }
                Some(newline) => {
                    if held || self.finder.find(&bytes[..newline]).is_some() {
                        self.tree.drop_overlong();
                    }
                    self.overlong = None;
                    bytes = &bytes[newline + 1..];
                }
            }
        }
        if !self.carry.is_empty() {
            match memchr(b'\n', bytes) {
                None => {
                    self.hold(bytes);
                    return;
                }
                Some(newline) => {
                    self.hold(&bytes[..newline]);
                    let line = std::mem::take(&mut self.carry);
                    if self.overlong.take() == Some(true) {
                        self.tree.drop_overlong();
                    } else if !line.is_empty() {
                        self.line(&line, now_ms);
                    }
                    bytes = &bytes[newline + 1..];
                }
            }
        }
        // Whole lines: only those that hold the step line's type are looked at.
        let whole = memrchr(b'\n', bytes).map_or(0, |at| at + 1);
        let (lines, unfinished) = bytes.split_at(whole);
        let mut at = 0;
        while let Some(found) = self.finder.find(&lines[at..]) {
            let found = at + found;
            let start = memrchr(b'\n', &lines[at..found]).map_or(at, |i| at + i + 1);
            let end = memchr(b'\n', &lines[found..]).map_or(lines.len(), |i| found + i);
            self.line(&lines[start..end], now_ms);
            at = end + 1;
            if at >= lines.len() {
                break;
            }
        }
        self.hold(unfinished);
    }

    /// Keeps more of the line still being written; past [`MAX_LINE`] it is passed over.
    fn hold(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.overlong.is_some() {
            let held = self.overlong == Some(true) || self.finder.find(bytes).is_some();
            self.overlong = Some(held);
            return;
        }
        if self.carry.len() + bytes.len() > MAX_LINE {
            let held = self.finder.find(&self.carry).is_some() || self.finder.find(bytes).is_some();
            self.overlong = Some(held);
            self.carry = Vec::new();
            return;
        }
        self.carry.extend_from_slice(bytes);
    }

    /// One whole line (without its newline): folded in if it is a step line.
    fn line(&mut self, bytes: &[u8], now_ms: i64) {
        if bytes.len() > MAX_LINE {
            if self.finder.find(bytes).is_some() {
                self.tree.drop_overlong();
            }
            return;
        }
        if self.finder.find(bytes).is_none() {
            return;
        }
        // As a terminal shows it: the last `\r` redraw, invalid UTF-8 as U+FFFD, no colours.
        let shown = crate::output_log::render(bytes);
        if let Some(step) = crate::steps::parse(&crate::ansi::strip(&shown)) {
            self.tree.apply(step, now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn step(id: &str, parent: &str) -> String {
        format!("{{\"type\":\"background-tasks.step\",\"id\":\"{id}\",\"parent\":\"{parent}\"}}\n")
    }

    #[test]
    fn reads_step_lines_across_chunks_and_reads() {
        let mut file = tempfile::tempfile().expect("a temp file");
        let mut scanner = StepScanner::default();
        let noise = "x".repeat(CHUNK - 10);
        write!(file, "{noise}\n{}", step("a", "")).expect("write");
        // A step line split across two writes (and chunks).
        let b = step("b", "a");
        let (first, second) = b.split_at(20);
        write!(file, "{first}").expect("write");
        let size = file.metadata().expect("metadata").len();
        scanner.read(&file, size, false, 1);
        assert_eq!(scanner.tree().nodes().len(), 1);
        write!(
            file,
            "{second}\u{1b}[32m{}\u{1b}[0m",
            step("c", "b").trim_end()
        )
        .expect("write");
        let size = file.metadata().expect("metadata").len();
        scanner.read(&file, size, false, 2);
        assert_eq!(scanner.tree().nodes().len(), 2, "c has no newline yet");
        scanner.read(&file, size, true, 3);
        let ids: Vec<_> = scanner
            .tree()
            .nodes()
            .iter()
            .map(|n| (n.id.as_str(), n.parent.as_deref()))
            .collect();
        assert_eq!(ids, [("a", None), ("b", Some("a")), ("c", Some("b"))]);
    }

    #[test]
    fn passes_over_a_line_too_long_to_be_a_step() {
        let mut file = tempfile::tempfile().expect("a temp file");
        let huge = format!(
            "{{\"type\":\"background-tasks.step\",\"id\":\"huge\",\"title\":\"{}\"}}\n",
            "t".repeat(MAX_LINE + 10)
        );
        file.write_all(huge.as_bytes()).expect("write");
        file.write_all(step("after", "").as_bytes()).expect("write");
        let mut scanner = StepScanner::default();
        let size = file.metadata().expect("metadata").len();
        assert!(!scanner.read(&file, size, false, 1));
        let tree = scanner.tree();
        assert_eq!(tree.nodes().len(), 1);
        assert_eq!(tree.nodes()[0].id, "after");
        assert_eq!(tree.dropped(), 1);
        assert!(scanner.carry.capacity() <= MAX_LINE + CHUNK);
    }
}
