//! Batches: `start`, `stop`, `restart` and `rm` take an array of their payloads and answer
//! `{outcome, total, success_count, error_count, concurrency, results: [{index, ok, target,
//! data | error}]}`, one result per item in input order. Any failed item makes the exit
//! code 1; the answer still says which items succeeded.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::Result;

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
            results,
        }
    }
}
