//! A task's life as the commands report it: exit codes and signals, `wait`, logs, `stop` of
//! an ended task, `restart` and `list`.

use std::fs;
use std::io::Write;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::{DEADLINE, Sandbox, make_fifo, open_fifo_writer, spawn, wait_until};

/// RELIABILITY 3: a task that exits at once is a successful start, and its exit code is
/// recorded, even for 25 starts at the same time.
#[test]
fn a_fast_exit_is_not_a_failed_start_even_25_at_once() {
    let sandbox = Sandbox::new();
    let task = sandbox.start(&json!({"id": "false", "command": "false"}));
    assert!(
        task["status"] == "running" || task["status"] == "exited",
        "{task}"
    );
    assert!(task["pid"].is_i64(), "{task}");
    let task = sandbox.wait("false");
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 1, "{task}");
    assert_eq!(task["success"], false, "{task}");
    assert_eq!(task["reason"], "exit", "{task}");

    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..25)
            .map(|i| {
                let sandbox = &sandbox;
                scope.spawn(move || {
                    let id = format!("false-{i}");
                    sandbox.start(&json!({"id": id, "command": "false"}));
                    sandbox.wait(&id)
                })
            })
            .collect();
        for (i, run) in runs.into_iter().enumerate() {
            let task = run.join().expect("a start thread");
            assert_eq!(task["id"], format!("false-{i}"));
            assert_eq!(task["status"], "exited", "{task}");
            assert_eq!(task["exit_code"], 1, "{task}");
        }
    });
    let list = sandbox.ok(&["list"], &json!({"status": "exited"}));
    assert_eq!(list["total"], 26, "{list}");
}

/// RELIABILITY 12: an exit code and a signal are told apart.
#[test]
fn exit_code_and_terminating_signal_are_recorded_separately() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "three", "shell": "exit 3"}));
    let task = sandbox.wait("three");
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 3, "{task}");
    assert_eq!(task["signal"], Value::Null, "{task}");
    assert_eq!(task["success"], false, "{task}");

    sandbox.start(&json!({"id": "segv", "shell": "kill -SEGV $$"}));
    let task = sandbox.wait("segv");
    assert_eq!(task["status"], "killed", "{task}");
    assert_eq!(task["signal"], "SIGSEGV", "{task}");
    assert_eq!(task["exit_code"], Value::Null, "{task}");
    assert_eq!(task["reason"], "signal", "{task}");
    assert_eq!(task["success"], false, "{task}");

    sandbox.start(&json!({"id": "zero", "command": "true"}));
    let task = sandbox.wait("zero");
    assert_eq!(task["exit_code"], 0, "{task}");
    assert_eq!(task["success"], true, "{task}");
}

/// RELIABILITY 13: `wait` wakes when the task ends, not on a timer.
#[test]
fn wait_returns_promptly_when_the_task_ends() {
    let sandbox = Sandbox::new();
    let gate = sandbox.work().join("gate.fifo");
    make_fifo(&gate);
    sandbox.start(&json!({"id": "gated", "shell": "read line < gate.fifo; exit 7"}));
    let waiter = spawn(sandbox.command_with(&["wait"], &json!({"id": "gated"})));
    wait_until("wait blocks on the supervisor's lock", DEADLINE, || {
        waiter.is_blocked_on_a_lock()
    });
    assert!(waiter.is_running(), "wait returned before the task ended");

    let mut fifo = open_fifo_writer(&gate);
    fifo.write_all(b"go\n").expect("open the gate");
    drop(fifo);
    let opened = std::time::Instant::now();
    let outcome = waiter.finish();
    let data = outcome.data();
    assert_eq!(data["status"], "exited", "{data}");
    assert_eq!(data["task"]["exit_code"], 7, "{data}");
    let woke = outcome.ended.saturating_duration_since(opened);
    assert!(
        woke < Duration::from_secs(5),
        "wait took {woke:?} to notice the end"
    );
}

