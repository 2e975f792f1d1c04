//! What an agent needs from waits and reads (issue 14, items 1-4, 7 and 11; issue 20 item
//! 5): every waiting call has a default bound and answers running out with a cursor; a
//! bounded stream ends with a frame that says why; `logs` has one shape; `wait {until:
//! {log, after}}` matches only newer lines and answers the match; `restart --wait`; `start`
//! answers the cursor of its run's beginning.

use std::fs;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{DEADLINE, Outcome, Sandbox, spawn, wait_until};

/// The debug-build fault that makes the default bound 2 s instead of 100 s.
const SHORT_DEFAULT: &str = "short_default_wait";

/// Runs `args` with `payload` and the default bound shortened to 2 s.
fn call_short(sandbox: &Sandbox, args: &[&str], payload: &Value) -> Outcome {
    let mut command = sandbox.command_with(args, payload);
    command.env("BACKGROUND_TASKS_FAULT", SHORT_DEFAULT);
    spawn(command).finish()
}

/// Checks a `TaskWaitTimedOut`: retryable, the task's status, and a cursor with which
/// `logs {after}` continues from where the log stood (nothing new since).
fn check_timed_out(sandbox: &Sandbox, error: &Value, id: &str, status: &str) {
    assert_eq!(error["type"], "TaskWaitTimedOut", "{error}");
    assert_eq!(error["details"]["retryable"], true, "{error}");
    assert_eq!(error["details"]["status"], status, "{error}");
    let cursor = error["details"]["cursor"].as_str().expect("details.cursor");
    let since = sandbox.ok(&["logs"], &json!({"id": id, "after": cursor}));
    assert_eq!(since["lines"], json!([]), "{error} {since}");
    assert_eq!(since["next_cursor"], cursor, "{error} {since}");
    let whole = sandbox.ok(&["logs"], &json!({"id": id, "lines": 0}));
    assert_eq!(
        whole["next_cursor"], cursor,
        "the cursor is the log's end: {whole}"
    );
}

/// The frames of a `--stream`'s stdout.
fn frames(outcome: &Outcome) -> Vec<Value> {
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    outcome
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a frame"))
        .collect()
}

/// Issue 14 item 1: `wait`, `start --wait`, `restart --wait` and `stop` (whatever its
/// grace_s) are bounded without `--timeout`, answering `TaskWaitTimedOut` with the status
/// and a cursor; `--timeout none` waits for good. The default is in capabilities and help.
#[test]
fn every_waiting_call_is_bounded_by_default_and_none_waits_for_good() {
    let sandbox = Sandbox::new();
    let defaults = sandbox.run(&["capabilities"]).data()["defaults"].clone();
    let default = defaults["wait_timeout_s"].as_f64().expect("wait_timeout_s");
    assert!(
        default > 0.0 && default < 120.0,
        "below the two minutes harnesses give a call: {defaults}"
    );
    for args in [
        &["wait", "--help"][..],
        &["start", "--help"],
        &["restart", "--help"],
        &["stop", "--help"],
    ] {
        let help = sandbox.run(args).stdout;
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            help.contains(&format!("Default {default}")) && help.contains("none"),
            "{args:?} says its default bound and `none`: {help}"
        );
    }

    let server = json!({"id": "web", "shell": "echo up; exec sleep 1000"});
    let outcome = call_short(&sandbox, &["start", "--wait"], &server);
    check_timed_out(&sandbox, &outcome.error(), "web", "running");

    let outcome = call_short(&sandbox, &["wait"], &json!({"id": "web"}));
    check_timed_out(&sandbox, &outcome.error(), "web", "running");

    let outcome = call_short(&sandbox, &["restart", "--wait"], &json!({"id": "web"}));
    check_timed_out(&sandbox, &outcome.error(), "web", "running");
    assert_eq!(sandbox.status("web")["run"], 2);

    // A task that ignores SIGTERM with a grace period far past the bound: stop's default
    // bound applies all the same.
    sandbox.start(&json!({
        "id": "stubborn",
        "shell": "trap '' TERM; echo up; while :; do sleep 1; done",
        "grace_s": 1000,
    }));
    wait_until("stubborn has printed", DEADLINE, || {
        sandbox.log("stubborn") == "up\n"
    });
    let outcome = call_short(&sandbox, &["stop"], &json!({"id": "stubborn"}));
    check_timed_out(&sandbox, &outcome.error(), "stubborn", "running");
    let killed = sandbox.ok(&["stop"], &json!({"id": "stubborn", "signal": "SIGKILL"}));
    assert_eq!(killed["status"], "killed", "{killed}");

    // `none`: past the (shortened) default, until the end.
    sandbox.start(&json!({"id": "slow", "shell": "sleep 3; echo done"}));
    let outcome = call_short(
        &sandbox,
        &["wait", "--timeout", "none"],
        &json!({"id": "slow"}),
    );
    let data = outcome.data();
    assert_eq!(data["status"], "exited", "{data}");
    assert!(outcome.elapsed >= Duration::from_secs(2), "{outcome:#?}");
    sandbox.stop("web");
}

