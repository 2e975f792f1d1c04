//! The STDOUT contract: what commands accept (payloads) and what they answer (answers,
//! frames). The schema fragments the types carry are in [`crate::wire_schema`], a leaf
//! that the modules defining wire types outside this folder (`ready`, `output_log`) use too.
//!
//! A payload is one JSON value given as literal text, `@path` (a file) or `-` (stdin).
//! Unknown fields are errors that name the accepted ones; a value of the wrong type or out
//! of range is an error carrying the JSON path of the bad value (`tags[2]`).

pub mod answer;
pub mod batch;
pub mod discovery;
pub mod examples;
pub mod frame;
pub mod input;
pub mod policy;
pub mod task;

use std::io::Read;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::error::{Error, Result};

/// The largest payload accepted, from a file or stdin.
pub const MAX_PAYLOAD_BYTES: u64 = 16 * 1024 * 1024;

/// The raw payload argument: literal JSON, `@path` or `-`.
pub fn read(argument: Option<&str>) -> Result<Option<Vec<u8>>> {
    let Some(argument) = argument else {
        return Ok(None);
    };
    let too_big = || {
        Error::input(
            format!("the payload is larger than {MAX_PAYLOAD_BYTES} bytes"),
            "Send a smaller payload; split a batch into several calls.",
        )
    };
    let bytes = if argument == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_PAYLOAD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                Error::input(
                    format!("could not read the payload from stdin: {e}"),
                    "Pipe one JSON value into stdin.",
                )
            })?;
        bytes
    } else if let Some(path) = argument.strip_prefix('@') {
        #[expect(
            clippy::disallowed_methods,
            reason = "the caller's own payload file, named by the caller: not under the state directory"
        )]
        let file = std::fs::File::open(path).map_err(|e| {
            Error::input(
                format!("could not read the payload file {path}: {e}"),
                "Give @ followed by the path of a readable JSON file.",
            )
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_PAYLOAD_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                Error::input(
                    format!("could not read the payload file {path}: {e}"),
                    "Give @ followed by the path of a readable JSON file.",
                )
            })?;
        bytes
    } else {
        argument.as_bytes().to_vec()
    };
    if bytes.len() as u64 > MAX_PAYLOAD_BYTES {
        return Err(too_big());
    }
    Ok(Some(bytes))
}

/// Parses a payload into `T`, reporting the JSON path of any bad value.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], example: &str) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| payload_error::<T>(bytes, e, example))?;
    deserializer.end().map_err(|e| {
        Error::input(
            format!("the payload is not valid JSON: {e}"),
            "Give exactly one JSON value.",
        )
    })?;
    Ok(value)
}

