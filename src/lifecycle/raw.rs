//! A task's output as the bytes it wrote, for people (`logs --raw`, `logs --stream --raw`):
//! no JSON, no line cutting, invalid UTF-8 and ANSI colours passed through.
//!
//! The bytes are handed to a sink in slices of at most [`SLICE`], so a 50 MB line costs a
//! reader one slice of memory, never the line. Without `after` the read starts `lines` lines
//! before the end (a final line without a newline counts as a line), found by reading the
//! log backwards in slices; with `after` it starts at the cursor's offset, or at the start
//! of the current run when the cursor belongs to another run. A follow wakes on the task
//! folder's changes (with the polling fallback of [`DirWatch`]), starts again from 0 when
//! the log was truncated, and ends after the last byte once the run has ended, when the run
//! was replaced by a restart, when the bound runs out, or when the sink breaks.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::follow::{DirWatch, FALLBACK_POLL};
use crate::lifecycle::Tasks;
use crate::output_log::Cursor;
use crate::paths::{TaskId, TaskPaths, names};
use crate::payload::task::Task;
use crate::state::observe;

/// The most bytes read and handed on at once.
pub const SLICE: usize = 64 * 1024;

/// [`Tasks::raw_log`]: which task, from where, and whether to follow.
#[derive(Debug)]
pub struct RawArgs {
    pub id: TaskId,
    /// Without `after`: how many of the last lines (default 100).
    pub lines: Option<u64>,
    /// A cursor: only what came after it.
    pub after: Option<String>,
    /// Follow until the run ends (`--stream`).
    pub follow: bool,
    /// With `follow`: give up after this long.
    pub timeout: Option<Duration>,
}

/// Takes each slice of bytes as it is read; `Break` ends the read (the reader went away).
pub type ByteSink<'a> = dyn FnMut(&[u8]) -> ControlFlow<()> + 'a;

impl Tasks {
    /// Hands the bytes of the task's current run's output to `sink`, from `lines` before the
    /// end or from `after`; with `follow`, goes on with what the task writes until its run
    /// has ended.
    pub fn raw_log(&self, args: RawArgs, sink: &mut ByteSink<'_>) -> Result<()> {
        let paths = self.paths(&args.id);
        let deadline = args.timeout.map(|t| Instant::now() + t);
        // Watch before the first read, so nothing written in between is missed.
        let watch = args
            .follow
            .then(|| DirWatch::new_for(&paths.dir, false, &[names::LOG, names::RECORD]));
        let record = observe(&paths, &args.id)?;
        let run = record.run;
        let after = args.after.as_deref().map(Cursor::parse).transpose()?;
        // A queued task has no log yet; one that never ran has none at all.
        let mut log = loop {
            if let Some(log) = paths.read_file(names::LOG)? {
                break log;
            }
            let record = observe(&paths, &args.id)?;
            match watch.as_ref() {
                Some(watch)
                    if !record.status.is_terminal()
                        && watch.wait_at_most(deadline, FALLBACK_POLL) => {}
                _ => return Ok(()),
            }
        };
        let size = log_size(&log, &paths)?;
        let mut offset = match after {
            Some(cursor) if cursor.run == run => cursor.offset.min(size),
            // Another run's cursor: this run's output from its start.
            Some(_) => 0,
            None => tail_start(&mut log, size, args.lines.unwrap_or(100))
                .map_err(|e| Error::store("read", paths.log(), e))?,
        };
        loop {
            // Read the record first: what it says ended was written before the last byte
            // read after it.
            let record = observe(&paths, &args.id)?;
            let size = log_size(&log, &paths)?;
            if size < offset {
                offset = 0; // Truncated.
            }
            let copied = copy(&mut log, &mut offset, size, sink)
                .map_err(|e| Error::store("read", paths.log(), e))?;
            if copied.is_break() {
                return Ok(());
            }
            let Some(watch) = watch.as_ref() else {
                return Ok(());
            };
            if record.status.is_terminal() || record.run != run {
                return Ok(());
            }
            if !watch.wait_at_most(deadline, FALLBACK_POLL) {
                return Ok(());
            }
        }
    }
}

fn log_size(log: &File, paths: &TaskPaths) -> Result<u64> {
    log.metadata()
        .map(|m| m.len())
        .map_err(|e| Error::store("read", paths.log(), e))
}

