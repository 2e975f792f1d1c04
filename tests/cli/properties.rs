//! Property tests of the pure parsers, on generated inputs: log cursors, task ids, log lines
//! and payloads. They call the library directly (no process is started); the fuzz targets
//! in `fuzz/` push the same parsers much further, outside CI.
//!
//! Case counts are kept moderate so the suite stays fast on two cores.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Component, Path};
use std::sync::LazyLock;

use background_tasks::error::Error;
use background_tasks::output_log::{self, Cursor, Line};
use background_tasks::paths::TaskId;
use background_tasks::payload::input::{
    EventsInput, IdInput, ListInput, LogsInput, PruneInput, RestartInput, RmInput, StartInput,
    StopInput, WaitInput,
};
use background_tasks::payload::{one_or_many, parse};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// DESIGN §3's rule for task ids.
const ID_RULE: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";
static ID_REGEX: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(ID_RULE).expect("the rule is a regex"));

fn assert_input_error(error: &Error) {
    assert_eq!(error.type_name(), "CommandInputError", "{error:?}");
    let json = error.to_json();
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(
        json["details"]["hint"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
    );
}

// ---- cursors ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_formatted_cursor_parses_back_to_itself(run: u32, offset: u64, zeros in 0usize..4) {
        let cursor = Cursor { run, offset };
        prop_assert_eq!(Cursor::parse(&cursor.to_string()).ok(), Some(cursor));
        // Leading zeros are the same number, up to 20 digits a part (the parser's bound).
        let (run, offset) = (format!("{}{run}", "0".repeat(zeros)), format!("{}{offset}", "0".repeat(zeros)));
        let padded = Cursor::parse(&format!("{run}:{offset}")).ok();
        let fits = run.len() <= 20 && offset.len() <= 20;
        prop_assert_eq!(padded, fits.then_some(cursor));
    }

    #[test]
    fn any_text_is_a_cursor_or_an_input_error_at_after(
        text in prop_oneof![any::<String>(), "[0-9:a -]{0,24}", "[0-9]{1,21}:[0-9]{1,21}"],
    ) {
        match Cursor::parse(&text) {
            Ok(cursor) => {
                let (run, offset) = text.split_once(':').expect("a colon");
                prop_assert_eq!(run.parse::<u128>().ok(), Some(u128::from(cursor.run)));
                prop_assert_eq!(offset.parse::<u128>().ok(), Some(u128::from(cursor.offset)));
                prop_assert!(run.bytes().chain(offset.bytes()).all(|b| b.is_ascii_digit()));
            }
            Err(error) => {
                assert_input_error(&error);
                prop_assert_eq!(&error.to_json()["details"]["path"], "after");
            }
        }
    }

    #[test]
    fn a_cursor_within_range_always_parses(text in "[0-9]{1,9}:[0-9]{1,19}") {
        prop_assert!(Cursor::parse(&text).is_ok());
    }
}

// ---- task ids ----

fn id_candidates() -> impl Strategy<Value = String> {
    prop_oneof![
        ID_RULE.trim_matches(['^', '$']),
        "[A-Za-z0-9._/ \\x00-]{0,70}",
        "[.-][A-Za-z0-9._-]{0,8}",
        any::<String>(),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("a".repeat(65)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn task_ids_are_accepted_exactly_by_the_rule(text in id_candidates()) {
        let parsed = TaskId::parse(&text);
        prop_assert_eq!(parsed.is_ok(), ID_REGEX.is_match(&text), "{:?}", text);
        // The JSON form goes through the same check.
        let from_json: Result<TaskId, _> = serde_json::from_value(Value::String(text.clone()));
        prop_assert_eq!(from_json.is_ok(), parsed.is_ok());
        if let Ok(id) = parsed {
            // An id names one folder under tasks/: never a way out of it.
            prop_assert!(!text.contains(['/', '\0']));
            prop_assert!(!text.starts_with(['.', '-']));
            let components: Vec<_> = Path::new(id.as_str()).components().collect();
            prop_assert!(matches!(components[..], [Component::Normal(_)]), "{:?}", text);
        }
    }
}

// ---- log lines ----

/// Bytes rich in newlines and carriage returns.
fn log_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![4 => any::<u8>(), 2 => Just(b'\n'), 1 => Just(b'\r')],
        0..200,
    )
}

