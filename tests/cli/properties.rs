//! Property tests of the pure parsers, on generated inputs: log cursors, task ids, log lines
//! and payloads. They call the library directly (no process is started); the fuzz targets
//! in `fuzz/` push the same parsers much further, outside CI.
//!
//! Payloads are generated two ways: any JSON value with field names sprinkled in, and, per
//! command, objects holding any of the command's fields, nested ones included (`ready.*`,
//! `until.*`, `env.*`, `args[i]`, batch items), each mostly of its own kind with the edges
//! of its range (every duration: `grace_s`, `timeout_s`, `older_than_s`, `ready.timeout_s`,
//! `until.timeout_s`) and numbers no type holds, sometimes of any other. Each must parse
//! and pass the command's checks, with every duration within its bound, or be an input
//! error naming the path of a field it holds.
//!
//! Case counts are kept moderate so the suite stays fast on two cores.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Component, Path};
use std::sync::LazyLock;
use std::time::Duration;

use background_tasks::error::Error;
use background_tasks::lifecycle::Cancel;
use background_tasks::lifecycle::follow::{FollowArgs, resume_point};
use background_tasks::lifecycle::stop::StopArgs;
use background_tasks::output_log::{self, Cursor, Line};
use background_tasks::paths::TaskId;
use background_tasks::payload::input::{
    EventsInput, IdInput, ListInput, LogsInput, MAX_SECONDS, MAX_TIMEOUT_S, PruneInput,
    RestartInput, RmInput, StartInput, StopInput, Until, WaitInput,
};
use background_tasks::payload::{one_or_many, parse};
use background_tasks::ready::ReadySpec;
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
        // The lines as written: `split` keeps ANSI escape sequences too.
        let mut reader = output_log::LineReader::new(0).keeping_ansi(true);
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

// ---- every field of every payload, nested ones and durations included ----

/// How a field's value is generated: mostly of its own kind (with the edges of its range
/// and numbers no f64, u64 or i32 holds), sometimes any JSON value at all.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Seconds: `grace_s`, `timeout_s`, `older_than_s`, `ready.timeout_s`, `until.timeout_s`.
    Seconds,
    /// A whole number: `stop_with_pid`, `keep_last`, `lines`, `ready.port`.
    Count,
    Text,
    Id,
    Bool,
    /// One of these words.
    Word(&'static [&'static str]),
    Texts,
    /// An array of these words (and other strings).
    Words(&'static [&'static str]),
    Ids,
    Env,
    /// `ready`, and `until` in its object form: `{log?, port?, http?, timeout_s?}`.
    Conditions,
    /// `"exit"` or conditions.
    Until,
    Signal,
    /// A sequence number or a cursor.
    After,
}

/// Numbers at the edges of every range a payload number has, and past them: zero and its
/// sign, the bounds of a day and of 30 days, of ports, pids and every integer type, the
/// smallest subnormal, the largest f64, and numbers no f64 holds (`1e400`).
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "-1",
    "1",
    "2",
    "0.001",
    "5e-324",
    "1e-320",
    "86400",
    "86400.000001",
    "2592000",
    "2592000.001",
    "1e15",
    "1e19",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1e308",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "1e309",
    "-1e400",
    "1e400",
];

const IF_RUNNING: &[&str] = &["error", "reuse", "restart"];
const MODES: &[&str] = &["all", "any"];
const STATUSES: &[&str] = &[
    "queued",
    "running",
    "exited",
    "killed",
    "timed_out",
    "failed",
    "lost",
];
const TASK_FIELDS: &[&str] = &["id", "status", "exit_code", "ready", "progress", "nope"];

/// A JSON string holding `text`.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string encodes")
}

/// A JSON number at an edge, or any f64 or integer, as text (some no parser type holds).
fn number() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(EDGE_NUMBERS).prop_map(str::to_owned),
        2 => any::<f64>().prop_filter_map("finite", |f| serde_json::to_string(&f).ok().filter(|_| f.is_finite())),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
    ]
    .boxed()
}

/// Any JSON value: the wrong kind for most fields.
fn other() -> BoxedStrategy<String> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        number(),
        Just("\"5\"".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("null".to_owned()),
    ]
    .boxed()
}

/// Mostly `usual` (in range, so that one payload gets many fields past parsing), else an
/// edge or anything (`odd`), else a value of another kind.
fn weighted(usual: BoxedStrategy<String>, odd: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![6 => usual, 2 => odd, 1 => other()].boxed()
}

