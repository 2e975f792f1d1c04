//! `timeout_s`: the supervisor stops a task that runs too long.

use serde_json::{Value, json};

use crate::support::{Sandbox, live_group_members, tasks_by_id, wait_for_no_supervisor};

/// `timeout_s`: the supervisor stops the task after that long (SIGTERM); it ends
/// `timed_out` with reason `timeout`. A task that traps SIGTERM is SIGKILLed after `grace_s`.
#[test]
fn timeout_s_stops_the_task_as_timed_out_escalating_to_sigkill() {
    let sandbox = Sandbox::new();
    let error = sandbox.fail(
        &["start"],
        &json!({"id": "zero", "shell": "sleep 100", "timeout_s": 0}),
    );
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert_eq!(error["details"]["path"], "timeout_s", "{error}");

    let task = sandbox.start(&json!({"id": "brief", "shell": "sleep 100", "timeout_s": 0.5}));
    assert_eq!(task["status"], "running", "{task}");
    let pgid = sandbox.leader("brief").pid;
    let data = sandbox.ok(&["wait", "--timeout", "30"], &json!({"id": "brief"}));
    let task = &data["task"];
    assert_eq!(data["status"], "timed_out", "{data}");
    assert_eq!(task["reason"], "timeout", "{task}");
    assert_eq!(task["signal"], "SIGTERM", "{task}");
    assert_eq!(task["exit_code"], Value::Null, "{task}");
    assert_eq!(task["success"], false, "{task}");
    assert!(live_group_members(pgid).is_empty());
    let listed = tasks_by_id(&sandbox, &json!({"status": "timed_out"}));
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["brief"]);

    // A timeout long enough for the shell to set its trap first.
    sandbox.start(&json!({
        "id": "stubborn", "shell": "trap '' TERM; sleep 100", "timeout_s": 3, "grace_s": 0.5,
    }));
    let leader = sandbox.leader("stubborn");
    let data = sandbox.ok(&["wait", "--timeout", "30"], &json!({"id": "stubborn"}));
    let task = &data["task"];
    assert_eq!(data["status"], "timed_out", "{data}");
    assert_eq!(task["reason"], "timeout", "{task}");
    assert_eq!(task["signal"], "SIGKILL", "{task}");
    assert!(!leader.exists(), "the stubborn task survived its timeout");
    assert!(live_group_members(leader.pid).is_empty());
    wait_for_no_supervisor(&sandbox);
}