/// RELIABILITY 13: `wait --timeout` gives up with a retryable `TaskWaitTimedOut` and leaves
/// the task running.
#[test]
fn wait_timeout_on_a_running_task_is_retryable_and_the_task_runs_on() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "long", "command": "sleep", "args": ["100"]}));
    let outcome = sandbox.call(&["wait", "--timeout", "1"], &json!({"id": "long"}));
    let envelope = outcome.failure();
    assert_eq!(envelope["command"], "wait");
    let error = &envelope["error"];
    assert_eq!(error["type"], "TaskWaitTimedOut", "{error}");
    assert_eq!(error["details"]["retryable"], true, "{error}");
    assert_eq!(error["details"]["id"], "long", "{error}");
    assert_eq!(error["details"]["status"], "running", "{error}");
    assert_eq!(error["details"]["timeout_s"], 1.0, "{error}");
    assert!(
        outcome.elapsed >= Duration::from_millis(900) && outcome.elapsed < Duration::from_secs(10),
        "wait --timeout 1 took {:?}",
        outcome.elapsed
    );
    assert_eq!(sandbox.status("long")["status"], "running");
    assert!(sandbox.leader("long").is_alive());
    sandbox.stop("long");
}

/// RELIABILITY 13: `wait` on a task that has ended answers at once, whatever the timeout.
#[test]
fn wait_on_an_ended_task_returns_at_once() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "done", "command": "true"}));
    sandbox.wait("done");
    let outcome = sandbox.call(&["wait", "--timeout", "60"], &json!({"id": "done"}));
    assert_eq!(outcome.data()["status"], "exited");
    assert!(
        outcome.elapsed < Duration::from_secs(10),
        "wait on an ended task took {:?}",
        outcome.elapsed
    );
    let outcome = sandbox.call(&["wait", "--timeout", "0"], &json!({"id": "done"}));
    assert_eq!(outcome.data()["task"]["exit_code"], 0);
}

/// `start --wait` answers with the finished task; its `--timeout` leaves the task running.
#[test]
fn start_wait_answers_the_finished_task_and_its_timeout_leaves_it_running() {
    let sandbox = Sandbox::new();
    let data = sandbox.ok(&["start", "--wait"], &json!({"id": "w", "shell": "exit 4"}));
    assert_eq!(data["task"]["status"], "exited", "{data}");
    assert_eq!(data["task"]["exit_code"], 4, "{data}");

    let error = sandbox.fail(
        &["start", "--wait", "--timeout", "0.5"],
        &json!({"id": "w2", "command": "sleep", "args": ["100"]}),
    );
    assert_eq!(error["type"], "TaskWaitTimedOut", "{error}");
    assert_eq!(sandbox.status("w2")["status"], "running");
    sandbox.stop("w2");
}

/// RELIABILITY 16: stdout and stderr land in one log in the order they were written.
#[test]
fn stdout_and_stderr_keep_their_order_in_one_log() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "mix", "shell": "echo a; echo b >&2; echo c"}));
    sandbox.wait("mix");
    assert_eq!(sandbox.log("mix"), "a\nb\nc\n");
    let logs = sandbox.ok(&["logs"], &json!({"id": "mix"}));
    assert_eq!(logs["lines"], json!(["a", "b", "c"]), "{logs}");
    assert_eq!(logs["total_lines"], 3);
    assert_eq!(logs["omitted"], json!({"before": 0, "after": 0}));
    // Lines left out: by default the answer points at the whole log as well, beside the
    // lines, which stay where they were.
    let tail = sandbox.ok(&["logs"], &json!({"id": "mix", "lines": 2}));
    assert_eq!(tail["kind"], "summary+artifact", "{tail}");
    assert_eq!(tail["lines"], json!(["b", "c"]), "{tail}");
    assert_eq!(tail["omitted"], json!({"before": 1, "after": 0}), "{tail}");
    let inline = sandbox.ok(
        &["logs", "--output", "inline"],
        &json!({"id": "mix", "lines": 2}),
    );
    assert_eq!(inline["kind"], "inline", "{inline}");
    assert_eq!(inline["lines"], json!(["b", "c"]), "{inline}");
    assert_eq!(
        inline["omitted"],
        json!({"before": 1, "after": 0}),
        "{inline}"
    );
}

/// Stopping a task that already ended signals nothing and says so.
#[test]
fn stopping_an_ended_task_answers_already_terminal() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "over", "shell": "exit 2"}));
    let before = sandbox.wait("over");
    let record = fs::read(sandbox.task_dir("over").join("task.json")).expect("record");
    for _ in 0..2 {
        let data = sandbox.stop("over");
        assert_eq!(data["already_terminal"], true, "{data}");
        assert_eq!(data["status"], "exited", "{data}");
        assert_eq!(data["task"]["exit_code"], 2, "{data}");
        assert_eq!(data["task"]["ended_at"], before["ended_at"], "{data}");
    }
    let after = fs::read(sandbox.task_dir("over").join("task.json")).expect("record");
    assert_eq!(record, after, "stopping an ended task rewrote its record");
}

