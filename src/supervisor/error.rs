//! Runs in the supervisor: what can go wrong in it, by phase.
//!
//! The supervisor has no stdio to print to, so an error is worth only what it leaves behind:
//! [`failure::record`](crate::supervisor::failure::record) writes its whole message into the
//! task's record (`error`), and stops the task first if it was running. Each phase says what
//! that means:
//! - [`Setup`](SupervisorError::Setup): before the task's record is known (descriptors, the
//!   spec, the state directory), or while its first record is written; `start` records what
//!   it can.
//! - [`Queue`](SupervisorError::Queue): while a queued task waited for a slot; it never ran.
//! - [`Spawn`](SupervisorError::Spawn): the task could not be started or its running
//!   record could not be written; `start` was told and the task was not left running.
//! - [`Watch`](SupervisorError::Watch): while the task ran; it is stopped and recorded.
//! - [`Record`](SupervisorError::Record): the task's end is known but could not be written.

use std::io;

/// The cause under a supervisor error: an OS error or one of the envelope path's errors.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A supervisor failure, with what it was doing and why it failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("supervisor setup: could not {what}")]
    Setup {
        what: &'static str,
        #[source]
        source: Cause,
    },
    #[error("supervisor queue: could not {what}")]
    Queue {
        what: &'static str,
        #[source]
        source: Cause,
    },
    #[error("supervisor spawn: could not {what}")]
    Spawn {
        what: &'static str,
        #[source]
        source: Cause,
    },
    #[error("supervisor watch: could not {what}")]
    Watch {
        what: &'static str,
        #[source]
        source: Cause,
    },
    #[error("supervisor: could not record the task's end")]
    Record(#[source] crate::error::Error),
}

impl SupervisorError {
    pub fn setup(what: &'static str, source: impl Into<Cause>) -> Self {
        SupervisorError::Setup {
            what,
            source: source.into(),
        }
    }

    pub fn queue(what: &'static str, source: impl Into<Cause>) -> Self {
        SupervisorError::Queue {
            what,
            source: source.into(),
        }
    }

    pub fn spawn(what: &'static str, source: impl Into<Cause>) -> Self {
        SupervisorError::Spawn {
            what,
            source: source.into(),
        }
    }

    pub fn watch(what: &'static str, source: impl Into<Cause>) -> Self {
        SupervisorError::Watch {
            what,
            source: source.into(),
        }
    }

    /// This error followed by each of its causes.
    pub fn full_message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }

    /// The OS error at the bottom of the chain, if there is one.
    pub fn os_error(&self) -> Option<i32> {
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                return io.raw_os_error();
            }
            source = cause.source();
        }
        None
    }
}
