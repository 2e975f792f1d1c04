//! `stop {id, signal?, grace_s?}` or an array, or a selector (`{tag}`, `{tags}`, `{status}`)
//! for every task it chooses: end a task's whole process tree and answer once it has ended
//! ([`crate::lifecycle::stop`]).

use std::time::Duration;

use super::{Reply, data, required_bytes, run_batch};
use crate::cli::{StopArgs as Flags, Timeout};
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::stop::StopArgs;
use crate::paths::TaskId;
use crate::payload;
use crate::payload::answer::StopAnswer;
use crate::payload::input::StopInput;

const EXAMPLE: &str = r#"{"id":"web"}"#;

pub fn run(flags: Flags) -> Result<Reply> {
    // The lifecycle's own default (grace_s + 10 s) is for restart's stop; the command's is
    // the bound of every waiting call, whatever grace_s is, and `none` is a bound so far
    // away that it never comes.
    let timeout = Some(Timeout::of_wait(flags.timeout).unwrap_or(Duration::MAX));
    let bytes = required_bytes(flags.payload.as_deref(), "stop", EXAMPLE)?;
    let stop = |input: StopInput| {
        let fields = input.fields.clone();
        let args = StopArgs::from_input(input, timeout)?;
        let stopped = Tasks::open()?.exiting_after_call().stop(args)?;
        Ok(StopAnswer::new(
            stopped.task,
            stopped.already_terminal,
            stopped.children,
            fields.as_deref(),
        ))
    };
    fn id(input: &StopInput) -> Option<&TaskId> {
        input.id.as_ref()
    }
    match payload::one_or_many::<StopInput>(&bytes, EXAMPLE)? {
        // A selector: every task it chooses, answered as a batch.
        Ok(input) if input.id.is_none() && input.selector().is_some() => {
            input.validate()?;
            let selector = input.selector().unwrap_or_default();
            let ids = Tasks::open()?.select(&selector, true)?;
            run_batch(input.for_each(ids), id, stop)
        }
        Ok(input) => data(stop(input)?),
        Err(inputs) => run_batch(inputs, id, stop),
    }
}
