//! `start`'s `restart_policy` and `rate_limit` (issue 17 items 3 and 4): the wire forms, their
//! checks, and the stored form of a restart policy with every default filled in.
//!
//! - `restart_policy: {on, max_restarts?, min_uptime_s?, backoff?: {initial_s?, factor?,
//!   max_s?}}`: the task's supervisor starts the next run itself when a run ends as `on`
//!   says, after a delay that grows by `factor` for each consecutive run shorter than
//!   `min_uptime_s` (from `initial_s`, capped at `max_s`, never under [`MIN_DELAY_S`]) and
//!   is back to `initial_s` after a longer one. After `max_restarts` consecutive short runs
//!   were restarted, the next short run ends the task `failed` with reason
//!   `restart_limit`: `max_restarts: 2` means at most 3 runs in a row.
//! - `rate_limit: {max, per_s}`: at most `max` fresh spawns of the id by `start` in any
//!   `per_s` seconds; one more answers `StartThrottled` with `retry_after_s`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::payload::input::MAX_SECONDS;
use crate::state::record::{BackoffRecord, RestartOn as StoredOn, RestartPolicyRecord};

/// The most restarts in a row a policy may allow.
pub const MAX_RESTARTS: u64 = 10_000;
/// `max_restarts` when not given.
pub const DEFAULT_MAX_RESTARTS: u32 = 5;
/// `min_uptime_s` when not given: a run shorter than this is unstable.
pub const DEFAULT_MIN_UPTIME_S: f64 = 10.0;
/// `backoff.initial_s` when not given.
pub const DEFAULT_INITIAL_S: f64 = 0.5;
/// `backoff.factor` when not given.
pub const DEFAULT_FACTOR: f64 = 2.0;
/// `backoff.max_s` when not given.
pub const DEFAULT_MAX_S: f64 = 30.0;
/// The largest `backoff.factor`.
pub const MAX_FACTOR: f64 = 100.0;
/// No delay before an automatic restart is shorter, whatever the policy says: a task that
/// exits at once forever (with `on: "always"` and `min_uptime_s: 0`) is started at most ten
/// times a second, never in a busy loop.
pub const MIN_DELAY_S: f64 = 0.1;
/// The largest `rate_limit.max`.
pub const MAX_RATE: u64 = 10_000;

/// When the supervisor restarts a run that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestartOn {
    /// Never (the default without a policy).
    Never,
    /// When the run ended without success: a non-zero exit code, a signal from outside,
    /// its `timeout_s`, or its `ready` conditions not holding within their `timeout_s`.
    /// Never after exit 0, a `stop`, or its `stop_with_pid` exiting.
    Failure,
    /// After every end of its own, exit 0 included; never after a `stop` or its
    /// `stop_with_pid` exiting.
    Always,
}

/// `restart_policy`: restart the task's runs automatically, with a growing delay, giving up
/// after too many short runs in a row. Answered with every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// `never`, `failure` or `always`.
    pub on: RestartOn,
    /// How many restarts in a row after runs shorter than `min_uptime_s` (default 5, at
    /// most 10000): `2` means at most 3 such runs, then the task ends `failed` with reason
    /// `restart_limit`.
    #[schemars(range(max = MAX_RESTARTS))]
    pub max_restarts: Option<u64>,
    /// A run at least this long (seconds, default 10) is stable: the count of short runs
    /// and the delay start over.
    #[schemars(range(min = 0, max = MAX_SECONDS))]
    pub min_uptime_s: Option<f64>,
    /// The delay before each restart.
    pub backoff: Option<Backoff>,
}

/// The delay before an automatic restart: `initial_s` after a stable run, then times
/// `factor` for each further short run in a row, at most `max_s`, never under 0.1 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Seconds before the first restart (default 0.5; under 0.1 counts as 0.1).
    #[schemars(range(min = 0, max = MAX_SECONDS))]
    pub initial_s: Option<f64>,
    /// How much each short run in a row multiplies the delay (default 2, 1 to 100).
    #[schemars(range(min = 1, max = MAX_FACTOR))]
    pub factor: Option<f64>,
    /// The longest delay, in seconds (default 30, at least `initial_s`).
    #[schemars(range(min = 0, max = MAX_SECONDS))]
    pub max_s: Option<f64>,
}

/// `rate_limit`: at most `max` fresh spawns of this id by `start` within any `per_s`
/// seconds. A `start` that reuses the running task is not a spawn, and neither are
/// automatic restarts (the restart policy bounds those).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Spawns allowed in the window (1 to 10000).
    #[schemars(range(min = 1, max = MAX_RATE))]
    pub max: u64,
    /// The window, in seconds.
    #[schemars(range(max = MAX_SECONDS), extend("exclusiveMinimum" = 0))]
    pub per_s: f64,
}

