//! `start`: launch one task, or a batch (an array), each under its own supervisor
//! ([`crate::lifecycle::launch`]).

use super::{Reply, batch_reply, data, required_bytes};
use crate::cli::{StartArgs as Flags, Timeout};
use crate::error::Result;
use crate::lifecycle::launch::{StartArgs, StartBatchArgs, Started};
use crate::lifecycle::{Cancel, Tasks};
use crate::payload;
use crate::payload::answer::StartAnswer;
use crate::payload::input::StartInput;

const EXAMPLE: &str = r#"{"id":"web","command":"npm","args":["run","dev"]}"#;

pub fn run(flags: Flags) -> Result<Reply> {
    let bytes = required_bytes(flags.payload.as_deref(), "start", EXAMPLE)?;
    let timeout = Timeout::of_wait(flags.timeout);
    match payload::one_or_many::<StartInput>(&bytes, EXAMPLE)? {
        Ok(input) => {
            let fields = input.fields.clone();
            let started = Tasks::open()?.exiting_after_call().start(StartArgs {
                input,
                wait: flags.wait,
                timeout,
                cancel: Cancel::never(),
            })?;
            data(answer(started, fields.as_deref()))
        }
        Err(inputs) => {
            // Each item's own fields, by its place in the batch.
            let fields: Vec<Option<Vec<String>>> =
                inputs.iter().map(|input| input.fields.clone()).collect();
            let concurrency = flags.concurrency.map(usize::from);
            let items = Tasks::open()?
                .exiting_after_call()
                .start_batch(StartBatchArgs {
                    inputs,
                    wait: flags.wait,
                    timeout,
                    concurrency,
                    cancel: Cancel::never(),
                })?;
            batch_reply(items, concurrency, |index, started| {
                answer(started, fields.get(index).and_then(Option::as_deref))
            })
        }
    }
}

fn answer(started: Started, fields: Option<&[String]>) -> StartAnswer {
    StartAnswer::new(started.task, started.reused, fields)
}
