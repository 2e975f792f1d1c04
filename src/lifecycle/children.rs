//! Child tasks: a task started from inside another (a `start` run by one of the task's
//! processes) records that task as its `parent`. The supervisor gives its task its id
//! ([`env::TASK_ID`]) and its state directory ([`env::HOME`]) in the environment; `start`
//! reads them here.
//!
//! The child's record is the truth (`parent`); the parent's folder keeps a list of the ids
//! started from inside it ([`names::CHILDREN`], a line each, appended by the child's
//! `start`), so that its `status` finds its children without reading every record. An id
//! on that list whose record does not name the parent (removed and started again from
//! elsewhere) is not a child. A tree stop reads every record's `parent` instead: it must
//! miss no child, even one the list could not take.
//!
//! Nothing else about a child's life depends on its parent: it runs under its own
//! supervisor, outlives its parent, and is stopped with it only when asked
//! (`stop {"with_children": true}`: the deepest first, each generation at once).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write as _};

use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::lifecycle::batch::{WORKERS, parallel};
use crate::lifecycle::stop::{StopArgs, Stopped};
use crate::paths::{TaskId, env, names};
use crate::payload::task::ChildTask;
use crate::state::folder::Write;
use crate::state::{TaskRecord, observe};

/// The most bytes of a children list read: about 15,000 ids.
const MAX_LIST_BYTES: u64 = 1 << 20;

/// How often `stop {with_children}` looks at the tree for tasks started while it stopped
/// the others.
const MAX_PASSES: usize = 5;

impl Tasks {
    /// The task a `start` of `id` runs inside, if any: the id its supervisor put in the
    /// environment, when that task exists in this state directory and is not `id` itself.
    pub(crate) fn caller_parent(&self, id: &TaskId) -> Option<TaskId> {
        let value = std::env::var(env::TASK_ID).ok()?;
        let parent = TaskId::parse(&value).ok()?;
        // Its folder, not its record: the task may start a child before its supervisor
        // has written the first record.
        let known = self.paths(&parent).open().ok().flatten().is_some();
        (parent != *id && known).then_some(parent)
    }

    /// Adds `child` to the list of tasks started from inside `parent` (once). A list that
    /// cannot be written leaves the child without a place in its parent's `status`, never
    /// without its start: its own record still names its parent (`list {"parent"}`).
    pub(crate) fn note_child(&self, parent: &TaskId, child: &TaskId) {
        let Ok(Some(folder)) = self.paths(parent).open() else {
            return;
        };
        // A list that cannot be read (a link planted in its place) is not written either.
        if self
            .listed_children(parent)
            .is_ok_and(|ids| !ids.contains(child))
            && let Ok(mut list) = folder.write_file(names::CHILDREN, Write::Append)
        {
            let _ = list.write_all(format!("{child}\n").as_bytes());
        }
    }

    /// The ids on `parent`'s children list, as written (checked by the caller).
    fn listed_children(&self, parent: &TaskId) -> Result<Vec<TaskId>> {
        let paths = self.paths(parent);
        let mut bytes = Vec::new();
        if let Some(list) = paths.read_file(names::CHILDREN)? {
            list.take(MAX_LIST_BYTES)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::store("read", paths.dir.join(names::CHILDREN), e))?;
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut seen = BTreeSet::new();
        Ok(text
            .lines()
            .filter_map(|line| TaskId::parse(line).ok())
            .filter(|id| seen.insert(id.clone()))
            .collect())
    }

    /// The tasks started from inside `parent` that still exist, oldest first, as they are
    /// now (a child whose supervisor vanished is `lost`). A list that cannot be read (a
    /// link planted in its place) is a `StoreError` naming it.
    pub fn children(&self, parent: &TaskId) -> Result<Vec<ChildTask>> {
        let mut records: Vec<TaskRecord> = self
            .listed_children(parent)?
            .into_iter()
            .filter_map(|id| observe(&self.paths(&id), &id).ok())
            .filter(|record| record.parent.as_deref() == Some(parent.as_str()))
            .collect();
        records.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(records
            .into_iter()
            .map(|record| ChildTask {
                status: record.status.into(),
                exit_code: record.exit_code,
                id: record.id,
            })
            .collect())
    }

