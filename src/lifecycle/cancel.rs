//! Abandoning a blocking operation from outside, without touching the task.
//!
//! A front end that serves many callers hands each blocking call (a wait, a stop's wait for
//! the end, a follow) a [`Cancel`] and calls [`Cancel::cancel`] from another thread when its
//! caller goes away. A wait for a supervisor's exit wakes at once (it polls a descriptor the
//! cancel writes to, beside the supervisors' pidfds), and leaves no thread behind; a wait on
//! file notifications notices within one fallback interval of `follow.rs` (250 ms). A
//! cancelled wait ends like one whose time ran out: the task runs on.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type Waker = Box<dyn Fn() + Send>;
type Check = Box<dyn Fn() -> bool + Send + Sync>;

/// A cancellation handle; clones share it. The default handle ([`Cancel::never`]) cannot
/// be cancelled: a wait given it ends only when its time runs out or what it waits for
/// happens.
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Option<Arc<Inner>>,
}

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    /// Also cancelled once this says so (checked whenever a wait wakes).
    check: Option<Check>,
    wakers: Mutex<Vec<(u64, Waker)>>,
    next_waker: AtomicU64,
}

impl Cancel {
    /// A handle that is cancelled by [`Cancel::cancel`].
    pub fn new() -> Cancel {
        Cancel {
            inner: Some(Arc::default()),
        }
    }

    /// A handle nobody can cancel (what the CLI's commands use).
    pub fn never() -> Cancel {
        Cancel { inner: None }
    }

    /// A handle that is also cancelled once `check` answers `true`, as seen each time a
    /// wait wakes (the CLI's follows: the reader of stdout went away).
    pub fn when(check: impl Fn() -> bool + Send + Sync + 'static) -> Cancel {
        Cancel {
            inner: Some(Arc::new(Inner {
                check: Some(Box::new(check)),
                ..Inner::default()
            })),
        }
    }

    /// Cancels: every wait using this handle ends soon, as if its time ran out. Does
    /// nothing to a handle made by [`Cancel::never`].
    pub fn cancel(&self) {
        let Some(inner) = &self.inner else { return };
        inner.cancelled.store(true, Ordering::SeqCst);
        let wakers = inner.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for (_, wake) in wakers.iter() {
            wake();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.as_ref().is_some_and(|inner| {
            inner.cancelled.load(Ordering::SeqCst) || inner.check.as_ref().is_some_and(|c| c())
        })
    }

    /// Whether anything can cancel this handle.
    pub fn can_cancel(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether a check ([`Cancel::when`]) can cancel this handle without a call to
    /// [`Cancel::cancel`]: a wait then looks at it every so often.
    pub(crate) fn has_check(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|inner| inner.check.is_some())
    }

    /// Calls `wake` when the handle is cancelled (at once if it already is), until the
    /// returned guard is dropped.
    pub(crate) fn on_cancel(&self, wake: impl Fn() + Send + 'static) -> WakeGuard {
        let Some(inner) = &self.inner else {
            return WakeGuard {
                cancel: self.clone(),
                key: 0,
            };
        };
        let key = inner.next_waker.fetch_add(1, Ordering::Relaxed);
        let mut wakers = inner.wakers.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: a `cancel` that set the flag after this check finds the
        // waker registered; one that set it before is answered here (a second wake is
        // harmless).
        if inner.cancelled.load(Ordering::SeqCst) {
            wake();
        }
        wakers.push((key, Box::new(wake)));
        drop(wakers);
        WakeGuard {
            cancel: self.clone(),
            key,
        }
    }
}

impl fmt::Debug for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancel")
            .field("can_cancel", &self.can_cancel())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Unregisters a waker of [`Cancel::on_cancel`] when dropped.
#[derive(Debug)]
pub(crate) struct WakeGuard {
    cancel: Cancel,
    key: u64,
}

impl Drop for WakeGuard {
    fn drop(&mut self) {
        if let Some(inner) = &self.cancel.inner {
            inner
                .wakers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(key, _)| *key != self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn cancelling_wakes_every_registered_waiter_and_only_while_registered() {
        let cancel = Cancel::new();
        let (sender, receiver) = mpsc::channel();
        let guard = cancel.on_cancel({
            let sender = sender.clone();
            move || sender.send(1).unwrap_or(())
        });
        let dropped = cancel.on_cancel(move || sender.send(2).unwrap_or(()));
        drop(dropped);
        assert!(!cancel.is_cancelled());
        cancel.clone().cancel();
        assert!(cancel.is_cancelled());
        assert_eq!(receiver.try_iter().collect::<Vec<_>>(), [1]);
        drop(guard);
        // Registering after the fact wakes at once.
        let (sender, receiver) = mpsc::channel();
        let _late = cancel.on_cancel(move || sender.send(3).unwrap_or(()));
        assert_eq!(receiver.try_iter().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn a_check_cancels_when_it_says_so() {
        let flag = Arc::new(AtomicBool::new(false));
        let cancel = Cancel::when({
            let flag = flag.clone();
            move || flag.load(Ordering::SeqCst)
        });
        assert!(!cancel.is_cancelled());
        flag.store(true, Ordering::SeqCst);
        assert!(cancel.is_cancelled());
    }

    #[test]
    fn a_handle_made_never_to_cancel_stays_so() {
        let never = Cancel::never();
        never.cancel();
        assert!(!never.is_cancelled() && !never.can_cancel());
        let _guard = never.on_cancel(|| panic!("never woken"));
    }
}
