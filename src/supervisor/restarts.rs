//! Runs in the supervisor: whether a run that ended is restarted (`restart_policy`), and
//! after how long (issue 17 item 3).
//!
//! A run shorter than `min_uptime_s` is unstable. Each unstable run in a row adds one to a
//! count that a stable run sets back to 0; once the count passes `max_restarts`, the task
//! ends `failed` with reason `restart_limit` instead (`max_restarts: 2`: at most 3 unstable
//! runs in a row). The delay is `initial_s` after a stable run or a first unstable one, and
//! `factor` times longer for each further unstable run in a row, at most `max_s` and never
//! under [`MIN_DELAY_S`]. The count lives in the supervisor, which stays the same process
//! across its automatic restarts; a caller's `start` or `restart` begins a new supervisor,
//! and so a new count.

use std::time::Duration;

use crate::payload::policy::{Effective, MIN_DELAY_S};
use crate::state::record::{RestartOn, RestartPolicyRecord};

/// Why a run that ended by itself may be restarted (the `reason` of `task.restarting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Exit code 0: restarted only with `on: "always"`.
    Exited,
    /// A non-zero exit code, or an end whose status could not be collected.
    Failed,
    /// A signal from outside ended it.
    Signal,
    /// Its `timeout_s` ran out.
    Timeout,
    /// Its `ready` conditions did not hold within their `timeout_s`.
    ReadyTimeout,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Exited => "exited",
            Cause::Failed => "failed",
            Cause::Signal => "signal",
            Cause::Timeout => "timeout",
            Cause::ReadyTimeout => "ready_timeout",
        }
    }
}

/// What becomes of a run that ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Its end is the task's end.
    End,
    /// Too many unstable runs in a row: the task ends `failed` (`restart_limit`).
    GiveUp,
    /// The next run starts after `delay`.
    Restart { delay: Duration, unstable: u32 },
}

/// The policy and the count of unstable runs in a row.
#[derive(Debug)]
pub struct Restarts {
    policy: Option<Effective>,
    unstable: u32,
}

impl Restarts {
    pub fn new(policy: Option<RestartPolicyRecord>) -> Restarts {
        Restarts {
            policy: policy.as_ref().map(RestartPolicyRecord::effective),
            unstable: 0,
        }
    }

    /// Whether a run that ended as `cause` would be restarted at all (before counting): a
    /// readiness timeout stops the run only then.
    pub fn restarts_on(&self, cause: Cause) -> bool {
        match self.policy.as_ref().map(|p| p.on) {
            Some(RestartOn::Always) => true,
            Some(RestartOn::Failure) => cause != Cause::Exited,
            Some(RestartOn::Never | RestartOn::Unknown) | None => false,
        }
    }

    /// Decides for a run that ended as `cause` (`None`: stopped, never restarted) after
    /// running `uptime`.
    pub fn decide(&mut self, cause: Option<Cause>, uptime: Duration) -> Decision {
        let (Some(cause), Some(policy)) = (cause, self.policy.as_ref()) else {
            return Decision::End;
        };
        if !self.restarts_on(cause) {
            return Decision::End;
        }
        let stable = uptime.as_secs_f64() >= policy.min_uptime_s;
        self.unstable = if stable {
            0
        } else {
            self.unstable.saturating_add(1)
        };
        if self.unstable > policy.max_restarts {
            return Decision::GiveUp;
        }
        Decision::Restart {
            delay: delay(policy, self.unstable),
            unstable: self.unstable,
        }
    }
}

/// The delay before a restart after `unstable` unstable runs in a row (0 after a stable
/// run): `initial_s * factor^(unstable - 1)`, at most `max_s`, at least [`MIN_DELAY_S`].
pub fn delay(policy: &Effective, unstable: u32) -> Duration {
    let steps = unstable.saturating_sub(1).min(1_000) as i32;
    let seconds = (policy.initial_s * policy.factor.powi(steps))
        .min(policy.max_s)
        .max(MIN_DELAY_S);
    // Bounded by the checks of `start` (max_s at most a day); a record written otherwise
    // still gives a finite delay.
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::record::BackoffRecord;

    fn policy(on: RestartOn, max_restarts: u32, min_uptime_s: f64) -> RestartPolicyRecord {
        RestartPolicyRecord {
            on: Some(on),
            max_restarts: Some(max_restarts),
            min_uptime_s: Some(min_uptime_s),
            backoff: Some(BackoffRecord {
                initial_s: Some(0.5),
                factor: Some(2.0),
                max_s: Some(3.0),
                extra: Default::default(),
            }),
            extra: Default::default(),
        }
    }

    #[test]
    fn delays_grow_while_runs_are_short_and_start_over_after_a_long_one() {
        let mut restarts = Restarts::new(Some(policy(RestartOn::Failure, 4, 1.0)));
        let short = Duration::from_millis(10);
        let delays: Vec<_> = (0..4)
            .map(|_| match restarts.decide(Some(Cause::Failed), short) {
                Decision::Restart { delay, .. } => delay.as_secs_f64(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays, [0.5, 1.0, 2.0, 3.0]);
        // A stable run: back to the first delay, and the count starts over.
        let after_stable = restarts.decide(Some(Cause::Signal), Duration::from_secs(2));
        assert_eq!(
            after_stable,
            Decision::Restart {
                delay: Duration::from_millis(500),
                unstable: 0
            }
        );
        for _ in 0..4 {
            assert!(matches!(
                restarts.decide(Some(Cause::Failed), short),
                Decision::Restart { .. }
            ));
        }
        assert_eq!(
            restarts.decide(Some(Cause::Failed), short),
            Decision::GiveUp
        );
    }

    #[test]
    fn max_restarts_2_allows_three_runs_and_stops_and_successes_end_the_task() {
        let mut restarts = Restarts::new(Some(policy(RestartOn::Failure, 2, 10.0)));
        let short = Duration::ZERO;
        assert!(matches!(
            restarts.decide(Some(Cause::Failed), short),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            restarts.decide(Some(Cause::Failed), short),
            Decision::Restart { .. }
        ));
        assert_eq!(
            restarts.decide(Some(Cause::Failed), short),
            Decision::GiveUp
        );

        let mut failure = Restarts::new(Some(policy(RestartOn::Failure, 2, 0.0)));
        assert_eq!(failure.decide(Some(Cause::Exited), short), Decision::End);
        assert_eq!(failure.decide(None, short), Decision::End);
        let mut always = Restarts::new(Some(policy(RestartOn::Always, 2, 0.0)));
        assert!(matches!(
            always.decide(Some(Cause::Exited), short),
            Decision::Restart { .. }
        ));
        assert_eq!(always.decide(None, short), Decision::End);
        assert_eq!(
            Restarts::new(None).decide(Some(Cause::Failed), short),
            Decision::End
        );
    }

    #[test]
    fn the_delay_has_a_floor_and_a_ceiling() {
        let mut zero = policy(RestartOn::Always, 5, 0.0).effective();
        zero.initial_s = 0.0;
        assert_eq!(delay(&zero, 0), Duration::from_secs_f64(MIN_DELAY_S));
        let mut huge = policy(RestartOn::Always, 5, 0.0).effective();
        huge.factor = 100.0;
        huge.max_s = 86_400.0;
        assert_eq!(delay(&huge, u32::MAX), Duration::from_secs(86_400));
    }
}
