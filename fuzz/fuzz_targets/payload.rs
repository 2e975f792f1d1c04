//! Payload parsing: arbitrary bytes through the entry points the commands use.
//!
//! The first byte picks the command (`'0'` start … `'9'` events; any byte maps to one), the
//! rest is its payload. Each command's payload goes through `payload::require`/`optional`
//! (or `one_or_many` for the batch commands), then through the checks that command makes
//! before it touches the state directory (`validate`, ready conditions, cursors). Every
//! error is rendered as the envelope would render it, alone and as a batch item.
//!
//! Nothing here spawns a process or touches the filesystem: `StartInput::validate` at most
//! probes a `stop_with_pid` with signal 0.

#![no_main]

use background_tasks::error::{Error, Result};
use background_tasks::lifecycle::follow::resume_point;
use background_tasks::output_log::Cursor;
use background_tasks::payload::batch::{BatchAnswer, ItemResult};
use background_tasks::payload::input::{
    EventsInput, IdInput, ListInput, LogsInput, PruneInput, RestartInput, RmInput, StartInput,
    StopInput, Until, WaitInput,
};
use background_tasks::payload::{self, one_or_many};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let result = match selector.wrapping_sub(b'0') % 10 {
        0 => batch_of::<StartInput>(bytes, "start", StartInput::validate),
        1 => required::<IdInput>(bytes, "status").map(drop),
        2 => payload::optional::<ListInput>(Some(bytes.to_vec()), "{}").map(drop),
        3 => required::<WaitInput>(bytes, "wait").and_then(|input| match input.until {
            Until::Ready(spec) => spec.probe("until").map(drop),
            Until::Exit | Until::Word(_) => Ok(()),
        }),
        4 => batch_of::<StopInput>(bytes, "stop", StopInput::validate),
        5 => batch_of::<RestartInput>(bytes, "restart", |_| Ok(())),
        6 => batch_of::<RmInput>(bytes, "rm", |_| Ok(())),
        7 => payload::optional::<PruneInput>(Some(bytes.to_vec()), "{}").map(drop),
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

/// Renders an error the ways the envelope does; a payload error is always an input error.
fn render(error: &Error) {
    assert_eq!(error.type_name(), "CommandInputError", "{error:?}");
    assert!(!error.full_message().is_empty());
    assert!(!error.hint().is_empty());
    let json = error.to_json();
    assert_eq!(json["details"]["retryable"], false);
    serde_json::to_string(&json).expect("an error always encodes");
}
