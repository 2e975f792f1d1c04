//! Stable shapes and what `reuse` shares (issue 14 items 8 and 9, issue 20 items 4 and 8):
//! `reused` and epoch-millisecond twins of the timestamps are always present; `reuse` names
//! every difference by the payload's field names; ports are answered wherever they are
//! known; a reused task gains its new owner and stops when the last one has exited.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::support::{DEADLINE, Sandbox, wait_for_no_supervisor, wait_until};

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("the bound address").port()
}

/// A number field as i64.
fn ms(task: &Value, key: &str) -> i64 {
    task[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} is not a whole number in {task}"))
}

/// `reused` is `false` on a fresh start and a batch item, never absent; every task carries
/// `created_at_ms`, `started_at_ms` and `ended_at_ms` beside the RFC 3339 times (null where
/// those are), agreeing with `duration_ms`.
#[test]
fn start_answers_say_reused_and_times_have_epoch_millisecond_twins() {
    let sandbox = Sandbox::new();
    let data = sandbox.ok(
        &["start"],
        &json!({"id": "a", "command": "sleep", "args": ["1000"]}),
    );
    assert_eq!(data["reused"], json!(false), "{data}");
    let task = &data["task"];
    assert!(
        ms(task, "created_at_ms") <= ms(task, "started_at_ms"),
        "{task}"
    );
    assert!(task["ended_at_ms"].is_null(), "{task}");
    let batch = sandbox.ok(&["start"], &json!([{"id": "b", "shell": "exit 0"}]));
    assert_eq!(
        batch["results"][0]["data"]["reused"],
        json!(false),
        "{batch}"
    );

    let ended = sandbox.ok(&["wait", "--timeout", "20"], &json!({"id": "b"}))["task"].clone();
    assert_eq!(
        ms(&ended, "ended_at_ms") - ms(&ended, "started_at_ms"),
        ms(&ended, "duration_ms"),
        "{ended}"
    );
    let status = sandbox.status("a");
    assert_eq!(status["created_at_ms"], task["created_at_ms"], "{status}");
    let listed = sandbox.ok(
        &["list"],
        &json!({"fields": ["id", "created_at_ms", "ended_at_ms"]}),
    );
    assert_eq!(
        listed["tasks"][0],
        json!({"id": "a", "created_at_ms": task["created_at_ms"], "ended_at_ms": null}),
        "{listed}"
    );
    sandbox.stop("a");
    wait_for_no_supervisor(&sandbox);
}

/// `if_running: "reuse"` refuses a task that differs in `env` names, `tags`, `timeout_s` or
/// `workdir`, naming each under `details.differences` (a workdir is not "another command");
/// tags in another order, env values and a different `ready` are no difference.
#[test]
fn reuse_names_every_difference_by_the_payloads_field_names() {
    let sandbox = Sandbox::new();
    let base = json!({
        "id": "web", "command": "sleep", "args": ["1000"], "env": {"A": "1"},
        "tags": ["x", "y"], "timeout_s": 600, "if_running": "reuse",
    });
    sandbox.start(&base);
    let mut same = base.clone();
    same["tags"] = json!(["y", "x"]);
    same["env"] = json!({"A": "another value"});
    same["ready"] = json!({"log": "never"});
    assert_eq!(sandbox.ok(&["start"], &same)["reused"], true);

    for (change, value, named) in [
        ("env", json!({"A": "1", "B": "2"}), "env"),
        ("tags", json!(["x"]), "tags"),
        ("timeout_s", json!(60), "timeout_s"),
        ("workdir", json!("/"), "workdir"),
    ] {
        let mut other = base.clone();
        other[change] = value;
        let error = sandbox.fail(&["start"], &other);
        assert_eq!(error["type"], "TaskAlreadyRunning", "{change}: {error}");
        assert_eq!(
            error["details"]["differences"],
            json!([named]),
            "{change}: {error}"
        );
        let hint = error["details"]["hint"].as_str().expect("a hint");
        assert!(hint.contains(named), "{change}: {hint}");
        assert!(!hint.contains("another command"), "{change}: {hint}");
    }
    let mut many = base.clone();
    many["workdir"] = json!("/");
    many["tags"] = json!([]);
    many["args"] = json!(["2000"]);
    let error = sandbox.fail(&["start"], &many);
    assert_eq!(
        error["details"]["differences"],
        json!(["args", "workdir", "tags"]),
        "{error}"
    );
    sandbox.stop("web");
    wait_for_no_supervisor(&sandbox);
}

