//! Issue 20 (scripts) and issue 14 item 10, through the real binary: `--exit-status` makes the
//! exit code follow the tasks, a batch after `--wait` counts how its tasks ended, a signal to
//! a call that waits answers the task it launched (exit 130) instead of leaving it behind
//! unnamed, and progress is read from the forms the common tools print.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::{DEADLINE, Outcome, Sandbox, signal_bit, signal_mask, spawn, wait_until};

/// The envelope on stdout (whatever the exit code) and its data.
fn answered(outcome: &Outcome) -> Value {
    outcome.stdout_envelope()["data"].clone()
}

#[test]
fn exit_status_follows_the_task_a_start_waited_for() {
    let sandbox = Sandbox::new();
    for (shell, code, status) in [
        ("exit 0", 0, "exited"),
        ("exit 3", 3, "exited"),
        ("exit 255", 255, "exited"),
        ("kill -TERM $$", 143, "killed"),
        ("kill -KILL $$", 137, "killed"),
    ] {
        let outcome = sandbox.call(
            &["start", "--wait", "--exit-status"],
            &json!({ "shell": shell }),
        );
        assert_eq!(outcome.code, Some(code), "{shell}: {outcome:#?}");
        assert_eq!(answered(&outcome)["task"]["status"], status, "{shell}");
    }
    // timeout_s: 124, as timeout(1).
    let outcome = sandbox.call(
        &["start", "--wait", "--exit-status"],
        &json!({ "shell": "exec sleep 300", "timeout_s": 0.2, "grace_s": 0.2 }),
    );
    assert_eq!(outcome.code, Some(124), "{outcome:#?}");
    assert_eq!(answered(&outcome)["task"]["status"], "timed_out");
    // Without the flag, the task's end does not change the exit code.
    let outcome = sandbox.call(&["start", "--wait"], &json!({ "shell": "exit 3" }));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    // A ready task that runs on succeeded as far as the wait is concerned.
    let outcome = sandbox.call(
        &["start", "--wait", "--exit-status"],
        &json!({ "id": "srv", "shell": "echo up; exec sleep 300", "ready": {"log": "^up$"} }),
    );
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    sandbox.stop("srv");
    // The flag means nothing without --wait: a usage error.
    let error = sandbox.fail(&["start", "--exit-status"], &json!({ "shell": "exit 3" }));
    assert_eq!(error["type"], "CommandInputError");
}

#[test]
fn exit_status_follows_the_tasks_a_wait_waited_for() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({ "id": "good", "shell": "exit 0" }));
    sandbox.start(&json!({ "id": "bad", "shell": "exit 42" }));
    let outcome = sandbox.call(&["wait", "--exit-status"], &json!({ "id": "good" }));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let outcome = sandbox.call(&["wait", "--exit-status"], &json!({ "id": "bad" }));
    assert_eq!(outcome.code, Some(42), "{outcome:#?}");
    assert_eq!(answered(&outcome)["task"]["exit_code"], 42);
    // Several: the first that did not succeed, in answer order.
    let outcome = sandbox.call(
        &["wait", "--exit-status"],
        &json!({ "ids": ["good", "bad"] }),
    );
    assert_eq!(outcome.code, Some(42), "{outcome:#?}");
    let outcome = sandbox.call(&["wait"], &json!({ "ids": ["good", "bad"] }));
    assert_eq!(outcome.code, Some(0), "without the flag: {outcome:#?}");
    // A stopped task: 128 + SIGTERM.
    sandbox.start(&json!({ "id": "long", "shell": "exec sleep 300" }));
    sandbox.stop("long");
    let outcome = sandbox.call(&["wait", "--exit-status"], &json!({ "id": "long" }));
    assert_eq!(outcome.code, Some(143), "{outcome:#?}");
    // A task that never started: 127.
    let _ = sandbox.call(
        &["start"],
        &json!({ "id": "nope", "command": "/nonexistent/program" }),
    );
    let outcome = sandbox.call(&["wait", "--exit-status"], &json!({ "id": "nope" }));
    assert_eq!(outcome.code, Some(127), "{outcome:#?}");
    assert_eq!(answered(&outcome)["task"]["status"], "failed");
    // The codes are listed.
    let codes: Vec<i64> = sandbox.run(&["capabilities"]).data()["exit_codes"]
        .as_array()
        .expect("exit_codes")
        .iter()
        .filter_map(|c| c["code"].as_i64())
        .collect();
    for code in [0, 1, 124, 125, 127, 130, 137] {
        assert!(codes.contains(&code), "{code} in {codes:?}");
    }
}

