//! `logs {id, lines?, after?, grep?}`: lines of the current run's output, inline or with a
//! pointer to the whole log ([`crate::lifecycle::logs`]); `--stream` follows the log as
//! NDJSON `task.log.line` frames until the task has ended ([`crate::lifecycle::follow`]).

use std::time::Duration;

use super::{Reply, data, print_frames};
use crate::cli::{LogsArgs as Flags, OutputMode};
use crate::envelope::Output;
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::follow::FollowArgs;
use crate::lifecycle::logs::{LogsArgs, LogsShape};
use crate::payload;
use crate::payload::input::LogsInput;

pub fn run(flags: Flags, output: &Output) -> Result<Reply> {
    let input: LogsInput = payload::require(
        payload::read(flags.payload.as_deref())?,
        "logs",
        r#"{"id":"web","lines":50}"#,
    )?;
    let tasks = Tasks::open()?;
    if flags.stream {
        let (mut sink, cancel) = print_frames(output);
        let timeout = flags.timeout.map(Duration::from_secs_f64);
        tasks.follow(FollowArgs::for_logs(&input, timeout, cancel)?, &mut sink)?;
        return Ok(Reply::Streamed);
    }
    let shape = match flags.output {
        OutputMode::Auto => LogsShape::Auto,
        OutputMode::Inline => LogsShape::Inline,
        OutputMode::Artifact => LogsShape::Artifact,
    };
    data(tasks.logs(LogsArgs { input, shape })?)
}
