//! Every field of every payload, nested ones included, built from the fuzzer's bytes.
//!
//! The `payload` target feeds raw bytes to the parsers and finds what bytes reach; this one
//! reads the bytes as choices (`arbitrary::Unstructured`) and builds a payload that holds
//! any of its command's fields: `ready.{log, port, http, timeout_s}`, `until` as `"exit"` or
//! conditions, `env.<NAME>`, `args[i]`, batch items, each mostly of its own kind, with the
//! edges of its range (every duration: `grace_s`, `timeout_s`, `older_than_s`,
//! `ready.timeout_s`, `until.timeout_s`) and numbers no type holds (`1e400`), or of any
//! other kind. Asserted, beside "no panic": each payload parses and passes its command's
//! checks with every duration within its bound, or is an input error that names the path
//! of a field the payload holds.

#![no_main]

use std::time::Duration;

use background_tasks::error::{Error, Result};
use background_tasks::lifecycle::Cancel;
use background_tasks::lifecycle::follow::FollowArgs;
use background_tasks::lifecycle::stop::StopArgs;
use background_tasks::payload::input::{
    EventsInput, ListInput, LogsInput, MAX_SECONDS, MAX_TIMEOUT_S, PruneInput, RestartInput,
    RmInput, StartInput, StopInput, Until, WaitInput,
};
use background_tasks::payload::one_or_many;
use background_tasks::ready::ReadySpec;
use libfuzzer_sys::arbitrary::{Result as Built, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(index) = u.choose_index(COMMANDS.len()) else {
        return;
    };
    let (fields, batch, check) = COMMANDS[index];
    let Ok(text) = payload(&mut u, fields, batch) else {
        return;
    };
    check(&text, fields);
});

/// How a field's value is made.
#[derive(Clone, Copy)]
enum Kind {
    Seconds,
    Count,
    Text,
    Id,
    Bool,
    Word(&'static [&'static str]),
    Texts,
    Ids,
    Env,
    Conditions,
    Until,
    Signal,
    After,
}

/// A payload's fields: name and kind.
type Fields = &'static [(&'static str, Kind)];

/// Numbers at and past the edges of every range a payload number has.
const EDGES: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "-1",
    "1",
    "0.001",
    "5e-324",
    "86400",
    "86400.000001",
    "2592000",
    "2592000.001",
    "1e19",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967296",
    "9223372036854775808",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1e308",
    "1.7976931348623157e308",
    "1e309",
    "-1e400",
    "1e400",
];
const WORDS: &[&str] = &[
    "web",
    "exit",
    "reuse",
    "restart",
    "error",
    "running",
    "exited",
    "all",
    "any",
    "SIGTERM",
    "INT",
    "1:0",
    "http://127.0.0.1:3000/",
    "(",
    "",
    "a\0b",
    "A=B",
];

const CONDITIONS: Fields = &[
    ("log", Kind::Text),
    ("port", Kind::Count),
    (
        "http",
        Kind::Word(&["http://127.0.0.1:3000/", "https://x", "http://"]),
    ),
    ("timeout_s", Kind::Seconds),
];
const START: Fields = &[
    ("id", Kind::Id),
    ("name", Kind::Text),
    ("command", Kind::Word(&["true", "sleep"])),
    ("args", Kind::Texts),
    ("workdir", Kind::Word(&["/", "/tmp", "relative", ""])),
    ("env", Kind::Env),
    ("tags", Kind::Texts),
    ("shell", Kind::Text),
    ("grace_s", Kind::Seconds),
    ("timeout_s", Kind::Seconds),
    ("if_running", Kind::Word(&["error", "reuse", "restart"])),
    ("stop_with_pid", Kind::Count),
    ("ready", Kind::Conditions),
];
const STOP: Fields = &[
    ("id", Kind::Id),
    ("signal", Kind::Signal),
    ("grace_s", Kind::Seconds),
];
const RESTART: Fields = &[("id", Kind::Id), ("env", Kind::Env)];
const RM: Fields = &[("id", Kind::Id), ("force", Kind::Bool)];
const STATUSES: &[&str] = &[
    "queued",
    "running",
    "exited",
    "killed",
    "timed_out",
    "failed",
    "lost",
];
const PRUNE: Fields = &[
    ("older_than_s", Kind::Seconds),
    ("keep_last", Kind::Count),
    ("status", Kind::Word(STATUSES)),
];
const WAIT: Fields = &[
    ("id", Kind::Id),
    ("ids", Kind::Ids),
    ("mode", Kind::Word(&["all", "any"])),
    ("until", Kind::Until),
];
const LIST: Fields = &[
    ("ids", Kind::Ids),
    ("status", Kind::Word(STATUSES)),
    ("tag", Kind::Text),
    ("tags", Kind::Texts),
    ("name", Kind::Text),
    ("workdir", Kind::Text),
    ("fields", Kind::Texts),
];
const LOGS: Fields = &[
    ("id", Kind::Id),
    ("lines", Kind::Count),
    ("after", Kind::After),
    ("grep", Kind::Text),
];
const EVENTS: Fields = &[
    ("id", Kind::Id),
    ("after", Kind::After),
    ("lines", Kind::Count),
];

