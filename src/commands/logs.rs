//! `logs {id, lines?, after?, grep?}`: lines of the current run's output, inline or with a
//! pointer to the whole log ([`crate::lifecycle::logs`]); `--stream` follows the log as
//! NDJSON `task.log.line` frames until the task has ended ([`crate::lifecycle::follow`]);
//! with `--timeout`, a last `stream.end` frame says why it ended and where to resume.

use std::ops::ControlFlow;

use super::{Reply, data, end_stream, print_frames};
use crate::cli::{LogsArgs as Flags, OutputMode, Timeout};
use crate::envelope::Output;
use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::lifecycle::follow::FollowArgs;
use crate::lifecycle::logs::{LogsArgs, LogsShape};
use crate::lifecycle::raw::RawArgs;
use crate::payload;
use crate::payload::input::LogsInput;

pub fn run(flags: Flags, output: &Output) -> Result<Reply> {
    let input: LogsInput = payload::require(
        payload::read(flags.payload.as_deref())?,
        "logs",
        r#"{"id":"web","lines":50}"#,
    )?;
    let tasks = Tasks::open()?;
    if flags.raw {
        return raw(&tasks, input, &flags, output);
    }
    if flags.stream {
        let (mut sink, cancel) = print_frames(output);
        let timeout = Timeout::of_follow(flags.timeout);
        let id = input.id.to_string();
        let end = tasks.follow(FollowArgs::for_logs(&input, timeout, cancel)?, &mut sink)?;
        end_stream(timeout, &id, end, &mut sink);
        return Ok(Reply::Streamed);
    }
    let shape = match flags.output {
        OutputMode::Auto => LogsShape::Auto,
        OutputMode::Inline => LogsShape::Inline,
        OutputMode::Artifact => LogsShape::Artifact,
    };
    data(tasks.logs(LogsArgs { input, shape })?)
}

/// `--raw`: the log's bytes as written, printed as they are read; with `--stream`, until the
/// run ends. A closed stdout ends it quietly.
fn raw(tasks: &Tasks, input: LogsInput, flags: &Flags, output: &Output) -> Result<Reply> {
    if input.grep.is_some() {
        return Err(Error::input_at(
            "grep",
            "grep: not with --raw (it matches the lines of a JSON answer)",
            "Leave grep out and pipe the raw output through grep, or drop --raw.",
        ));
    }
    let args = RawArgs {
        id: input.id,
        lines: input.lines,
        after: input.after,
        follow: flags.stream,
        timeout: Timeout::of_follow(flags.timeout),
    };
    let output = *output;
    tasks.raw_log(args, &mut |bytes| match output.raw(bytes) {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(()),
    })?;
    Ok(Reply::Streamed)
}
