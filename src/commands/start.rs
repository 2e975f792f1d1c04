//! `start`: launch one task, or a batch (an array), each under its own supervisor
//! ([`crate::lifecycle::launch`]).

use super::{Reply, WaitedBatch, data, encode, exit_status, interrupt, required_bytes};
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
    let inputs = payload::one_or_many::<StartInput>(&bytes, EXAMPLE)?;
    // Before anything is launched: from here on a signal ends the wait, not this call, and
    // the answer names what was launched.
    let cancel = if flags.wait {
        interrupt::install()?
    } else {
        Cancel::never()
    };
    let tasks = Tasks::open()?.exiting_after_call();
    match inputs {
        Ok(input) => {
            let fields = input.fields.clone();
            let result = tasks.start(StartArgs {
                input,
                wait: flags.wait,
                timeout,
                cancel,
            });
            let interrupted = interrupt::received();
            let started = match interrupted {
                Some(_) => as_is(&tasks, result)?,
                None => result?,
            };
            let code = exit_status::code(flags.exit_status, interrupted, [&started.task]);
            let mut answer = answer(started, fields.as_deref());
            answer.interrupted = interrupted;
            if !flags.wait {
                return data(answer);
            }
            Ok(Reply::DataWithCode(encode(answer)?, code))
        }
        Err(inputs) => {
            // Each item's own fields, by its place in the batch.
            let fields: Vec<Option<Vec<String>>> =
                inputs.iter().map(|input| input.fields.clone()).collect();
            let concurrency = flags.concurrency.map(usize::from);
            let mut items = tasks.start_batch(StartBatchArgs {
                inputs,
                wait: flags.wait,
                timeout,
                concurrency,
                cancel,
            })?;
            let interrupted = interrupt::received();
            if interrupted.is_some() {
                for item in &mut items {
                    let result = std::mem::replace(&mut item.result, Err(placeholder()));
                    item.result = as_is(&tasks, result);
                }
            }
            let batch = WaitedBatch {
                wait: flags.wait,
                exit_status: flags.exit_status,
                interrupted,
                concurrency,
            };
            batch.reply(
                items,
                |started| &started.task,
                |index, started| answer(started, fields.get(index).and_then(Option::as_deref)),
            )
        }
    }
}

/// What an interrupted wait answers for a task it launched: the task as it is now (it runs
/// on), where the wait ended early (`TaskWaitTimedOut`, `TaskNotReady`); any other error as
/// it is.
fn as_is(tasks: &Tasks, result: Result<Started>) -> Result<Started> {
    let error = match result {
        Ok(started) => return Ok(started),
        Err(error) => error,
    };
    match interrupt::task_of(tasks, &error) {
        Some(task) => Ok(Started {
            task,
            reused: false,
            condition: None,
        }),
        None => Err(error),
    }
}

/// Stands in for an item's result while it is taken out to be looked at again.
fn placeholder() -> crate::error::Error {
    crate::error::Error::input("", "")
}

fn answer(started: Started, fields: Option<&[String]>) -> StartAnswer {
    StartAnswer::new(started.task, started.reused, fields)
}