/// Each command: its fields, whether it takes a batch, and how it checks a payload.
type Check = fn(&str, Fields);
const COMMANDS: &[(Fields, bool, Check)] = &[
    (START, true, |t, f| items::<StartInput>(t, f, check_start)),
    (STOP, true, |t, f| items::<StopInput>(t, f, check_stop)),
    (RESTART, true, |t, f| {
        items::<RestartInput>(t, f, |r| r.validate())
    }),
    (RM, true, |t, f| items::<RmInput>(t, f, |_| Ok(()))),
    (PRUNE, false, |t, f| items::<PruneInput>(t, f, check_prune)),
    (WAIT, false, |t, f| items::<WaitInput>(t, f, check_wait)),
    (LIST, false, |t, f| {
        items::<ListInput>(t, f, |l| l.validate())
    }),
    (LOGS, false, |t, f| {
        items::<LogsInput>(t, f, |l| {
            FollowArgs::for_logs(&l, None, Cancel::never()).map(drop)
        })
    }),
    (EVENTS, false, |t, f| {
        items::<EventsInput>(t, f, |e| {
            FollowArgs::for_events(&e, None, Cancel::never()).map(drop)
        })
    }),
];

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string encodes")
}

fn number(u: &mut Unstructured<'_>) -> Built<String> {
    Ok(match u.choose_index(4)? {
        0 => u.choose(EDGES)?.to_string(),
        1 => {
            let f: f64 = u.arbitrary()?;
            if f.is_finite() {
                f.to_string()
            } else {
                "1e999".into()
            }
        }
        2 => u.arbitrary::<i64>()?.to_string(),
        _ => u.arbitrary::<u64>()?.to_string(),
    })
}

/// A JSON value of any kind, a few levels deep.
fn other(u: &mut Unstructured<'_>, depth: u32) -> Built<String> {
    Ok(match u.choose_index(if depth > 2 { 5 } else { 7 })? {
        0 => "null".into(),
        1 => u.arbitrary::<bool>()?.to_string(),
        2 => number(u)?,
        3 => quoted(u.choose(WORDS)?),
        4 => quoted(&u.arbitrary::<String>()?),
        5 => {
            let n = u.int_in_range(0..=3)?;
            let items: Built<Vec<String>> = (0..n).map(|_| other(u, depth + 1)).collect();
            format!("[{}]", items?.join(","))
        }
        _ => {
            let n = u.int_in_range(0..=3)?;
            let mut fields = Vec::new();
            for _ in 0..n {
                let key = quoted(&u.arbitrary::<String>()?);
                fields.push(format!("{key}:{}", other(u, depth + 1)?));
            }
            format!("{{{}}}", fields.join(","))
        }
    })
}

