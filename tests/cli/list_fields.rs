//! `list {fields}`: each task projected to the fields asked for, in that order.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::support::{Sandbox, wait_for_no_supervisor};

/// `list {fields}` keeps only the named keys of each task; an unknown name is a
/// CommandInputError that names the valid fields.
#[test]
fn list_fields_projects_each_task_and_rejects_unknown_fields() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "up", "command": "sleep", "args": ["1000"]}));
    sandbox.start(&json!({"id": "down", "shell": "exit 2"}));
    sandbox.wait("down");

    let data = sandbox.ok(&["list"], &json!({"fields": ["id", "status"]}));
    assert_eq!(data["total"], 2, "{data}");
    let mut seen = BTreeMap::new();
    for task in data["tasks"].as_array().expect("tasks") {
        let keys: BTreeSet<&str> = task
            .as_object()
            .expect("a task object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["id", "status"]), "{task}");
        seen.insert(task["id"].as_str().expect("id").to_owned(), task.clone());
    }
    assert_eq!(seen["up"]["status"], "running");
    assert_eq!(seen["down"]["status"], "exited");

    let data = sandbox.ok(
        &["list"],
        &json!({"status": "exited", "fields": ["exit_code", "id"]}),
    );
    // Objects compare whatever their key order.
    assert_eq!(
        data["tasks"],
        json!([{"id": "down", "exit_code": 2}]),
        "{data}"
    );

    let full = sandbox.ok(&["list"], &json!({"ids": ["up"]}));
    for key in ["id", "status", "pid", "command", "args", "log"] {
        assert!(
            full["tasks"][0].get(key).is_some(),
            "no {key} without fields: {full}"
        );
    }

    let error = sandbox.fail(&["list"], &json!({"fields": ["id", "colour"]}));
    assert_eq!(error["type"], "CommandInputError", "{error}");
    let text = error.to_string();
    assert!(
        text.contains("colour"),
        "the error names the bad field: {error}"
    );
    for valid in ["status", "pid", "exit_code", "started_at", "workdir"] {
        assert!(
            text.contains(valid),
            "the error names the valid field {valid}: {error}"
        );
    }
    sandbox.stop("up");
    wait_for_no_supervisor(&sandbox);
}