/// `restart` stops the running task, starts run 2 with a new process, and keeps only the
/// previous run's log beside the current one.
#[test]
fn restart_increments_run_and_keeps_the_previous_log_as_output_n_log() {
    let sandbox = Sandbox::new();
    let first = sandbox.start(&json!({"id": "again", "shell": "echo \"pid $$\"; sleep 100"}));
    let first_leader = sandbox.leader("again");
    let first_line = format!("pid {}\n", first_leader.pid);
    wait_until("run 1 wrote its line", DEADLINE, || {
        sandbox.log("again") == first_line
    });

    let data = sandbox.ok(&["restart"], &json!({"id": "again"}));
    assert_eq!(data["task_id"], "again");
    let second = &data["task"];
    assert_eq!(second["run"], 2, "{data}");
    assert_eq!(second["status"], "running", "{data}");
    assert_ne!(second["pid"], first["pid"], "{data}");
    assert_eq!(second["created_at"], first["created_at"], "{data}");
    assert!(
        !first_leader.exists(),
        "run 1's process survived the restart"
    );
    let dir = sandbox.task_dir("again");
    assert_eq!(
        fs::read_to_string(dir.join("output.1.log")).expect("run 1's log"),
        first_line
    );
    let second_line = format!("pid {}\n", second["pid"]);
    wait_until("run 2 wrote its line", DEADLINE, || {
        sandbox.log("again") == second_line
    });
    let logs = sandbox.ok(&["logs"], &json!({"id": "again"}));
    assert_eq!(logs["run"], 2);
    assert_eq!(logs["lines"], json!([second_line.trim_end()]), "{logs}");

    let data = sandbox.ok(&["restart"], &json!({"id": "again"}));
    assert_eq!(data["task"]["run"], 3, "{data}");
    assert_eq!(
        fs::read_to_string(dir.join("output.2.log")).expect("run 2's log"),
        second_line
    );
    assert!(
        !dir.join("output.1.log").exists(),
        "only the previous run's log is kept"
    );
    assert_eq!(sandbox.stop("again")["task"]["run"], 3);
}

/// Environment values are never stored, so `restart` of a task started with `env` asks for
/// them again, naming the variables.
#[test]
fn restart_of_a_task_started_with_env_requires_the_values_again() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "greet",
        "shell": "echo \"$GREETING\"",
        "env": {"GREETING": "first-value"},
    }));
    assert_eq!(sandbox.wait("greet")["env_keys"], json!(["GREETING"]));

    let error = sandbox.fail(&["restart"], &json!({"id": "greet"}));
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert_eq!(error["details"]["path"], "env", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("GREETING")),
        "{error}"
    );
    assert_eq!(sandbox.status("greet")["run"], 1, "a refused restart ran");

    let data = sandbox.ok(
        &["restart"],
        &json!({"id": "greet", "env": {"GREETING": "second-value"}}),
    );
    assert_eq!(data["task"]["run"], 2, "{data}");
    let task = sandbox.wait("greet");
    assert_eq!(task["exit_code"], 0, "{task}");
    assert_eq!(sandbox.log("greet"), "second-value\n");
    assert_eq!(
        fs::read_to_string(sandbox.task_dir("greet").join("output.1.log")).expect("run 1 log"),
        "first-value\n"
    );
}

/// Waits until the wall clock has moved past the task's `created_at_ms`, so the next task
/// is strictly younger (list orders by creation time, then id).
fn next_millisecond(sandbox: &Sandbox, id: &str) {
    let created = sandbox.record(id)["created_at_ms"]
        .as_i64()
        .expect("created_at_ms");
    wait_until("the clock moves on", DEADLINE, || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        now > created
    });
}

