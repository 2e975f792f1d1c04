//! `stop.json`: a stop request, written by `stop` before it sends SIGUSR1 to the
//! supervisor, read by the supervisor when the signal arrives.
//!
//! A disk type: fields a newer version adds are ignored, and a request that cannot be read
//! at all stops the task the default way (SIGTERM, the task's grace period).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::paths::{TaskPaths, names};
use crate::state::atomic;
use crate::state::folder::Folder;

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
        let folder = paths.open()?.ok_or_else(|| {
            Error::store(
                "write",
                paths.stop_request(),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
        atomic::write(&folder, names::STOP_REQUEST, &bytes)
    }

    /// The request waiting in the task's open folder, if one is there and can be read.
    pub fn read_in(folder: &Folder) -> Option<StopRequest> {
        let bytes = folder.read(names::STOP_REQUEST).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes the request from the task's open folder, if one is there.
    pub fn remove_in(folder: &Folder) {
        let _ = folder.remove(names::STOP_REQUEST);
    }
}
