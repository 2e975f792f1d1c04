//! `stop {id, signal?, grace_s?}` or an array: end a task's whole process tree and answer
//! once it has ended ([`crate::lifecycle::stop`]).

use std::time::Duration;

use super::{Reply, one_or_batch};
use crate::cli::{StopArgs as Flags, Timeout};
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::stop::StopArgs;
use crate::payload::answer::StopAnswer;
use crate::payload::input::StopInput;

pub fn run(flags: Flags) -> Result<Reply> {
    // The lifecycle's own default (grace_s + 10 s) is for restart's stop; the command's is
    // the bound of every waiting call, whatever grace_s is, and `none` is a bound so far
    // away that it never comes.
    let timeout = Some(Timeout::of_wait(flags.timeout).unwrap_or(Duration::MAX));
    one_or_batch(
        flags.payload.as_deref(),
        "stop",
        r#"{"id":"web"}"#,
        |input: &StopInput| &input.id,
        |input| {
            let args = StopArgs::from_input(input, timeout)?;
            let stopped = Tasks::open()?.exiting_after_call().stop(args)?;
            Ok(StopAnswer {
                task_id: stopped.task.id.clone(),
                status: stopped.task.status,
                already_terminal: stopped.already_terminal,
                task: stopped.task,
            })
        },
    )
}