/// The input error for a payload that did not parse into `T`: invalid JSON, or a bad value
/// named by its JSON path and what was expected there.
fn payload_error<T: DeserializeOwned>(
    bytes: &[u8],
    error: serde_path_to_error::Error<serde_json::Error>,
    example: &str,
) -> Error {
    let mut at: Vec<Segment> = error.path().iter().cloned().collect();
    let inner = error.into_inner();
    let mut message = strip_position(&inner.to_string());
    // Only a payload that failed is read a second time, as a `Value`.
    let value = || serde_json::from_slice::<serde_json::Value>(bytes).ok();
    if inner.is_syntax() && message == "number out of range" {
        // Valid JSON (`1e400`, a 30-digit integer) that no f64 or integer holds: the value
        // is out of range, where it is, as any other number would be.
    } else if inner.is_syntax() || inner.is_eof() {
        // serde_json's streaming parser reads an enum (`status`, `if_running`, `mode`) from
        // a string or an object only; given any other value (`5`, `true`, `["exited"]`) it
        // stops with the syntax error "expected value", though the JSON is fine. Read as a
        // `Value`, every mismatch is a type error at its path.
        // (Validity is checked without converting numbers: `1e400` elsewhere in the payload
        // is valid JSON that no `Value` holds.)
        let valid =
            inner.is_syntax() && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        if !valid {
            let hint = if let Some(word) = bare_id(bytes) {
                format!("The payload is JSON, not a bare word: try '{{\"id\":\"{word}\"}}'.")
            } else {
                format!("Give one JSON value, for example '{example}'.")
            };
            return Error::input(format!("the payload is not valid JSON: {inner}"), hint);
        }
        let retyped = value().and_then(|value| {
            let error = serde_path_to_error::deserialize::<_, T>(&value).err()?;
            let at = error.path().iter().cloned().collect();
            Some((value, at, strip_position(&error.inner().to_string())))
        });
        message = match retyped {
            Some((value, retyped_at, retyped)) => {
                at = retyped_at;
                // An enum's "expected string or map": name the values it takes instead.
                match retyped.strip_suffix(", expected string or map") {
                    Some(head) => match variants_at::<T>(value, &at) {
                        Some(expected) => format!("{head}, expected {expected}"),
                        None => retyped,
                    },
                    None => retyped,
                }
            }
            // Still at the streaming parser's path.
            None => "invalid type: not a value this field takes".to_owned(),
        };
    } else if let Some(enum_at) = enum_given_an_object(&at, &message, value) {
        // `{"mode": {"any": true}}`: serde takes the object's key for the enum's value and
        // blames what follows it (`mode.any: expected unit`), or names the key as an unknown
        // value. Every enum of a payload takes a string: the object is what is wrong.
        if let Some(expected) = value().and_then(|value| variants_at::<T>(value, &enum_at)) {
            at = enum_at;
            message = format!("invalid type: map, expected {expected}");
        }
    }
    // A missing field is named where it belongs (`[2].id`), not at the object that lacks it.
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        at.push(Segment::Map {
            key: name.to_owned(),
        });
        message = "missing; it is required".to_owned();
    }
    let path = path_text(&at);
    // An unknown field's message names the field already.
    let message = if path == "." || message.starts_with("unknown field") {
        message
    } else {
        format!("{path}: {message}")
    };
    Error::input_at(
        path,
        message,
        format!("Fix the value; for example '{example}'."),
    )
}

/// Where an enum was given an object, if the error at `at` says so: the path ends in the
/// object's key taken as the enum's value, or the key was refused as an unknown value.
fn enum_given_an_object(
    at: &[Segment],
    message: &str,
    value: impl FnOnce() -> Option<serde_json::Value>,
) -> Option<Vec<Segment>> {
    if let Some((Segment::Enum { .. }, parent)) = at.split_last() {
        return Some(parent.to_vec());
    }
    if !message.starts_with("unknown variant") {
        return None;
    }
    let value = value()?;
    value_at(&value, at)?.is_object().then(|| at.to_vec())
}

/// What the enum at `at` accepts ("one of `all`, `any`"), asked of serde by giving it a
/// string that is none of its values.
fn variants_at<T: DeserializeOwned>(
    mut value: serde_json::Value,
    at: &[Segment],
) -> Option<String> {
    let mut slot = &mut value;
    for segment in at {
        slot = match segment {
            Segment::Seq { index } => slot.get_mut(*index)?,
            Segment::Map { key } | Segment::Enum { variant: key } => slot.get_mut(key.as_str())?,
            Segment::Unknown => return None,
        };
    }
    *slot = serde_json::Value::String(String::new());
    let error = serde_path_to_error::deserialize::<_, T>(&value).err()?;
    let same_place = error.path().iter().count() == at.len();
    let message = strip_position(&error.inner().to_string());
    let (_, expected) = message.split_once(", expected ")?;
    (same_place && message.starts_with("unknown variant")).then(|| expected.to_owned())
}

