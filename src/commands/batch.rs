//! Batches: `start`, `stop`, `restart` and `rm` take an array of their payloads.
//!
//! Items run in parallel (a few at a time) and are answered in input order:
//! `{outcome, total, success_count, error_count, concurrency, results: [{index, ok, target,
//! data | error}]}`. Any failed item makes the exit code 1; the answer still says which
//! items succeeded.

use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::commands::{Reply, encode};
use crate::error::{Error, Result};

/// How many items of a batch are worked on at once by this process.
pub const WORKERS: usize = 8;

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
    pub results: Vec<ItemResult<D>>,
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
    #[schemars(schema_with = "crate::payload::shape::optional_error")]
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

/// Collects results into the batch answer; the exit code is 1 if any item failed.
pub fn answer(mut results: Vec<ItemResult>, concurrency: Option<usize>) -> Result<Reply> {
    results.sort_by_key(|r| r.index);
    let total = results.len();
    let success_count = results.iter().filter(|r| r.ok).count();
    let error_count = total - success_count;
    let outcome = match (success_count, error_count) {
        (_, 0) => "succeeded",
        (0, _) => "failed",
        _ => "partial_failure",
    };
    let data = encode(BatchAnswer {
        outcome,
        total,
        success_count,
        error_count,
        concurrency,
        results,
    })?;
    Ok(if error_count == 0 {
        Reply::Data(data)
    } else {
        Reply::DataWithFailures(data)
    })
}

/// Runs `work` on every `(input index, item)`, at most `workers` at once, and returns the
/// results in input order. `target` names an item's task for its result.
pub fn run_items<T: Send>(
    items: Vec<(usize, T)>,
    workers: usize,
    target: impl Fn(&T) -> Option<String> + Sync,
    work: impl Fn(T) -> Result<Box<RawValue>> + Sync,
) -> Vec<ItemResult> {
    parallel(items, workers, |item| (target(&item), work(item)))
        .into_iter()
        .map(|(index, (name, result))| ItemResult::new(index, name, result))
        .collect()
}

/// Maps `work` over `(input index, item)`s on at most `workers` threads; the results come
/// back in input order.
pub fn parallel<T: Send, R: Send>(
    items: Vec<(usize, T)>,
    workers: usize,
    work: impl Fn(T) -> R + Sync,
) -> Vec<(usize, R)> {
    let queue: Mutex<Vec<(usize, T)>> = Mutex::new(items.into_iter().rev().collect());
    let results = Mutex::new(Vec::new());
    let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                while let Some((index, item)) = next() {
                    let result = work(item);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((index, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(index, _)| *index);
    results
}

/// A batch item that could not even be read.
pub fn invalid(index: usize, error: Error) -> ItemResult {
    ItemResult::new(index, None, Err(error))
}
