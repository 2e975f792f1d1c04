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
pub mod restarts;
pub mod run;
pub mod signals;
pub mod steps;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;

use nix::sys::signal::Signal;
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

/// A stop request: how `stop` wants the task stopped. It travels in the signal itself, never
/// through a file, so that a task filling the disk can still be stopped: `stop` sends the
/// supervisor `SIGUSR1` with `sigqueue` semantics (`SI_QUEUE`), its value
/// ([`StopRequest::to_value`]) holding the first signal and the grace period, and the
/// supervisor reads it from its signalfd (`ssi_int`). A plain `SIGUSR1` (`kill -USR1`, or a
/// value this version cannot read) stops the task the record's way: SIGTERM, its grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopRequest {
    pub signal: Signal,
    pub grace_ms: u64,
}

impl StopRequest {
    /// Bits of the value that hold the signal number (1 to 64).
    const SIGNAL_BITS: u32 = 7;
    /// The grace period's unit in the value, in milliseconds.
    const GRACE_UNIT_MS: u64 = 10;
    /// The largest grace period the value holds, in units: 24 bits, 46.6 hours, beyond the
    /// one day a payload may ask for. The top bit of the value stays 0; a value with it set
    /// is a newer version's, read as the defaults.
    const GRACE_MAX_UNITS: u64 = (1 << 24) - 1;

    /// The request as a signal's value: the signal number in the low 7 bits, the grace
    /// period in 10 ms units (rounded up) in the next 24.
    pub fn to_value(self) -> i32 {
        let units = self
            .grace_ms
            .div_ceil(Self::GRACE_UNIT_MS)
            .min(Self::GRACE_MAX_UNITS);
        ((units << Self::SIGNAL_BITS) | (self.signal as u64)) as i32
    }

    /// The request a signal's value holds; `None` for a value this version cannot read.
    pub fn from_value(value: i32) -> Option<StopRequest> {
        if value < 0 {
            return None;
        }
        let value = value as u32;
        let signo = value & ((1 << Self::SIGNAL_BITS) - 1);
        let signal = Signal::try_from(signo as i32).ok()?;
        let units = u64::from(value >> Self::SIGNAL_BITS);
        Some(StopRequest {
            signal,
            grace_ms: units * Self::GRACE_UNIT_MS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_request_survives_its_signal_value() {
        for (signal, grace_ms) in [
            (Signal::SIGTERM, 0),
            (Signal::SIGINT, 5_000),
            (Signal::SIGKILL, 86_400_000),
            (Signal::SIGUSR2, 10),
        ] {
            let request = StopRequest { signal, grace_ms };
            let value = request.to_value();
            assert!(value >= 0, "{request:?}: the top bit stays free");
            assert_eq!(StopRequest::from_value(value), Some(request));
        }
        // Grace is rounded up to the next 10 ms, never down to a shorter one.
        let odd = StopRequest {
            signal: Signal::SIGTERM,
            grace_ms: 1_001,
        };
        assert_eq!(
            StopRequest::from_value(odd.to_value()).map(|r| r.grace_ms),
            Some(1_010)
        );
        // A value from a newer version (top bit set) or without a signal is not guessed at.
        assert_eq!(StopRequest::from_value(-5), None);
        assert_eq!(StopRequest::from_value(0), None);
    }
}
