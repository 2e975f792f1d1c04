//! `list {filters}`: every task, oldest first, whole or only some `fields`.

use crate::cli::PayloadArgs;
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::list::ListArgs;
use crate::payload;
use crate::payload::answer::{ListAnswer, Shown};
use crate::payload::input::ListInput;

pub fn run(args: PayloadArgs) -> Result<ListAnswer> {
    let input: ListInput = payload::optional(
        payload::read(args.payload.as_deref())?,
        r#"{"status":"running"}"#,
    )?;
    input.validate()?;
    let fields = input.fields.clone();
    let listed = Tasks::open()?.list(ListArgs { filter: input })?;
    let tasks: Vec<Shown> = listed
        .tasks
        .into_iter()
        .map(|task| Shown::new(task, fields.as_deref()))
        .collect();
    Ok(ListAnswer {
        total: tasks.len(),
        tasks,
        unreadable: listed.unreadable,
    })
}
