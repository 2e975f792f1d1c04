//! The lifecycle layer: every operation on tasks, with typed arguments and typed results.
//!
//! ```text
//! front ends:  CLI commands (src/commands)   MCP server   web view
//!                          \                     |          /
//! lifecycle:   launch · observe · stop · wait · follow · list · logs · rm/prune · restart
//!                          /                     |          \
//! contracts:   wire types (payload/)     disk types (state/)     the supervisor
//! ```
//!
//! Each operation is a method of [`Tasks`] (one state directory) that takes one args struct
//! and returns a value: nothing here prints, exits, or knows which front end called it. When
//! one operation needs another (`restart` stops, waits and launches), both call this layer;
//! no front end calls another.
//!
//! Blocking operations take a bound (a timeout) and a [`Cancel`], so that a front end that
//! serves many callers (the MCP server, the web view) can abandon a wait without stopping
//! the task; they run on the caller's thread, never start an async runtime, and leave no
//! thread behind when they return ([`exits`]), unless the process said it exits right
//! after ([`Tasks::exiting_after_call`]).

pub mod batch;
pub mod cancel;
pub mod children;
pub mod doctor;
pub(crate) mod exits;
pub mod follow;
pub mod launch;
pub mod list;
pub mod logs;
pub mod observe;
pub mod raw;
pub mod restart;
pub mod retention;
pub mod stop;
pub mod wait;

pub use cancel::Cancel;

use crate::error::Result;
use crate::paths::{StateDir, TaskId, TaskPaths};

/// The tasks of one state directory: the handle every operation is called on.
#[derive(Debug, Clone)]
pub struct Tasks {
    state: StateDir,
    /// Waits may also block a helper thread on a supervisor's lock (see
    /// [`Tasks::exiting_after_call`]).
    lock_threads: bool,
}

impl Tasks {
    /// The state directory of this environment (`$BACKGROUND_TASKS_HOME` or the platform's),
    /// created on first use and checked on every use.
    pub fn open() -> Result<Tasks> {
        Ok(Tasks::new(StateDir::open(StateDir::locate()?)?))
    }

    /// The tasks of an already opened state directory.
    pub fn new(state: StateDir) -> Tasks {
        Tasks {
            state,
            lock_threads: false,
        }
    }

    /// For a process that exits once its call has returned (a CLI command). Its waits for a
    /// task's end then also block a helper thread on the supervisor's lock, beside the
    /// pidfd every wait polls: the lock is let go the instant the end is recorded, several
    /// milliseconds before the supervisor's exit is complete (see [`exits`]). A wait that
    /// runs out leaves its helper blocked until the task ends, which costs nothing in a
    /// process that then exits; a long-lived process (the MCP server, the web view) leaves
    /// this off, and its waits leave no thread behind. At most
    /// [`crate::state::lock::MAX_LOCK_THREADS`] helpers run at once either way.
    pub fn exiting_after_call(mut self) -> Tasks {
        self.lock_threads = true;
        self
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The files of one task.
    pub fn paths(&self, id: &TaskId) -> TaskPaths {
        self.state.task(id)
    }
}

#[cfg(test)]
mod tests;
