//! `restart {id, env?}` or an array: stop the task if it runs, then start its next run with
//! the same command ([`crate::lifecycle::restart`]).

use super::{Reply, one_or_batch};
use crate::cli::PayloadArgs;
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::restart::RestartArgs;
use crate::payload::answer::TaskAnswer;
use crate::payload::input::RestartInput;

pub fn run(args: PayloadArgs) -> Result<Reply> {
    one_or_batch(
        args.payload.as_deref(),
        "restart",
        r#"{"id":"web"}"#,
        |input: &RestartInput| Some(&input.id),
        |input| {
            input.validate()?;
            let fields = input.fields.clone();
            let task = Tasks::open()?
                .exiting_after_call()
                .restart(RestartArgs { input })?;
            Ok(TaskAnswer::shown(task, fields.as_deref()))
        },
    )
}