/// Mostly `usual` (in range), sometimes an odd one of the kind, sometimes any value.
fn weighted(
    u: &mut Unstructured<'_>,
    usual: impl FnOnce(&mut Unstructured<'_>) -> Built<String>,
    odd: impl FnOnce(&mut Unstructured<'_>) -> Built<String>,
) -> Built<String> {
    match u.int_in_range(0..=8)? {
        0..=5 => usual(u),
        6 | 7 => odd(u),
        _ => other(u, 0),
    }
}

fn text(u: &mut Unstructured<'_>) -> Built<String> {
    weighted(
        u,
        |u| {
            let n = u.int_in_range(1..=8)?;
            let text: Built<String> = (0..n)
                .map(|_| Ok(char::from(b'a' + u.int_in_range(0..=25)?)))
                .collect();
            Ok(quoted(&text?))
        },
        |u| {
            Ok(if u.arbitrary()? {
                quoted(u.choose(WORDS)?)
            } else {
                quoted(&u.arbitrary::<String>()?)
            })
        },
    )
}

fn array(
    u: &mut Unstructured<'_>,
    item: fn(&mut Unstructured<'_>) -> Built<String>,
) -> Built<String> {
    weighted(
        u,
        |u| {
            let n = u.int_in_range(0..=3)?;
            let items: Built<Vec<String>> = (0..n).map(|_| item(u)).collect();
            Ok(format!("[{}]", items?.join(",")))
        },
        |u| other(u, 0),
    )
}

fn id(u: &mut Unstructured<'_>) -> Built<String> {
    weighted(
        u,
        |_| Ok(quoted("web")),
        |u| Ok(quoted(&u.arbitrary::<String>()?)),
    )
}

fn value(u: &mut Unstructured<'_>, kind: Kind) -> Built<String> {
    match kind {
        Kind::Seconds => weighted(
            u,
            |u| {
                let ms = u.int_in_range(1u32..=86_400_000)?;
                Ok(format!("{}.{:03}", ms / 1000, ms % 1000))
            },
            number,
        ),
        Kind::Count => weighted(
            u,
            |u| Ok(u.int_in_range(0u32..=70_000)?.to_string()),
            number,
        ),
        Kind::Text => text(u),
        Kind::Id => id(u),
        Kind::Bool => weighted(
            u,
            |u| Ok(u.arbitrary::<bool>()?.to_string()),
            |u| other(u, 0),
        ),
        Kind::Word(words) => weighted(u, |u| Ok(quoted(u.choose(words)?)), text),
        Kind::Texts => array(u, text),
        Kind::Ids => array(u, id),
        Kind::Env => weighted(
            u,
            |u| {
                let n = u.int_in_range(0..=2)?;
                let mut fields = Vec::new();
                for _ in 0..n {
                    let name = if u.arbitrary()? {
                        u.choose(&["PORT", "A_B", "", "A=B", "X\0Y"])?.to_string()
                    } else {
                        u.arbitrary::<String>()?
                    };
                    fields.push(format!("{}:{}", quoted(&name), text(u)?));
                }
                Ok(format!("{{{}}}", fields.join(",")))
            },
            |u| other(u, 0),
        ),
        Kind::Conditions => weighted(u, |u| object(u, CONDITIONS), |u| other(u, 0)),
        Kind::Until => match u.choose_index(4)? {
            0 => Ok(quoted("exit")),
            1 => text(u),
            2 => other(u, 0),
            _ => object(u, CONDITIONS),
        },
        Kind::Signal => weighted(
            u,
            |u| {
                Ok(
                    u.choose(&["\"SIGTERM\"", "\"term\"", "\"INT\"", "9", "15"])?
                        .to_string(),
                )
            },
            |u| if u.arbitrary()? { number(u) } else { text(u) },
        ),
        Kind::After => weighted(
            u,
            |u| {
                Ok(if u.arbitrary()? {
                    u.arbitrary::<u32>()?.to_string()
                } else {
                    quoted(&format!(
                        "{}:{}",
                        u.int_in_range(0u8..=4)?,
                        u.arbitrary::<u32>()?
                    ))
                })
            },
            |u| if u.arbitrary()? { number(u) } else { text(u) },
        ),
    }
}

/// An object holding any of `fields`, in an order the bytes choose, and now and then one
/// field too many.
fn object(u: &mut Unstructured<'_>, fields: Fields) -> Built<String> {
    let mut pairs = Vec::new();
    for &(name, kind) in fields {
        if u.arbitrary()? {
            pairs.push((name, value(u, kind)?));
        }
    }
    if u.ratio(1, 30)? {
        pairs.push(("bogus", "1".into()));
    }
    for i in (1..pairs.len()).rev() {
        let j = u.int_in_range(0..=i)?;
        pairs.swap(i, j);
    }
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{v}", quoted(k)))
        .collect();
    Ok(format!("{{{}}}", fields.join(",")))
}

fn payload(u: &mut Unstructured<'_>, fields: Fields, batch: bool) -> Built<String> {
    if batch && u.ratio(1, 4)? {
        let n = u.int_in_range(0..=3)?;
        let items: Built<Vec<String>> = (0..n).map(|_| object(u, fields)).collect();
        return Ok(format!("[{}]", items?.join(",")));
    }
    object(u, fields)
}

/// Parses `text` as its command does, checks each item, and holds every error to naming
/// the path of a field the payload holds.
fn items<T: DeserializeOwned>(text: &str, fields: Fields, check: impl Fn(T) -> Result<()>) {
    let items = match one_or_many::<T>(text.as_bytes(), "{}") {
        Ok(Ok(one)) => vec![one],
        Ok(Err(many)) => many,
        Err(error) => return located(&error, text, fields),
    };
    for item in items {
        if let Err(error) = check(item) {
            located(&error, text, fields);
        }
    }
}

fn located(error: &Error, text: &str, fields: Fields) {
    assert_eq!(error.type_name(), "CommandInputError", "{text}: {error:?}");
    let json = error.to_json();
    let message = json["message"].as_str().unwrap_or_default();
    assert!(!message.contains("not valid JSON"), "{text}: {json}");
    if message == "the batch is empty" {
        assert_eq!(text, "[]");
        return;
    }
    let path = json["details"]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("{text}: {json}"));
    let rest = path.trim_start_matches(|c: char| c == '[' || c == ']' || c.is_ascii_digit());
    let field = rest
        .trim_start_matches('.')
        .split(['.', '['])
        .next()
        .unwrap_or_default();
    assert!(
        fields.iter().any(|(name, _)| *name == field) || field == "bogus",
        "{text}: {json} names {path}"
    );
}

fn seconds(value: Option<f64>, most: f64, what: &str) {
    if let Some(value) = value {
        let duration = Duration::try_from_secs_f64(value)
            .unwrap_or_else(|e| panic!("{what}: {value} accepted: {e}"));
        assert!(duration.as_secs_f64() <= most, "{what}: {value} accepted");
    }
}

fn check_conditions(spec: &ReadySpec, at: &str) -> Result<()> {
    spec.probe(at)?;
    let timeout = spec.timeout(at)?;
    assert!(
        timeout.is_none_or(|t| t.as_secs_f64() <= MAX_SECONDS),
        "{at}: {timeout:?}"
    );
    Ok(())
}

fn check_start(start: StartInput) -> Result<()> {
    start.validate()?;
    seconds(start.grace_s, MAX_SECONDS, "grace_s");
    seconds(start.timeout_s, MAX_TIMEOUT_S, "timeout_s");
    match &start.ready {
        Some(ready) => check_conditions(ready, "ready"),
        None => Ok(()),
    }
}

fn check_stop(stop: StopInput) -> Result<()> {
    let args = StopArgs::from_input(stop, None)?;
    assert!(args.grace.is_none_or(|g| g.as_secs_f64() <= MAX_SECONDS));
    Ok(())
}

fn check_prune(prune: PruneInput) -> Result<()> {
    prune.validate()?;
    let age = prune.older_than_s.unwrap_or_default();
    assert!(age.is_finite() && age >= 0.0, "older_than_s {age} accepted");
    Ok(())
}

fn check_wait(wait: WaitInput) -> Result<()> {
    match &wait.until {
        Until::Ready(spec) => check_conditions(spec, "until"),
        Until::Exit | Until::Word(_) => Ok(()),
    }
}
