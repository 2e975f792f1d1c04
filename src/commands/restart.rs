//! `restart {id, env?}` or an array: stop the task if it runs, then start its next run with
//! the same command ([`crate::lifecycle::restart`]). With `--wait`, answer once the new run
//! is ready (or has ended), as `start --wait` does ([`Tasks::wait_started`]).

use std::time::{Duration, Instant};

use super::{Reply, WaitedBatch, data, encode, exit_status, interrupt, required_bytes};
use crate::cli::{RestartArgs as Flags, Timeout};
use crate::error::Result;
use crate::lifecycle::batch::{self, Item};
use crate::lifecycle::launch::WaitStartedArgs;
use crate::lifecycle::restart::RestartArgs;
use crate::lifecycle::{Cancel, Tasks};
use crate::payload;
use crate::payload::answer::TaskAnswer;
use crate::payload::input::RestartInput;
use crate::payload::task::Task;

const EXAMPLE: &str = r#"{"id":"web"}"#;

pub fn run(flags: Flags) -> Result<Reply> {
    let bytes = required_bytes(flags.payload.as_deref(), "restart", EXAMPLE)?;
    let inputs = payload::one_or_many::<RestartInput>(&bytes, EXAMPLE)?;
    // As for start --wait: from here on a signal ends the wait, not this call, and the
    // answer names the runs restarted.
    let cancel = if flags.wait {
        interrupt::install()?
    } else {
        Cancel::never()
    };
    let tasks = Tasks::open()?.exiting_after_call();
    let wait = flags.wait.then(|| Timeout::of_wait(flags.timeout));
    match inputs {
        Ok(input) => {
            let fields = input.fields.clone();
            let task = restart_one(&tasks, input)?;
            let deadline = wait.map(deadline);
            let result = settle(&tasks, task, deadline, &cancel);
            let interrupted = interrupt::received();
            let task = match (result, interrupted) {
                (Ok(task), _) => task,
                (Err(error), Some(_)) => interrupt::task_of(&tasks, &error).ok_or(error)?,
                (Err(error), None) => return Err(error),
            };
            let code = exit_status::code(flags.exit_status, interrupted, [&task]);
            let answer = TaskAnswer {
                interrupted,
                ..TaskAnswer::shown(task, fields.as_deref())
            };
            if !flags.wait {
                return data(answer);
            }
            Ok(Reply::DataWithCode(encode(answer)?, code))
        }
        Err(inputs) => {
            // Each item's own fields, by its place in the batch.
            let fields: Vec<Option<Vec<String>>> =
                inputs.iter().map(|input| input.fields.clone()).collect();
            // Restart them all first, then wait, with one deadline for the whole call.
            let items = inputs.into_iter().enumerate().collect();
            let restarted = batch::run_items(
                items,
                batch::WORKERS,
                |input: &RestartInput| Some(input.id.to_string()),
                |input| restart_one(&tasks, input),
            );
            let deadline = wait.map(deadline);
            let items: Vec<Item<Task>> = restarted
                .into_iter()
                .map(|item| {
                    let result = item
                        .result
                        .and_then(|task| settle(&tasks, task, deadline, &cancel));
                    let result = match (result, interrupt::received()) {
                        (Err(error), Some(_)) => interrupt::task_of(&tasks, &error).ok_or(error),
                        (result, _) => result,
                    };
                    Item::new(item.index, item.target, result)
                })
                .collect();
            let batch = WaitedBatch {
                wait: flags.wait,
                exit_status: flags.exit_status,
                interrupted: interrupt::received(),
                concurrency: None,
            };
            batch.reply(
                items,
                |task| task,
                |index, task| TaskAnswer::shown(task, fields.get(index).and_then(Option::as_deref)),
            )
        }
    }
}

fn restart_one(tasks: &Tasks, input: RestartInput) -> Result<Task> {
    input.validate()?;
    tasks.restart(RestartArgs { input })
}

/// When a wait of `bound` from now ends (`None`: never).
fn deadline(bound: Option<Duration>) -> Option<Instant> {
    bound.and_then(crate::time::deadline_after)
}

/// With `--wait` (a deadline, or `Some(None)` for none), until the new run is ready or has
/// ended; without, the run as restarted.
fn settle(
    tasks: &Tasks,
    task: Task,
    deadline: Option<Option<Instant>>,
    cancel: &Cancel,
) -> Result<Task> {
    let Some(deadline) = deadline else {
        return Ok(task);
    };
    let id = crate::paths::TaskId::parse(&task.id)
        .map_err(|e| crate::error::Error::input_at("id", e, "Give a task id."))?;
    tasks.wait_started(WaitStartedArgs {
        id,
        timeout: deadline.map(|d| d.saturating_duration_since(Instant::now())),
        cancel: cancel.clone(),
        progress: None,
        condition: None,
    })
}