/// A number of seconds at `path`, from 0 to `max`.
fn seconds_at(path: &str, value: f64, max: f64) -> Result<()> {
    if value.is_finite() && (0.0..=max).contains(&value) {
        return Ok(());
    }
    Err(Error::input_at(
        path,
        format!("{path}: {value} is out of range"),
        format!("Give a number of seconds from 0 to {max}."),
    ))
}

impl RestartPolicy {
    /// Checks the numbers and returns the policy as stored, with its defaults.
    pub fn resolve(&self) -> Result<RestartPolicyRecord> {
        let max_restarts = self.max_restarts.unwrap_or(DEFAULT_MAX_RESTARTS.into());
        if max_restarts > MAX_RESTARTS {
            return Err(Error::input_at(
                "restart_policy.max_restarts",
                format!("restart_policy.max_restarts: {max_restarts} is more than {MAX_RESTARTS}"),
                format!(
                    "Give at most {MAX_RESTARTS}; a run longer than min_uptime_s starts the count over, so a task that keeps running for a while is restarted without end."
                ),
            ));
        }
        let min_uptime_s = self.min_uptime_s.unwrap_or(DEFAULT_MIN_UPTIME_S);
        seconds_at("restart_policy.min_uptime_s", min_uptime_s, MAX_SECONDS)?;
        let backoff = self.backoff.clone().unwrap_or(Backoff {
            initial_s: None,
            factor: None,
            max_s: None,
        });
        let initial_s = backoff.initial_s.unwrap_or(DEFAULT_INITIAL_S);
        seconds_at("restart_policy.backoff.initial_s", initial_s, MAX_SECONDS)?;
        let factor = backoff.factor.unwrap_or(DEFAULT_FACTOR);
        if !(factor.is_finite() && (1.0..=MAX_FACTOR).contains(&factor)) {
            return Err(Error::input_at(
                "restart_policy.backoff.factor",
                format!("restart_policy.backoff.factor: {factor} is out of range"),
                format!("Give a factor from 1 (a constant delay) to {MAX_FACTOR}."),
            ));
        }
        let max_s = backoff.max_s.unwrap_or(DEFAULT_MAX_S.max(initial_s));
        seconds_at("restart_policy.backoff.max_s", max_s, MAX_SECONDS)?;
        if max_s < initial_s {
            return Err(Error::input_at(
                "restart_policy.backoff.max_s",
                format!("restart_policy.backoff.max_s: {max_s} is less than initial_s {initial_s}"),
                "Give a max_s at least as long as initial_s.",
            ));
        }
        Ok(RestartPolicyRecord {
            on: Some(match self.on {
                RestartOn::Never => StoredOn::Never,
                RestartOn::Failure => StoredOn::Failure,
                RestartOn::Always => StoredOn::Always,
            }),
            max_restarts: Some(u32::try_from(max_restarts).unwrap_or(u32::MAX)),
            min_uptime_s: Some(min_uptime_s),
            backoff: Some(BackoffRecord {
                initial_s: Some(initial_s),
                factor: Some(factor),
                max_s: Some(max_s),
                extra: Default::default(),
            }),
            extra: Default::default(),
        })
    }

    /// The stored policy as answered, every value given; `None` for a word of a newer
    /// version.
    pub fn shown(record: &RestartPolicyRecord) -> Option<RestartPolicy> {
        let effective = record.effective();
        let on = match effective.on {
            StoredOn::Never => RestartOn::Never,
            StoredOn::Failure => RestartOn::Failure,
            StoredOn::Always => RestartOn::Always,
            StoredOn::Unknown => return None,
        };
        Some(RestartPolicy {
            on,
            max_restarts: Some(effective.max_restarts.into()),
            min_uptime_s: Some(effective.min_uptime_s),
            backoff: Some(Backoff {
                initial_s: Some(effective.initial_s),
                factor: Some(effective.factor),
                max_s: Some(effective.max_s),
            }),
        })
    }
}

/// A stored policy's values, each value it lacks at its default and each one out of range
/// brought into it (a record written other than by `start`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effective {
    pub on: StoredOn,
    pub max_restarts: u32,
    pub min_uptime_s: f64,
    pub initial_s: f64,
    pub factor: f64,
    pub max_s: f64,
}

