//! Batches: `start`, `stop`, `restart` and `rm` take an array of their payloads and answer
//! `{outcome, total, success_count, error_count, concurrency, results: [{index, ok, target,
//! data | error}]}`, one result per item in input order. Any failed item makes the exit
//! code 1; the answer still says which items succeeded.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::Result;
use crate::payload::task::{Status, Task};

/// The answer to a batch (a payload that is an array): one result per item, in input order.
/// `D` is an item's answer; it is kept as encoded JSON at run time.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BatchAnswer<D = Box<RawValue>> {
    /// `succeeded` (every item), `partial_failure` or `failed` (every item failed).
    #[schemars(extend("enum" = ["succeeded", "partial_failure", "failed"]))]
    pub outcome: &'static str,
    /// How many items the batch had.
    pub total: usize,
    pub success_count: usize,
    pub error_count: usize,
    /// `--concurrency`, when it was given.
    pub concurrency: Option<usize>,
    /// With `--wait` (`start`, `restart`): how the tasks of the items that succeeded ended,
    /// apart from how many items succeeded (an item whose task exited 2 succeeded as an item).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_outcomes: Option<TaskOutcomes>,
    /// Present only when a signal (SIGINT, SIGTERM, SIGHUP) interrupted the wait: its name.
    /// The tasks are as they were then (they run on); the exit code is 130.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<&'static str>,
    pub results: Vec<ItemResult<D>>,
}

/// How the tasks a batch waited for ended, counted by how they ended.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct TaskOutcomes {
    /// `succeeded` (every task exited 0 or runs on, ready), `partial_failure`, or `failed`
    /// (none did); `succeeded` when there was no task.
    #[schemars(extend("enum" = ["succeeded", "partial_failure", "failed"]))]
    pub outcome: &'static str,
    /// Exited with code 0.
    pub succeeded: usize,
    /// Still running (ready, or not waited for to the end) or queued.
    pub running: usize,
    /// Exited by itself with a code other than 0.
    pub exited_nonzero: usize,
    /// Ended by a signal or `stop`.
    pub killed: usize,
    /// Killed by its `timeout_s`.
    pub timed_out: usize,
    /// Never started.
    pub failed: usize,
    /// Its supervisor vanished.
    pub lost: usize,
}

impl TaskOutcomes {
    /// Counts `tasks`.
    pub fn count<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> TaskOutcomes {
        let mut outcomes = TaskOutcomes::default();
        for task in tasks {
            let count = match task.status {
                Status::Queued | Status::Running => &mut outcomes.running,
                Status::Exited if task.success => &mut outcomes.succeeded,
                Status::Exited => &mut outcomes.exited_nonzero,
                Status::Killed => &mut outcomes.killed,
                Status::TimedOut => &mut outcomes.timed_out,
                Status::Failed => &mut outcomes.failed,
                Status::Lost => &mut outcomes.lost,
            };
            *count += 1;
        }
        let good = outcomes.succeeded + outcomes.running;
        let bad = outcomes.exited_nonzero
            + outcomes.killed
            + outcomes.timed_out
            + outcomes.failed
            + outcomes.lost;
        outcomes.outcome = match (good, bad) {
            (_, 0) => "succeeded",
            (0, _) => "failed",
            _ => "partial_failure",
        };
        outcomes
    }
}

/// One item's result: `data` (the answer for that one item) or `error`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ItemResult<D = Box<RawValue>> {
    /// The item's place in the payload array, from 0.
    pub index: usize,
    /// Whether this item succeeded.
    pub ok: bool,
    /// The task the item was about (its id), when known.
    pub target: Option<String>,
    /// The item's answer, when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<D>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::wire_schema::optional_error")]
    pub error: Option<Value>,
}

impl ItemResult {
    pub fn new(index: usize, target: Option<String>, result: Result<Box<RawValue>>) -> ItemResult {
        match result {
            Ok(data) => ItemResult {
                index,
                ok: true,
                target,
                data: Some(data),
                error: None,
            },
            Err(error) => ItemResult {
                index,
                ok: false,
                target,
                data: None,
                error: Some(error.to_json()),
            },
        }
    }
}

impl BatchAnswer {
    /// The answer for `results` (in any order): sorted by index, counted, with its outcome.
    pub fn new(mut results: Vec<ItemResult>, concurrency: Option<usize>) -> BatchAnswer {
        results.sort_by_key(|r| r.index);
        let total = results.len();
        let success_count = results.iter().filter(|r| r.ok).count();
        let error_count = total - success_count;
        let outcome = match (success_count, error_count) {
            (_, 0) => "succeeded",
            (0, _) => "failed",
            _ => "partial_failure",
        };
        BatchAnswer {
            outcome,
            total,
            success_count,
            error_count,
            concurrency,
            task_outcomes: None,
            interrupted: None,
            results,
        }
    }
}
