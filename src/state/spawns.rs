//! `spawns.json`: when `start` spawned the task's recent runs, for `start`'s `rate_limit`
//! (issue 17 item 4). Read and written only under the task's lock, through the task's
//! folder like every other file (no link is followed), replaced atomically. Only starts
//! given a `rate_limit` write it: a start without one neither counts nor is counted.
//! A file that cannot be read as a list of times counts as empty.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::paths::names;
use crate::payload::policy::RateLimit;
use crate::state::atomic;
use crate::state::folder::Folder;
use crate::state::lock::TaskLock;

/// The stored times.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Spawns {
    /// Unix milliseconds of the recent spawns, oldest first.
    #[serde(default)]
    spawned_at_ms: Vec<i64>,
}

/// Counts a fresh spawn of task `id` at `now_ms` against `limit`, or refuses it with
/// `StartThrottled` when `limit.max` spawns already fall within the window. The caller
/// holds the task's lock (`_lock`): the file has one writer at a time.
pub fn admit(
    folder: &Folder,
    _lock: &TaskLock,
    id: &str,
    limit: &RateLimit,
    now_ms: i64,
) -> Result<()> {
    let window = limit.window_ms();
    let mut spawns: Spawns = folder
        .read(names::SPAWNS)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    // Times within the window; one in the future (the clock went back) counts until the
    // window has passed it.
    spawns
        .spawned_at_ms
        .retain(|&at| at > now_ms.saturating_sub(window));
    let max = usize::try_from(limit.max).unwrap_or(usize::MAX);
    if spawns.spawned_at_ms.len() >= max {
        // The spawn that must leave the window before one more fits.
        let leaving = spawns.spawned_at_ms[spawns.spawned_at_ms.len() - max];
        let wait_ms = (leaving.saturating_add(window) - now_ms).clamp(1, window.max(1));
        return Err(Error::StartThrottled {
            id: id.to_owned(),
            max: limit.max,
            per_s: limit.per_s,
            retry_after_s: wait_ms as f64 / 1000.0,
        });
    }
    // Below `max` before this push, so the list never holds more than `max` (at most
    // MAX_RATE, as `RateLimit::validate` checks).
    spawns.spawned_at_ms.push(now_ms);
    let bytes = serde_json::to_vec(&spawns)
        .map_err(|e| Error::store("encode", names::SPAWNS, std::io::Error::other(e)))?;
    atomic::write(folder, names::SPAWNS, &bytes)
}
