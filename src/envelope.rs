//! The only writer of stdout (and of the error envelope on stderr).
//!
//! A success is one line of compact JSON on stdout, `{"ok":true,"command":..,"data":..}`;
//! a failure is one line on stderr, `{"ok":false,"command":..,"error":{type,message,details}}`.
//! `--pretty` indents both. A closed stdout (`... | head -1`) is not an error: the write
//! reports [`Closed`] and the process ends quietly with exit code 0, as ripgrep does.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this module is the one place that writes to the terminal"
)]

use std::io::{self, Write};

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::error::Error;

/// The reader of stdout went away; stop quietly.
#[derive(Debug)]
pub struct Closed;

/// How answers are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub pretty: bool,
}

impl Output {
    /// Prints the success envelope of `command` around `data` (already JSON).
    pub fn success(&self, command: &str, data: &RawValue) -> Result<(), Closed> {
        if self.pretty {
            // For people: re-read the answer so that all of it is indented.
            let data: Value = serde_json::from_str(data.get()).unwrap_or(Value::Null);
            let envelope = json!({"ok": true, "command": command, "data": data});
            return write_line(&mut io::stdout().lock(), &envelope, true);
        }
        // The answer is written as it is: one buffer, one write, no second encoding.
        let mut line = Vec::with_capacity(data.get().len() + command.len() + 40);
        line.extend_from_slice(b"{\"ok\":true,\"command\":");
        serde_json::to_writer(&mut line, command).map_err(|_| Closed)?;
        line.extend_from_slice(b",\"data\":");
        line.extend_from_slice(data.get().as_bytes());
        line.extend_from_slice(b"}\n");
        write_all(&line)
    }

    /// Prints the failure envelope of `command` on stderr.
    pub fn failure(&self, command: &str, error: &Error) {
        let envelope = json!({"ok": false, "command": command, "error": error.to_json()});
        // A closed stderr leaves nobody to tell; the exit code still says it failed.
        let _ = write_line(&mut io::stderr().lock(), &envelope, self.pretty);
    }

    /// Prints text that is not an envelope (`--help`, `--version`).
    pub fn plain(&self, text: &str) -> Result<(), Closed> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|_| Closed)
    }
}

fn write_line(out: &mut impl Write, value: &impl Serialize, pretty: bool) -> Result<(), Closed> {
    // Encode first, then write once: stdout is line-buffered, and many small writes would
    // each be scanned for newlines.
    let mut line = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    }
    // Only the writer can fail here (every value is plain JSON).
    .map_err(|_| Closed)?;
    line.push(b'\n');
    // A failed write to our own stdout means the reader is gone: EPIPE, or a closed fd.
    out.write_all(&line)
        .and_then(|()| out.flush())
        .map_err(|_| Closed)
}

fn write_all(bytes: &[u8]) -> Result<(), Closed> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|_| Closed)
}

impl Output {
    /// Prints bytes as they are (`--raw`: a task's output as it wrote it, or text for
    /// people), flushed at once.
    pub fn raw(&self, bytes: &[u8]) -> Result<(), Closed> {
        write_all(bytes)
    }

    /// Prints one NDJSON frame (always compact: one frame per line) and flushes it, so a
    /// follower sees each line the moment it is read.
    pub fn frame(&self, frame: &crate::payload::frame::Frame) -> Result<(), Closed> {
        write_line(&mut io::stdout().lock(), frame, false)
    }
}

impl Output {
    /// Whether the reader of stdout has gone away (`| head -1` exited), checked without
    /// writing: a follower of a quiet task must not linger until the task's next line.
    pub fn reader_gone(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let stdout = io::stdout();
        let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
    }
}