/// Seconds: a day's worth of milliseconds, or any number.
fn seconds() -> BoxedStrategy<String> {
    weighted(
        (1u32..86_400_000)
            .prop_map(|ms| format!("{}.{:03}", ms / 1000, ms % 1000))
            .boxed(),
        number(),
    )
}

fn count() -> BoxedStrategy<String> {
    weighted((0u32..70_000).prop_map(|n| n.to_string()).boxed(), number())
}

fn text() -> BoxedStrategy<String> {
    weighted(
        "[a-z0-9 ._-]{1,12}".prop_map(|s| quoted(&s)).boxed(),
        prop_oneof![
            prop::sample::select(WORDS).prop_map(quoted),
            "[a-z0-9 .:/_^$()*+-]{0,12}".prop_map(|s| quoted(&s)),
            any::<String>().prop_map(|s| quoted(&s)),
        ]
        .boxed(),
    )
}

fn id() -> BoxedStrategy<String> {
    weighted(
        Just(quoted("web")).boxed(),
        id_candidates().prop_map(|s| quoted(&s)).boxed(),
    )
}

fn word(words: &'static [&'static str]) -> BoxedStrategy<String> {
    weighted(prop::sample::select(words).prop_map(quoted).boxed(), text())
}

fn array_of(item: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop::collection::vec(item, 0..4)
        .prop_map(|items| format!("[{}]", items.join(",")))
        .boxed()
}

fn value(kind: Kind) -> BoxedStrategy<String> {
    let array = |item| weighted(array_of(item), other());
    match kind {
        Kind::Seconds => seconds(),
        Kind::Count => count(),
        Kind::Text => text(),
        Kind::Id => id(),
        Kind::Bool => weighted(any::<bool>().prop_map(|b| b.to_string()).boxed(), other()),
        Kind::Word(words) => word(words),
        Kind::Texts => array(text()),
        Kind::Words(words) => array(word(words)),
        Kind::Ids => array(id()),
        Kind::Env => {
            let name = weighted(
                prop::sample::select(&["PORT", "A_B", "PATH"][..])
                    .prop_map(quoted)
                    .boxed(),
                prop_oneof![
                    prop::sample::select(&["", "A=B", "X\0Y", "=", "é"][..]).prop_map(quoted),
                    any::<String>().prop_map(|s| quoted(&s)),
                ]
                .boxed(),
            );
            let entries = prop::collection::vec((name, text()), 0..3).prop_map(|pairs| {
                // A name that is not a string is not JSON: it becomes a plain string key.
                let fields: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| {
                        let key = if k.starts_with('"') {
                            k.clone()
                        } else {
                            quoted(k)
                        };
                        format!("{key}:{v}")
                    })
                    .collect();
                format!("{{{}}}", fields.join(","))
            });
            weighted(entries.boxed(), other())
        }
        Kind::Conditions => weighted(object(CONDITIONS), other()),
        Kind::Until => prop_oneof![
            1 => Just(quoted("exit")),
            4 => object(CONDITIONS),
            1 => text(),
            1 => other(),
        ]
        .boxed(),
        Kind::Signal => weighted(
            prop::sample::select(&["SIGTERM", "term", "INT", "sigkill", "9", "15"][..])
                .prop_map(|s| {
                    if s.parse::<u8>().is_ok() {
                        s.to_owned()
                    } else {
                        quoted(s)
                    }
                })
                .boxed(),
            prop_oneof![
                prop::sample::select(&["SIGNOPE", "", "0", "SIG"][..]).prop_map(quoted),
                number(),
            ]
            .boxed(),
        ),
        Kind::After => weighted(
            prop_oneof![
                (0u64..1 << 40).prop_map(|n| n.to_string()),
                (0u32..5, 0u64..1 << 30)
                    .prop_map(|(run, offset)| quoted(&format!("{run}:{offset}"))),
            ]
            .boxed(),
            prop_oneof![
                number(),
                prop::sample::select(&[":", "1:-1", "99999999999:1", "1:2:3", ""][..])
                    .prop_map(quoted),
            ]
            .boxed(),
        ),
    }
}

/// A payload's fields: name, how its value is made, and how often it is present.
type Fields = &'static [(&'static str, Kind, f64)];

