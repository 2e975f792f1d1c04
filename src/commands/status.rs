//! `status {id}`: one task, truthfully (a task whose supervisor vanished is `lost`).

use serde::Serialize;

use crate::commands::open_state;
use crate::error::Result;
use crate::payload::input::IdInput;
use crate::payload::task::{Task, listening_ports, stopped};
use crate::state::{Status, observe};

/// The answer of `status`, `wait` and `restart`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TaskAnswer {
    pub task_id: String,
    pub status: Status,
    pub task: Task,
}

impl TaskAnswer {
    pub fn new(task: Task) -> TaskAnswer {
        TaskAnswer {
            task_id: task.id.clone(),
            status: task.status,
            task,
        }
    }
}

pub fn run(input: IdInput) -> Result<TaskAnswer> {
    let paths = open_state()?.task(&input.id);
    let record = observe(&paths, &input.id)?;
    let mut task = Task::from_record(&record, &paths);
    task.ports = Some(listening_ports(&record));
    task.stopped = stopped(&record);
    Ok(TaskAnswer::new(task))
}
