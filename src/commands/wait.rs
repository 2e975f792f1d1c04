//! `wait {id, until?}` and `wait {ids, mode?}`: block until tasks have ended, or until
//! conditions hold; `--timeout` bounds it ([`crate::lifecycle::wait`]). `--exit-status`
//! makes the exit code follow the tasks ([`super::exit_status`]); a signal ends the wait with
//! the tasks as they are ([`super::interrupt`]).

use super::{Reply, encode, exit_status, interrupt};
use crate::cli::{Timeout, WaitArgs as Flags};
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::observe::StatusArgs;
use crate::lifecycle::wait::{WaitArgs, Waited};
use crate::paths::TaskId;
use crate::payload;
use crate::payload::answer::{TaskAnswer, WaitAnswer};
use crate::payload::input::{WaitInput, WaitMode};
use crate::payload::task::Task;

pub fn run(flags: Flags) -> Result<Reply> {
    let input: WaitInput = payload::require(
        payload::read(flags.payload.as_deref())?,
        "wait",
        r#"{"id":"web","until":{"port":3000}}"#,
    )?;
    crate::payload::input::check_fields(input.fields.as_deref())?;
    let fields = input.fields.clone();
    let (id, ids, mode, selector) = (
        input.id.clone(),
        input.ids.clone(),
        input.mode,
        input.selector(),
    );
    let cancel = interrupt::install()?;
    let tasks = Tasks::open()?.exiting_after_call();
    let result = tasks.wait(WaitArgs {
        input,
        timeout: Timeout::of_wait(flags.timeout),
        cancel,
        progress: None,
    });
    let interrupted = interrupt::received();
    let waited = match (result, interrupted) {
        (Ok(waited), _) => waited,
        (Err(error), None) => return Err(error),
        // The wait ended early: the tasks as they are now.
        (Err(error), Some(_)) => {
            let several = match (id, ids, selector) {
                (Some(_), _, _) => match interrupt::task_of(&tasks, &error) {
                    Some(task) => {
                        return answer(
                            Waited::One {
                                task: Box::new(task),
                                matched: None,
                            },
                            fields.as_deref(),
                            flags.exit_status,
                            interrupted,
                        );
                    }
                    None => return Err(error),
                },
                (None, Some(ids), _) => ids,
                (None, None, Some(selector)) => tasks.select(&selector, false)?,
                (None, None, None) => return Err(error),
            };
            as_they_are(&tasks, several, mode.unwrap_or(WaitMode::All))
        }
    };
    answer(waited, fields.as_deref(), flags.exit_status, interrupted)
}

/// `ids` as they are now, for a wait a signal ended.
fn as_they_are(tasks: &Tasks, ids: Vec<TaskId>, mode: WaitMode) -> Waited {
    let now: Vec<Task> = ids
        .into_iter()
        .filter_map(|id| tasks.status(StatusArgs { id }).ok())
        .collect();
    let ended = now
        .iter()
        .filter(|t| t.status.is_terminal())
        .map(|t| t.id.clone())
        .collect();
    Waited::Several {
        mode,
        tasks: now,
        ended,
    }
}

/// The answer, each task whole or only `fields`, with the exit code `--exit-status` asks for.
fn answer(
    waited: Waited,
    fields: Option<&[String]>,
    exit_status: bool,
    interrupted: Option<&'static str>,
) -> Result<Reply> {
    let (answer, code) = match waited {
        Waited::One { task, matched } => {
            let code = exit_status::code(exit_status, interrupted, [&*task]);
            let answer = TaskAnswer {
                matched,
                interrupted,
                ..TaskAnswer::shown(*task, fields)
            };
            (WaitAnswer::One(Box::new(answer)), code)
        }
        Waited::Several { mode, tasks, ended } => {
            let code = exit_status::code(exit_status, interrupted, &tasks);
            let mut answer = WaitAnswer::several(mode, tasks, ended, fields);
            if let WaitAnswer::Several(several) = &mut answer {
                several.interrupted = interrupted;
            }
            (answer, code)
        }
    };
    Ok(Reply::DataWithCode(encode(answer)?, code))
}
