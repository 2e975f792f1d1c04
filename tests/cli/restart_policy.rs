//! `restart_policy` and `rate_limit` on `start` (issue 17 items 3 and 4), through the binary:
//! a crash loop that gives up with `restart_limit` after exactly `max_restarts` restarts
//! with growing delays, `on: "failure"` and exit 0, a stable run starting the delay over, a
//! manual restart starting the count over, stop, rm, restart and signals during a pending
//! restart, the delay's floor, and a throttled start that says when to retry.
//!
//! Delays are read from the journal's `task.restarting` entries, never measured by a clock.

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Sandbox, spawn, supervisors_of, wait_for_no_supervisor, wait_until,
};

/// The journal's entries of `type`, in order, across every run.
fn journal(sandbox: &Sandbox, id: &str, kind: &str) -> Vec<Value> {
    let text = fs::read_to_string(sandbox.task_dir(id).join("events.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["type"] == kind)
        .collect()
}

/// The `delay_ms` of each `task.restarting` entry, in order.
fn delays(sandbox: &Sandbox, id: &str) -> Vec<u64> {
    journal(sandbox, id, "task.restarting")
        .iter()
        .map(|entry| entry["data"]["delay_ms"].as_u64().expect("delay_ms"))
        .collect()
}

/// A policy with short delays: from `initial_s`, doubling.
fn policy(on: &str, max_restarts: u64, min_uptime_s: f64, initial_s: f64) -> Value {
    json!({
        "on": on,
        "max_restarts": max_restarts,
        "min_uptime_s": min_uptime_s,
        "backoff": {"initial_s": initial_s, "factor": 2, "max_s": 60}
    })
}

/// Waits until the task is between two runs: `running`, no pid, a restart pending.
fn until_pending(sandbox: &Sandbox, id: &str) -> Value {
    let mut task = Value::Null;
    wait_until("a restart is pending", DEADLINE, || {
        task = sandbox.status(id);
        task["next_restart_at_ms"].is_i64()
    });
    task
}

#[test]
fn a_crash_loop_ends_restart_limit_after_exactly_max_restarts_with_growing_delays() {
    let sandbox = Sandbox::new();
    // start --wait on a crash loop answers once, at the final end: not at the first crash.
    let task = sandbox.ok(
        &["start", "--wait"],
        &json!({
            "id": "loop",
            "shell": "echo crashing; exit 3",
            "restart_policy": policy("failure", 2, 30.0, 0.1),
        }),
    )["task"]
        .clone();
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["reason"], "restart_limit", "{task}");
    assert_eq!(
        task["exit_code"], 3,
        "the last run's exit code is kept: {task}"
    );
    assert_eq!(
        task["run"], 3,
        "max_restarts 2 means at most 3 runs: {task}"
    );
    assert_eq!(task["restarts"], 2, "{task}");
    assert_eq!(task["next_restart_at"], Value::Null, "{task}");
    assert_eq!(task["restart_policy"]["on"], "failure", "{task}");
    assert_eq!(task["restart_policy"]["backoff"]["factor"], 2.0, "{task}");

    let delays = delays(&sandbox, "loop");
    assert_eq!(delays.len(), 2, "exactly max_restarts restarts: {delays:?}");
    assert!(delays[1] > delays[0], "the delay grows: {delays:?}");
    let restarting = journal(&sandbox, "loop", "task.restarting");
    for (i, entry) in restarting.iter().enumerate() {
        let data = &entry["data"];
        assert_eq!(data["run"], i + 2, "{entry}");
        assert_eq!(data["reason"], "failed", "{entry}");
        assert_eq!(data["exit_code"], 3, "{entry}");
        assert_eq!(data["restarts"], i + 1, "{entry}");
        assert_eq!(data["unstable_runs"], i + 1, "{entry}");
    }
    // Each run ended in the journal; only the last one ended the task.
    let ended: Vec<(u64, String)> = journal(&sandbox, "loop", "task.ended")
        .iter()
        .map(|e| {
            (
                e["run"].as_u64().expect("run"),
                e["data"]["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ended,
        [
            (1, "exit".to_owned()),
            (2, "exit".to_owned()),
            (3, "restart_limit".to_owned())
        ]
    );
    // Each automatic restart is a new run: its own log, cursors and sequences.
    let logs = sandbox.ok(&["logs"], &json!({"id": "loop"}));
    assert_eq!(logs["run"], 3, "{logs}");
    let events = sandbox.ok(&["events"], &json!({"id": "loop"}));
    let first = &events["frames"][0];
    assert_eq!(first["type"], "task.restarting", "{events}");
    assert_eq!(first["sequence"], (2u64 << 32) | 1, "{events}");
    assert!(sandbox.task_dir("loop").join("output.2.log").exists());
    wait_for_no_supervisor(&sandbox);
}

#[test]
fn on_failure_never_restarts_after_exit_0_and_always_does() {
    let sandbox = Sandbox::new();
    let task = sandbox.ok(
        &["start", "--wait"],
        &json!({"id": "ok", "shell": "exit 0", "restart_policy": policy("failure", 3, 0.0, 0.1)}),
    )["task"]
        .clone();
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 0, "{task}");
    assert_eq!(task["run"], 1, "{task}");
    assert_eq!(task["restarts"], 0, "{task}");
    assert!(delays(&sandbox, "ok").is_empty());

    let task = sandbox.ok(
        &["start", "--wait"],
        &json!({"id": "again", "shell": "exit 0", "restart_policy": policy("always", 1, 30.0, 0.1)}),
    )["task"]
        .clone();
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["reason"], "restart_limit", "{task}");
    assert_eq!(task["exit_code"], 0, "{task}");
    assert_eq!(task["run"], 2, "{task}");
    let restarting = journal(&sandbox, "again", "task.restarting");
    assert_eq!(restarting.len(), 1);
    assert_eq!(restarting[0]["data"]["reason"], "exited");
}

#[test]
fn stop_during_a_backoff_answers_at_once_and_leaves_nothing() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "wait",
        "shell": "exit 1",
        // A 60 s delay: a stop that waited for it would run past the bound below.
        "restart_policy": policy("failure", 5, 30.0, 60.0),
    }));
    let pending = until_pending(&sandbox, "wait");
    assert_eq!(pending["status"], "running", "{pending}");
    assert_eq!(pending["pid"], Value::Null, "{pending}");
    assert_eq!(pending["run"], 2, "{pending}");
    assert_eq!(pending["restarts"], 1, "{pending}");
    assert!(pending["next_restart_at"].is_string(), "{pending}");
    let began = Instant::now();
    let stopped = sandbox.stop("wait");
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "stop waited for the backoff"
    );
    let task = &stopped["task"];
    assert_eq!(task["status"], "killed", "{stopped}");
    assert_eq!(task["reason"], "stop", "{stopped}");
    assert_eq!(task["run"], 2, "{stopped}");
    assert_eq!(task["next_restart_at"], Value::Null, "{stopped}");
    wait_for_no_supervisor(&sandbox);
    assert_eq!(sandbox.status("wait")["status"], "killed");
}

