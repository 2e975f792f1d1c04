//! `events {id?, after?, lines?}`: a task's lifecycle frames and log lines in one order;
//! without an id, every task's status. `--stream` prints the frames as NDJSON as they
//! happen: for one task until its `task.ended` frame, for every task until `--timeout`
//! ([`crate::lifecycle::follow`]). A follow of one task given `--timeout` ends with a
//! `stream.end` frame (why it ended, where to resume); one of every task has no cursor to
//! resume from and ends without one.

use super::{Reply, data, end_stream, print_frames};
use crate::cli::{EventsArgs as Flags, Timeout};
use crate::envelope::Output;
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::follow::{FollowAllArgs, FollowArgs};
use crate::payload;
use crate::payload::input::EventsInput;

pub fn run(flags: Flags, output: &Output) -> Result<Reply> {
    let input: EventsInput = payload::optional(
        payload::read(flags.payload.as_deref())?,
        r#"{"id":"web","after":12}"#,
    )?;
    let tasks = Tasks::open()?;
    let timeout = Timeout::of_follow(flags.timeout);
    let (mut sink, cancel) = print_frames(output);
    match (
        FollowArgs::for_events(&input, timeout, cancel.clone())?,
        flags.stream,
    ) {
        (Some(args), false) => data(tasks.events(args)?),
        (Some(args), true) => {
            let id = args.id.to_string();
            let end = tasks.follow(args, &mut sink)?;
            end_stream(timeout, &id, end, &mut sink);
            Ok(Reply::Streamed)
        }
        (None, false) => data(tasks.all_events()?),
        (None, true) => {
            tasks.follow_all(FollowAllArgs { timeout, cancel }, &mut sink)?;
            Ok(Reply::Streamed)
        }
    }
}
