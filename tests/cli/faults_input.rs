//! RELIABILITY 26 and 34, and the payload errors of issue 12's class 14: no input makes a
//! panic (every duration anywhere in a payload is bounded like the top-level ones, and the
//! last word is always one JSON envelope), env values never appear in an answer, errors
//! included, and a wrong-typed enum field names its path like every other field.

use serde_json::{Value, json};

use crate::support::{Outcome, Sandbox};

/// Values no duration may take: far beyond the longest timeout (30 days), beyond what a
/// `Duration` or an `Instant` holds, negative, and the largest finite `f64`.
const OUT_OF_RANGE: [f64; 5] = [1e10, 1e19, 1e300, f64::MAX, -1.0];

/// Checks that `outcome` refused the payload as a `CommandInputError` naming `path`.
fn assert_refused_at(outcome: &Outcome, path: &str) {
    // contract: "If a panic still happens, the last word is a JSON envelope ..., not a Rust
    // backtrace" (RELIABILITY 26): one envelope, exit 0 or 1, whatever happens.
    let envelope = outcome.envelope();
    // contract: "every duration anywhere in a payload (`ready.timeout_s`, `until.timeout_s`,
    // …) has the same bounds as the top-level ones" (RELIABILITY 26); out-of-range numbers
    // are errors with the JSON path of the bad value (DESIGN §1).
    assert_eq!(
        envelope["error"]["type"], "CommandInputError",
        "{outcome:#?}"
    );
    assert_eq!(envelope["error"]["details"]["path"], path, "{outcome:#?}");
}

/// Whether `outcome` is one envelope with exit 0 or 1 (what [`Outcome::envelope`] checks),
/// for sweeps that list every wrong case before failing.
fn is_envelope(outcome: &Outcome) -> bool {
    let one_line = |text: &str| {
        text.ends_with('\n')
            && text.matches('\n').count() == 1
            && serde_json::from_str::<Value>(text).is_ok()
    };
    match outcome.code {
        Some(0) => one_line(&outcome.stdout) && outcome.stderr.is_empty(),
        Some(1) => {
            one_line(&outcome.stderr) || (outcome.stderr.is_empty() && one_line(&outcome.stdout))
        }
        _ => false,
    }
}

/// The exit code and the start of stderr: enough to say what went wrong in a list.
fn short(outcome: &Outcome) -> String {
    let stderr: String = outcome.stderr.chars().take(160).collect();
    format!("no envelope: exit {:?}, stderr {stderr:?}", outcome.code)
}

/// `ready.timeout_s` beyond every bound, with and without `--wait` and in a batch: an input
/// error naming it. It used to be accepted: `start --wait` panicked adding it to an
/// `Instant`, and the supervisor of a plain `start` panicked, leaving the task `lost`.
#[test]
fn a_huge_ready_timeout_is_an_input_error_not_a_panic() {
    let sandbox = Sandbox::new();
    for value in OUT_OF_RANGE {
        let payload = json!({
            "id": "ready",
            "command": "sleep",
            "args": ["1000"],
            "ready": {"log": "never", "timeout_s": value},
        });
        for args in [&["start"][..], &["start", "--wait", "--timeout", "2"][..]] {
            let outcome = sandbox.call(args, &payload);
            assert_refused_at(&outcome, "ready.timeout_s");
        }
        let outcome = sandbox.call(&["start"], &json!([payload]));
        let envelope = outcome.envelope();
        // contract: "Bound every duration in every payload" (issue 12.2); a batch answers
        // one result per item (DESIGN §2).
        assert_eq!(
            envelope["data"]["results"][0]["error"]["type"], "CommandInputError",
            "{value}: {outcome:#?}"
        );
    }
    // Nothing was started by any of them, so nothing can have been left `lost`.
    let listed = sandbox.ok(&["list"], &json!({}));
    assert_eq!(listed["total"], 0, "{listed}");
}

/// `wait {until:{timeout_s}}` beyond every bound: an input error naming it (it panicked
/// adding the timeout to an `Instant`).
#[test]
fn a_huge_until_timeout_is_an_input_error_not_a_panic() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "long", "command": "sleep", "args": ["1000"]}));
    for value in OUT_OF_RANGE {
        for until in [
            json!({"log": "never", "timeout_s": value}),
            json!({"port": 1, "timeout_s": value}),
        ] {
            let outcome = sandbox.call(
                &["wait", "--timeout", "2"],
                &json!({"id": "long", "until": until}),
            );
            assert_refused_at(&outcome, "until.timeout_s");
        }
    }
    assert_eq!(sandbox.status("long")["status"], "running");
    sandbox.stop("long");
}