/// `list` answers oldest first and applies every filter given.
#[test]
fn list_filters_by_tag_status_workdir_and_orders_oldest_first() {
    let sandbox = Sandbox::new();
    let elsewhere = sandbox.work().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    let work = sandbox.work().to_string_lossy().into_owned();
    // Ids sort the other way round from their creation, so the order must come from time.
    sandbox.start(&json!({
        "id": "zeta", "name": "server", "command": "sleep", "args": ["100"],
        "tags": ["web", "dev"],
    }));
    next_millisecond(&sandbox, "zeta");
    sandbox.start(&json!({"id": "mid", "command": "true", "tags": ["dev"], "workdir": elsewhere}));
    sandbox.wait("mid");
    next_millisecond(&sandbox, "mid");
    sandbox.start(&json!({"id": "alpha", "command": "sleep", "args": ["100"], "tags": ["web"]}));

    let ids = |filter: Value| -> Vec<String> {
        let data = sandbox.ok(&["list"], &filter);
        let tasks = data["tasks"].as_array().expect("tasks").clone();
        assert_eq!(data["total"], tasks.len(), "{data}");
        tasks
            .iter()
            .map(|t| t["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let all = sandbox.run(&["list"]).data();
    let all: Vec<&str> = all["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    assert_eq!(all, ["zeta", "mid", "alpha"]);
    assert_eq!(ids(json!({})), ["zeta", "mid", "alpha"]);
    assert_eq!(ids(json!({"tag": "web"})), ["zeta", "alpha"]);
    assert_eq!(ids(json!({"tag": "dev"})), ["zeta", "mid"]);
    assert_eq!(ids(json!({"tags": ["web", "dev"]})), ["zeta"]);
    assert_eq!(ids(json!({"tag": "nope"})), Vec::<String>::new());
    assert_eq!(ids(json!({"status": "running"})), ["zeta", "alpha"]);
    assert_eq!(ids(json!({"status": "exited"})), ["mid"]);
    assert_eq!(ids(json!({"workdir": work})), ["zeta", "alpha"]);
    assert_eq!(
        ids(json!({"workdir": format!("{work}/")})),
        ["zeta", "alpha"]
    );
    assert_eq!(ids(json!({"workdir": elsewhere})), ["mid"]);
    assert_eq!(ids(json!({"name": "server"})), ["zeta"]);
    assert_eq!(ids(json!({"ids": ["alpha", "mid"]})), ["mid", "alpha"]);
    assert_eq!(
        ids(json!({"status": "running", "tag": "web", "workdir": work})),
        ["zeta", "alpha"]
    );
    sandbox.stop("zeta");
    sandbox.stop("alpha");
    assert_eq!(ids(json!({"status": "killed"})), ["zeta", "alpha"]);
}

/// A task killed from outside (not by `stop`) is `killed` with reason `signal`.
#[test]
fn a_task_killed_from_outside_is_recorded_killed_by_that_signal() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "victim", "command": "sleep", "args": ["100"]}));
    sandbox.leader("victim").signal(Signal::SIGKILL);
    let task = sandbox.wait("victim");
    assert_eq!(task["status"], "killed", "{task}");
    assert_eq!(task["signal"], "SIGKILL", "{task}");
    assert_eq!(task["reason"], "signal", "{task}");
}

/// `stop {signal}` sends that signal first, and the record names it.
#[test]
fn stop_sends_the_requested_signal() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "int", "command": "sleep", "args": ["100"]}));
    let data = sandbox.ok(&["stop"], &json!({"id": "int", "signal": "INT"}));
    assert_eq!(data["status"], "killed", "{data}");
    assert_eq!(data["task"]["signal"], "SIGINT", "{data}");
    assert_eq!(data["task"]["reason"], "stop", "{data}");
    sandbox.start(&json!({"id": "hup", "command": "sleep", "args": ["100"]}));
    let data = sandbox.ok(&["stop"], &json!({"id": "hup", "signal": 1}));
    assert_eq!(data["task"]["signal"], "SIGHUP", "{data}");
}

/// RELIABILITY 16: log bytes are kept exactly; `logs` shows invalid UTF-8 as U+FFFD, keeps
/// NUL, and shows a final line without a newline.
#[test]
fn log_bytes_survive_and_a_final_line_without_newline_is_shown() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "bytes", "shell": r"printf 'a\377\376\000b\nlast'"}));
    sandbox.wait("bytes");
    let bytes = fs::read(sandbox.task_dir("bytes").join("output.log")).expect("log");
    assert_eq!(bytes, b"a\xff\xfe\x00b\nlast");
    let logs = sandbox.ok(&["logs"], &json!({"id": "bytes"}));
    assert_eq!(
        logs["lines"],
        json!(["a\u{fffd}\u{fffd}\u{0}b", "last"]),
        "{logs}"
    );
    assert_eq!(logs["total_lines"], 2, "{logs}");
    assert_eq!(logs["log"]["size_bytes"], 10, "{logs}");
}

