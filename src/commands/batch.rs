//! Batches: `start`, `stop`, `restart` and `rm` take an array of their payloads.
//!
//! Items run in parallel (a few at a time) and are answered in input order
//! ([`crate::payload::batch`]). Any failed item makes the exit code 1; the answer still says
//! which items succeeded.

use std::sync::Mutex;

use serde_json::value::RawValue;

use crate::commands::{Reply, encode};
use crate::error::{Error, Result};
use crate::payload::batch::{BatchAnswer, ItemResult};

/// How many items of a batch are worked on at once by this process.
pub const WORKERS: usize = 8;

/// Collects results into the batch answer; the exit code is 1 if any item failed.
pub fn answer(results: Vec<ItemResult>, concurrency: Option<usize>) -> Result<Reply> {
    let answer = BatchAnswer::new(results, concurrency);
    let failed = answer.error_count > 0;
    let data = encode(answer)?;
    Ok(if !failed {
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