/// Ports are answered wherever they are known: `start --wait` with a port condition,
/// `list` (recorded, and looked up with `fields: ["ports"]`), `wait` until a port, and
/// `[]` once the task has ended.
#[test]
fn ports_are_answered_by_start_wait_list_and_wait() {
    let sandbox = Sandbox::new();
    let port = free_port();
    let shell = format!("exec python3 -m http.server {port} --bind 127.0.0.1");
    let data = sandbox.ok(
        &["start", "--wait", "--timeout", "30"],
        &json!({"id": "web", "shell": shell, "ready": {"port": port}}),
    );
    assert_eq!(data["task"]["ready"], true, "{data}");
    assert_eq!(data["task"]["ports"], json!([port]), "{data}");

    let listed = sandbox.ok(&["list"], &json!({}));
    assert_eq!(
        listed["tasks"][0]["ports"],
        json!([port]),
        "recorded: {listed}"
    );
    let listed = sandbox.ok(&["list"], &json!({"fields": ["id", "ports"]}));
    assert_eq!(
        listed["tasks"][0],
        json!({"id": "web", "ports": [port]}),
        "{listed}"
    );

    // A task without a ready condition: its ports are looked up when asked for.
    let other = free_port();
    sandbox.start(&json!({
        "id": "plain", "shell": format!("exec python3 -m http.server {other} --bind 127.0.0.1"),
    }));
    let data = sandbox.ok(
        &["wait", "--timeout", "30"],
        &json!({"id": "plain", "until": {"port": other}}),
    );
    assert_eq!(data["task"]["ports"], json!([other]), "{data}");
    let listed = sandbox.ok(&["list"], &json!({"ids": ["plain"], "fields": ["ports"]}));
    assert_eq!(listed["tasks"][0]["ports"], json!([other]), "{listed}");

    let stopped = sandbox.stop("web");
    assert_eq!(stopped["task"]["ports"], json!([]), "{stopped}");
    sandbox.stop("plain");
    wait_for_no_supervisor(&sandbox);
}

/// A process of the test's own (an owner for `stop_with_pid`), killed and reaped on drop.
struct Owner(Child);

impl Owner {
    fn sleep() -> Owner {
        let child = Command::new("sleep")
            .arg("1000")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the owner");
        Owner(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn end(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.end();
    }
}

/// `stop_with_pid` given again through `if_running: "reuse"` adds that owner: the task
/// runs on when the first owner exits and is stopped when the last one does. A task
/// started without an owner gains none.
#[test]
fn a_reused_task_gains_its_new_owner_and_stops_when_the_last_is_gone() {
    let sandbox = Sandbox::new();
    let mut first = Owner::sleep();
    let mut second = Owner::sleep();
    let payload = |owner: &Owner| {
        json!({
            "id": "dev", "command": "sleep", "args": ["1000"],
            "stop_with_pid": owner.pid(), "if_running": "reuse",
        })
    };
    let task = sandbox.start(&payload(&first));
    assert_eq!(task["stop_with_pids"], json!([first.pid()]), "{task}");
    let leader = sandbox.leader("dev");

    let data = sandbox.ok(&["start"], &payload(&second));
    assert_eq!(data["reused"], true, "{data}");
    assert_eq!(
        data["task"]["stop_with_pids"],
        json!([first.pid(), second.pid()]),
        "the answer names the new owner: {data}"
    );

    first.end();
    wait_until("the supervisor let the first owner go", DEADLINE, || {
        sandbox.status("dev")["stop_with_pids"] == json!([second.pid()])
    });
    assert_eq!(sandbox.status("dev")["status"], "running");
    assert!(leader.is_alive(), "the task ended with its first owner");

    second.end();
    let data = sandbox.ok(&["wait", "--timeout", "20"], &json!({"id": "dev"}));
    assert_eq!(data["status"], "killed", "{data}");
    assert_eq!(data["task"]["reason"], "owner_exited", "{data}");
    assert!(!leader.exists());

    // Without an owner of its own, a task outlives every caller: reuse adds none.
    let third = Owner::sleep();
    sandbox.start(&json!({"id": "free", "command": "sleep", "args": ["1000"]}));
    let mut reuse = payload(&third);
    reuse["id"] = json!("free");
    let data = sandbox.ok(&["start"], &reuse);
    assert_eq!(data["reused"], true, "{data}");
    assert!(data["task"]["stop_with_pids"].is_null(), "{data}");
    sandbox.stop("free");
    wait_for_no_supervisor(&sandbox);
}