/// Each line's bytes on disk: from the previous line's end to its own.
fn segments<'a>(bytes: &'a [u8], base: u64, lines: &[Line]) -> Vec<&'a [u8]> {
    let mut start = 0;
    lines
        .iter()
        .map(|line| {
            let end = (line.end - base) as usize;
            let segment = &bytes[start..end];
            start = end;
            segment
        })
        .collect()
}

fn file_with(bytes: &[u8]) -> std::fs::File {
    let mut file = tempfile::tempfile().expect("a temp file");
    file.write_all(bytes).expect("write");
    file
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn split_lines_cover_every_byte_in_order(bytes in log_bytes(), base in 0u64..1 << 40) {
        let (lines, end) = output_log::split(&bytes, base, false);
        prop_assert_eq!(end, base + bytes.len() as u64);
        let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
        let unterminated = bytes.last().is_some_and(|&b| b != b'\n');
        prop_assert_eq!(lines.len(), newlines + usize::from(unterminated));
        let segments = segments(&bytes, base, &lines);
        prop_assert_eq!(segments.concat(), bytes.clone(), "the lines keep every byte");
        for (line, segment) in lines.iter().zip(&segments) {
            let body = segment.strip_suffix(b"\n").unwrap_or(segment);
            prop_assert!(!body.contains(&b'\n'));
            prop_assert_eq!(&line.text, &output_log::render(body));
        }
        // Holding back an unfinished line stops right after the last newline.
        let (complete, complete_end) = output_log::split(&bytes, base, true);
        let last_newline = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        prop_assert_eq!(complete_end, base + last_newline as u64);
        prop_assert_eq!(&complete[..], &lines[..newlines]);
    }

    #[test]
    fn plain_text_lines_join_back_to_the_text(text in "[^\r]{0,200}") {
        let (lines, _) = output_log::split(text.as_bytes(), 0, false);
        let mut joined = lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n");
        if text.ends_with('\n') {
            joined.push('\n');
        }
        prop_assert_eq!(joined, text);
    }

    #[test]
    fn rendering_any_bytes_is_lossy_utf8_of_the_last_redraw(bytes in log_bytes()) {
        let shown = output_log::render(&bytes);
        // The last redraw that drew something: trailing `\r`s keep the last drawn text.
        let body = &bytes[..bytes.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1)];
        let redraw = match body.iter().rposition(|&b| b == b'\r') {
            Some(i) => &body[i + 1..],
            None => body,
        };
        prop_assert_eq!(shown, String::from_utf8_lossy(redraw));
    }
}

