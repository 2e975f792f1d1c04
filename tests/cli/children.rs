//! Issue 17 item 2, child tasks, through the real binary: a `start` run from inside a task
//! records that task as its `parent` (the supervisor hands the task its id and state
//! directory in the environment), the parent's `status` lists its `children`, `list` filters
//! by `parent`, a child outlives its parent's end and plain `stop`, and
//! `stop {"id", "with_children": true}` stops the whole tree, the deepest first, leaving
//! nothing.

use std::fs;

use serde_json::{Value, json};

use crate::support::{BIN, DEADLINE, Identity, Sandbox, wait_until};

/// A task `id` that starts the task of payload `child` (from a file in the working
/// directory), prints its own environment's ids, then says `started` and sleeps.
fn start_parent(sandbox: &Sandbox, id: &str, child: &Value) {
    let file = format!("{id}-child.json");
    fs::write(sandbox.work().join(&file), child.to_string()).expect("write the child's payload");
    let shell = format!(
        "\"$BT\" start @{file} >/dev/null || echo FAILED; \
         echo \"id=$BACKGROUND_TASKS_TASK_ID home=$BACKGROUND_TASKS_HOME\"; \
         echo started; exec sleep 1000"
    );
    sandbox.start(&json!({"id": id, "shell": shell, "env": {"BT": BIN}}));
    wait_until(&format!("{id} has started its child"), DEADLINE, || {
        sandbox.log(id).contains("started")
    });
    assert!(!sandbox.log(id).contains("FAILED"), "{}", sandbox.log(id));
}

