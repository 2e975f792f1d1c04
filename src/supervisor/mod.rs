//! The supervisor: one process per task, a second copy of our binary entered through the
//! hidden `__supervise` subcommand.
//!
//! - [`launch`] runs in the `start` process: it spawns the supervisor in a new session with
//!   stdio on /dev/null, hands it the task's lock (fd 3) and a control socket (fd 4), sends
//!   the [`Spec`] and reads back the [`Report`] once the task has exec'd or failed to.
//! - [`run`] runs in the supervisor process: it spawns the task ([`child`]), records it,
//!   waits for its end while handling stop requests and signals ([`watch`]), kills and
//!   reaps what is left of the task's processes, records the end ([`recorder`], into room
//!   set aside when the run began), and exits, which releases the lock. Whatever fails ([`error`]) or panics is recorded ([`failure`]).
//!
//! The spec travels over the socket, never through a file or argv: it carries the values of
//! the task's environment, which must not be stored or shown to other users.

pub mod child;
pub mod error;
pub mod failure;
pub mod fds;
pub mod launch;
pub mod output;
pub mod queue;
pub mod recorder;
pub mod run;
pub mod signals;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::state::TaskRecord;

/// The hidden subcommand that enters the supervisor.
pub const ENTRY: &str = "__supervise";

/// The supervisor's inherited lock descriptor.
pub const LOCK_FD: i32 = 3;
/// The supervisor's inherited control socket.
pub const CONTROL_FD: i32 = 4;
/// A queued task's turn lock in its batch (see `queue`), when it has one.
pub const TURN_FD: i32 = 5;

/// What `start` tells the supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub struct Spec {
    /// The state directory (already checked by `start`).
    pub home: PathBuf,
    /// The record of the new run, without its process fields.
    pub record: TaskRecord,
    /// The task's extra environment, values included. Never written anywhere.
    pub env: BTreeMap<String, String>,
}

/// What the supervisor answers once the task has exec'd, or failed to.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    Running {
        pid: i32,
    },
    /// Waiting for a slot of its batch.
    Queued,
    /// Ended before it ran (stopped while queued, or its owner was already gone).
    Ended,
    SpawnFailed {
        /// What could not be used: "command `x`", "workdir `/y`".
        cause: String,
        os_error: Option<i32>,
        message: String,
    },
}

/// A stop request, written by `stop` before it sends SIGUSR1 to the supervisor: a disk
/// type, kept with the others in `state`.
pub use crate::state::stop::StopRequest;
