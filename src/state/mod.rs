//! The DISK contract: versioned task records, the journal and ready requests (their own
//! types, which forgive what the wire refuses: unknown fields are kept, a newer version's
//! words are read, and a record not fully understood is never rewritten), atomic writes,
//! the supervisor lock, and the reconciliation that turns a record whose supervisor
//! vanished into `lost`.
//!
//! Every file is opened through its folder's descriptor, never through a symlink
//! ([`folder`]).
//!
//! Only the holder of a task's `supervisor.lock` writes its record: the supervisor for its
//! whole life, or a reader that found the supervisor gone and reconciles under the lock.
//! Readers take no lock to read a record; records are replaced by rename, so a half-written
//! record is never seen.

pub mod atomic;
pub mod folder;
pub mod journal;
pub mod lock;
pub mod owners;
pub mod ready;
pub mod reconcile;
pub mod record;
pub mod spawns;

pub use journal::record_end;
pub use reconcile::{observe, observe_in};
pub use record::{Reason, Status, TaskRecord};