    /// `root`'s descendants by generation: its children, their children, and so on, each
    /// generation oldest first. Found from every record's `parent`, read once, not from the
    /// parents' lists (a hint for `status`, which a full disk or a planted link can leave
    /// short): a tree stop must miss no child. A task is counted once, whatever cycle the
    /// records make (a parent started again from inside its own child).
    fn generations(&self, root: &TaskId) -> Result<Vec<Vec<TaskId>>> {
        let mut by_parent: BTreeMap<String, Vec<(i64, TaskId)>> = BTreeMap::new();
        for id in self.state.task_ids()? {
            if let Ok(Some(record)) = TaskRecord::read(&self.paths(&id))
                && let Some(parent) = record.parent
            {
                by_parent
                    .entry(parent)
                    .or_default()
                    .push((record.created_at_ms, id));
            }
        }
        let mut seen = BTreeSet::from([root.clone()]);
        let mut generations = Vec::new();
        let mut current = vec![root.clone()];
        while !current.is_empty() {
            let mut next = Vec::new();
            for parent in &current {
                let mut children = by_parent.remove(parent.as_str()).unwrap_or_default();
                children.sort();
                for (_, id) in children {
                    if seen.insert(id.clone()) {
                        next.push(id);
                    }
                }
            }
            if !next.is_empty() {
                generations.push(next.clone());
            }
            current = next;
        }
        Ok(generations)
    }

    /// `stop {"id", "with_children": true}`: stops the task's descendants, the deepest
    /// generation first and each generation's tasks at once (a few at a time), then the
    /// task itself. Answers the task as it ended, and each descendant as it is after its
    /// stop (one that could not be stopped says so by its status; one removed meanwhile is
    /// left out).
    ///
    /// A task of the tree may start another while the others are being stopped (the root
    /// is stopped last): once the root is stopped, the tree is looked at again and what
    /// appeared since is stopped too, until a look finds nothing new (at most
    /// [`MAX_PASSES`] looks).
    pub(crate) fn stop_with_children(&self, args: StopArgs) -> Result<Stopped> {
        // The task must exist before anything is stopped on its behalf.
        self.record(&args.id)?;
        let mut seen = BTreeSet::new();
        let mut stopped = self.stop_descendants(&args, &mut seen)?;
        let task = self.stop(StopArgs {
            with_children: false,
            ..args.clone()
        })?;
        for _ in 1..MAX_PASSES {
            let late = self.stop_descendants(&args, &mut seen)?;
            if late.is_empty() {
                break;
            }
            stopped.extend(late);
        }
        Ok(Stopped {
            children: Some(stopped),
            ..task
        })
    }

    /// Stops the descendants of `args.id` not in `seen` (and adds them to it), the deepest
    /// generation first, each generation's at once.
    fn stop_descendants(
        &self,
        args: &StopArgs,
        seen: &mut BTreeSet<TaskId>,
    ) -> Result<Vec<ChildTask>> {
        let generations = self.generations(&args.id)?;
        let mut stopped = Vec::new();
        for generation in generations.into_iter().rev() {
            let items: Vec<(usize, TaskId)> = generation
                .into_iter()
                .filter(|id| seen.insert(id.clone()))
                .enumerate()
                .collect();
            if items.is_empty() {
                continue;
            }
            let ended = parallel(items, WORKERS, |id| {
                let stop = StopArgs {
                    id: id.clone(),
                    with_children: false,
                    ..args.clone()
                };
                // A stop that failed: the child as it is (one removed meanwhile is gone).
                let task = match self.stop(stop) {
                    Ok(done) => (done.task.status, done.task.exit_code),
                    Err(_) => {
                        let record = self.record(&id).ok()?;
                        (record.status.into(), record.exit_code)
                    }
                };
                Some(ChildTask {
                    id: id.to_string(),
                    status: task.0,
                    exit_code: task.1,
                })
            });
            stopped.extend(ended.into_iter().filter_map(|(_, child)| child));
        }
        Ok(stopped)
    }
}