/// Issue 14 item 2: `logs --stream --timeout` and `events --stream --timeout` end with a
/// `stream.end` frame (not a log line) that says why and where to resume; a quiet task no
/// longer gives an empty stream. A follow without `--timeout` ends as before.
#[test]
fn a_bounded_stream_ends_with_a_frame_that_says_why_and_where_to_resume() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "quiet", "shell": "exec sleep 1000"}));
    let quiet = json!({"id": "quiet"});
    let only = frames(&sandbox.call(&["logs", "--stream", "--timeout", "0.3"], &quiet));
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(only[0]["type"], "stream.end");
    assert!(only[0]["data"].get("line").is_none(), "{only:#?}");
    assert_eq!(only[0]["data"]["reason"], "timeout");
    assert_eq!(only[0]["data"]["cursor"], "1:0");

    let events = frames(&sandbox.call(&["events", "--stream", "--timeout", "0.3"], &quiet));
    let end = events.last().expect("frames");
    assert_eq!(end["type"], "stream.end", "{events:#?}");
    assert_eq!(end["data"]["reason"], "timeout");
    let next = end["data"]["next_sequence"]
        .as_u64()
        .expect("next_sequence");
    let page = sandbox.ok(&["events"], &json!({"id": "quiet", "after": next - 1}));
    assert_eq!(page["frames"], json!([]), "resumed after the end: {page}");
    sandbox.stop("quiet");

    sandbox.start(&json!({"id": "done", "shell": "echo a; echo b"}));
    sandbox.wait("done");
    let done = json!({"id": "done"});
    let logs = frames(&sandbox.call(&["logs", "--stream", "--timeout", "30"], &done));
    let kinds: Vec<&str> = logs.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["task.log.line", "task.log.line", "stream.end"],
        "{logs:#?}"
    );
    assert_eq!(logs[2]["data"]["reason"], "ended");
    assert_eq!(logs[2]["data"]["cursor"], "1:4");
    let events = frames(&sandbox.call(&["events", "--stream", "--timeout", "30"], &done));
    let n = events.len();
    assert_eq!(events[n - 2]["type"], "task.ended", "{events:#?}");
    assert_eq!(events[n - 1]["type"], "stream.end", "{events:#?}");
    assert_eq!(events[n - 1]["data"]["reason"], "ended");

    // Without --timeout, nothing changes: the follow ends after the run's end.
    let unbounded = frames(&sandbox.call(&["logs", "--stream"], &done));
    assert_eq!(unbounded.len(), 2, "{unbounded:#?}");
    assert!(unbounded.iter().all(|f| f["type"] == "task.log.line"));
}

