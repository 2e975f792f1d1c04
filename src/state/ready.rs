//! `ready.json`: a new ready condition for a running (or queued) task's run, written by a
//! `start` with `if_running: "reuse"` whose `ready` differs from the run's, and read by the
//! run's supervisor, which watches the task folder for it. The supervisor then checks the
//! new condition against the run's output from its start, and records it as the run's
//! `ready_spec` with `ready` following it.
//!
//! A disk type: fields a newer version adds are ignored. A request names its run, so one
//! left behind by an earlier run is never taken for the current one; the supervisor removes
//! it when its run ends.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::paths::names::READY_REQUEST;
use crate::state::atomic;
use crate::state::folder::Folder;
use crate::state::record::ReadySpecRecord;

/// The run the condition is for, and the condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyRequest {
    pub run: u32,
    pub ready: ReadySpecRecord,
}

impl ReadyRequest {
    /// Writes the request where the task's supervisor looks for it (atomically: the
    /// supervisor sees the rename).
    pub fn write(&self, folder: &Folder) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| {
            Error::store(
                "encode the ready request",
                folder.file_path(READY_REQUEST),
                std::io::Error::other(e),
            )
        })?;
        atomic::write(folder, READY_REQUEST, &bytes)
    }

    /// The request waiting for this task, if there is one that can be read.
    pub fn read(folder: &Folder) -> Option<ReadyRequest> {
        let bytes = folder.read(READY_REQUEST).ok()??;
        serde_json::from_slice(&bytes).ok()
    }
}