/// Issue 20.2: a batch with exit codes 2 and 42 and a timeout said `"outcome":"succeeded",
/// "success_count":4`; the items still all succeeded, but `task_outcomes` counts how the
/// tasks ended, and `--exit-status` follows the first that did not succeed.
#[test]
fn a_waited_batch_counts_how_its_tasks_ended() {
    let sandbox = Sandbox::new();
    let batch = json!([
        { "id": "ok", "shell": "exit 0" },
        { "id": "two", "shell": "exit 2" },
        { "id": "forty-two", "shell": "exit 42" },
        { "id": "slow", "shell": "exec sleep 300", "timeout_s": 0.2, "grace_s": 0.2 },
    ]);
    let outcome = sandbox.call(&["start", "--wait", "--exit-status"], &batch);
    assert_eq!(outcome.code, Some(2), "{outcome:#?}");
    let data = answered(&outcome);
    assert_eq!(data["success_count"], 4, "every item started: {data}");
    assert_eq!(
        data["task_outcomes"],
        json!({
            "outcome": "partial_failure",
            "succeeded": 1,
            "running": 0,
            "exited_nonzero": 2,
            "killed": 0,
            "timed_out": 1,
            "failed": 0,
            "lost": 0,
        }),
        "{data}"
    );
    // Without --wait nothing was waited for: no task_outcomes.
    let data = sandbox.ok(&["start"], &json!([{ "shell": "exit 0" }]));
    assert!(data.get("task_outcomes").is_none(), "{data}");
}

/// Waits until `pid` handles `signal` (its handler is installed): no sleep.
fn handles(pid: i32, signal: Signal) {
    wait_until("the call handles the signal", DEADLINE, || {
        signal_mask(pid, "SigCgt") & signal_bit(signal as i32) != 0
    });
}

/// Issue 20.3: Ctrl-C (or SIGTERM, SIGHUP) to a `start --wait` after it launched answers
/// the task it launched, still running, with its id, and exits 130: the caller can stop it.
#[test]
fn an_interrupted_start_wait_answers_the_task_it_launched() {
    let sandbox = Sandbox::new();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let id = format!("srv-{}", signal.as_str().to_lowercase());
        let pending = spawn(sandbox.command_with(
            &["start", "--wait"],
            &json!({ "id": id, "shell": "exec sleep 300" }),
        ));
        wait_until("the task runs", DEADLINE, || {
            sandbox.task_dir(&id).join("task.json").exists()
                && sandbox.record(&id)["status"] == "running"
        });
        handles(pending.pid(), signal);
        kill(Pid::from_raw(pending.pid()), signal).expect("signal the call");
        let outcome = pending.finish();
        assert_eq!(outcome.code, Some(130), "{outcome:#?}");
        let data = answered(&outcome);
        assert_eq!(data["task"]["id"], id.as_str(), "{data}");
        assert_eq!(data["task"]["status"], "running", "{data}");
        assert_eq!(data["interrupted"], signal.as_str(), "{data}");
        // The task runs on, and the caller knows its id to stop it.
        assert_eq!(sandbox.status(&id)["status"], "running");
        assert_eq!(sandbox.stop(&id)["status"], "killed");
    }
}