/// Issue 14 item 3: `lines` and `next_cursor` stay at the top of `data` whether or not the
/// answer is cut; `summary` and `artifact` come beside them; what was left out is counted by
/// direction; `after` with `lines` pages forward.
#[test]
fn logs_have_one_shape_and_say_what_was_left_out_by_direction() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "suite", "shell": "seq 1 124"}));
    sandbox.wait("suite");
    let size = sandbox.log("suite").len();

    let tail = sandbox.ok(&["logs"], &json!({"id": "suite", "lines": 15}));
    assert_eq!(tail["kind"], "summary+artifact", "{tail}");
    assert!(tail.get("inline").is_none(), "{tail}");
    assert!(
        tail["summary"].is_string() && tail["artifact"].is_object(),
        "{tail}"
    );
    let expected: Vec<String> = (110..=124).map(|n| n.to_string()).collect();
    assert_eq!(tail["lines"], json!(expected), "{tail}");
    assert_eq!(tail["next_cursor"], format!("1:{size}"), "{tail}");
    assert_eq!(
        tail["omitted"],
        json!({"before": 109, "after": 0}),
        "{tail}"
    );
    assert!(tail.get("has_more").is_none(), "{tail}");

    // The way to get a cursor: no lines, and the count of those before it.
    let none = sandbox.ok(&["logs"], &json!({"id": "suite", "lines": 0}));
    assert_eq!(none["lines"], json!([]), "{none}");
    assert_eq!(none["next_cursor"], format!("1:{size}"), "{none}");
    assert_eq!(
        none["omitted"],
        json!({"before": 124, "after": 0}),
        "{none}"
    );

    // Paging forward from the start: what is still to come is `omitted.after`.
    let (mut cursor, mut seen) = ("1:0".to_owned(), Vec::new());
    for left in [74, 24, 0] {
        let page = sandbox.ok(
            &["logs"],
            &json!({"id": "suite", "after": cursor, "lines": 50}),
        );
        assert_eq!(
            page["omitted"],
            json!({"before": 0, "after": left}),
            "{page}"
        );
        assert!(page.get("inline").is_none(), "{page}");
        seen.extend(page["lines"].as_array().expect("lines").iter().cloned());
        cursor = page["next_cursor"]
            .as_str()
            .expect("next_cursor")
            .to_owned();
    }
    let all: Vec<String> = (1..=124).map(|n| n.to_string()).collect();
    assert_eq!(json!(seen), json!(all));
    // With grep, the lines counted are the matching ones: 1, 10-19 and 100-124.
    let grepped = sandbox.ok(
        &["logs"],
        &json!({"id": "suite", "after": "1:0", "lines": 5, "grep": "^1"}),
    );
    assert_eq!(
        grepped["lines"],
        json!(["1", "10", "11", "12", "13"]),
        "{grepped}"
    );
    assert_eq!(
        grepped["omitted"],
        json!({"before": 0, "after": 31}),
        "{grepped}"
    );

    // A whole answer is inline, with nothing beside the lines.
    let whole = sandbox.ok(&["logs"], &json!({"id": "suite", "lines": 200}));
    assert_eq!(whole["kind"], "inline", "{whole}");
    assert!(whole.get("artifact").is_none() && whole.get("summary").is_none());
    assert_eq!(
        whole["omitted"],
        json!({"before": 0, "after": 0}),
        "{whole}"
    );
}

/// Issue 14 item 4: `wait {until: {log, after}}` matches only lines after the cursor, and
/// answers the matched line with its cursor as `data.match`.
#[test]
fn wait_until_a_log_line_after_a_cursor_matches_only_newer_lines() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "dev",
        "shell": "echo 'hmr update 1'; while [ ! -e next ]; do sleep 0.05; done; echo 'hmr update 2'; exec sleep 1000",
    }));
    let first = sandbox.ok(
        &["wait", "--timeout", "30"],
        &json!({"id": "dev", "until": {"log": "hmr update"}}),
    );
    assert_eq!(first["match"]["line"], "hmr update 1", "{first}");
    assert_eq!(first["match"]["cursor"], "1:13", "{first}");

    // The same wait after the match waits for the next such line, not the old one.
    let waiter = spawn(sandbox.command_with(
        &["wait", "--timeout", "30"],
        &json!({"id": "dev", "until": {"log": "hmr update", "after": first["match"]["cursor"]}}),
    ));
    fs::write(sandbox.work().join("next"), "").expect("let the task go on");
    let second = waiter.finish().data();
    assert_eq!(second["match"]["line"], "hmr update 2", "{second}");
    assert_eq!(second["match"]["cursor"], "1:26", "{second}");

    // A wait for the end answers no match; a bad cursor is an error at its path.
    let error = sandbox.fail(
        &["wait", "--timeout", "1"],
        &json!({"id": "dev", "until": {"log": "x", "after": "nope"}}),
    );
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert_eq!(error["details"]["path"], "until.after", "{error}");
    let stopped = sandbox.stop("dev");
    assert!(stopped.get("match").is_none(), "{stopped}");
}

