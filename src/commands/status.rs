//! `status {id}`: one task, truthfully (a task whose supervisor vanished is `lost`).

use crate::cli::PayloadArgs;
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::observe::StatusArgs;
use crate::payload;
use crate::payload::answer::TaskAnswer;
use crate::payload::input::IdInput;

pub fn run(args: PayloadArgs) -> Result<TaskAnswer> {
    let input: IdInput = payload::require(
        payload::read(args.payload.as_deref())?,
        "status",
        r#"{"id":"web"}"#,
    )?;
    let task = Tasks::open()?.status(StatusArgs { id: input.id })?;
    Ok(TaskAnswer::new(task))
}