/// A `start --wait` batch interrupted: every task it launched is in the answer.
#[test]
fn an_interrupted_batch_answers_every_task_it_launched() {
    let sandbox = Sandbox::new();
    let pending = spawn(sandbox.command_with(
        &["start", "--wait"],
        &json!([
            { "id": "a", "shell": "exec sleep 300" },
            { "id": "b", "shell": "exec sleep 300" },
        ]),
    ));
    for id in ["a", "b"] {
        wait_until("the task runs", DEADLINE, || {
            sandbox.task_dir(id).join("task.json").exists()
                && sandbox.record(id)["status"] == "running"
        });
    }
    handles(pending.pid(), Signal::SIGINT);
    kill(Pid::from_raw(pending.pid()), Signal::SIGINT).expect("signal the call");
    let outcome = pending.finish();
    assert_eq!(outcome.code, Some(130), "{outcome:#?}");
    let data = answered(&outcome);
    assert_eq!(data["interrupted"], "SIGINT", "{data}");
    let ids: Vec<&Value> = data["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| &r["data"]["task"]["id"])
        .collect();
    assert_eq!(ids, [&json!("a"), &json!("b")], "{data}");
    assert_eq!(data["task_outcomes"]["running"], 2, "{data}");
    for id in ["a", "b"] {
        sandbox.stop(id);
    }
}

/// A plain `wait` interrupted ends with its envelope (the task as it is), exit 130.
#[test]
fn an_interrupted_wait_answers_the_tasks_as_they_are() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({ "id": "one", "shell": "exec sleep 300" }));
    sandbox.start(&json!({ "id": "two", "shell": "exit 0" }));
    for (payload, several) in [
        (json!({ "id": "one" }), false),
        (json!({ "ids": ["one", "two"] }), true),
    ] {
        let pending = spawn(sandbox.command_with(&["wait"], &payload));
        handles(pending.pid(), Signal::SIGTERM);
        kill(Pid::from_raw(pending.pid()), Signal::SIGTERM).expect("signal the call");
        let outcome = pending.finish();
        assert_eq!(outcome.code, Some(130), "{outcome:#?}");
        let data = answered(&outcome);
        assert_eq!(data["interrupted"], "SIGTERM", "{data}");
        if several {
            assert_eq!(data["tasks"][0]["status"], "running", "{data}");
            assert_eq!(data["ended"], json!(["two"]), "{data}");
        } else {
            assert_eq!(data["task"]["id"], "one", "{data}");
            assert_eq!(data["task"]["status"], "running", "{data}");
        }
    }
    sandbox.stop("one");
}