#[test]
fn a_stable_run_starts_the_delay_over() {
    let sandbox = Sandbox::new();
    // Run 3 lasts longer than min_uptime_s; every other run fails at once.
    let script = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; \
                  if [ $n -eq 3 ]; then sleep 1.5; fi; exit 1";
    let task = sandbox.ok(
        &["start", "--wait"],
        &json!({"id": "stable", "shell": script, "restart_policy": policy("failure", 2, 1.0, 0.1)}),
    )["task"]
        .clone();
    assert_eq!(task["reason"], "restart_limit", "{task}");
    // Runs 1, 2 short (counts 1, 2), 3 stable (count 0), 4, 5 short (1, 2), 6 short: gives up.
    assert_eq!(task["run"], 6, "{task}");
    let restarting = journal(&sandbox, "stable", "task.restarting");
    let unstable: Vec<u64> = restarting
        .iter()
        .map(|e| e["data"]["unstable_runs"].as_u64().expect("unstable_runs"))
        .collect();
    assert_eq!(unstable, [1, 2, 0, 1, 2]);
    let delays = delays(&sandbox, "stable");
    assert!(delays[1] > delays[0], "{delays:?}");
    assert_eq!(
        delays[2], delays[0],
        "a stable run starts the delay over: {delays:?}"
    );
    assert!(delays[4] > delays[3], "{delays:?}");
}

