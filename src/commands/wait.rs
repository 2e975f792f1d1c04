//! `wait {id, until?}` and `wait {ids, mode?}`: block until tasks have ended, or until
//! conditions hold; `--timeout` bounds it ([`crate::lifecycle::wait`]). `--exit-status`
//! makes the exit code follow the tasks ([`super::exit_status`]); a signal ends the wait with
//! the tasks as they are ([`super::interrupt`]).

use std::time::Duration;

use super::{Reply, encode, exit_status, interrupt};
use crate::cli::WaitArgs as Flags;
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::observe::StatusArgs;
use crate::lifecycle::wait::{WaitArgs, Waited};
use crate::payload;
use crate::payload::answer::{SeveralAnswer, TaskAnswer, WaitAnswer};
use crate::payload::input::WaitMode;
use crate::payload::task::Task;

pub fn run(flags: Flags) -> Result<Reply> {
    let input: payload::input::WaitInput = payload::require(
        payload::read(flags.payload.as_deref())?,
        "wait",
        r#"{"id":"web","until":{"port":3000}}"#,
    )?;
    let (id, ids, mode) = (input.id.clone(), input.ids.clone(), input.mode);
    let cancel = interrupt::install()?;
    let tasks = Tasks::open()?.exiting_after_call();
    let result = tasks.wait(WaitArgs {
        input,
        timeout: flags.timeout.map(Duration::from_secs_f64),
        cancel,
        progress: None,
    });
    let interrupted = interrupt::received();
    let waited = match (result, interrupted) {
        (Ok(waited), _) => waited,
        (Err(error), None) => return Err(error),
        // The wait ended early: the tasks as they are now.
        (Err(error), Some(_)) => match (id, ids) {
            (Some(_), _) => match interrupt::task_of(&tasks, &error) {
                Some(task) => Waited::One(Box::new(task)),
                None => return Err(error),
            },
            (None, Some(ids)) => {
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
                    mode: mode.unwrap_or(WaitMode::All),
                    tasks: now,
                    ended,
                }
            }
            (None, None) => return Err(error),
        },
    };
    let (answer, code) = match waited {
        Waited::One(task) => {
            let code = exit_status::code(flags.exit_status, interrupted, [&*task]);
            let mut answer = TaskAnswer::new(*task);
            answer.interrupted = interrupted;
            (WaitAnswer::One(Box::new(answer)), code)
        }
        Waited::Several { mode, tasks, ended } => {
            let code = exit_status::code(flags.exit_status, interrupted, &tasks);
            let answer = SeveralAnswer {
                mode,
                tasks,
                ended,
                interrupted,
            };
            (WaitAnswer::Several(answer), code)
        }
    };
    Ok(Reply::DataWithCode(encode(answer)?, code))
}
