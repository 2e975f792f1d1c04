//! `wait {id, until?}` and `wait {ids, mode?}`: block until tasks have ended, or until
//! conditions hold; `--timeout` bounds it ([`crate::lifecycle::wait`]).

use crate::cli::{Timeout, WaitArgs as Flags};
use crate::error::Result;
use crate::lifecycle::wait::{WaitArgs, Waited};
use crate::lifecycle::{Cancel, Tasks};
use crate::payload;
use crate::payload::answer::{TaskAnswer, WaitAnswer};
use crate::payload::input::WaitInput;

pub fn run(flags: Flags) -> Result<WaitAnswer> {
    let input: WaitInput = payload::require(
        payload::read(flags.payload.as_deref())?,
        "wait",
        r#"{"id":"web","until":{"port":3000}}"#,
    )?;
    crate::payload::input::check_fields(input.fields.as_deref())?;
    let fields = input.fields.clone();
    let waited = Tasks::open()?.exiting_after_call().wait(WaitArgs {
        input,
        timeout: Timeout::of_wait(flags.timeout),
        cancel: Cancel::never(),
        progress: None,
    })?;
    let fields = fields.as_deref();
    Ok(match waited {
        Waited::One { task, matched } => WaitAnswer::One(Box::new(TaskAnswer {
            matched,
            ..TaskAnswer::shown(*task, fields)
        })),
        Waited::Several { mode, tasks, ended } => WaitAnswer::several(mode, tasks, ended, fields),
    })
}
