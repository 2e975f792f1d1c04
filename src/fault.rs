//! Faults injected by the tests, in debug builds only.
//!
//! Some failures cannot be caused from outside: a panic, a `poll` that fails. The tests
//! still have to see what the tool does then, through the real binary, so a debug build
//! reads the fault to inject from [`env::FAULT`](crate::paths::env::FAULT) (the supervisor
//! inherits it from `start`). A release build never reads it: `injected` is then `false`
//! at compile time.

/// Whether the fault `name` is to be injected here.
pub fn injected(name: &str) -> bool {
    cfg!(debug_assertions)
        && std::env::var_os(crate::paths::env::FAULT).is_some_and(|fault| fault == name)
}
