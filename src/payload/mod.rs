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
pub mod task;

use std::io::Read;

use serde::de::DeserializeOwned;

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
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            let hint = if let Some(word) = bare_id(bytes) {
                format!("The payload is JSON, not a bare word: try '{{\"id\":\"{word}\"}}'.")
            } else {
                format!("Give one JSON value, for example '{example}'.")
            };
            Error::input(format!("the payload is not valid JSON: {inner}"), hint)
        } else {
            let message = strip_position(&inner.to_string());
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
    })?;
    deserializer.end().map_err(|e| {
        Error::input(
            format!("the payload is not valid JSON: {e}"),
            "Give exactly one JSON value.",
        )
    })?;
    Ok(value)
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
    fn malformed_json_is_an_input_error() {
        for bad in ["{", "", "web", "{} {}", "[1,"] {
            assert_eq!(start_error(bad).type_name(), "CommandInputError", "{bad}");
        }
    }
}