/// Issue 14.10: the progress of pytest, tqdm (its last `\r` redraw), cargo and webpack, and
/// seed 000's JSON form, each read from a real task's output.
#[test]
fn progress_is_read_from_the_common_tools_forms() {
    let sandbox = Sandbox::new();
    for (name, output, percent, current, total) in [
        (
            "pytest",
            r"printf '....................... [ 27%%]\n'",
            json!(27.0),
            Value::Null,
            Value::Null,
        ),
        (
            "tqdm",
            r"printf '\r  0%%|          | 0/100 [00:00<?, ?it/s]\r 45%%|####      | 45/100 [00:01<00:02, 40.0it/s]\n'",
            json!(45.0),
            json!(45.0),
            json!(100.0),
        ),
        (
            "cargo",
            r"printf '\033[1m\033[36m    Building\033[0m [=====>      ] 12/80: serde, libc\n'",
            json!(15.0),
            json!(12.0),
            json!(80.0),
        ),
        (
            "webpack",
            r"printf ' 62%% building 31/50 modules\n'",
            json!(62.0),
            json!(31.0),
            json!(50.0),
        ),
        (
            "json",
            r#"printf '{"type":"progress","current":3,"total":17,"message":"linking"}\n'"#,
            json!(17.6),
            json!(3.0),
            json!(17.0),
        ),
    ] {
        let outcome = sandbox.call(
            &["start", "--wait", "--timeout", "60"],
            &json!({
                "id": name,
                "shell": format!("{output}; echo READY; exec sleep 300"),
                "ready": {"log": "^READY$"},
            }),
        );
        let progress = outcome.data()["task"]["progress"].clone();
        assert_eq!(progress["percent"], percent, "{name}: {progress}");
        assert_eq!(progress["current"], current, "{name}: {progress}");
        assert_eq!(progress["total"], total, "{name}: {progress}");
        sandbox.stop(name);
    }
    let forms = sandbox.run(&["capabilities"]).data()["progress_forms"].clone();
    let names: Vec<&str> = forms
        .as_array()
        .expect("progress_forms")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    for name in ["json", "tqdm", "pytest", "cargo", "leading_percent"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
}

/// Issue 20.7: JSON answers and frames give log lines without ANSI escape sequences, `grep`
/// matches the clean text, `"ansi": true` keeps them, and the log file keeps every byte.
#[test]
fn answers_give_log_lines_without_ansi_escapes_unless_asked() {
    let sandbox = Sandbox::new();
    let shell = r"printf '\033[1;31mERROR\033[0m: boom\n\033]0;title\007\033[32mok\033[0m\n'";
    sandbox
        .call(
            &["start", "--wait"],
            &json!({ "id": "colours", "shell": shell }),
        )
        .data();
    let clean = json!(["ERROR: boom", "ok"]);
    let raw = json!([
        "\u{1b}[1;31mERROR\u{1b}[0m: boom",
        "\u{1b}]0;title\u{7}\u{1b}[32mok\u{1b}[0m"
    ]);
    let logs = sandbox.ok(&["logs"], &json!({ "id": "colours" }));
    assert_eq!(logs["lines"], clean, "{logs}");
    let logs = sandbox.ok(&["logs"], &json!({ "id": "colours", "ansi": true }));
    assert_eq!(logs["lines"], raw, "{logs}");
    // grep sees the clean text, whatever the answer shows.
    for ansi in [false, true] {
        let logs = sandbox.ok(
            &["logs"],
            &json!({ "id": "colours", "grep": "^ERROR: boom$", "ansi": ansi }),
        );
        assert_eq!(logs["lines"].as_array().map(Vec::len), Some(1), "{logs}");
    }
    // Frames: events, and logs --stream (which ends: the task has ended).
    let line_frames = |outcome: &Outcome| -> Vec<Value> {
        outcome
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|f| f["type"] == "task.log.line")
            .map(|f| f["data"]["line"].clone())
            .collect()
    };
    let events = sandbox.ok(&["events"], &json!({ "id": "colours" }));
    let lines: Vec<Value> = events["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .filter(|f| f["type"] == "task.log.line")
        .map(|f| f["data"]["line"].clone())
        .collect();
    assert_eq!(Value::from(lines), clean, "{events}");
    let stream = sandbox.call(&["logs", "--stream"], &json!({ "id": "colours" }));
    assert_eq!(Value::from(line_frames(&stream)), clean, "{stream:#?}");
    let stream = sandbox.call(
        &["events", "--stream"],
        &json!({ "id": "colours", "ansi": true }),
    );
    assert_eq!(Value::from(line_frames(&stream)), raw, "{stream:#?}");
    // The log file keeps the bytes.
    let log = sandbox.log("colours");
    assert!(log.contains("\u{1b}[1;31mERROR"), "{log:?}");
    // TaskNotReady's log_tail is clean too.
    let error = sandbox.fail(
        &["start", "--wait"],
        &json!({ "id": "never", "shell": format!("{shell}; exit 1"), "ready": {"log": "^listening"} }),
    );
    assert_eq!(error["type"], "TaskNotReady", "{error}");
    assert_eq!(error["details"]["log_tail"], clean, "{error}");
}

/// `restart --wait --exit-status`, one task and a batch, like `start --wait`.
#[test]
fn exit_status_follows_the_runs_a_restart_waited_for() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "three", "shell": "exit 3"}));
    sandbox.start(&json!({"id": "zero", "shell": "exit 0"}));
    sandbox.wait("three");
    sandbox.wait("zero");
    let outcome = sandbox.call(
        &["restart", "--wait", "--exit-status"],
        &json!({"id": "three"}),
    );
    assert_eq!(outcome.code, Some(3), "{outcome:#?}");
    let answer = answered(&outcome);
    assert_eq!(
        (&answer["task"]["run"], &answer["task"]["exit_code"]),
        (&json!(2), &json!(3))
    );
    let outcome = sandbox.call(&["restart", "--wait"], &json!({"id": "three"}));
    assert_eq!(outcome.code, Some(0), "without the flag: {outcome:#?}");
    let outcome = sandbox.call(
        &["restart", "--wait", "--exit-status"],
        &json!([{"id": "zero"}, {"id": "three"}]),
    );
    assert_eq!(outcome.code, Some(3), "{outcome:#?}");
    let batch = answered(&outcome);
    assert_eq!(batch["task_outcomes"]["succeeded"], 1, "{batch}");
    assert_eq!(batch["task_outcomes"]["exited_nonzero"], 1, "{batch}");
    // Without --wait the flag is refused (it needs an end to follow).
    let refused = sandbox.call(&["restart", "--exit-status"], &json!({"id": "zero"}));
    assert_eq!(refused.error()["type"], "CommandInputError", "{refused:#?}");
}