/// The value at `at` in `value`.
fn value_at<'v>(value: &'v serde_json::Value, at: &[Segment]) -> Option<&'v serde_json::Value> {
    at.iter().try_fold(value, |slot, segment| match segment {
        Segment::Seq { index } => slot.get(*index),
        Segment::Map { key } | Segment::Enum { variant: key } => slot.get(key.as_str()),
        Segment::Unknown => None,
    })
}

/// A path as `serde_path_to_error` writes it: `tags[1]`, `[2].if_running`, `.` for the root.
fn path_text(at: &[Segment]) -> String {
    if at.is_empty() {
        return ".".to_owned();
    }
    let mut text = String::new();
    for segment in at {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Segment::Unknown => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push('?');
            }
        }
    }
    text
}

/// serde_json appends " at line 1 column 9"; the path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// The word, when a payload is a bare task id (`status web`) rather than JSON.
fn bare_id(bytes: &[u8]) -> Option<&str> {
    let word = std::str::from_utf8(bytes).ok()?.trim();
    crate::paths::TaskId::parse(word).ok().map(|_| word)
}

/// One payload, or an array of them (a batch): an array is recognised by its `[`.
pub fn one_or_many<T: DeserializeOwned>(bytes: &[u8], example: &str) -> Result<Result<T, Vec<T>>> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<T> = parse(bytes, example)?;
        if items.is_empty() {
            return Err(Error::input(
                "the batch is empty",
                format!("Give at least one item, e.g. '[{example}]'."),
            ));
        }
        Ok(Err(items))
    } else {
        parse(bytes, example).map(Ok)
    }
}

/// A payload is required: parse it, or say what to send.
pub fn require<T: DeserializeOwned>(
    bytes: Option<Vec<u8>>,
    command: &str,
    example: &str,
) -> Result<T> {
    parse(&present(bytes, command, example)?, example)
}

/// A payload is required: its bytes, or an error that says what to send.
pub fn present(bytes: Option<Vec<u8>>, command: &str, example: &str) -> Result<Vec<u8>> {
    bytes.ok_or_else(|| {
        Error::input(
            format!("{command} needs a payload"),
            format!("Run: background-tasks {command} '{example}'"),
        )
    })
}

