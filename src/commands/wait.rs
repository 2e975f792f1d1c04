//! `wait {id, until?}` and `wait {ids, mode?}`: block until tasks have ended, or until
//! conditions hold; `--timeout` bounds it ([`crate::lifecycle::wait`]).

use crate::cli::{Timeout, WaitArgs as Flags};
use crate::error::Result;
use crate::lifecycle::wait::{WaitArgs, Waited};
use crate::lifecycle::{Cancel, Tasks};
use crate::payload;
use crate::payload::answer::{SeveralAnswer, TaskAnswer, WaitAnswer};

pub fn run(flags: Flags) -> Result<WaitAnswer> {
    let input = payload::require(
        payload::read(flags.payload.as_deref())?,
        "wait",
        r#"{"id":"web","until":{"port":3000}}"#,
    )?;
    let waited = Tasks::open()?.exiting_after_call().wait(WaitArgs {
        input,
        timeout: Timeout::of_wait(flags.timeout),
        cancel: Cancel::never(),
        progress: None,
    })?;
    Ok(match waited {
        Waited::One { task, matched } => WaitAnswer::One(Box::new(TaskAnswer {
            matched,
            ..TaskAnswer::new(*task)
        })),
        Waited::Several { mode, tasks, ended } => {
            WaitAnswer::Several(SeveralAnswer { mode, tasks, ended })
        }
    })
}