/// A relative workdir is taken from the caller's directory and recorded absolute.
#[test]
fn a_relative_workdir_is_resolved_against_the_callers_directory() {
    let sandbox = Sandbox::new();
    let sub = sandbox.work().join("sub");
    fs::create_dir(&sub).expect("mkdir");
    let task = sandbox.start(&json!({"id": "where", "command": "pwd", "workdir": "sub"}));
    assert_eq!(task["workdir"], sub.to_string_lossy().as_ref(), "{task}");
    sandbox.wait("where");
    assert_eq!(sandbox.log("where"), format!("{}\n", sub.display()));
    let task = sandbox.start(&json!({"id": "here", "command": "pwd"}));
    assert_eq!(task["workdir"], sandbox.work().to_string_lossy().as_ref());
}

/// STYLE 13: a record written by format version 1 always loads.
#[test]
fn a_format_version_1_record_still_loads() {
    let sandbox = Sandbox::new();
    let dir = sandbox.task_dir("legacy");
    fs::create_dir_all(&dir).expect("mkdir");
    for path in [sandbox.state(), sandbox.state().join("tasks"), dir.clone()] {
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
    }
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/record-v1.json");
    fs::copy(fixture, dir.join("task.json")).expect("copy the fixture");

    let task = sandbox.status("legacy");
    let expected = json!({
        "id": "legacy", "name": "dev server", "command": "npm", "args": ["run", "dev"],
        "shell": null, "workdir": "/srv/app", "tags": ["web", "dev"], "env_keys": ["PORT"],
        "status": "killed", "run": 3, "exit_code": null, "signal": "SIGTERM",
        "core_dumped": false, "success": false, "reason": "stop", "error": null,
        "grace_s": 2.5, "created_at": "2000-02-29T00:00:00.007Z",
        "started_at": "2000-02-29T00:00:01.007Z", "ended_at": "2000-02-29T00:01:01.507Z",
        "duration_ms": 60500,
    });
    for (key, value) in expected.as_object().expect("object") {
        assert_eq!(&task[key], value, "{key} in {task}");
    }
    assert_eq!(sandbox.ok(&["list"], &json!({"tag": "web"}))["total"], 1);
    assert_eq!(
        sandbox.ok(&["logs"], &json!({"id": "legacy"}))["lines"],
        json!([])
    );
    assert_eq!(sandbox.stop("legacy")["already_terminal"], true);
}

/// `wait {ids, mode}`: `any` answers when the first task ends while the other runs on;
/// `all` times out while one still runs (naming it) and answers once both have ended.
#[test]
fn wait_on_several_tasks_all_or_any() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "long", "command": "sleep", "args": ["1000"]}));
    sandbox.start(&json!({"id": "short", "command": "true"}));

    let any = sandbox.ok(&["wait"], &json!({"ids": ["long", "short"], "mode": "any"}));
    assert_eq!(any["mode"], "any");
    assert_eq!(any["ended"], json!(["short"]), "{any}");
    assert_eq!(any["tasks"][0]["id"], "long");
    assert_eq!(any["tasks"][0]["status"], "running");
    assert_eq!(any["tasks"][1]["status"], "exited");

    let timed_out = sandbox.fail(
        &["wait", "--timeout", "0.3"],
        &json!({"ids": ["short", "long"]}),
    );
    assert_eq!(timed_out["type"], "TaskWaitTimedOut", "{timed_out}");
    assert_eq!(timed_out["details"]["id"], "long");
    assert_eq!(timed_out["details"]["retryable"], true);
    assert_eq!(sandbox.status("long")["status"], "running");

    let missing = sandbox.fail(&["wait"], &json!({"ids": ["long", "ghost"]}));
    assert_eq!(missing["type"], "TaskNotFound");

    let waiter = spawn(sandbox.command_with(&["wait"], &json!({"ids": ["long", "short"]})));
    sandbox.stop("long");
    let all = waiter.finish().data();
    assert_eq!(all["mode"], "all");
    assert_eq!(all["ended"], json!(["long", "short"]), "{all}");
    assert_eq!(all["tasks"][0]["status"], "killed");
}