fn ids(children: &Value) -> Vec<String> {
    children
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {children}"))
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The processes of a task (its supervisor and main process), as its record names them.
fn processes_of(sandbox: &Sandbox, id: &str) -> [Identity; 2] {
    [sandbox.supervisor(id), sandbox.leader(id)]
}

#[test]
fn a_task_started_from_inside_a_task_records_its_parent_and_outlives_its_parents_end() {
    let sandbox = Sandbox::new();
    start_parent(
        &sandbox,
        "parent",
        &json!({"id": "kid", "command": "sleep", "args": ["1000"]}),
    );
    // The task was told its id and its state directory.
    let state = sandbox.state();
    assert!(
        sandbox
            .log("parent")
            .contains(&format!("id=parent home={}", state.display())),
        "{}",
        sandbox.log("parent")
    );
    let kid = sandbox.status("kid");
    assert_eq!(kid["parent"], "parent", "{kid}");
    assert_eq!(kid["status"], "running", "{kid}");
    let parent = sandbox.status("parent");
    assert_eq!(parent["parent"], Value::Null, "{parent}");
    assert_eq!(ids(&parent["children"]), ["kid"], "{parent}");
    assert_eq!(parent["children"][0]["status"], "running", "{parent}");
    let listed = sandbox.ok(&["list"], &json!({"parent": "parent", "fields": ["id"]}));
    assert_eq!(ids(&listed["tasks"]), ["kid"], "{listed}");
    let none = sandbox.ok(&["list"], &json!({"parent": "kid"}));
    assert_eq!(none["total"], 0, "{none}");

    // A plain stop of the parent leaves the child running: it is a task of its own.
    let kid_processes = processes_of(&sandbox, "kid");
    let stopped = sandbox.stop("parent");
    assert_eq!(stopped["status"], "killed", "{stopped}");
    assert_eq!(stopped["children"], Value::Null, "{stopped}");
    for process in &kid_processes {
        assert!(
            process.is_alive(),
            "the child's {process:?} died with its parent"
        );
    }
    assert_eq!(sandbox.status("kid")["status"], "running");

    // A parent that ends by itself leaves its child running too (its supervisor, our
    // subreaper, kills what the task left behind, but not a child task's supervisor).
    start_parent(
        &sandbox,
        "brief",
        &json!({"id": "kid2", "command": "sleep", "args": ["1000"]}),
    );
    let kid2_processes = processes_of(&sandbox, "kid2");
    let brief = sandbox.supervisor("brief");
    sandbox.ok(&["stop"], &json!({"id": "brief", "signal": "SIGKILL"}));
    wait_until("brief's supervisor has exited", DEADLINE, || {
        !brief.exists()
    });
    for process in &kid2_processes {
        assert!(
            process.is_alive(),
            "kid2's {process:?} died with its parent"
        );
    }
    assert_eq!(sandbox.status("kid2")["status"], "running");
    assert_eq!(ids(&sandbox.status("brief")["children"]), ["kid2"]);
    for id in ["kid", "kid2"] {
        sandbox.stop(id);
    }

    // An id in the environment that names no task of this state directory is no parent.
    let mut command = sandbox.command_with(&["start"], &json!({"id": "stray", "command": "true"}));
    command.env("BACKGROUND_TASKS_TASK_ID", "nobody");
    let output = command.output().expect("run start");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(sandbox.status("stray")["parent"], Value::Null);
}

#[test]
fn stop_with_children_stops_the_whole_tree_deepest_first_and_leaves_nothing() {
    let sandbox = Sandbox::new();
    // parent → kid → grandkid, and a second child.
    let kid_file = sandbox.work().join("kid-child.json");
    fs::write(
        &kid_file,
        json!({"id": "grandkid", "command": "sleep", "args": ["1000"]}).to_string(),
    )
    .expect("write");
    let kid = json!({
        "id": "kid",
        "shell": "\"$BT\" start @kid-child.json >/dev/null && echo started; exec sleep 1000",
    });
    start_parent(&sandbox, "parent", &kid);
    wait_until("kid has started grandkid", DEADLINE, || {
        sandbox.log("kid").contains("started")
    });
    let mut processes = Vec::new();
    for id in ["parent", "kid", "grandkid"] {
        processes.extend(processes_of(&sandbox, id));
    }
    assert_eq!(ids(&sandbox.status("kid")["children"]), ["grandkid"]);

    let answer = sandbox.ok(&["stop"], &json!({"id": "parent", "with_children": true}));
    assert_eq!(answer["status"], "killed", "{answer}");
    // The deepest generation first.
    assert_eq!(ids(&answer["children"]), ["grandkid", "kid"], "{answer}");
    for child in answer["children"].as_array().expect("children") {
        assert_eq!(child["status"], "killed", "{answer}");
    }
    let ended = |id: &str| sandbox.status(id)["ended_at_ms"].as_i64().expect("ended");
    assert!(
        ended("grandkid") <= ended("kid"),
        "grandkid ends before kid"
    );
    assert!(ended("kid") <= ended("parent"), "kid ends before parent");
    wait_until("every process of the tree is gone", DEADLINE, || {
        processes.iter().all(|p| !p.is_alive())
    });
    // Stopping the stopped tree again changes nothing and says so.
    let again = sandbox.ok(&["stop"], &json!({"id": "parent", "with_children": true}));
    assert_eq!(again["already_terminal"], true, "{again}");
    let error = sandbox.fail(&["stop"], &json!({"id": "nobody", "with_children": true}));
    assert_eq!(error["type"], "TaskNotFound", "{error}");
}

/// `stop {"with_children": true}` of a tree in which a task starts a child while it is
/// being stopped (a child that starts a grandchild from its SIGTERM trap, after the stop
/// read the tree): the late grandchild is stopped too, never left running with its parent
/// gone.
#[test]
fn stop_with_children_also_stops_children_started_while_it_stops_the_others() {
    let sandbox = Sandbox::new();
    fs::write(
        sandbox.work().join("late.json"),
        json!({"id": "late", "command": "sleep", "args": ["1000"]}).to_string(),
    )
    .expect("write the late child's payload");
    let kid = json!({
        "id": "kid",
        "shell": "trap '\"$BT\" start @late.json >/dev/null || echo FAILED; exit 0' TERM; \
                  echo waiting; while :; do sleep 0.1; done",
        "env": {"BT": BIN},
    });
    start_parent(&sandbox, "root", &kid);
    wait_until("kid waits for its stop", DEADLINE, || {
        sandbox.log("kid").contains("waiting")
    });
    let stopped = sandbox.ok(&["stop"], &json!({"id": "root", "with_children": true}));
    assert_eq!(stopped["task"]["status"], "killed", "{stopped}");
    assert!(
        !sandbox.log("kid").contains("FAILED"),
        "{}",
        sandbox.log("kid")
    );
    let late = sandbox.status("late");
    assert_eq!(late["parent"], "kid", "{late}");
    assert_ne!(
        late["status"], "running",
        "a child started while its tree was stopped is left running: {late} {stopped}"
    );
    assert_eq!(ids(&stopped["children"]), ["kid", "late"], "{stopped}");
}

/// A link planted in place of a parent's children list (RELIABILITY 33): nothing is read or
/// written through it, the parent's `status` is a `StoreError` naming it, and a tree stop
/// still finds and stops the child, from the child's own record.
#[test]
fn a_children_list_that_is_a_symlink_is_never_followed_and_a_tree_stop_still_finds_the_child() {
    let sandbox = Sandbox::new();
    let outside = sandbox.root().join("outside");
    fs::write(&outside, "untouched\n").expect("write");
    // The parent waits for the link before it starts its child.
    let child = json!({"id": "kid", "command": "sleep", "args": ["1000"]});
    fs::write(sandbox.work().join("kid.json"), child.to_string()).expect("write");
    let shell = "while [ ! -e linked ]; do sleep 0.02; done; \"$BT\" start @kid.json >/dev/null; \
                 echo started; exec sleep 1000";
    sandbox.start(&json!({"id": "parent", "shell": shell, "env": {"BT": BIN}}));
    std::os::unix::fs::symlink(&outside, sandbox.task_dir("parent").join("children"))
        .expect("plant the link");
    fs::write(sandbox.work().join("linked"), "").expect("write");
    wait_until("the parent has started its child", DEADLINE, || {
        sandbox.log("parent").contains("started")
    });
    let kid = processes_of(&sandbox, "kid");
    assert_eq!(sandbox.status("kid")["parent"], "parent");
    assert_eq!(fs::read_to_string(&outside).expect("read"), "untouched\n");

    let error = sandbox.fail(&["status"], &json!({"id": "parent"}));
    assert_eq!(error["type"], "StoreError", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("children")),
        "{error}"
    );

    let answer = sandbox.ok(&["stop"], &json!({"id": "parent", "with_children": true}));
    assert_eq!(ids(&answer["children"]), ["kid"], "{answer}");
    wait_until("the child's processes are gone", DEADLINE, || {
        kid.iter().all(|p| !p.is_alive())
    });
    assert_eq!(fs::read_to_string(&outside).expect("read"), "untouched\n");
}
