//! Cursor parsing: `logs {"after"}` (a `"run:offset"` cursor) and `events {"after"}` (a
//! sequence number or a cursor), from arbitrary bytes.
//!
//! Asserted, beside "no panic":
//! - a text `Cursor::parse` accepts is `digits:digits`, and formatting the cursor and
//!   parsing it again gives the same cursor;
//! - a rejected text is an input error at `after`;
//! - `events`' `resume_point` agrees with `Cursor::parse`;
//! - a cursor built from the input's bytes (any `run`, any `offset`) survives the trip an
//!   agent makes: answered as JSON (`next_cursor`), sent back as `events {"after"}`.

#![no_main]

use background_tasks::error::Error;
use background_tasks::lifecycle::follow::resume_point;
use background_tasks::output_log::Cursor;
use background_tasks::payload;
use background_tasks::payload::input::{AfterInput, EventsInput};
use background_tasks::timeline::After;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        parse_text(text);
    }
    // The bytes as the JSON value of `after`, as `events` receives it.
    let mut json = br#"{"id":"web","after":"#.to_vec();
    json.extend_from_slice(data);
    json.push(b'}');
    if let Ok(input) = payload::parse::<EventsInput>(&json, "{}") {
        match (input.after.clone().map(resume_point), input.after) {
            (Some(Ok(After::Sequence(n))), Some(AfterInput::Sequence(m))) => assert_eq!(n, m),
            (Some(Ok(After::Cursor(c))), Some(AfterInput::Cursor(text))) => {
                assert_eq!(Cursor::parse(&text).ok(), Some(c));
            }
            (Some(Err(e)), _) => check_rejection(&e),
            (None, None) => {}
            other => panic!("resume_point changed the kind of after: {other:?}"),
        }
    }
    // A cursor made from the bytes: every run and offset must round-trip.
    if let (Some(run), Some(offset)) = (data.get(..4), data.get(4..12)) {
        let cursor = Cursor {
            run: u32::from_le_bytes(run.try_into().expect("4 bytes")),
            offset: u64::from_le_bytes(offset.try_into().expect("8 bytes")),
        };
        round_trip(cursor);
    }
});

fn parse_text(text: &str) {
    let parsed = Cursor::parse(text);
    let resumed = resume_point(AfterInput::Cursor(text.to_owned()));
    match parsed {
        Ok(cursor) => {
            let (run, offset) = text.split_once(':').expect("a cursor holds a colon");
            assert!(
                [run, offset]
                    .iter()
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())),
                "accepted {text:?}"
            );
            assert_eq!(Cursor::parse(&cursor.to_string()).ok(), Some(cursor));
            assert_eq!(resumed.ok(), Some(After::Cursor(cursor)));
        }
        Err(error) => {
            check_rejection(&error);
            assert!(resumed.is_err(), "resume_point accepted {text:?}");
        }
    }
}

fn round_trip(cursor: Cursor) {
    let text = cursor.to_string();
    assert_eq!(Cursor::parse(&text).ok(), Some(cursor), "{text}");
    let answered = serde_json::to_string(&cursor).expect("a cursor encodes");
    assert_eq!(answered, format!("\"{text}\""));
    let request = format!(r#"{{"id":"web","after":{answered}}}"#);
    let input: EventsInput = payload::parse(request.as_bytes(), "{}").expect("a valid payload");
    let after = input.after.map(resume_point).transpose().ok().flatten();
    assert_eq!(after, Some(After::Cursor(cursor)));
}

fn check_rejection(error: &Error) {
    assert_eq!(error.type_name(), "CommandInputError");
    let json = error.to_json();
    assert_eq!(json["details"]["path"], "after", "{json}");
    assert!(!error.full_message().is_empty() && !error.hint().is_empty());
}