const CONDITIONS: Fields = &[
    ("log", Kind::Text, 0.5),
    ("port", Kind::Count, 0.3),
    (
        "http",
        Kind::Word(&["http://127.0.0.1:3000/", "https://x", "http://"]),
        0.3,
    ),
    ("timeout_s", Kind::Seconds, 0.6),
];
const START: Fields = &[
    ("id", Kind::Id, 0.5),
    ("name", Kind::Text, 0.4),
    ("command", Kind::Word(&["true", "sleep"]), 0.85),
    ("args", Kind::Texts, 0.4),
    ("workdir", Kind::Word(&["/", "/tmp", "relative", ""]), 0.3),
    ("env", Kind::Env, 0.4),
    ("tags", Kind::Texts, 0.3),
    ("shell", Kind::Text, 0.15),
    ("grace_s", Kind::Seconds, 0.5),
    ("timeout_s", Kind::Seconds, 0.5),
    ("if_running", Kind::Word(IF_RUNNING), 0.4),
    ("stop_with_pid", Kind::Count, 0.1),
    ("ready", Kind::Conditions, 0.5),
];
const STOP: Fields = &[
    ("id", Kind::Id, 0.9),
    ("signal", Kind::Signal, 0.5),
    ("grace_s", Kind::Seconds, 0.6),
];
const RESTART: Fields = &[("id", Kind::Id, 0.9), ("env", Kind::Env, 0.6)];
const RM: Fields = &[("id", Kind::Id, 0.9), ("force", Kind::Bool, 0.5)];
const PRUNE: Fields = &[
    ("older_than_s", Kind::Seconds, 0.6),
    ("keep_last", Kind::Count, 0.5),
    ("status", Kind::Word(STATUSES), 0.5),
];
const WAIT: Fields = &[
    ("id", Kind::Id, 0.8),
    ("ids", Kind::Ids, 0.2),
    ("mode", Kind::Word(MODES), 0.2),
    ("until", Kind::Until, 0.7),
];
const LIST: Fields = &[
    ("ids", Kind::Ids, 0.3),
    ("status", Kind::Word(STATUSES), 0.4),
    ("tag", Kind::Text, 0.3),
    ("tags", Kind::Texts, 0.3),
    ("name", Kind::Text, 0.3),
    ("workdir", Kind::Text, 0.3),
    ("fields", Kind::Words(TASK_FIELDS), 0.4),
];
const LOGS: Fields = &[
    ("id", Kind::Id, 0.9),
    ("lines", Kind::Count, 0.5),
    ("after", Kind::After, 0.5),
    ("grep", Kind::Text, 0.4),
];
const EVENTS: Fields = &[
    ("id", Kind::Id, 0.6),
    ("ids", Kind::Ids, 0.2),
    ("tag", Kind::Text, 0.2),
    ("tags", Kind::Texts, 0.1),
    ("status", Kind::Word(STATUSES), 0.1),
    ("after", Kind::After, 0.5),
    ("lines", Kind::Count, 0.5),
    ("ansi", Kind::Bool, 0.2),
];

