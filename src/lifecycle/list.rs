//! Listing: every task, oldest first, filtered.
//!
//! Each record is read once; only a record that claims to be alive costs a lock probe, so
//! the cost grows with the number of tasks and nothing else. A record that cannot be read
//! is reported in `unreadable` rather than failing the whole list.

use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::payload::answer::Unreadable;
use crate::payload::input::ListInput;
use crate::payload::task::{Status, Task};
use crate::state::{TaskRecord, observe};

/// `list`: the filters, all optional; a task must match every one given. (`fields` is how
/// a front end shows the tasks, not which: it is not looked at here.)
#[derive(Debug, Default)]
pub struct ListArgs {
    pub filter: ListInput,
}

/// The tasks that matched, oldest first, and the folders whose record could not be read.
#[derive(Debug)]
pub struct Listed {
    pub tasks: Vec<Task>,
    pub unreadable: Vec<Unreadable>,
}

impl Tasks {
    pub fn list(&self, args: ListArgs) -> Result<Listed> {
        let filter = args.filter;
        let ids = match &filter.ids {
            Some(ids) => ids.clone(),
            None => self.state.task_ids()?,
        };
        let mut found: Vec<(TaskRecord, Task)> = Vec::new();
        let mut unreadable = Vec::new();
        for id in ids {
            let paths = self.paths(&id);
            match observe(&paths, &id) {
                Ok(record) if matches(&filter, &record) => {
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
        Ok(Listed {
            tasks: found.into_iter().map(|(_, task)| task).collect(),
            unreadable,
        })
    }
}

fn matches(filter: &ListInput, record: &TaskRecord) -> bool {
    let has_tag = |tag: &String| record.tags.contains(tag);
    filter
        .status
        .is_none_or(|s| s == Status::from(record.status))
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