/// A payload is optional: parse it, or use the default.
pub fn optional<T: DeserializeOwned + Default>(bytes: Option<Vec<u8>>, example: &str) -> Result<T> {
    match bytes {
        Some(bytes) => parse(&bytes, example),
        None => Ok(T::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::input::StartInput;

    fn start_error(json: &str) -> Error {
        parse::<StartInput>(json.as_bytes(), "{}").expect_err(json)
    }

    #[test]
    fn unknown_fields_name_the_accepted_ones() {
        let message = start_error(r#"{"command":"true","bogus":1}"#).full_message();
        assert!(
            message.contains("bogus") && message.contains("`workdir`"),
            "{message}"
        );
    }

    #[test]
    fn wrong_types_carry_the_json_path() {
        match start_error(r#"{"command":"true","tags":["a",2]}"#) {
            Error::CommandInput { path, .. } => assert_eq!(path.as_deref(), Some("tags[1]")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_typed_enums_name_their_path_and_values() {
        let cases = [
            (r#"{"command":"true","if_running":true}"#, "if_running"),
            (r#"{"command":"true","if_running":5}"#, "if_running"),
            (r#"{"command":"true","if_running":["reuse"]}"#, "if_running"),
            (r#"{"command":"true","if_running":null}"#, "if_running"),
        ];
        for (json, at) in cases {
            match start_error(json) {
                Error::CommandInput { path, message, .. } => {
                    assert_eq!(path.as_deref(), Some(at), "{json}");
                    assert!(
                        message.contains("`error`, `reuse`, `restart`"),
                        "{json}: {message}"
                    );
                    assert!(!message.contains("not valid JSON"), "{json}: {message}");
                }
                other => panic!("{json}: unexpected {other:?}"),
            }
        }
        // Inside a batch, the item's index leads the path.
        let error = parse::<Vec<StartInput>>(
            br#"[{"command":"true"},{"command":"true","if_running":1}]"#,
            "{}",
        )
        .expect_err("a wrong type");
        match error {
            Error::CommandInput { path, .. } => {
                assert_eq!(path.as_deref(), Some("[1].if_running"));
            }
            other => panic!("unexpected {other:?}"),
        }
        // An object where a string is expected is named at the enum, not inside it.
        for json in [
            r#"{"command":"true","if_running":{"reuse":true}}"#,
            r#"{"command":"true","if_running":{"again":1}}"#,
        ] {
            match start_error(json) {
                Error::CommandInput { path, message, .. } => {
                    assert_eq!(path.as_deref(), Some("if_running"), "{json}");
                    assert!(
                        message.contains("invalid type: map, expected one of `error`"),
                        "{json}: {message}"
                    );
                }
                other => panic!("{json}: unexpected {other:?}"),
            }
        }
        // A number too large for any number type is out of range at its path.
        for (json, at, said) in [
            (
                r#"{"command":"true","grace_s":1e400}"#,
                "grace_s",
                "out of range",
            ),
            (
                r#"{"command":"true","ready":{"log":"x","timeout_s":-1e999}}"#,
                "ready.timeout_s",
                "out of range",
            ),
            (
                r#"[{"command":"true","stop_with_pid":123456789012345678901234567890}]"#,
                "[0].stop_with_pid",
                "expected i32",
            ),
        ] {
            let error = if json.starts_with('[') {
                parse::<Vec<StartInput>>(json.as_bytes(), "{}").expect_err(json)
            } else {
                start_error(json)
            };
            match error {
                Error::CommandInput { path, message, .. } => {
                    assert_eq!(path.as_deref(), Some(at), "{json}: {message}");
                    assert!(message.contains(said), "{json}: {message}");
                }
                other => panic!("{json}: unexpected {other:?}"),
            }
        }
        // A missing field is named at its path.
        for (json, at) in [
            (r#"{}"#, "id"),
            (r#"[{"id":"a"},{"force":true}]"#, "[1].id"),
        ] {
            match parse::<crate::payload::input::RmInput>(json.as_bytes(), "{}") {
                Err(Error::CommandInput { path, message, .. }) if !json.starts_with('[') => {
                    assert_eq!(path.as_deref(), Some(at), "{json}: {message}");
                    assert_eq!(message, "id: missing; it is required");
                }
                _ => match parse::<Vec<crate::payload::input::RmInput>>(json.as_bytes(), "{}") {
                    Err(Error::CommandInput { path, message, .. }) => {
                        assert_eq!(path.as_deref(), Some(at), "{json}: {message}");
                        assert_eq!(message, "[1].id: missing; it is required");
                    }
                    other => panic!("{json}: unexpected {other:?}"),
                },
            }
        }
        // A wrong type beside a number no `Value` holds is still named at its path.
        match parse::<crate::payload::input::PruneInput>(
            br#"{"status":[],"older_than_s":1e309}"#,
            "{}",
        ) {
            Err(Error::CommandInput { path, .. }) => assert_eq!(path.as_deref(), Some("status")),
            other => panic!("unexpected {other:?}"),
        }
        // Invalid JSON is still invalid JSON.
        let message = start_error(r#"{"command":"true","if_running":tru}"#).full_message();
        assert!(message.contains("not valid JSON"), "{message}");
    }

    /// Every enum-ish field of every payload names its path and what it expects, and a bad
    /// value inside `until` is named where it is.
    #[test]
    fn enum_ish_fields_of_every_payload_name_their_path() {
        use crate::payload::input::{EventsInput, ListInput, PruneInput, StopInput, WaitInput};
        fn located<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> (String, String) {
            match parse::<T>(json.as_bytes(), "{}").expect_err(json) {
                Error::CommandInput { path, message, .. } => (path.unwrap_or_default(), message),
                other => panic!("{json}: unexpected {other:?}"),
            }
        }
        let cases = [
            (
                located::<ListInput>(r#"{"status":5}"#),
                "status",
                "`queued`",
            ),
            (
                located::<ListInput>(r#"{"status":{"is":"running"}}"#),
                "status",
                "`running`",
            ),
            (
                located::<PruneInput>(r#"{"status":["exited"]}"#),
                "status",
                "`exited`",
            ),
            (
                located::<WaitInput>(r#"{"ids":["x"],"mode":1}"#),
                "mode",
                "`any`",
            ),
            (
                located::<WaitInput>(r#"{"id":"x","mode":{"any":true}}"#),
                "mode",
                "`any`",
            ),
            (
                located::<WaitInput>(r#"{"id":"x","until":5}"#),
                "until",
                "\"exit\" or conditions",
            ),
            (
                located::<WaitInput>(r#"{"id":"x","until":{"log":5}}"#),
                "until.log",
                "a string",
            ),
            (
                located::<WaitInput>(r#"{"id":"x","until":{"port":"80"}}"#),
                "until.port",
                "u32",
            ),
            (
                located::<WaitInput>(r#"{"id":"x","until":{"nope":1}}"#),
                "until.nope",
                "`log`",
            ),
            (
                located::<EventsInput>(r#"{"id":"x","after":-1}"#),
                "after",
                "a frame's sequence",
            ),
            (
                located::<EventsInput>(r#"{"id":"x","after":1.5}"#),
                "after",
                "a frame's sequence",
            ),
            (
                located::<EventsInput>(r#"{"id":"x","after":[1]}"#),
                "after",
                "a frame's sequence",
            ),
            (
                located::<StopInput>(r#"{"id":"x","signal":true}"#),
                "signal",
                "a signal name",
            ),
            (
                located::<StopInput>(r#"{"id":"x","signal":"NOPE"}"#),
                "signal",
                "not a signal",
            ),
            (
                located::<StopInput>(r#"{"id":"x","signal":99}"#),
                "signal",
                "not a signal",
            ),
        ];
        for ((path, message), at, expected) in cases {
            assert_eq!(path, at, "{message}");
            assert!(message.contains(expected), "{at}: {message}");
            assert!(!message.contains("not valid JSON"), "{at}: {message}");
            assert!(
                !message.contains("did not match any variant"),
                "{at}: {message}"
            );
        }
        // The forms that are right still parse.
        let wait: WaitInput = parse(br#"{"id":"x","until":"exit"}"#, "{}").expect("exit");
        assert!(matches!(wait.until, crate::payload::input::Until::Word(w) if w == "exit"));
        let wait: WaitInput = parse(br#"{"id":"x","until":{"log":"up"}}"#, "{}").expect("log");
        assert!(matches!(wait.until, crate::payload::input::Until::Ready(_)));
        let events: EventsInput = parse(br#"{"id":"x","after":"1:20"}"#, "{}").expect("cursor");
        assert!(matches!(
            events.after,
            Some(crate::payload::input::AfterInput::Cursor(_))
        ));
        let events: EventsInput = parse(br#"{"id":"x","after":7}"#, "{}").expect("sequence");
        assert!(matches!(
            events.after,
            Some(crate::payload::input::AfterInput::Sequence(7))
        ));
        let stop: StopInput = parse(br#"{"id":"x","signal":"int"}"#, "{}").expect("int");
        assert_eq!(stop.signal, Some(nix::sys::signal::Signal::SIGINT));
        let stop: StopInput = parse(br#"{"id":"x","signal":null}"#, "{}").expect("null");
        assert_eq!(stop.signal, None);
    }

    #[test]
    fn malformed_json_is_an_input_error() {
        for bad in ["{", "", "web", "{} {}", "[1,"] {
            assert_eq!(start_error(bad).type_name(), "CommandInputError", "{bad}");
        }
    }
}