#[test]
fn a_manual_restart_starts_the_count_over() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "count",
        "shell": "exit 1",
        "restart_policy": policy("failure", 5, 30.0, 60.0),
    }));
    let pending = until_pending(&sandbox, "count");
    assert_eq!(pending["restarts"], 1, "{pending}");
    let restarted = sandbox.ok(&["restart"], &json!({"id": "count"}))["task"].clone();
    assert_eq!(restarted["restarts"], 0, "{restarted}");
    assert_eq!(restarted["run"], 3, "{restarted}");
    assert_eq!(
        restarted["restart_policy"]["on"], "failure",
        "the policy stays: {restarted}"
    );
    let pending = until_pending(&sandbox, "count");
    assert_eq!(pending["run"], 4, "{pending}");
    assert_eq!(pending["restarts"], 1, "the count began again: {pending}");
    let restarting = journal(&sandbox, "count", "task.restarting");
    assert_eq!(
        restarting.last().expect("an entry")["data"]["unstable_runs"],
        1
    );
    sandbox.stop("count");
    wait_for_no_supervisor(&sandbox);
}

#[test]
fn a_readiness_timeout_counts_as_a_failure() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "unready",
        "command": "sleep",
        "args": ["30"],
        "grace_s": 1,
        "ready": {"log": "never printed", "timeout_s": 0.3},
        "restart_policy": policy("failure", 1, 30.0, 0.1),
    }));
    let task = sandbox.wait("unready");
    assert_eq!(task["reason"], "restart_limit", "{task}");
    assert_eq!(task["run"], 2, "{task}");
    let restarting = journal(&sandbox, "unready", "task.restarting");
    assert_eq!(restarting.len(), 1);
    assert_eq!(restarting[0]["data"]["reason"], "ready_timeout");
    wait_for_no_supervisor(&sandbox);
}

#[test]
fn without_a_policy_a_readiness_timeout_leaves_the_task_running() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "slow",
        "command": "sleep",
        "args": ["30"],
        "ready": {"log": "never printed", "timeout_s": 0.2},
    }));
    let error = sandbox.fail(
        &["wait"],
        &json!({"id": "slow", "until": {"log": "never printed", "timeout_s": 0.5}}),
    );
    // Half a second later than the ready condition's own timeout, the task runs on.
    assert_eq!(error["type"], "TaskWaitTimedOut", "{error}");
    let task = sandbox.status("slow");
    assert_eq!(task["status"], "running", "{task}");
    assert_eq!(task["run"], 1, "{task}");
    assert_eq!(task["restart_policy"], Value::Null, "{task}");
    sandbox.stop("slow");
}

#[test]
fn sigkill_of_the_supervisor_during_a_backoff_leaves_the_task_lost() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "k",
        "shell": "exit 1",
        "restart_policy": policy("failure", 5, 30.0, 60.0),
    }));
    until_pending(&sandbox, "k");
    sandbox.supervisor("k").signal(Signal::SIGKILL);
    wait_until("the task is lost", DEADLINE, || {
        sandbox.status("k")["status"] == "lost"
    });
    let task = sandbox.status("k");
    assert_eq!(task["reason"], "supervisor_lost", "{task}");
    assert_eq!(task["run"], 2, "{task}");
    assert!(supervisors_of(&sandbox).is_empty());
}

