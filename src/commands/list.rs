//! `list {filters}`: every task, oldest first, whole or only some `fields`; `--table` for
//! people.

use super::{Reply, data};
use crate::cli::TableArgs;
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::list::ListArgs;
use crate::payload;
use crate::payload::answer::{ListAnswer, Shown};
use crate::payload::input::ListInput;

pub fn run(args: TableArgs) -> Result<Reply> {
    let input: ListInput = payload::optional(
        payload::read(args.payload.as_deref())?,
        r#"{"status":"running"}"#,
    )?;
    input.validate()?;
    let fields = input.fields.clone();
    let listed = Tasks::open()?.list(ListArgs { filter: input })?;
    if args.table {
        let width = crate::table::terminal_width();
        return Ok(Reply::Text(crate::table::render(&listed.tasks, width)));
    }
    let tasks: Vec<Shown> = listed
        .tasks
        .into_iter()
        .map(|task| Shown::new(task, fields.as_deref()))
        .collect();
    data(ListAnswer {
        total: tasks.len(),
        tasks,
        unreadable: listed.unreadable,
    })
}