/// An object holding each of `fields` or not (and now and then one field too many), in a
/// shuffled order, so a bad value anywhere may come first.
fn object(fields: Fields) -> BoxedStrategy<String> {
    let present: Vec<BoxedStrategy<Option<(&'static str, String)>>> = fields
        .iter()
        .map(|&(name, kind, often)| {
            prop::option::weighted(often, value(kind).prop_map(move |v| (name, v))).boxed()
        })
        .collect();
    let extra = prop::option::weighted(0.03, Just(("bogus", "1".to_owned())));
    (present, extra)
        .prop_map(|(present, extra)| {
            present
                .into_iter()
                .flatten()
                .chain(extra)
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
        .prop_map(|pairs| {
            let fields: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{v}", quoted(k)))
                .collect();
            format!("{{{}}}", fields.join(","))
        })
        .boxed()
}

/// One payload, or (for the batch commands) sometimes an array of them.
fn payload(fields: Fields, batch: bool) -> BoxedStrategy<String> {
    if batch {
        prop_oneof![3 => object(fields), 1 => array_of(object(fields))].boxed()
    } else {
        object(fields)
    }
}

/// The top-level field an error's path names (after a batch item's `[i].`).
fn named_field(path: &str) -> &str {
    let rest = path.trim_start_matches(|c: char| c == '[' || c == ']' || c.is_ascii_digit());
    let rest = rest.trim_start_matches('.');
    rest.split(['.', '[']).next().unwrap_or_default()
}

/// An error of a generated payload: an input error that names the path of a field the
/// payload holds (the empty batch, which has none, says so).
fn assert_located(error: &Error, payload: &str, fields: Fields) -> Result<(), TestCaseError> {
    assert_input_error(error);
    let json = error.to_json();
    let message = json["message"].as_str().unwrap_or_default();
    if message == "the batch is empty" {
        prop_assert_eq!(payload, "[]");
        return Ok(());
    }
    let path = json["details"]["path"].as_str();
    prop_assert!(
        path.is_some(),
        "{} answered {} without a path",
        payload,
        json
    );
    let field = named_field(path.unwrap_or_default());
    prop_assert!(
        fields.iter().any(|(name, _, _)| *name == field) || field == "bogus",
        "{} answered {} at {:?}, not a field it holds",
        payload,
        json,
        path
    );
    prop_assert!(
        !message.contains("not valid JSON"),
        "{} answered {}",
        payload,
        json
    );
    Ok(())
}

/// Parses a generated payload as its command does (one, or a batch), then checks each
/// item as the command checks it before touching the state directory.
fn check_payload<T: DeserializeOwned>(
    text: &str,
    fields: Fields,
    check: impl Fn(T) -> background_tasks::error::Result<()>,
) -> Result<(), TestCaseError> {
    let items = match one_or_many::<T>(text.as_bytes(), "{}") {
        Ok(Ok(one)) => vec![one],
        Ok(Err(many)) => many,
        Err(error) => return assert_located(&error, text, fields),
    };
    for item in items {
        if let Err(error) = check(item) {
            assert_located(&error, text, fields)?;
        }
    }
    Ok(())
}

/// A duration the command accepted converts to a `Duration` within its bound.
fn checked_seconds(
    seconds: Option<f64>,
    most: f64,
    what: &str,
) -> background_tasks::error::Result<()> {
    if let Some(seconds) = seconds {
        let duration = Duration::try_from_secs_f64(seconds)
            .unwrap_or_else(|e| panic!("{what}: {seconds} was accepted: {e}"));
        assert!(
            duration.as_secs_f64() <= most,
            "{what}: {seconds} was accepted"
        );
    }
    Ok(())
}

/// `ready` or `until` conditions as `start --wait`, `wait` and the supervisor check them.
fn checked_conditions(spec: &ReadySpec, at: &str) -> background_tasks::error::Result<()> {
    spec.probe(at)?;
    let timeout = spec.timeout(at)?;
    assert!(
        timeout.is_none_or(|t| t.as_secs_f64() <= MAX_SECONDS),
        "{at}: {timeout:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn every_field_of_start_is_a_task_or_an_error_at_its_path(text in payload(START, true)) {
        check_payload::<StartInput>(&text, START, |start| {
            start.validate()?;
            checked_seconds(start.grace_s, MAX_SECONDS, "grace_s")?;
            checked_seconds(start.timeout_s, MAX_TIMEOUT_S, "timeout_s")?;
            match &start.ready {
                Some(ready) => checked_conditions(ready, "ready"),
                None => Ok(()),
            }
        })?;
    }

    #[test]
    fn every_field_of_stop_is_a_stop_or_an_error_at_its_path(text in payload(STOP, true)) {
        check_payload::<StopInput>(&text, STOP, |stop| {
            let grace = stop.grace_s;
            StopArgs::from_input(stop, None)?;
            checked_seconds(grace, MAX_SECONDS, "grace_s")
        })?;
    }

    #[test]
    fn every_field_of_wait_is_a_wait_or_an_error_at_its_path(text in payload(WAIT, false)) {
        check_payload::<WaitInput>(&text, WAIT, |wait| match &wait.until {
            Until::Ready(conditions) => checked_conditions(&conditions.clone().split().0, "until"),
            Until::Exit | Until::Word(_) => Ok(()),
        })?;
    }

    #[test]
    fn every_field_of_the_other_payloads_is_accepted_or_an_error_at_its_path(
        prune in payload(PRUNE, false),
        list in payload(LIST, false),
        logs in payload(LOGS, false),
        events in payload(EVENTS, false),
        restart in payload(RESTART, true),
        rm in payload(RM, true),
    ) {
        check_payload::<PruneInput>(&prune, PRUNE, |prune| {
            prune.validate()?;
            let age = prune.older_than_s.unwrap_or_default();
            assert!(age.is_finite() && age >= 0.0, "older_than_s {age} was accepted");
            Ok(())
        })?;
        check_payload::<ListInput>(&list, LIST, |list| list.validate())?;
        check_payload::<LogsInput>(&logs, LOGS, |logs| {
            FollowArgs::for_logs(&logs, None, Cancel::never()).map(drop)
        })?;
        check_payload::<EventsInput>(&events, EVENTS, |events| {
            events.validate()?;
            events.after.clone().map(resume_point).transpose().map(drop)
        })?;
        check_payload::<RestartInput>(&restart, RESTART, |restart| restart.validate())?;
        check_payload::<RmInput>(&rm, RM, |_| Ok(()))?;
    }
}
