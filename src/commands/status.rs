//! `status {id}`: one task, truthfully (a task whose supervisor vanished is `lost`).

use crate::commands::open_state;
use crate::error::Result;
use crate::payload::answer::TaskAnswer;
use crate::payload::input::IdInput;
use crate::payload::task::{Task, listening_ports};
use crate::state::observe;

pub fn run(input: IdInput) -> Result<TaskAnswer> {
    let paths = open_state()?.task(&input.id);
    let record = observe(&paths, &input.id)?;
    let mut task = Task::from_record(&record, &paths);
    task.ports = Some(listening_ports(&record));
    Ok(TaskAnswer::new(task))
}
