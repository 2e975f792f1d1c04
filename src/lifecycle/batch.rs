//! Batches: many items of one operation (`start`, `stop`, `restart`, `rm` with an array),
//! worked on in parallel, a few at a time, with their results in input order.
//!
//! Every front end answers a batch with one result per item ([`crate::payload::batch`] is
//! the CLI's form); this module only runs the items.

use std::sync::Mutex;

use crate::error::Result;

/// How many items of a batch are worked on at once by this process.
pub const WORKERS: usize = 8;

/// One item's result.
#[derive(Debug)]
pub struct Item<T> {
    /// The item's place in the input, from 0.
    pub index: usize,
    /// The task the item was about (its id), when known.
    pub target: Option<String>,
    pub result: Result<T>,
}

impl<T> Item<T> {
    pub fn new(index: usize, target: Option<String>, result: Result<T>) -> Item<T> {
        Item {
            index,
            target,
            result,
        }
    }
}

/// Runs `work` on every `(input index, item)`, at most `workers` at once, and returns the
/// results in input order. `target` names an item's task for its result.
pub fn run_items<T: Send, R: Send>(
    items: Vec<(usize, T)>,
    workers: usize,
    target: impl Fn(&T) -> Option<String> + Sync,
    work: impl Fn(T) -> Result<R> + Sync,
) -> Vec<Item<R>> {
    parallel(items, workers, |item| (target(&item), work(item)))
        .into_iter()
        .map(|(index, (target, result))| Item::new(index, target, result))
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