impl RestartPolicyRecord {
    /// The values the supervisor acts on.
    pub fn effective(&self) -> Effective {
        let within = |value: Option<f64>, default: f64, low: f64, high: f64| {
            value
                .filter(|v| v.is_finite())
                .unwrap_or(default)
                .clamp(low, high)
        };
        let backoff = self.backoff.as_ref();
        let initial_s = within(
            backoff.and_then(|b| b.initial_s),
            DEFAULT_INITIAL_S,
            0.0,
            MAX_SECONDS,
        );
        Effective {
            on: self.on.unwrap_or(StoredOn::Unknown),
            max_restarts: self
                .max_restarts
                .unwrap_or(DEFAULT_MAX_RESTARTS)
                .min(MAX_RESTARTS as u32),
            min_uptime_s: within(self.min_uptime_s, DEFAULT_MIN_UPTIME_S, 0.0, MAX_SECONDS),
            initial_s,
            factor: within(
                backoff.and_then(|b| b.factor),
                DEFAULT_FACTOR,
                1.0,
                MAX_FACTOR,
            ),
            max_s: within(
                backoff.and_then(|b| b.max_s),
                DEFAULT_MAX_S.max(initial_s),
                initial_s,
                MAX_SECONDS,
            ),
        }
    }
}

impl RateLimit {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_RATE).contains(&self.max) {
            return Err(Error::input_at(
                "rate_limit.max",
                format!("rate_limit.max: {} is out of range", self.max),
                format!("Give from 1 to {MAX_RATE} spawns per window."),
            ));
        }
        if !(self.per_s.is_finite() && self.per_s > 0.0 && self.per_s <= MAX_SECONDS) {
            return Err(Error::input_at(
                "rate_limit.per_s",
                format!("rate_limit.per_s: {} is out of range", self.per_s),
                format!("Give a window above 0 and at most {MAX_SECONDS} seconds."),
            ));
        }
        Ok(())
    }

    /// The window in milliseconds.
    pub fn window_ms(&self) -> i64 {
        (self.per_s * 1000.0).ceil() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(value: serde_json::Value) -> Result<RestartPolicyRecord> {
        serde_json::from_value::<RestartPolicy>(value)
            .expect("parses")
            .resolve()
    }

    #[test]
    fn defaults_fill_a_bare_policy_and_bad_numbers_name_their_path() {
        let resolved = policy(serde_json::json!({"on": "failure"})).expect("valid");
        let effective = resolved.effective();
        assert_eq!(effective.max_restarts, DEFAULT_MAX_RESTARTS);
        assert_eq!(effective.initial_s, DEFAULT_INITIAL_S);
        assert_eq!(effective.max_s, DEFAULT_MAX_S);
        assert_eq!(resolved.max_restarts, Some(DEFAULT_MAX_RESTARTS));
        for (value, path) in [
            (
                serde_json::json!({"on": "always", "max_restarts": 1_000_000_000_000_u64}),
                "restart_policy.max_restarts",
            ),
            (
                serde_json::json!({"on": "always", "min_uptime_s": -1.0}),
                "restart_policy.min_uptime_s",
            ),
            (
                serde_json::json!({"on": "always", "backoff": {"initial_s": 1e300}}),
                "restart_policy.backoff.initial_s",
            ),
            (
                serde_json::json!({"on": "always", "backoff": {"factor": 0.5}}),
                "restart_policy.backoff.factor",
            ),
            (
                serde_json::json!({"on": "always", "backoff": {"initial_s": 5, "max_s": 1}}),
                "restart_policy.backoff.max_s",
            ),
        ] {
            let error = policy(value.clone()).expect_err("refused");
            assert_eq!(
                error.details()["path"],
                serde_json::json!(path),
                "{value}: {error}"
            );
        }
        // A zero delay is allowed: the floor applies when the delay is taken.
        assert!(policy(serde_json::json!({"on": "always", "backoff": {"initial_s": 0}})).is_ok());
        let shown = RestartPolicy::shown(&resolved).expect("known");
        assert_eq!(shown.resolve().expect("round trip"), resolved);
        // A stored policy that lacks values (written otherwise) acts on the defaults.
        let sparse: RestartPolicyRecord =
            serde_json::from_value(serde_json::json!({"on": "failure", "max_restarts": 3}))
                .expect("loads");
        assert_eq!(sparse.effective().max_restarts, 3);
        assert_eq!(sparse.effective().min_uptime_s, DEFAULT_MIN_UPTIME_S);
        assert_eq!(
            serde_json::to_value(&sparse).expect("encode"),
            serde_json::json!({"on": "failure", "max_restarts": 3}),
            "nothing is added on a rewrite"
        );
    }

    #[test]
    fn rate_limits_out_of_range_are_refused() {
        for (max, per_s) in [(0, 1.0), (MAX_RATE + 1, 1.0), (1, 0.0), (1, f64::NAN)] {
            assert!(
                RateLimit { max, per_s }.validate().is_err(),
                "{max} {per_s}"
            );
        }
        assert!(
            RateLimit {
                max: 3,
                per_s: 60.0
            }
            .validate()
            .is_ok()
        );
    }
}