/// Hands `log`'s bytes from `offset` to `end` to `sink`, a slice at a time, moving `offset`.
fn copy(
    log: &mut File,
    offset: &mut u64,
    end: u64,
    sink: &mut ByteSink<'_>,
) -> io::Result<ControlFlow<()>> {
    let mut buffer = vec![0u8; SLICE];
    log.seek(SeekFrom::Start(*offset))?;
    while *offset < end {
        let want = usize::try_from(end - *offset).map_or(SLICE, |left| left.min(SLICE));
        let n = match log.read(&mut buffer[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        *offset += n as u64;
        if sink(&buffer[..n]).is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Where the last `lines` lines of a log of `size` bytes begin: after the `lines`-th
/// newline from the end, not counting the one that ends the last line. Read backwards in
/// slices, so a long line costs a few reads, not its size in memory.
fn tail_start(log: &mut File, size: u64, lines: u64) -> io::Result<u64> {
    if lines == 0 {
        return Ok(size);
    }
    let mut buffer = vec![0u8; SLICE];
    let mut end = size;
    let mut found = 0;
    while end > 0 {
        let start = end.saturating_sub(SLICE as u64);
        let part = &mut buffer[..usize::try_from(end - start).unwrap_or(SLICE)];
        log.seek(SeekFrom::Start(start))?;
        log.read_exact(part)?;
        for (i, &byte) in part.iter().enumerate().rev() {
            // The newline that ends the last line does not begin a line after it.
            if byte != b'\n' || start + i as u64 + 1 == size {
                continue;
            }
            found += 1;
            if found == lines {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_of(text: &[u8], lines: u64) -> u64 {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("output.log");
        #[expect(clippy::disallowed_methods, reason = "a test's own scratch file")]
        std::fs::write(&path, text).expect("write");
        #[expect(clippy::disallowed_methods, reason = "a test's own scratch file")]
        let mut file = File::open(&path).expect("open");
        tail_start(&mut file, text.len() as u64, lines).expect("read")
    }

    #[test]
    fn the_tail_starts_after_the_right_newline() {
        assert_eq!(start_of(b"a\nb\nc\n", 1), 4);
        assert_eq!(start_of(b"a\nb\nc\n", 2), 2);
        assert_eq!(start_of(b"a\nb\nc\n", 3), 0);
        assert_eq!(start_of(b"a\nb\nc\n", 9), 0);
        // A last line without a newline is a line.
        assert_eq!(start_of(b"a\nb\nc", 1), 4);
        assert_eq!(start_of(b"a\nb\nc", 2), 2);
        assert_eq!(start_of(b"a\nb\nc\n", 0), 6);
        // Empty lines count.
        assert_eq!(start_of(b"a\n\n\n", 2), 2);
        assert_eq!(start_of(b"", 3), 0);
        // A line longer than a slice.
        let mut long = vec![b'x'; SLICE * 2 + 10];
        long.extend_from_slice(b"\nlast\n");
        assert_eq!(start_of(&long, 1), (SLICE * 2 + 11) as u64);
        assert_eq!(start_of(&long, 2), 0);
    }
}

/// [`Tasks::raw_all`]: which tasks (`None`: every task, those started later included), and
/// for how long.
#[derive(Debug)]
pub struct RawAllArgs {
    pub ids: Option<Vec<TaskId>>,
    pub timeout: Option<Duration>,
}

/// What [`Tasks::raw_all`] hands on: a task's output line (its bytes, without the newline),
/// or a change of its run.
#[derive(Debug)]
pub enum RawEvent<'a> {
    Line {
        id: &'a str,
        line: &'a [u8],
    },
    /// A run began after the follow did (a new task, or a restart).
    Started(&'a Task),
    /// The run ended (once per run; tasks that had ended before the follow began are quiet).
    Ended(&'a Task),
}

/// One task followed by [`Tasks::raw_all`].
struct Followed {
    run: u32,
    offset: u64,
    log: Option<File>,
    /// The start of a line not ended yet.
    partial: Vec<u8>,
    ended: bool,
}

impl Tasks {
    /// Follows the output of several tasks at once, line by line, each with its id, and
    /// says when a run begins and ends: for people watching many tasks (`events --stream
    /// --raw`). Tasks running when it begins are followed from the end of their log (what
    /// they write from now on); runs that begin later, from their first byte. With `ids`
    /// it ends once each of them has ended; without, it follows every task (new ones too)
    /// until the bound runs out or the sink breaks.
    pub fn raw_all(
        &self,
        args: RawAllArgs,
        sink: &mut dyn FnMut(RawEvent<'_>) -> ControlFlow<()>,
    ) -> Result<()> {
        let deadline = args.timeout.map(|t| Instant::now() + t);
        let tasks_dir = self.state.tasks_dir();
        let _ = self.state.create_tasks_dir();
        // Where the follow begins, taken before the watch: what a task running now prints
        // from here on is shown (even before the watch exists), what it printed before is
        // not news, and a task that has ended stays quiet.
        let mut followed: BTreeMap<TaskId, Followed> = BTreeMap::new();
        let ids = match &args.ids {
            Some(ids) => ids.clone(),
            None => self.state.task_ids()?,
        };
        // Each followed task holds its log open.
        crate::follow::allow_open_files_for(ids.len());
        for id in ids {
            let paths = self.paths(&id);
            let Ok(record) = observe(&paths, &id) else {
                continue;
            };
            let log = paths.read_file(names::LOG).ok().flatten();
            let offset = log
                .as_ref()
                .and_then(|log| log.metadata().ok())
                .map_or(0, |m| m.len());
            followed.insert(
                id,
                Followed {
                    run: record.run,
                    offset,
                    log,
                    partial: Vec::new(),
                    ended: record.status.is_terminal(),
                },
            );
        }
        // Chosen tasks: just their folders; every task: the whole tree, new folders too.
        let watch = match &args.ids {
            Some(ids) => {
                let dirs: Vec<std::path::PathBuf> =
                    ids.iter().map(|id| self.paths(id).dir).collect();
                let dirs: Vec<&std::path::Path> = dirs.iter().map(|d| d.as_path()).collect();
                DirWatch::new_for_each(&dirs, &[names::LOG, names::RECORD])
            }
            None => DirWatch::new_for(&tasks_dir, true, &[names::LOG, names::RECORD]),
        };
        loop {
            let ids = match &args.ids {
                Some(ids) => ids.clone(),
                None => self.state.task_ids()?,
            };
            for id in &ids {
                let paths = self.paths(id);
                let Ok(record) = observe(&paths, id) else {
                    continue;
                };
                let task = Task::from_record(&record, &paths);
                let known = followed.get(id).is_some_and(|f| f.run == record.run);
                if !known {
                    // A run that began after the follow did: from its first byte.
                    followed.insert(
                        id.clone(),
                        Followed {
                            run: record.run,
                            offset: 0,
                            log: paths.read_file(names::LOG).ok().flatten(),
                            partial: Vec::new(),
                            ended: false,
                        },
                    );
                    if sink(RawEvent::Started(&task)).is_break() {
                        return Ok(());
                    }
                }
                let Some(entry) = followed.get_mut(id) else {
                    continue;
                };
                if entry.ended {
                    continue;
                }
                if entry.log.is_none() {
                    entry.log = paths.read_file(names::LOG).ok().flatten();
                }
                if read_lines(entry, id.as_str(), sink).is_break() {
                    return Ok(());
                }
                if record.status.is_terminal() {
                    entry.ended = true;
                    if !entry.partial.is_empty() {
                        let line = std::mem::take(&mut entry.partial);
                        let event = RawEvent::Line {
                            id: id.as_str(),
                            line: &line,
                        };
                        if sink(event).is_break() {
                            return Ok(());
                        }
                    }
                    if sink(RawEvent::Ended(&task)).is_break() {
                        return Ok(());
                    }
                }
            }
            let all_ended = args.ids.as_ref().is_some_and(|ids| {
                ids.iter()
                    .all(|id| followed.get(id).is_none_or(|f| f.ended))
            });
            if all_ended || !watch.wait_at_most(deadline, FALLBACK_POLL) {
                return Ok(());
            }
        }
    }
}

/// Hands on the whole lines `entry`'s log gained since the last read (at most a few slices
/// per look, so one busy task does not hold up the others); a line longer than a slice is
/// handed on in pieces.
fn read_lines(
    entry: &mut Followed,
    id: &str,
    sink: &mut dyn FnMut(RawEvent<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let Some(log) = entry.log.as_mut() else {
        return ControlFlow::Continue(());
    };
    let size = log.metadata().map_or(0, |m| m.len());
    if size < entry.offset {
        entry.offset = 0; // Truncated.
        entry.partial.clear();
    }
    let end = size.min(entry.offset + 16 * SLICE as u64);
    let mut bytes = Vec::new();
    let copied = copy(log, &mut entry.offset, end, &mut |piece| {
        bytes.extend_from_slice(piece);
        ControlFlow::Continue(())
    });
    if copied.is_err() {
        return ControlFlow::Continue(());
    }
    let mut rest = bytes.as_slice();
    while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
        entry.partial.extend_from_slice(&rest[..newline]);
        rest = &rest[newline + 1..];
        let line = std::mem::take(&mut entry.partial);
        sink(RawEvent::Line { id, line: &line })?;
    }
    entry.partial.extend_from_slice(rest);
    if entry.partial.len() > SLICE {
        let line = std::mem::take(&mut entry.partial);
        sink(RawEvent::Line { id, line: &line })?;
    }
    ControlFlow::Continue(())
}
