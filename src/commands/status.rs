//! `status {id}`: one task, truthfully (a task whose supervisor vanished is `lost`);
//! `--table` for people.

use super::{Reply, data};
use crate::cli::TableArgs;
use crate::error::Result;
use crate::lifecycle::Tasks;
use crate::lifecycle::observe::StatusArgs;
use crate::payload;
use crate::payload::answer::TaskAnswer;
use crate::payload::input::IdInput;

pub fn run(args: TableArgs) -> Result<Reply> {
    let input: IdInput = payload::require(
        payload::read(args.payload.as_deref())?,
        "status",
        r#"{"id":"web"}"#,
    )?;
    let task = Tasks::open()?.status(StatusArgs { id: input.id })?;
    if args.table {
        let width = crate::table::terminal_width();
        return Ok(Reply::Text(crate::table::render(&[task], width)));
    }
    data(TaskAnswer::new(task))
}
