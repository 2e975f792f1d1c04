//! `if_running`: what `start` does when the id already runs (`reuse`, `restart`).

use serde_json::json;

use crate::support::{Sandbox, sleeps_in, wait_for_no_supervisor};

/// `if_running: "reuse"` answers the running task when the command is the same (same pid,
/// no new process, `reused: true`) and refuses a different one naming the differences;
/// without it a second start is TaskAlreadyRunning.
#[test]
fn if_running_reuse_answers_the_same_task_and_refuses_a_different_one() {
    let sandbox = Sandbox::new();
    let payload = json!({"id": "web", "command": "sleep", "args": ["1000"]});
    let first = sandbox.ok(&["start"], &payload);
    assert!(
        first.get("reused").is_none_or(|r| r == false),
        "a fresh start is no reuse: {first}"
    );
    let leader = sandbox.leader("web");

    let error = sandbox.fail(&["start"], &payload);
    assert_eq!(error["type"], "TaskAlreadyRunning", "{error}");

    let mut reuse = payload.clone();
    reuse["if_running"] = json!("reuse");
    let again = sandbox.ok(&["start"], &reuse);
    assert_eq!(again["reused"], true, "{again}");
    assert_eq!(again["task"]["id"], "web", "{again}");
    assert_eq!(again["task"]["pid"], leader.pid, "{again}");
    assert_eq!(again["task"]["run"], 1, "{again}");
    assert_eq!(again["task"]["status"], "running", "{again}");
    assert!(leader.is_alive());
    assert_eq!(sleeps_in(&sandbox.work()), [leader.pid], "no new process");

    let mut other = reuse.clone();
    other["args"] = json!(["2000"]);
    let error = sandbox.fail(&["start"], &other);
    assert_eq!(error["type"], "TaskAlreadyRunning", "{error}");
    assert_eq!(error["details"]["differences"], json!(["args"]), "{error}");
    assert_eq!(sandbox.status("web")["args"], json!(["1000"]));
    assert_eq!(sleeps_in(&sandbox.work()), [leader.pid], "no new process");
    sandbox.stop("web");
    wait_for_no_supervisor(&sandbox);
}

/// `if_running: "restart"` stops the running task and starts its next run: run 2, a new
/// process, and the old one gone.
#[test]
fn if_running_restart_replaces_the_running_task_with_its_next_run() {
    let sandbox = Sandbox::new();
    let payload = json!({"id": "dev", "command": "sleep", "args": ["1000"]});
    let first = sandbox.start(&payload);
    let old = sandbox.leader("dev");
    assert_eq!(first["pid"], old.pid);

    let mut restart = payload.clone();
    restart["if_running"] = json!("restart");
    let data = sandbox.ok(&["start"], &restart);
    let task = &data["task"];
    assert_eq!(task["run"], 2, "{data}");
    assert_eq!(task["status"], "running", "{data}");
    assert_ne!(task["pid"], old.pid, "{data}");
    assert!(!old.exists(), "run 1's process survived");
    let new = sandbox.leader("dev");
    assert_eq!(task["pid"], new.pid, "{data}");
    assert!(new.is_alive());
    assert_eq!(sleeps_in(&sandbox.work()), [new.pid]);
    assert_eq!(sandbox.stop("dev")["task"]["run"], 2);
    wait_for_no_supervisor(&sandbox);
}