#[test]
fn sigterm_of_the_supervisor_during_a_backoff_is_recorded_and_not_restarted() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "t",
        "shell": "exit 1",
        "restart_policy": policy("failure", 5, 30.0, 60.0),
    }));
    until_pending(&sandbox, "t");
    sandbox.supervisor("t").signal(Signal::SIGTERM);
    let task = sandbox.wait("t");
    assert_eq!(task["status"], "killed", "{task}");
    assert_eq!(task["reason"], "supervisor_signal", "{task}");
    assert_eq!(task["run"], 2, "{task}");
    wait_for_no_supervisor(&sandbox);
}

#[test]
fn rm_of_a_task_in_backoff_needs_force_and_then_leaves_nothing() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "r",
        "shell": "exit 1",
        "restart_policy": policy("failure", 5, 30.0, 60.0),
    }));
    until_pending(&sandbox, "r");
    let error = sandbox.fail(&["rm"], &json!({"id": "r"}));
    assert_eq!(error["type"], "TaskAlreadyRunning", "{error}");
    sandbox.ok(&["rm"], &json!({"id": "r", "force": true}));
    assert!(!sandbox.task_dir("r").exists());
    wait_for_no_supervisor(&sandbox);
}

#[test]
fn two_restarts_during_a_backoff_leave_one_run() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "two",
        "command": "sh",
        "args": ["-c", "if [ -e stay ]; then exec sleep 30; fi; exit 1"],
        "restart_policy": policy("failure", 5, 30.0, 60.0),
    }));
    until_pending(&sandbox, "two");
    fs::write(sandbox.work().join("stay"), "").expect("write stay");
    let first = spawn(sandbox.command_with(&["restart"], &json!({"id": "two"})));
    let second = spawn(sandbox.command_with(&["restart"], &json!({"id": "two"})));
    let answers = [first.finish().envelope(), second.finish().envelope()];
    let ok = answers.iter().filter(|a| a["ok"] == true).count();
    assert!(ok >= 1, "{answers:?}");
    for answer in answers.iter().filter(|a| a["ok"] == false) {
        assert_eq!(answer["error"]["type"], "TaskAlreadyRunning", "{answer}");
    }
    let task = sandbox.status("two");
    assert_eq!(task["status"], "running", "{task}");
    assert!(task["pid"].is_i64(), "{task}");
    assert_eq!(supervisors_of(&sandbox).len(), 1, "one supervisor is left");
    sandbox.stop("two");
    wait_for_no_supervisor(&sandbox);
}

#[test]
fn an_instant_exit_forever_is_paced_by_the_delays_floor() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "spin",
        "shell": "exit 0",
        "restart_policy": {"on": "always", "min_uptime_s": 0, "backoff": {"initial_s": 0}},
    }));
    wait_until("three restarts", DEADLINE, || {
        delays(&sandbox, "spin").len() >= 3
    });
    let delays = delays(&sandbox, "spin");
    assert!(
        delays.iter().all(|&d| d >= 100),
        "the floor holds: {delays:?}"
    );
    let stopped = sandbox.stop("spin");
    assert_eq!(stopped["task"]["reason"], "stop", "{stopped}");
    wait_for_no_supervisor(&sandbox);
}