/// Issue 14 item 7: `restart --wait` answers once the new run is ready (its ready
/// conditions), or has ended, as `start --wait` does; for a batch too.
#[test]
fn restart_wait_answers_once_the_new_run_is_ready() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "web",
        "shell": "echo starting; sleep 0.3; echo listening; exec sleep 1000",
        "ready": {"log": "^listening$"},
    }));
    let restarted = sandbox.ok(
        &["restart", "--wait", "--timeout", "30"],
        &json!({"id": "web"}),
    );
    assert_eq!(restarted["task"]["run"], 2, "{restarted}");
    assert_eq!(restarted["task"]["ready"], true, "{restarted}");
    assert_eq!(restarted["status"], "running", "{restarted}");
    // Without --wait, a restart answers at once, not ready yet.
    let at_once = sandbox.ok(&["restart"], &json!({"id": "web"}));
    assert_eq!(at_once["task"]["run"], 3);
    assert_ne!(at_once["task"]["ready"], true, "{at_once}");

    sandbox.start(&json!({"id": "job", "shell": "echo hi"}));
    sandbox.wait("job");
    let batch = sandbox.ok(
        &["restart", "--wait", "--timeout", "30"],
        &json!([{"id": "job"}, {"id": "web"}]),
    );
    assert_eq!(batch["outcome"], "succeeded", "{batch}");
    let results = batch["results"].as_array().expect("results");
    assert_eq!(results[0]["data"]["task"]["status"], "exited", "{batch}");
    assert_eq!(results[0]["data"]["task"]["run"], 2, "{batch}");
    assert_eq!(results[1]["data"]["task"]["ready"], true, "{batch}");
    sandbox.stop("web");
}

/// Issue 20 item 5: `start` answers the cursor of its run's beginning, so that a follow
/// from it misses nothing the task printed before the follow began.
#[test]
fn start_answers_the_cursor_of_its_runs_beginning() {
    let sandbox = Sandbox::new();
    let task = json!({"id": "fast", "shell": "echo first; echo second; exec sleep 1000", "if_running": "reuse"});
    let started = sandbox.ok(&["start"], &task);
    assert_eq!(started["next_cursor"], "1:0", "{started}");
    wait_until("fast has printed", DEADLINE, || {
        sandbox.log("fast") == "first\nsecond\n"
    });
    let followed = frames(&sandbox.call(
        &["logs", "--stream", "--timeout", "0.5"],
        &json!({"id": "fast", "after": started["next_cursor"]}),
    ));
    let lines: Vec<&Value> = followed.iter().map(|f| &f["data"]["line"]).collect();
    assert_eq!(
        lines[..2],
        [&json!("first"), &json!("second")],
        "{followed:#?}"
    );
    assert_eq!(followed[2]["type"], "stream.end");

    sandbox.ok(&["restart"], &json!({"id": "fast"}));
    let reused = sandbox.ok(&["start"], &task);
    assert_eq!(reused["reused"], true, "{reused}");
    assert_eq!(reused["next_cursor"], "2:0", "{reused}");
    sandbox.stop("fast");
}

/// Issue 14 item 11: `start --wait`'s help says it answers when ready; `schema show` offers
/// no name with a space, and takes both forms of a two-word command.
#[test]
fn help_and_schema_show_say_what_they_do_without_spaces_in_names() {
    let sandbox = Sandbox::new();
    let help = sandbox.run(&["start", "--help"]).stdout;
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("Answer once the task is ready"), "{help}");
    let help = sandbox.run(&["schema", "show", "--help"]).stdout;
    let values = help
        .lines()
        .find(|l| l.contains("possible values"))
        .expect("the possible values");
    assert!(values.contains("schema.list"), "{values}");
    assert!(!values.contains("schema list"), "{values}");
    for name in ["schema.list", "schema list"] {
        let shown = sandbox.run(&["schema", "show", name]).data();
        assert_eq!(shown["name"], "schema list", "{shown}");
        assert!(!shown["schemas"].as_array().expect("schemas").is_empty());
    }
}
