//! Selectors and `fields` (issue 14 items 5 and 6): `wait` and `stop` act on every task a
//! selector (`tag`, `tags`, `status`) chooses; `list` filters by several statuses, by
//! `success` and by `exit_code`; batch answers and multi-task `wait` answer only the
//! `fields` asked for.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{
    Sandbox, batch_answer, call_batch, item_task, tasks_by_id, wait_for_no_supervisor,
};

/// The ids of `tasks` (an array of tasks), as a set.
fn ids(tasks: &Value) -> BTreeSet<String> {
    tasks
        .as_array()
        .unwrap_or_else(|| panic!("an array of tasks: {tasks}"))
        .iter()
        .map(|t| t["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The keys of an object, as a set.
fn keys(object: &Value) -> BTreeSet<String> {
    object
        .as_object()
        .unwrap_or_else(|| panic!("an object: {object}"))
        .keys()
        .cloned()
        .collect()
}

/// `list` by a status or several, by `success` (false: killed and timed out too) and by
/// `exit_code`; a wrong status in the array names its path.
#[test]
fn list_filters_by_statuses_success_and_exit_code() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "ok", "shell": "exit 0"}));
    sandbox.start(&json!({"id": "three", "shell": "exit 3"}));
    sandbox.start(&json!({"id": "slow", "command": "sleep", "args": ["1000"], "timeout_s": 0.2}));
    sandbox.start(&json!({"id": "killed", "command": "sleep", "args": ["1000"]}));
    sandbox.start(&json!({"id": "live", "command": "sleep", "args": ["1000"]}));
    for id in ["ok", "three", "slow"] {
        sandbox.ok(&["wait", "--timeout", "20"], &json!({ "id": id }));
    }
    sandbox.stop("killed");

    let listed = |filter: Value| {
        tasks_by_id(&sandbox, &filter)
            .into_keys()
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(listed(json!({"status": "running"})), set(&["live"]));
    assert_eq!(
        listed(json!({"status": ["killed", "timed_out"]})),
        set(&["killed", "slow"])
    );
    assert_eq!(listed(json!({"success": true})), set(&["ok"]));
    assert_eq!(
        listed(json!({"success": false})),
        set(&["three", "slow", "killed"]),
        "success false is every ended task but a clean exit; a running one is neither"
    );
    assert_eq!(listed(json!({"exit_code": 3})), set(&["three"]));
    assert_eq!(
        listed(json!({"exit_code": 0, "status": ["exited"]})),
        set(&["ok"])
    );

    let error = sandbox.fail(&["list"], &json!({"status": ["running", "sleeping"]}));
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert!(
        error["details"]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("status")),
        "{error}"
    );
    sandbox.stop("live");
    wait_for_no_supervisor(&sandbox);
}

/// `wait {tag}` waits for every task carrying the tag (and only those), `mode: "any"`
/// for the first; `stop {tags}` stops every running task carrying all the tags and
/// answers as a batch, leaving the others running; a selector beside an id is refused.
#[test]
fn wait_and_stop_act_on_every_task_a_selector_chooses() {
    let sandbox = Sandbox::new();
    for (id, shell) in [("b1", "sleep 0.3"), ("b2", "sleep 0.6; exit 2")] {
        sandbox.start(&json!({"id": id, "shell": shell, "tags": ["build", "s7"]}));
    }
    sandbox.start(&json!({"id": "other", "command": "sleep", "args": ["1000"], "tags": ["s8"]}));

    let data = sandbox.ok(&["wait", "--timeout", "20"], &json!({"tag": "build"}));
    assert_eq!(data["mode"], "all", "{data}");
    assert_eq!(ids(&data["tasks"]), set(&["b1", "b2"]), "{data}");
    assert_eq!(data["ended"].as_array().map(Vec::len), Some(2), "{data}");
    for task in data["tasks"].as_array().expect("tasks") {
        assert_eq!(task["status"], "exited", "{data}");
    }
    assert_eq!(sandbox.status("other")["status"], "running");

    // A selector chooses as the tasks are when the call begins.
    for id in ["s1", "s2"] {
        sandbox
            .start(&json!({"id": id, "command": "sleep", "args": ["1000"], "tags": ["s7", "web"]}));
    }
    sandbox.start(&json!({"id": "quick", "shell": "exit 0", "tags": ["q", "web"]}));
    let data = sandbox.ok(
        &["wait", "--timeout", "20"],
        &json!({"tag": "web", "mode": "any", "fields": ["id", "status"]}),
    );
    assert_eq!(data["ended"], json!(["quick"]), "{data}");

    let outcome = sandbox.call(
        &["stop"],
        &json!({"tags": ["s7", "web"], "fields": ["id", "status"]}),
    );
    let data = batch_answer(&outcome, "stop");
    assert_eq!(
        data["total"], 2,
        "only the running tasks with both tags: {data}"
    );
    let stopped: BTreeSet<String> = (0..2)
        .map(|i| {
            let result = &data["results"][i];
            assert_eq!(result["data"]["status"], "killed", "{data}");
            assert_eq!(
                keys(&result["data"]["task"]),
                set(&["id", "status"]),
                "{data}"
            );
            result["target"].as_str().expect("a target").to_owned()
        })
        .collect();
    assert_eq!(stopped, set(&["s1", "s2"]));
    assert_eq!(sandbox.status("other")["status"], "running", "not chosen");

    // Nothing chosen: nothing to wait for, nothing stopped.
    let data = sandbox.ok(&["wait"], &json!({"tag": "nobody"}));
    assert_eq!(data["tasks"], json!([]), "{data}");
    let data = call_batch_object(&sandbox, &json!({"tag": "nobody"}));
    assert_eq!(data["total"], 0, "{data}");

    for payload in [
        json!({"id": "other", "tag": "s8"}),
        json!({"ids": ["other"], "status": "running"}),
    ] {
        let error = sandbox.fail(&["wait"], &payload);
        assert_eq!(error["type"], "CommandInputError", "{payload}: {error}");
    }
    let error = sandbox.fail(&["stop"], &json!({"id": "other", "tag": "s8"}));
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert_eq!(sandbox.status("other")["status"], "running");

    let data = sandbox.ok(&["stop"], &json!({"status": "running"}));
    assert_eq!(data["total"], 1, "{data}");
    assert_eq!(data["results"][0]["target"], "other", "{data}");
    wait_for_no_supervisor(&sandbox);
}