/// Every number field of every payload, at every extreme (huge, negative, the largest
/// float, the smallest, and a literal no float holds): one envelope each, never a panic,
/// an abort or a Rust message. Durations anywhere are refused out of range.
#[test]
fn no_number_anywhere_in_a_payload_makes_a_panic() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "long", "command": "sleep", "args": ["1000"]}));
    sandbox.start(&json!({"id": "done", "command": "true"}));
    sandbox.wait("done");
    // (command and flags, payload with N where the number goes)
    let payloads: [(&[&str], &str); 16] = [
        (&["start"], r#"{"command":"true","timeout_s":N}"#),
        (&["start"], r#"{"command":"true","grace_s":N}"#),
        (
            &["start"],
            r#"{"command":"true","ready":{"log":"x","timeout_s":N}}"#,
        ),
        (
            &["start", "--wait", "--timeout", "2"],
            r#"{"command":"true","ready":{"port":1,"timeout_s":N}}"#,
        ),
        (&["start"], r#"{"command":"true","ready":{"port":N}}"#),
        (&["start"], r#"{"command":"true","stop_with_pid":N}"#),
        (
            &["wait", "--timeout", "2"],
            r#"{"id":"long","until":{"log":"x","timeout_s":N}}"#,
        ),
        (
            &["wait", "--timeout", "2"],
            r#"{"id":"long","until":{"http":"http://127.0.0.1:1/","timeout_s":N}}"#,
        ),
        (&["stop"], r#"{"id":"done","grace_s":N}"#),
        (&["stop"], r#"[{"id":"done","grace_s":N}]"#),
        (&["prune"], r#"{"older_than_s":N}"#),
        (&["prune"], r#"{"keep_last":N}"#),
        (&["logs"], r#"{"id":"done","lines":N}"#),
        (&["events"], r#"{"id":"done","lines":N}"#),
        (&["events"], r#"{"id":"done","after":N}"#),
        (&["list"], r#"{"exit_code":N}"#),
    ];
    let numbers = [
        "1e19",
        "-1e19",
        "1e300",
        "1.7976931348623157e308",
        "-1",
        "5e-324",
        "18446744073709551616",
        "1e309",
    ];
    let mut wrong = Vec::new();
    for (args, template) in payloads {
        for number in numbers {
            let payload = template.replace('N', number);
            let mut command = sandbox.command(args);
            command.arg(&payload);
            let outcome = crate::support::spawn(command).finish();
            // contract: "No panic from any input" (RELIABILITY 26): one envelope, exit 0 or 1.
            if !is_envelope(&outcome) {
                wrong.push(format!("{args:?} {payload}: {}", short(&outcome)));
                continue;
            }
            let huge_duration = template.contains("timeout_s") || template.contains("grace_s");
            // A batch refuses an item in its result, on stdout.
            let refused = [&outcome.stderr, &outcome.stdout].iter().any(|text| {
                serde_json::from_str::<Value>(text).is_ok_and(|e| {
                    e["error"]["type"] == "CommandInputError"
                        || e["data"]["results"][0]["error"]["type"] == "CommandInputError"
                })
            });
            if huge_duration
                && matches!(number, "1e19" | "1e300" | "1.7976931348623157e308")
                && !refused
            {
                // contract: "every duration anywhere in a payload ... has the same bounds as
                // the top-level ones" (RELIABILITY 26)
                wrong.push(format!(
                    "{args:?} {payload}: accepted a duration of {number} s"
                ));
            }
        }
    }
    for timeout in [
        "1e19",
        "1e300",
        "18446744073709551616",
        "99999999999",
        "1e-300",
    ] {
        let outcome = sandbox.call(&["wait", "--timeout", timeout], &json!({"id": "done"}));
        if !is_envelope(&outcome) {
            wrong.push(format!(
                "wait --timeout {timeout}: no envelope: {outcome:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} payload(s) went wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(sandbox.status("long")["status"], "running");
    sandbox.stop("long");
}

/// Secrets given as env values in every wrong shape: as a number, a float, a string of
/// `NAME=value`, a list, an object, inside a variable name after `=` or a NUL, beside an
/// unrelated error, in a batch, in `restart`, and in a payload cut short. None of them may
/// appear anywhere in what the binary prints.
#[test]
fn env_values_never_appear_in_an_answer_errors_included() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "done", "command": "true"}));
    sandbox.wait("done");
    let cases: Vec<(&[&str], String, &str)> = vec![
        (
            &["start"],
            r#"{"command":"true","env":{"PIN":987654}}"#.into(),
            "987654",
        ),
        (
            &["start"],
            r#"{"command":"true","env":{"PIN":4711.0815}}"#.into(),
            "4711.0815",
        ),
        (
            &["start"],
            r#"{"command":"true","env":{"PIN":-918273}}"#.into(),
            "918273",
        ),
        (
            &["start"],
            r#"{"command":"true","env":"API_TOKEN=sk-secret-string"}"#.into(),
            "sk-secret-string",
        ),
        (
            &["start"],
            r#"{"command":"true","env":["API_TOKEN=sk-secret-list"]}"#.into(),
            "sk-secret-list",
        ),
        (
            &["start"],
            r#"{"command":"true","env":{"TOKEN=sk-secret-in-name":"v"}}"#.into(),
            "sk-secret-in-name",
        ),
        (
            &["start"],
            r#"{"command":"true","env":{"TOKEN\u0000sk-secret-after-nul":"v"}}"#.into(),
            "sk-secret-after-nul",
        ),
        (
            &["start"],
            r#"{"command":"true","env":{"TOKEN":{"value":"sk-secret-object"}}}"#.into(),
            "sk-secret-object",
        ),
        (
            &["start"],
            r#"{"command":"true","env":{"TOKEN":["sk-secret-array"]}}"#.into(),
            "sk-secret-array",
        ),
        (
            &["start"],
            r#"{"command":"true","env":{"OK":"sk-secret-beside","BAD":1}}"#.into(),
            "sk-secret-beside",
        ),
        (
            &["start"],
            r#"{"command":"true","env":{"OK":"sk-secret-unknown-field"},"bogus":1}"#.into(),
            "sk-secret-unknown-field",
        ),
        (
            &["start"],
            r#"{"command":"true","env":{"OK":"sk-secret-other-error"},"timeout_s":-1}"#.into(),
            "sk-secret-other-error",
        ),
        (
            &["start"],
            r#"{"command":"true","env":{"OK":"sk-secret-cut-short"#.into(),
            "sk-secret-cut-short",
        ),
        (
            &["start"],
            r#"[{"command":"true","env":{"PIN":135792468}}]"#.into(),
            "135792468",
        ),
        (
            &["restart"],
            r#"{"id":"done","env":{"PIN":246813579}}"#.into(),
            "246813579",
        ),
        (
            &["restart"],
            r#"{"id":"done","env":"API_TOKEN=sk-secret-restart"}"#.into(),
            "sk-secret-restart",
        ),
    ];
    let mut echoed = Vec::new();
    for (args, payload, secret) in cases {
        let mut command = sandbox.command(args);
        command.arg(&payload);
        let outcome = crate::support::spawn(command).finish();
        let envelope = outcome.envelope();
        // contract: "Env values never appear in any answer, errors included" (RELIABILITY 34)
        if outcome.stdout.contains(secret) || outcome.stderr.contains(secret) {
            echoed.push(format!(
                "{args:?} {payload}: {}{}",
                outcome.stdout, outcome.stderr
            ));
        }
        let error = if envelope["ok"] == false {
            &envelope["error"]
        } else {
            &envelope["data"]["results"][0]["error"]
        };
        if error["details"]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("env") || p.starts_with("[0].env"))
        {
            continue;
        }
        // contract: "a wrong-typed or malformed `env` entry is reported by its name and
        // path and the expected type" (RELIABILITY 34): where the error is env's, its path
        // says so. (A payload cut short, or another field's error, may name no env path.)
        assert!(
            [
                "sk-secret-cut-short",
                "sk-secret-unknown-field",
                "sk-secret-other-error"
            ]
            .contains(&secret),
            "{args:?} {payload}: the error names no env path: {outcome:#?}"
        );
    }
    assert!(
        echoed.is_empty(),
        "{} payload(s) echoed an env value:\n{}",
        echoed.len(),
        echoed.join("\n")
    );
}

/// An enum field of the wrong JSON type is reported like any other wrong type: with the
/// path of the bad value, not as "the payload is not valid JSON".
#[test]
fn wrong_typed_enum_fields_name_their_path() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "x", "command": "true"}));
    sandbox.wait("x");
    let cases: [(&str, Value, &str); 6] = [
        ("list", json!({"status": 5}), "status"),
        (
            "start",
            json!({"command": "true", "if_running": true}),
            "if_running",
        ),
        ("wait", json!({"ids": ["x"], "mode": 1}), "mode"),
        ("wait", json!({"id": "x", "mode": {"any": true}}), "mode"),
        ("prune", json!({"status": ["exited"]}), "status"),
        ("list", json!({"status": {"is": "running"}}), "status"),
    ];
    for (command, payload, path) in cases {
        let error = sandbox.fail(&[command], &payload);
        assert_eq!(
            error["type"], "CommandInputError",
            "{command} {payload}: {error}"
        );
        // contract: "A wrong-typed enum field ... says 'the payload is not valid JSON' ...
        // with no `details.path`; other fields name the path" (issue 12.14); wrong types
        // are errors with the JSON path of the bad value (DESIGN §1).
        assert_eq!(
            error["details"]["path"], path,
            "{command} {payload}: {error}"
        );
        assert!(
            !error["message"]
                .as_str()
                .unwrap_or_default()
                .contains("not valid JSON"),
            "{command} {payload}: valid JSON of the wrong type is not invalid JSON: {error}"
        );
    }
}
