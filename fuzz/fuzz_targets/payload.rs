//! Payload parsing: arbitrary bytes through the entry points the commands use.
//!
//! The first byte picks the command (`'0'` start … `'9'` events; any byte maps to one), the
//! rest is its payload. Each command's payload goes through `payload::require`/`optional`
//! (or `one_or_many` for the batch commands), then through the checks that command makes
//! before it touches the state directory (`validate`, ready conditions, cursors). Every
//! error is rendered as the envelope would render it, alone and as a batch item.
//!
//! Every duration a payload accepts (`grace_s`, `timeout_s`, `ready.timeout_s`,
//! `until.timeout_s`, `older_than_s`) must convert to a `Duration` within its bound, and
//! every error but invalid JSON, an empty batch or a missing payload must name a path. The
//! `fields` target generates every field of every payload, nested ones included, where
//! this one finds what bytes reach.
//!
//! Nothing here spawns a process or touches the filesystem: `StartInput::validate` at most
//! probes a `stop_with_pid` with signal 0.

#![no_main]

use std::time::Duration;

use background_tasks::error::{Error, Result};
use background_tasks::lifecycle::follow::resume_point;
use background_tasks::lifecycle::stop::StopArgs;
use background_tasks::output_log::Cursor;
use background_tasks::payload::batch::{BatchAnswer, ItemResult};
use background_tasks::payload::input::{
    EventsInput, IdInput, ListInput, LogsInput, MAX_SECONDS, MAX_TIMEOUT_S, PruneInput,
    RestartInput, RmInput, StartInput, StopInput, Until, WaitInput,
};
use background_tasks::payload::{self, one_or_many};
use background_tasks::ready::ReadySpec;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let result = match selector.wrapping_sub(b'0') % 10 {
        0 => batch_of::<StartInput>(bytes, "start", check_start),
        1 => required::<IdInput>(bytes, "status").map(drop),
        2 => payload::optional::<ListInput>(Some(bytes.to_vec()), "{}").and_then(|l| l.validate()),
        3 => required::<WaitInput>(bytes, "wait").and_then(|input| match input.until {
            Until::Ready(spec) => check_conditions(&spec, "until"),
            Until::Exit | Until::Word(_) => Ok(()),
        }),
        4 => batch_of::<StopInput>(bytes, "stop", check_stop),
        5 => batch_of::<RestartInput>(bytes, "restart", RestartInput::validate),
        6 => batch_of::<RmInput>(bytes, "rm", |_| Ok(())),
        7 => payload::optional::<PruneInput>(Some(bytes.to_vec()), "{}").and_then(|p| {
            p.validate()?;
            let age = p.older_than_s.unwrap_or_default();
            assert!(age.is_finite() && age >= 0.0, "older_than_s {age} accepted");
            Ok(())
        }),
        8 => required::<LogsInput>(bytes, "logs").and_then(|input| {
            input.after.as_deref().map(Cursor::parse).transpose()?;
            Ok(())
        }),
        _ => payload::optional::<EventsInput>(Some(bytes.to_vec()), "{}").and_then(|input| {
            input.after.map(resume_point).transpose()?;
            Ok(())
        }),
    };
    if let Err(error) = result {
        render(&error);
    }
});

/// `start`'s checks, and its durations as the task will use them.
fn check_start(start: &StartInput) -> Result<()> {
    start.validate()?;
    seconds(start.grace_s, MAX_SECONDS, "grace_s");
    seconds(start.timeout_s, MAX_TIMEOUT_S, "timeout_s");
    match &start.ready {
        Some(ready) => check_conditions(ready, "ready"),
        None => Ok(()),
    }
}

/// `stop`'s checks, through the args the stop is made of.
fn check_stop(stop: &StopInput) -> Result<()> {
    let input = StopInput {
        id: stop.id.clone(),
        signal: stop.signal,
        grace_s: stop.grace_s,
    };
    let args = StopArgs::from_input(input, None)?;
    assert!(args.grace.is_none_or(|g| g.as_secs_f64() <= MAX_SECONDS));
    Ok(())
}

/// `ready` or `until`: the probe and its timeout, as `start --wait`, `wait` and the
/// supervisor build them.
fn check_conditions(spec: &ReadySpec, at: &str) -> Result<()> {
    spec.probe(at)?;
    let timeout = spec.timeout(at)?;
    assert!(
        timeout.is_none_or(|t| t.as_secs_f64() <= MAX_SECONDS),
        "{at}: {timeout:?}"
    );
    Ok(())
}

/// An accepted duration converts to a `Duration` within its bound.
fn seconds(value: Option<f64>, most: f64, what: &str) {
    if let Some(value) = value {
        let duration = Duration::try_from_secs_f64(value)
            .unwrap_or_else(|e| panic!("{what}: {value} accepted: {e}"));
        assert!(duration.as_secs_f64() <= most, "{what}: {value} accepted");
    }
}

/// A payload the command requires, parsed as the command parses it.
fn required<T: DeserializeOwned>(bytes: &[u8], command: &str) -> Result<T> {
    payload::require(Some(bytes.to_vec()), command, r#"{"id":"web"}"#)
}

/// One payload or a batch of them; each item is checked as the command checks it, and a
/// failed item is rendered as its batch result would be.
fn batch_of<T: DeserializeOwned>(
    bytes: &[u8],
    command: &str,
    check: impl Fn(&T) -> Result<()>,
) -> Result<()> {
    let bytes = payload::present(Some(bytes.to_vec()), command, r#"{"id":"web"}"#)?;
    match one_or_many::<T>(&bytes, r#"{"id":"web"}"#)? {
        Ok(one) => check(&one),
        Err(many) => {
            assert!(!many.is_empty(), "an empty batch is an error, not a batch");
            let results = many
                .iter()
                .enumerate()
                .filter_map(|(index, item)| {
                    check(item)
                        .err()
                        .map(|e| ItemResult::new(index, None, Err(e)))
                })
                .collect();
            serde_json::to_vec(&BatchAnswer::new(results, None)).expect("a batch answer encodes");
            Ok(())
        }
    }
}

/// Renders an error the ways the envelope does; a payload error is always an input error,
/// and names the path of the bad value unless the payload as a whole is wrong.
fn render(error: &Error) {
    assert_eq!(error.type_name(), "CommandInputError", "{error:?}");
    assert!(!error.full_message().is_empty());
    assert!(!error.hint().is_empty());
    let json = error.to_json();
    assert_eq!(json["details"]["retryable"], false);
    let message = json["message"].as_str().unwrap_or_default();
    let whole = message.starts_with("the payload is not valid JSON")
        || message == "the batch is empty"
        || message.ends_with("needs a payload");
    assert!(
        whole || json["details"]["path"].is_string(),
        "an error without a path: {json}"
    );
    serde_json::to_string(&json).expect("an error always encodes");
}
