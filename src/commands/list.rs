//! `list {filters}`: every task, oldest first.
//!
//! Each record is read once; only a record that claims to be alive costs a lock probe, so
//! the cost grows with the number of tasks and nothing else. A record that cannot be read
//! is reported in `unreadable` rather than failing the whole list.

use serde::Serialize;

use crate::commands::open_state;
use crate::error::{Error, Result};
use crate::payload::input::ListInput;
use crate::payload::task::{FIELDS, Task};
use crate::state::{TaskRecord, observe};

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ListAnswer {
    pub total: usize,
    /// Whole tasks, or only the `fields` asked for.
    pub tasks: Vec<Shown>,
    /// Task folders whose record could not be read, with the reason.
    pub unreadable: Vec<Unreadable>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Unreadable {
    pub id: String,
    pub error: String,
}

/// A task as listed: whole, or projected to some fields.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Shown {
    Whole(Box<Task>),
    Some(serde_json::Map<String, serde_json::Value>),
}

pub fn run(input: ListInput) -> Result<ListAnswer> {
    if let Some(fields) = &input.fields {
        for (i, field) in fields.iter().enumerate() {
            if !FIELDS.contains(&field.as_str()) {
                return Err(Error::input_at(
                    format!("fields[{i}]"),
                    format!("fields[{i}]: {field:?} is not a task field"),
                    format!("Task fields: {}.", FIELDS.join(", ")),
                ));
            }
        }
    }
    let state = open_state()?;
    let ids = match &input.ids {
        Some(ids) => ids.clone(),
        None => state.task_ids()?,
    };
    let mut found: Vec<(TaskRecord, Task)> = Vec::new();
    let mut unreadable = Vec::new();
    for id in ids {
        let paths = state.task(&id);
        match observe(&paths, &id) {
            Ok(record) if matches(&input, &record) => {
                let task = Task::from_record(&record, &paths);
                found.push((record, task));
            }
            Ok(_) | Err(Error::TaskNotFound { .. }) => {}
            Err(e) => unreadable.push(Unreadable {
                id: id.to_string(),
                error: e.full_message(),
            }),
        }
    }
    found.sort_by(|(a, _), (b, _)| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    let tasks: Vec<Shown> = found
        .into_iter()
        .map(|(_, task)| match &input.fields {
            None => Shown::Whole(Box::new(task)),
            Some(fields) => Shown::Some(project(&task, fields)),
        })
        .collect();
    Ok(ListAnswer {
        total: tasks.len(),
        tasks,
        unreadable,
    })
}

/// Only `fields` of a task, in the order asked.
fn project(task: &Task, fields: &[String]) -> serde_json::Map<String, serde_json::Value> {
    let mut whole = match serde_json::to_value(task) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    fields
        .iter()
        .filter_map(|f| whole.remove(f).map(|v| (f.clone(), v)))
        .collect()
}

fn matches(filter: &ListInput, record: &TaskRecord) -> bool {
    let has_tag = |tag: &String| record.tags.contains(tag);
    filter.status.is_none_or(|s| s == record.status)
        && filter.tag.as_ref().is_none_or(has_tag)
        && filter
            .tags
            .as_ref()
            .is_none_or(|tags| tags.iter().all(has_tag))
        && filter
            .name
            .as_ref()
            .is_none_or(|name| record.name.as_ref() == Some(name))
        && filter
            .workdir
            .as_ref()
            .is_none_or(|dir| record.workdir.trim_end_matches('/') == dir.trim_end_matches('/'))
}
