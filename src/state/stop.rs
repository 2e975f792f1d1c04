//! `stop.json`: a stop request, written by `stop` before it sends SIGUSR1 to the
//! supervisor, read by the supervisor when the signal arrives.
//!
//! A disk type: fields a newer version adds are ignored, and a request that cannot be read
//! at all stops the task the default way (SIGTERM, the task's grace period).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::paths::TaskPaths;
use crate::state::atomic;

/// How to stop: the first signal, and the time before SIGKILL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    pub signal: i32,
    pub grace_ms: u64,
}

impl StopRequest {
    /// Writes the request where the task's supervisor looks for it (atomically).
    pub fn write(&self, paths: &TaskPaths) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| {
            Error::store(
                "encode the stop request",
                paths.stop_request(),
                std::io::Error::other(e),
            )
        })?;
        atomic::write(&paths.stop_request(), &bytes)
    }
}