proptest! {
    // Each case writes a temp file.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reading_a_log_file_agrees_with_splitting_its_bytes(bytes in log_bytes(), wanted in 0u64..8) {
        let (lines, _) = output_log::split(&bytes, 0, false);
        let size = bytes.len() as u64;
        let mut file = file_with(&bytes);
        let mut visited = Vec::new();
        let done = output_log::each_line(&mut file, 0, size, |line, end| {
            visited.push(Line { text: output_log::render(line), end });
            ControlFlow::Continue(())
        })
        .expect("read");
        prop_assert_eq!(done, size);
        prop_assert_eq!(&visited, &lines);
        prop_assert_eq!(output_log::count_lines(&mut file, size).expect("count"), lines.len() as u64);
        let (_, complete) = output_log::split(&bytes, 0, true);
        prop_assert_eq!(output_log::complete_end(&mut file, 0, size).expect("end"), complete);
        // The last `wanted` lines start where the line before them ends.
        let n = lines.len() as u64;
        let expected = match wanted {
            0 => size,
            w if w >= n => 0,
            w => lines[(n - w - 1) as usize].end,
        };
        prop_assert_eq!(output_log::tail_start(&mut file, size, wanted).expect("tail"), expected);
    }

    /// A follower reads a log as it grows, in pieces of any size: it hands out the same
    /// lines as splitting the whole, each once, holding back the unfinished last one until
    /// the run is over.
    #[test]
    fn reading_a_growing_log_line_by_line_agrees_with_splitting_it(
        bytes in log_bytes(),
        pieces in prop::collection::vec(1usize..40, 1..10),
    ) {
        let (lines, _) = output_log::split(&bytes, 0, false);
        let mut file = file_with(b"");
        let mut reader = output_log::LineReader::new(0);
        let mut visited = Vec::new();
        let mut written = 0;
        for size in pieces.iter().cycle() {
            let upto = (written + size).min(bytes.len());
            file.write_all(&bytes[written..upto]).expect("write");
            written = upto;
            let over = written == bytes.len();
            reader
                .read(&mut file, written as u64, over, |line, end| {
                    visited.push(Line { text: line.into_text(), end });
                    ControlFlow::Continue(())
                })
                .expect("read");
            if !over {
                let (complete, _) = output_log::split(&bytes[..written], 0, true);
                prop_assert_eq!(reader.position(), complete.last().map_or(0, |l| l.end));
            }
            if over {
                break;
            }
        }
        prop_assert_eq!(&visited, &lines);
    }
}

// ---- payloads ----

/// Field names of every payload, so generated objects often hit real fields.
const FIELDS: &[&str] = &[
    "id",
    "ids",
    "name",
    "command",
    "args",
    "workdir",
    "env",
    "tags",
    "tag",
    "shell",
    "grace_s",
    "timeout_s",
    "if_running",
    "stop_with_pid",
    "ready",
    "log",
    "port",
    "http",
    "until",
    "signal",
    "force",
    "older_than_s",
    "keep_last",
    "status",
    "fields",
    "lines",
    "after",
    "grep",
];

/// Strings that mean something to some field.
const WORDS: &[&str] = &[
    "web",
    "true",
    "exit",
    "reuse",
    "restart",
    "error",
    "running",
    "exited",
    "SIGTERM",
    "INT",
    "1:0",
    "http://127.0.0.1:3000/",
    "(",
    "",
    "a\0b",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    let key = prop_oneof![3 => prop::sample::select(FIELDS).prop_map(str::to_owned), 1 => any::<String>()];
    leaf.prop_recursive(3, 24, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Parses `bytes` as `T`, one or as a batch; an error must be a well-formed input error.
fn parse_as<T: DeserializeOwned>(bytes: &[u8]) -> Option<Vec<T>> {
    match one_or_many::<T>(bytes, "{}") {
        Ok(Ok(one)) => Some(vec![one]),
        Ok(Err(many)) => Some(many),
        Err(error) => {
            assert_input_error(&error);
            None
        }
    }
}

fn parse_every_payload(bytes: &[u8]) {
    for start in parse_as::<StartInput>(bytes).into_iter().flatten() {
        if let Err(error) = start.validate() {
            assert_input_error(&error);
        }
    }
    for stop in parse_as::<StopInput>(bytes).into_iter().flatten() {
        if let Err(error) = stop.validate() {
            assert_input_error(&error);
        }
    }
    parse_as::<RestartInput>(bytes);
    parse_as::<RmInput>(bytes);
    for result in [
        parse::<IdInput>(bytes, "{}").map(drop),
        parse::<ListInput>(bytes, "{}").map(drop),
        parse::<WaitInput>(bytes, "{}").map(drop),
        parse::<PruneInput>(bytes, "{}").map(drop),
        parse::<LogsInput>(bytes, "{}").map(drop),
        parse::<EventsInput>(bytes, "{}").map(drop),
    ] {
        if let Err(error) = result {
            assert_input_error(&error);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_json_value_is_a_payload_or_an_input_error(value in json_value()) {
        parse_every_payload(serde_json::to_string(&value).expect("encode").as_bytes());
    }

    #[test]
    fn any_bytes_are_a_payload_or_an_input_error(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        parse_every_payload(&bytes);
    }
}
