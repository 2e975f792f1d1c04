//! `events {id?, after?, lines?}`: a task's lifecycle frames and log lines in one order;
//! without an id, every task's status. `--stream` prints the frames as NDJSON as they
//! happen: for one task until its `task.ended` frame, for every task until `--timeout`
//! ([`crate::lifecycle::follow`]).

use std::time::Duration;

use super::{Reply, data, print_frames};
use crate::cli::EventsArgs as Flags;
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
    let timeout = flags.timeout.map(Duration::from_secs_f64);
    let (mut sink, cancel) = print_frames(output);
    match (
        FollowArgs::for_events(&input, timeout, cancel.clone())?,
        flags.stream,
    ) {
        (Some(args), false) => data(tasks.events(args)?),
        (Some(args), true) => {
            tasks.follow(args, &mut sink)?;
            Ok(Reply::Streamed)
        }
        (None, false) => data(tasks.all_events()?),
        (None, true) => {
            tasks.follow_all(FollowAllArgs { timeout, cancel }, &mut sink)?;
            Ok(Reply::Streamed)
        }
    }
}
