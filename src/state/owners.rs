//! `owner.<pid>.json`: a process added to a running (or queued) run's owners, written by a
//! `start` with `if_running: "reuse"` and `stop_with_pid`, and read by the run's supervisor,
//! which watches the task folder for it (as for a ready request, [`super::ready`]). The
//! supervisor then watches that process too, records the run's owners, and stops the task
//! only once the last of them has exited.
//!
//! One file per owner, so that two callers adding owners at once never overwrite each
//! other's request. A disk type: fields a newer version adds are ignored. A request names
//! its run, so one left behind by an earlier run is never taken for the current one; the
//! supervisor removes each request it has read, and every one left when its run ends.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::atomic;
use crate::state::folder::Folder;

/// The start of an owner request's file name.
pub const PREFIX: &str = "owner.";
/// The end of an owner request's file name.
pub const SUFFIX: &str = ".json";

/// The run to add the owner to, and the owner as recognised by its start time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerRequest {
    pub run: u32,
    pub pid: i32,
    #[serde(default)]
    pub start_ticks: Option<u64>,
}

impl OwnerRequest {
    /// The request's file name: one per owner.
    pub fn name(pid: i32) -> String {
        format!("{PREFIX}{pid}{SUFFIX}")
    }

    /// Whether `name` is an owner request's file name.
    pub fn is_name(name: &[u8]) -> bool {
        name.starts_with(PREFIX.as_bytes()) && name.ends_with(SUFFIX.as_bytes())
    }

    /// Writes the request where the task's supervisor looks for it (atomically: the
    /// supervisor sees the rename).
    pub fn write(&self, folder: &Folder) -> Result<()> {
        let name = OwnerRequest::name(self.pid);
        let bytes = serde_json::to_vec(self).map_err(|e| {
            Error::store(
                "encode the owner request",
                folder.file_path(&name),
                std::io::Error::other(e),
            )
        })?;
        atomic::write(folder, &name, &bytes)
    }

    /// Takes every request waiting in the folder: reads and removes each. Requests that
    /// cannot be read are removed too.
    pub fn take_all(folder: &Folder) -> Vec<OwnerRequest> {
        let Ok(names) = folder.names() else {
            return Vec::new();
        };
        names
            .into_iter()
            .filter_map(|name| name.into_string().ok())
            .filter(|name| OwnerRequest::is_name(name.as_bytes()))
            .filter_map(|name| {
                let bytes = folder.read(&name).ok().flatten();
                let _ = folder.remove(&name);
                serde_json::from_slice(&bytes?).ok()
            })
            .collect()
    }
}
