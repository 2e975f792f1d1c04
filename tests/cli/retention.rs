//! Removing finished tasks: `rm` (one, forced, or a batch) and `prune` (by age, status and
//! `keep_last`, never running or queued tasks).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Sandbox, assert_item_failed, assert_not_found, call_batch, item_task, make_fifo,
    open_gate, result, sleeps_in, tasks_by_id, wait_for_no_supervisor, wait_until,
};

/// `rm`: removes an ended task's folder; refuses a running one (TaskAlreadyRunning, with a
/// hint, nothing removed) unless `force`, which stops it first; an unknown id is
/// TaskNotFound; an array gives a batch answer.
#[test]
fn rm_removes_ended_tasks_refuses_running_ones_unless_forced() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "done", "shell": "exit 3"}));
    sandbox.wait("done");
    assert!(sandbox.task_dir("done").join("task.json").exists());
    let data = sandbox.ok(&["rm"], &json!({"id": "done"}));
    assert_eq!(data["task_id"], "done", "{data}");
    assert_eq!(data["removed"], true, "{data}");
    assert_eq!(data["status"], "exited", "{data}");
    assert!(
        !sandbox.task_dir("done").exists(),
        "the folder is still there"
    );
    assert_not_found(&sandbox, "done");
    assert!(tasks_by_id(&sandbox, &json!({})).is_empty());

    let error = sandbox.fail(&["rm"], &json!({"id": "done"}));
    assert_eq!(error["type"], "TaskNotFound", "{error}");

    sandbox.start(&json!({"id": "busy", "command": "sleep", "args": ["1000"]}));
    let leader = sandbox.leader("busy");
    let supervisor = sandbox.supervisor("busy");
    let error = sandbox.fail(&["rm"], &json!({"id": "busy"}));
    assert_eq!(error["type"], "TaskAlreadyRunning", "{error}");
    assert!(
        error["details"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("force")),
        "the hint offers force: {error}"
    );
    assert_eq!(sandbox.status("busy")["status"], "running");
    assert!(leader.is_alive());
    assert!(sandbox.task_dir("busy").join("output.log").exists());

    // Were force to remove the record and leave the processes, the guard could no longer
    // find them through it.
    sandbox.track(leader);
    sandbox.track(supervisor);
    let data = sandbox.ok(&["rm"], &json!({"id": "busy", "force": true}));
    assert_eq!(data["task_id"], "busy", "{data}");
    assert_eq!(data["removed"], true, "{data}");
    assert_eq!(data["status"], "killed", "{data}");
    assert!(!leader.exists(), "the forced task's process survived");
    wait_until("the forced task's supervisor exits", DEADLINE, || {
        !supervisor.is_alive()
    });
    assert!(!sandbox.task_dir("busy").exists());
    assert_not_found(&sandbox, "busy");

    sandbox.start(&json!({"id": "old", "command": "true"}));
    sandbox.wait("old");
    sandbox.start(&json!({"id": "live", "command": "sleep", "args": ["1000"]}));
    let data = call_batch(
        &sandbox,
        &["rm"],
        &json!([{"id": "old"}, {"id": "ghost"}, {"id": "live"}]),
    );
    assert_eq!(data["outcome"], "partial_failure", "{data}");
    let item = result(&data, 0);
    assert_eq!(item["target"], "old", "{data}");
    assert_eq!(item["data"]["removed"], true, "{data}");
    assert_eq!(item["data"]["status"], "exited", "{data}");
    assert_item_failed(&data, 1, "ghost", "TaskNotFound");
    assert_item_failed(&data, 2, "live", "TaskAlreadyRunning");
    assert_not_found(&sandbox, "old");
    assert_eq!(sandbox.status("live")["status"], "running");

    let data = call_batch(&sandbox, &["rm"], &json!([{"id": "ghost"}, {"id": "old"}]));
    assert_eq!(data["outcome"], "failed", "{data}");
    let data = call_batch(&sandbox, &["rm"], &json!([{"id": "live", "force": true}]));
    assert_eq!(data["outcome"], "succeeded", "{data}");
    assert_not_found(&sandbox, "live");
    assert!(sleeps_in(&sandbox.work()).is_empty());
    wait_for_no_supervisor(&sandbox);
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Waits until the wall clock has moved past the task's `ended_at_ms`, so the next task to
/// end is strictly younger.
fn after_the_end_of(sandbox: &Sandbox, id: &str) {
    let ended = sandbox.record(id)["ended_at_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("{id} has ended_at_ms: {}", sandbox.record(id)));
    wait_until("the clock moves on", DEADLINE, || now_ms() > ended);
}

/// Copies the format-1 fixture in as task `legacy`: a task that ended in 2000.
fn add_ancient_task(sandbox: &Sandbox) {
    let dir = sandbox.task_dir("legacy");
    fs::create_dir_all(&dir).expect("mkdir");
    for path in [sandbox.state(), sandbox.state().join("tasks"), dir.clone()] {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/record-v1.json");
    let record = dir.join("task.json");
    fs::copy(fixture, &record).expect("copy the fixture");
    fs::set_permissions(&record, fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// `prune`'s removed ids, sorted, after checking the answer's shape and that each removed
/// task is gone.
fn prune(sandbox: &Sandbox, payload: Option<Value>) -> Vec<String> {
    let data = match payload {
        Some(payload) => sandbox.ok(&["prune"], &payload),
        None => sandbox.run(&["prune"]).data(),
    };
    let removed = data["removed"].as_array().expect("removed ids");
    assert_eq!(data["total_removed"], removed.len(), "{data}");
    let mut ids: Vec<String> = removed
        .iter()
        .map(|id| id.as_str().expect("an id").to_owned())
        .collect();
    ids.sort();
    for id in &ids {
        assert!(
            !sandbox.task_dir(id).exists(),
            "{id}'s folder is still there"
        );
        assert_not_found(sandbox, id);
    }
    ids
}

/// `prune` removes ended tasks by age, status and `keep_last`, and never touches running
/// or queued ones.
#[test]
fn prune_removes_ended_tasks_by_age_status_and_keep_last_never_running_or_queued() {
    let sandbox = Sandbox::new();
    add_ancient_task(&sandbox);
    let gate = sandbox.work().join("gate.fifo");
    make_fifo(&gate);
    let data = call_batch(
        &sandbox,
        &["start", "--concurrency", "1"],
        &json!([
            {"id": "holder", "shell": "read line < gate.fifo"},
            {"id": "waiting", "command": "true"},
        ]),
    );
    assert_eq!(item_task(&data, 1, "waiting")["status"], "queued", "{data}");
    sandbox.start(&json!({"id": "server", "command": "sleep", "args": ["1000"]}));
    let server = sandbox.leader("server");

    // Ended tasks, each strictly after the one before: failed, killed, exited, exited.
    assert_eq!(
        sandbox.fail(
            &["start"],
            &json!({"id": "failed-1", "command": "/nonexistent/x"})
        )["type"],
        "SpawnFailed"
    );
    assert_eq!(sandbox.wait("failed-1")["status"], "failed");
    after_the_end_of(&sandbox, "failed-1");
    sandbox.start(&json!({"id": "killed-1", "command": "sleep", "args": ["1000"]}));
    sandbox.stop("killed-1");
    after_the_end_of(&sandbox, "killed-1");
    sandbox.start(&json!({"id": "exited-1", "command": "true"}));
    sandbox.wait("exited-1");
    after_the_end_of(&sandbox, "exited-1");
    sandbox.start(&json!({"id": "exited-2", "command": "false"}));
    sandbox.wait("exited-2");

    let untouched = |sandbox: &Sandbox| {
        assert_eq!(sandbox.status("holder")["status"], "running");
        assert_eq!(sandbox.status("waiting")["status"], "queued");
        assert_eq!(sandbox.status("server")["status"], "running");
        assert!(server.is_alive());
    };

    assert_eq!(
        prune(&sandbox, Some(json!({"older_than_s": 3600}))),
        ["legacy"]
    );
    untouched(&sandbox);
    assert_eq!(
        prune(&sandbox, Some(json!({"status": "exited", "keep_last": 1}))),
        ["exited-1"]
    );
    assert_eq!(sandbox.status("exited-2")["status"], "exited");
    assert_eq!(
        prune(&sandbox, Some(json!({"status": "exited"}))),
        ["exited-2"]
    );
    assert_eq!(sandbox.status("failed-1")["status"], "failed");
    assert_eq!(sandbox.status("killed-1")["status"], "killed");
    untouched(&sandbox);

    sandbox.start(&json!({"id": "exited-3", "command": "true"}));
    sandbox.wait("exited-3");
    assert_eq!(
        prune(&sandbox, Some(json!({"older_than_s": 3600}))),
        [""; 0]
    );
    assert_eq!(
        prune(&sandbox, Some(json!({"keep_last": 1}))),
        ["failed-1", "killed-1"]
    );
    assert_eq!(sandbox.status("exited-3")["status"], "exited");
    untouched(&sandbox);
    assert_eq!(prune(&sandbox, None), ["exited-3"]);
    untouched(&sandbox);
    assert_eq!(
        tasks_by_id(&sandbox, &json!({})).keys().collect::<Vec<_>>(),
        ["holder", "server", "waiting"]
    );

    open_gate(&gate);
    assert_eq!(sandbox.wait("holder")["exit_code"], 0);
    assert_eq!(
        sandbox.ok(&["wait", "--timeout", "30"], &json!({"id": "waiting"}))["task"]["exit_code"],
        0
    );
    sandbox.stop("server");
    assert_eq!(prune(&sandbox, None), ["holder", "server", "waiting"]);
    assert!(tasks_by_id(&sandbox, &json!({})).is_empty());
    wait_for_no_supervisor(&sandbox);
}
