//! `stop {id, signal?, grace_s?}` or an array: end a task's whole process tree and answer
//! once it has ended ([`crate::lifecycle::stop`]).

use std::time::Duration;

use super::{Reply, one_or_batch};
use crate::cli::StopArgs as Flags;
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::stop::StopArgs;
use crate::payload::answer::StopAnswer;
use crate::payload::input::StopInput;

pub fn run(flags: Flags) -> Result<Reply> {
    let timeout = flags.timeout.map(Duration::from_secs_f64);
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