/// A stop by selector answers as a batch, whatever it chose.
fn call_batch_object(sandbox: &Sandbox, payload: &Value) -> Value {
    batch_answer(&sandbox.call(&["stop"], payload), "stop")
}

/// `fields` on a batch start (each item's own), a batch stop and restart, and a wait on
/// several ids: each task holds exactly the fields asked for, and the answers shrink.
#[test]
fn batch_and_wait_answers_hold_only_the_fields_asked_for() {
    let sandbox = Sandbox::new();
    let fields = json!(["id", "status", "exit_code"]);
    let items = |fields: Option<&Value>| -> Value {
        (0..10)
            .map(|i| {
                let mut item = json!({"id": format!("t{i}"), "shell": format!("exit {}", i % 3)});
                if let Some(fields) = fields {
                    item["fields"] = fields.clone();
                }
                item
            })
            .collect()
    };
    let whole = sandbox.call(&["start"], &items(None));
    let ids_of = |n: usize| -> Vec<String> { (0..n).map(|i| format!("t{i}")).collect() };
    sandbox.ok(&["wait", "--timeout", "20"], &json!({"ids": ids_of(10)}));
    let projected = sandbox.call(&["start"], &items(Some(&fields)));
    let data = batch_answer(&projected, "start");
    for i in 0..10 {
        let task = item_task(&data, i, &format!("t{i}"));
        assert_eq!(keys(&task), set(&["id", "status", "exit_code"]), "{data}");
        assert_eq!(data["results"][i]["data"]["reused"], false, "{data}");
    }
    assert!(
        projected.stdout.len() * 3 < whole.stdout.len(),
        "fields shrink a batch start: {} against {} bytes",
        projected.stdout.len(),
        whole.stdout.len()
    );

    let whole = sandbox.call(&["wait", "--timeout", "20"], &json!({"ids": ids_of(10)}));
    let projected = sandbox.call(
        &["wait", "--timeout", "20"],
        &json!({"ids": ids_of(10), "fields": fields}),
    );
    let data = projected.data();
    for task in data["tasks"].as_array().expect("tasks") {
        assert_eq!(keys(task), set(&["id", "status", "exit_code"]), "{data}");
        assert_eq!(task["status"], "exited", "{data}");
    }
    assert_eq!(data["tasks"][2]["exit_code"], 2, "{data}");
    assert!(
        projected.stdout.len() * 3 < whole.stdout.len(),
        "fields shrink a wait on several ids: {} against {} bytes",
        projected.stdout.len(),
        whole.stdout.len()
    );

    let restarted = call_batch(
        &sandbox,
        &["restart"],
        &json!([{"id": "t0", "fields": ["id", "run"]}, {"id": "t1"}]),
    );
    assert_eq!(
        restarted["results"][0]["data"]["task"],
        json!({"id": "t0", "run": 3})
    );
    assert!(
        restarted["results"][1]["data"]["task"]["log"].is_object(),
        "{restarted}"
    );

    let error = sandbox.fail(
        &["wait"],
        &json!({"ids": ["t0"], "fields": ["id", "colour"]}),
    );
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert_eq!(error["details"]["path"], "fields[1]", "{error}");
    wait_for_no_supervisor(&sandbox);
}