#[test]
fn bad_policies_and_limits_are_input_errors_with_a_path() {
    let sandbox = Sandbox::new();
    for (field, value, path) in [
        (
            "restart_policy",
            json!({"on": "failure", "max_restarts": -1}),
            "restart_policy.max_restarts",
        ),
        (
            "restart_policy",
            json!({"on": "failure", "max_restarts": 1e15}),
            "restart_policy.max_restarts",
        ),
        (
            "restart_policy",
            json!({"on": "failure", "max_restarts": 100_000}),
            "restart_policy.max_restarts",
        ),
        (
            "restart_policy",
            json!({"on": "sometimes"}),
            "restart_policy.on",
        ),
        (
            "restart_policy",
            json!({"on": "always", "backoff": {"factor": 0}}),
            "restart_policy.backoff.factor",
        ),
        (
            "restart_policy",
            json!({"on": "always", "backoff": {"initial_s": 1e12}}),
            "restart_policy.backoff.initial_s",
        ),
        (
            "restart_policy",
            json!({"on": "always", "backoff": {"delay": 1}}),
            "restart_policy.backoff",
        ),
        (
            "rate_limit",
            json!({"max": 0, "per_s": 1}),
            "rate_limit.max",
        ),
        (
            "rate_limit",
            json!({"max": 1, "per_s": -1}),
            "rate_limit.per_s",
        ),
    ] {
        let mut payload = json!({"id": "bad", "shell": "exit 0"});
        payload[field] = value.clone();
        let error = sandbox.fail(&["start"], &payload);
        assert_eq!(error["type"], "CommandInputError", "{value}: {error}");
        let at = error["details"]["path"].as_str().unwrap_or("");
        assert!(at.starts_with(path), "{value}: {at} {error}");
        assert!(error["details"]["hint"].is_string(), "{error}");
    }
    assert!(!sandbox.task_dir("bad").join("task.json").exists());
}

#[test]
fn a_throttled_start_answers_start_throttled_with_retry_after_s() {
    let sandbox = Sandbox::new();
    let payload = json!({"id": "burst", "shell": "exit 0", "rate_limit": {"max": 2, "per_s": 60}});
    for _ in 0..2 {
        sandbox.ok(&["start", "--wait"], &payload);
    }
    let error = sandbox.fail(&["start"], &payload);
    assert_eq!(error["type"], "StartThrottled", "{error}");
    let details = &error["details"];
    assert_eq!(details["retryable"], true, "{error}");
    let retry = details["retry_after_s"].as_f64().expect("retry_after_s");
    assert!(retry > 0.0 && retry <= 60.0, "{error}");
    assert!(
        details["hint"]
            .as_str()
            .is_some_and(|h| h.contains("retry_after_s")),
        "{error}"
    );
    // A throttled start changes nothing: the last run is still the task's.
    assert_eq!(sandbox.status("burst")["run"], 2);
    // Another id has its own window.
    sandbox
        .start(&json!({"id": "other", "shell": "exit 0", "rate_limit": {"max": 2, "per_s": 60}}));
}

#[test]
fn a_reuse_is_not_a_spawn() {
    let sandbox = Sandbox::new();
    let payload = json!({
        "id": "server",
        "command": "sleep",
        "args": ["30"],
        "if_running": "reuse",
        "rate_limit": {"max": 1, "per_s": 60},
    });
    sandbox.start(&payload);
    for _ in 0..3 {
        let data = sandbox.ok(&["start"], &payload);
        assert_eq!(data["reused"], true, "{data}");
    }
    sandbox.stop("server");
    let error = sandbox.fail(&["start"], &payload);
    assert_eq!(error["type"], "StartThrottled", "{error}");
}

/// `--exit-status` on a task whose policy gave up gives how its last run ended (here its
/// exit code 7), not the code of a task that never started.
#[test]
fn exit_status_of_a_crash_loop_that_gave_up_is_its_last_runs_code() {
    let sandbox = Sandbox::new();
    let outcome = sandbox.call(
        &["start", "--wait", "--exit-status"],
        &json!({"id": "crash", "shell": "exit 7", "restart_policy": policy("failure", 1, 10.0, 0.1)}),
    );
    assert_eq!(outcome.code, Some(7), "{outcome:#?}");
    let task = outcome.stdout_envelope()["data"]["task"].clone();
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["reason"], "restart_limit", "{task}");
    let outcome = sandbox.call(
        &["start", "--wait", "--exit-status"],
        &json!({"id": "killed", "shell": "kill -TERM $$", "restart_policy": policy("failure", 1, 10.0, 0.1)}),
    );
    assert_eq!(outcome.code, Some(143), "{outcome:#?}");
}
