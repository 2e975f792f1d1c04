//! `list {filters}`: every task, oldest first.
//!
//! Each record is read once; only a record that claims to be alive costs a lock probe, so
//! the cost grows with the number of tasks and nothing else. A record that cannot be read
//! is reported in `unreadable` rather than failing the whole list.

use crate::commands::open_state;
use crate::error::{Error, Result};
use crate::payload::answer::{ListAnswer, Shown, Unreadable};
use crate::payload::input::ListInput;
use crate::payload::task::{FIELDS, Task};
use crate::state::{TaskRecord, observe};

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
        .map(|(_, task)| Shown::new(task, input.fields.as_deref()))
        .collect();
    Ok(ListAnswer {
        total: tasks.len(),
        tasks,
        unreadable,
    })
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
