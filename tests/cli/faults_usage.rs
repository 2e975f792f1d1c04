//! Issue 12, class 14: what broke in use on real projects. A corrected `ready` given with
//! `if_running: "reuse"` is the condition waited for; an item that cannot start while
//! queued by `--concurrency` answers as it does unqueued; the supervisor's command line
//! names its task.

use std::fs;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Sandbox, spawn};

/// A `start --wait` whose `ready` regex was wrong fails with `TaskNotReady`; the same start
/// again with the regex fixed and `if_running: "reuse"` waits for the new condition, which
/// the log already meets, and `status` says ready from then on. It waited out the old
/// timeout, failed again, and `status` said `ready: false` for good.
#[test]
fn reuse_with_a_corrected_ready_waits_for_the_new_condition() {
    let sandbox = Sandbox::new();
    let task = |ready: Value| {
        json!({
            "id": "web",
            "shell": "echo 'listening on 8080'; exec sleep 1000",
            "if_running": "reuse",
            "ready": ready,
        })
    };
    let first = sandbox.call(
        &["start", "--wait", "--timeout", "30"],
        &task(json!({"log": "^serving on", "timeout_s": 1})),
    );
    assert_eq!(first.error()["type"], "TaskNotReady", "{first:#?}");
    assert_eq!(sandbox.status("web")["status"], "running");

    let second = spawn(sandbox.command_with(
        &["start", "--wait", "--timeout", "30"],
        &task(json!({"log": "^listening on", "timeout_s": 10})),
    ))
    .finish_within(Duration::from_secs(60));
    // contract: "a different `ready` is not a difference: the new condition is what this
    // call waits for" (DESIGN §4); issue 12.14
    let data = second.data();
    assert_eq!(data["reused"], true, "{data}");
    assert_eq!(data["task"]["ready"], true, "{data}");
    assert!(
        second.elapsed < Duration::from_secs(8),
        "the log already held the line, yet reuse took {:?}",
        second.elapsed
    );
    // contract: "`status` shows `ready:false` for good" must not happen (issue 12.14)
    assert_eq!(sandbox.status("web")["ready"], true);
    sandbox.stop("web");
}

/// The parts of a batch answer that must not depend on `--concurrency`: the exit code, the
/// outcome, the counts, and per item whether it succeeded and with which error type.
fn batch_shape(outcome: &crate::support::Outcome) -> Value {
    let envelope = outcome.stdout_envelope();
    let data = &envelope["data"];
    let items: Vec<Value> = data["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| json!({"ok": r["ok"], "error": r["error"]["type"]}))
        .collect();
    json!({
        "exit": outcome.code,
        "outcome": data["outcome"],
        "success_count": data["success_count"],
        "error_count": data["error_count"],
        "items": items,
    })
}

/// A batch whose last item cannot start (its command does not exist): with `--concurrency
/// 2 --wait` the item waits for a slot, then fails to start; it must answer as it does
/// without `--concurrency` (`SpawnFailed`, `partial_failure`, exit 1). Queued, it came back
/// `ok: true` with `status: "failed"`, `error_count: 0` and exit 0.
#[test]
fn an_item_that_cannot_start_while_queued_answers_as_it_does_unqueued() {
    let sandbox = Sandbox::new();
    let batch = |prefix: &str| {
        json!([
            {"id": format!("{prefix}-a"), "shell": "sleep 0.3"},
            {"id": format!("{prefix}-b"), "shell": "sleep 0.3"},
            {"id": format!("{prefix}-c"), "command": "no-such-command-for-background-tasks"},
        ])
    };
    let unqueued = sandbox.call(&["start", "--wait", "--timeout", "30"], &batch("plain"));
    let queued = sandbox.call(
        &["start", "--concurrency", "2", "--wait", "--timeout", "30"],
        &batch("queued"),
    );
    let expected = batch_shape(&unqueued);
    assert_eq!(expected["items"][2]["error"], "SpawnFailed", "{expected}");
    assert_eq!(expected["exit"], 1, "{expected}");
    // contract: "The same item must get the same answer either way" (issue 12.14)
    assert_eq!(
        batch_shape(&queued),
        expected,
        "queued: {}\nunqueued: {}",
        queued.stdout,
        unqueued.stdout
    );
}

/// The supervisor's command line names the task it runs, as DESIGN §6 gives it
/// (`background-tasks __supervise <id>`), so `ps` and `pgrep` tell supervisors apart.
#[test]
fn the_supervisors_command_line_names_its_task() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "named-task-42", "command": "sleep", "args": ["1000"]}));
    let supervisor = sandbox.supervisor("named-task-42");
    let cmdline = fs::read(format!("/proc/{}/cmdline", supervisor.pid)).expect("the cmdline");
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        supervisor.is_alive(),
        "the cmdline read is the supervisor's"
    );
    // contract: "The supervisor's command line names its task (`background-tasks
    // __supervise <id>`)" (DESIGN §6); issue 12.14
    assert!(
        args.iter().any(|a| a == "named-task-42"),
        "the supervisor's command line {args:?} does not name its task"
    );
    assert!(args.iter().any(|a| a == "__supervise"), "{args:?}");
    sandbox.stop("named-task-42");
}
