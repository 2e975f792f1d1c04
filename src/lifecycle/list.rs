//! Listing: every task, oldest first, filtered.
//!
//! Each record is read once; only a record that claims to be alive costs a lock probe, so
//! the cost grows with the number of tasks and nothing else. A record that cannot be read
//! is reported in `unreadable` rather than failing the whole list.

use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::lifecycle::observe::listening_ports_of;
use crate::paths::{TaskId, names};
use crate::payload::answer::Unreadable;
use crate::payload::input::{ListInput, Selector};
use crate::payload::task::{Status, Task};
use crate::state::{TaskRecord, observe_in};

/// `list`: the filters, all optional; a task must match every one given. (`fields` is how
/// a front end shows the tasks, not which; when it asks for `ports`, the running tasks'
/// ports are looked up now, in one pass over /proc for all of them.)
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
        // `tasks/` is opened once, and each task's folder through it.
        let tasks = self.state.tasks()?;
        for id in ids {
            let paths = self.paths(&id);
            let observed = match tasks.as_ref().map(|t| t.open_below(&[id.as_str()])) {
                Some(Ok(Some(folder))) => observe_in(&folder, &id)
                    .map(|record| (record, folder.size(names::LOG).unwrap_or(0))),
                Some(Ok(None)) | None => Err(Error::TaskNotFound { id: id.to_string() }),
                Some(Err(e)) => Err(e),
            };
            match observed {
                Ok((record, log_size)) if matches(&filter, &record) => {
                    let task = Task::from_record_with_log(&record, &paths, log_size);
                    found.push((record, task));
                }
                Ok(_) | Err(Error::TaskNotFound { .. }) => {}
                Err(e) => unreadable.push(Unreadable {
                    id: id.to_string(),
                    error: e.full_message(),
                }),
            }
        }
        // Oldest first. The order is sorted, not the tasks: each is kilobytes to move.
        let mut order: Vec<usize> = (0..found.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&found[a].0, &found[b].0);
            (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id))
        });
        let mut slots: Vec<Option<(TaskRecord, Task)>> = found.into_iter().map(Some).collect();
        let mut found: Vec<(TaskRecord, Task)> =
            order.into_iter().filter_map(|i| slots[i].take()).collect();
        let wants_ports = filter
            .fields
            .as_ref()
            .is_some_and(|fields| fields.iter().any(|f| f == "ports"));
        if wants_ports {
            let records: Vec<&TaskRecord> = found.iter().map(|(record, _)| record).collect();
            let ports = listening_ports_of(&records);
            for ((_, task), ports) in found.iter_mut().zip(ports) {
                task.ports = Some(ports);
            }
        }
        Ok(Listed {
            tasks: found.into_iter().map(|(_, task)| task).collect(),
            unreadable,
        })
    }
}

impl Tasks {
    /// The ids of the tasks `selector` chooses, oldest first. With `live_only` and no
    /// `status` in the selector, only queued and running tasks (what `stop` acts on).
    pub fn select(&self, selector: &Selector, live_only: bool) -> Result<Vec<TaskId>> {
        let live = live_only && selector.status.is_none();
        let listed = self.list(ListArgs {
            filter: ListInput::selecting(selector.clone()),
        })?;
        listed
            .tasks
            .into_iter()
            .filter(|task| !live || !task.status.is_terminal())
            .map(|task| {
                TaskId::parse(&task.id)
                    .map_err(|e| Error::input(e, "This is a bug; please report it."))
            })
            .collect()
    }
}

fn matches(filter: &ListInput, record: &TaskRecord) -> bool {
    let has_tag = |tag: &String| record.tags.contains(tag);
    let status = Status::from(record.status);
    let success = status == Status::Exited && record.exit_code == Some(0);
    filter.status.as_ref().is_none_or(|s| s.allows(status))
        && filter
            .success
            .is_none_or(|want| status.is_terminal() && want == success)
        && filter
            .exit_code
            .is_none_or(|code| status == Status::Exited && record.exit_code == Some(code))
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
        && filter
            .parent
            .as_ref()
            .is_none_or(|parent| record.parent.as_deref() == Some(parent.as_str()))
}
