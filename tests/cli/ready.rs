//! Readiness and progress (DESIGN §3 `ready`, `progress`; §4 `ready`, `wait`, `progress`):
//! `start {ready}` by log line, port and HTTP answer; `TaskNotReady` with the log tail when
//! the task ends or the readiness deadline passes first; `PortInUse` before a start; `wait
//! {until}`; `status` ports from /proc; progress parsed from the task's output, with
//! throttled `task.progress` frames.
//!
//! Every test picks its own free port (bind 127.0.0.1:0, read the number, drop the
//! listener); servers are `python3 -m http.server PORT --bind 127.0.0.1`. Tasks that must
//! not do something until the test says so wait for a file `go` in the working directory.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BIN, DEADLINE, Outcome, Sandbox, processes, spawn, wait_until};

/// Bounds a blocking call that should answer within seconds (a hang bound, not a timing
/// assertion).
const BOUND: &str = "30";

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("the bound address").port()
}

/// A shell line that serves HTTP from the working directory on `port` (after `prefix`).
fn server(prefix: &str, port: u16) -> String {
    format!("{prefix}exec python3 -m http.server {port} --bind 127.0.0.1")
}

/// A shell line that waits for the file `go` in the working directory, then runs `then`.
fn gated(then: &str) -> String {
    format!("while [ ! -e go ]; do sleep 0.02; done; {then}")
}

/// Lets a [`gated`] task go on.
fn open_gate(sandbox: &Sandbox) {
    fs::write(sandbox.work().join("go"), b"").expect("create the gate file");
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5)).is_ok()
}

/// The status code of `GET path` on 127.0.0.1:`port`.
fn http_status(port: u16, path: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .expect("send the request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_ascii_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    status
        .parse()
        .unwrap_or_else(|e| panic!("status {status:?}: {e}"))
}

/// The ports a task's `status` reports, as a set (`None` while the field is not an array).
fn ports(sandbox: &Sandbox, id: &str) -> Option<BTreeSet<u64>> {
    let task = sandbox.status(id);
    let ports = task["ports"].as_array()?;
    Some(
        ports
            .iter()
            .map(|p| p.as_u64().unwrap_or_else(|| panic!("a port: {task}")))
            .collect(),
    )
}

/// The frames `events {id}` answers of one type (no past log lines asked for).
fn frames_of(sandbox: &Sandbox, id: &str, kind: &str) -> Vec<Value> {
    let events = sandbox.ok(&["events"], &json!({"id": id, "lines": 0}));
    events["frames"]
        .as_array()
        .unwrap_or_else(|| panic!("no frames: {events}"))
        .iter()
        .filter(|f| f["type"] == kind)
        .cloned()
        .collect()
}

/// A `task.progress` frame's progress object (the frame's `data`, or `data.progress`).
fn frame_progress(frame: &Value) -> Value {
    let data = &frame["data"];
    if data["progress"].is_object() {
        data["progress"].clone()
    } else {
        data.clone()
    }
}

/// A number field as f64, panicking with the whole object if it is not a number.
fn number(object: &Value, key: &str) -> f64 {
    object[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {object}"))
}

/// Checks a `TaskNotReady` error: the task's status and exit code, and `line` among the
/// log tail's lines.
fn check_not_ready(error: &Value, status: &str, exit_code: &Value, line: &str) {
    assert_eq!(error["type"], "TaskNotReady", "{error}");
    let details = &error["details"];
    assert_eq!(details["status"], status, "{error}");
    assert_eq!(&details["exit_code"], exit_code, "{error}");
    let tail = details["log_tail"]
        .as_array()
        .unwrap_or_else(|| panic!("log_tail is not an array: {error}"));
    assert!(
        tail.iter().any(|l| l.as_str() == Some(line)),
        "log_tail lacks {line:?}: {error}"
    );
}

/// Whether a live (non-zombie) process has `marker` in its command line.
fn marked_process_runs(marker: &str) -> bool {
    processes().into_iter().any(|p| {
        p.state != 'Z'
            && fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
    })
}

/// One kind of ready condition, as a test drives it: the task's shell line, its condition,
/// and what must be true of the world once the condition is answered as holding.
struct Condition {
    id: &'static str,
    shell: String,
    condition: Value,
    holds: Box<dyn Fn(&Sandbox)>,
}

/// A log line, a port and an HTTP answer (2xx, and a 3xx redirect), each held back a little
/// by the task so that an answer given too early would be caught.
fn each_condition_of_start(sandbox: &Sandbox) -> Vec<Condition> {
    let port = free_port();
    let http_port = free_port();
    let redirect_port = free_port();
    // http.server answers a directory without its slash with 301: a redirect is ready too.
    fs::create_dir(sandbox.work().join("sub")).expect("a directory to serve");
    vec![
        Condition {
            id: "logready",
            shell: "echo booting; sleep 0.3; echo 'listening on 8080'; sleep 100".into(),
            condition: json!({"log": "listening on \\d+"}),
            holds: Box::new(|sandbox| {
                assert!(
                    sandbox.log("logready").contains("listening on 8080\n"),
                    "answered ready before the line was out: {:?}",
                    sandbox.log("logready")
                );
            }),
        },
        Condition {
            id: "portready",
            shell: server("sleep 0.5; ", port),
            condition: json!({"port": port}),
            holds: Box::new(move |_| {
                assert!(accepts(port), "ready, but nothing accepts on port {port}");
            }),
        },
        Condition {
            id: "httpready",
            shell: server("sleep 0.5; ", http_port),
            condition: json!({"http": format!("http://127.0.0.1:{http_port}/")}),
            holds: Box::new(move |_| assert_eq!(http_status(http_port, "/"), 200)),
        },
        Condition {
            id: "redirect",
            shell: server("sleep 0.5; ", redirect_port),
            condition: json!({"http": format!("http://127.0.0.1:{redirect_port}/sub")}),
            holds: Box::new(move |_| assert_eq!(http_status(redirect_port, "/sub"), 301)),
        },
    ]
}

/// `start --wait` with a log, port or HTTP condition (a 3xx counts) answers only once it
/// holds, with the task still running and ready.
#[test]
fn start_wait_answers_once_each_kind_of_condition_holds() {
    let sandbox = Sandbox::new();
    for case in each_condition_of_start(&sandbox) {
        let id = case.id;
        let data = sandbox.ok(
            &["start", "--wait", "--timeout", BOUND],
            &json!({"id": id, "shell": case.shell, "ready": case.condition}),
        );
        let task = &data["task"];
        assert_eq!(task["ready"], true, "{id}: {data}");
        assert_eq!(task["status"], "running", "{id}: {data}");
        (case.holds)(&sandbox);
        let status = sandbox.status(id);
        assert_eq!(status["status"], "running", "{id}: {status}");
        assert_eq!(status["ready"], true, "{id}: {status}");
        assert!(sandbox.leader(id).is_alive(), "{id}");
        sandbox.stop(id);
    }
}

/// With log, port and http given, every one must hold: the answer waits for the last of
/// them, whichever it is.
#[test]
fn start_wait_with_all_three_conditions_waits_for_every_one() {
    let sandbox = Sandbox::new();

    // The log line comes a second after the server is up.
    let port = free_port();
    let data = sandbox.ok(
        &["start", "--wait", "--timeout", BOUND],
        &json!({
            "id": "loglast",
            "shell": format!(
                "python3 -m http.server {port} --bind 127.0.0.1 & sleep 1; echo LATE; wait"
            ),
            "ready": {
                "log": "^LATE$",
                "port": port,
                "http": format!("http://127.0.0.1:{port}/"),
            },
        }),
    );
    assert_eq!(data["task"]["ready"], true, "{data}");
    assert_eq!(data["task"]["status"], "running", "{data}");
    assert!(
        sandbox.log("loglast").contains("LATE\n"),
        "answered ready before the log line: {:?}",
        sandbox.log("loglast")
    );
    assert_eq!(http_status(port, "/"), 200);
    sandbox.stop("loglast");

    // The server comes half a second after the log line.
    let port = free_port();
    let data = sandbox.ok(
        &["start", "--wait", "--timeout", BOUND],
        &json!({
            "id": "portlast",
            "shell": server("echo EARLY; sleep 0.5; ", port),
            "ready": {
                "log": "EARLY",
                "port": port,
                "http": format!("http://127.0.0.1:{port}/"),
            },
        }),
    );
    assert_eq!(data["task"]["ready"], true, "{data}");
    assert_eq!(data["task"]["status"], "running", "{data}");
    assert!(accepts(port), "ready, but nothing accepts on port {port}");
    assert_eq!(http_status(port, "/"), 200);
    sandbox.stop("portlast");
}

/// A task that exits before it is ready fails `start --wait` with `TaskNotReady`, its exit
/// code and its last lines.
#[test]
fn a_task_that_exits_before_ready_is_task_not_ready_with_the_log_tail() {
    let sandbox = Sandbox::new();
    let outcome = sandbox.call(
        &["start", "--wait", "--timeout", BOUND],
        &json!({
            "id": "boom",
            "shell": "echo boom; exit 3",
            "ready": {"log": "never printed"},
        }),
    );
    let envelope = outcome.failure();
    assert_eq!(envelope["command"], "start", "{envelope}");
    let error = &envelope["error"];
    check_not_ready(error, "exited", &json!(3), "boom");
    assert!(
        outcome.elapsed < Duration::from_secs(20),
        "TaskNotReady came only after {:?}, not when the task exited",
        outcome.elapsed
    );
    let task = sandbox.status("boom");
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 3, "{task}");
    assert_eq!(task["ready"], false, "{task}");
}

/// `ready.timeout_s` passing first is `TaskNotReady` too; the task runs on. The call's
/// `--timeout` passing first is `TaskWaitTimedOut`.
#[test]
fn the_ready_timeout_is_task_not_ready_and_the_task_runs_on() {
    let sandbox = Sandbox::new();
    let outcome = sandbox.call(
        &["start", "--wait", "--timeout", BOUND],
        &json!({
            "id": "slow",
            "shell": "echo waiting; sleep 100",
            "ready": {"log": "READY", "timeout_s": 0.5},
        }),
    );
    let error = outcome.error();
    check_not_ready(&error, "running", &Value::Null, "waiting");
    assert!(
        outcome.elapsed < Duration::from_secs(20),
        "ready.timeout_s 0.5 answered only after {:?} (was it ignored for --timeout {BOUND}?)",
        outcome.elapsed
    );
    let task = sandbox.status("slow");
    assert_eq!(task["status"], "running", "{task}");
    assert_eq!(task["ready"], false, "{task}");
    assert!(sandbox.leader("slow").is_alive());
    sandbox.stop("slow");

    // `--timeout` bounds readiness too when the payload sets no timeout_s; the call's own
    // bound running out is the retryable TaskWaitTimedOut (DESIGN §1), with the task's
    // status and the cursor its log reached.
    let error = sandbox.fail(
        &["start", "--wait", "--timeout", "0.5"],
        &json!({
            "id": "slower",
            "shell": "echo still waiting; sleep 100",
            "ready": {"log": "READY"},
        }),
    );
    assert_eq!(error["type"], "TaskWaitTimedOut", "{error}");
    assert_eq!(error["details"]["status"], "running", "{error}");
    assert_eq!(error["details"]["retryable"], true, "{error}");
    let cursor = error["details"]["cursor"].as_str().expect("a cursor");
    let since = sandbox.ok(&["logs"], &json!({"id": "slower", "after": "1:0"}));
    assert_eq!(since["next_cursor"], cursor, "{error} {since}");
    assert_eq!(sandbox.status("slower")["status"], "running");
    assert!(sandbox.leader("slower").is_alive());
    sandbox.stop("slower");
}

/// A port someone already listens on fails `start` at once with `PortInUse`, naming the
/// port and the holder (here this test process), and leaves no task process running.
#[test]
fn a_ready_port_already_held_is_port_in_use_naming_the_holder() {
    let sandbox = Sandbox::new();
    let holder = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = holder.local_addr().expect("the held address").port();
    for (id, args) in [
        ("blocked", &["start"][..]),
        ("blocked-wait", &["start", "--wait", "--timeout", BOUND][..]),
    ] {
        let marker = format!("marker-{id}-{port}");
        let outcome = sandbox.call(
            args,
            &json!({
                "id": id,
                "shell": format!("sleep 100; : {marker}"),
                "ready": {"port": port},
            }),
        );
        let error = outcome.error();
        assert_eq!(error["type"], "PortInUse", "{args:?}: {error}");
        assert_eq!(error["details"]["port"], port, "{error}");
        assert_eq!(error["details"]["pid"], std::process::id(), "{error}");
        assert!(
            error["details"]["task_id"].is_null(),
            "the holder is no task: {error}"
        );
        assert!(
            outcome.elapsed < Duration::from_secs(20),
            "PortInUse took {:?}",
            outcome.elapsed
        );
        let status = sandbox.call(&["status"], &json!({"id": id}));
        if status.code == Some(0) {
            let task = &status.data()["task"];
            assert_ne!(task["status"], "running", "{task}");
            assert_ne!(task["status"], "queued", "{task}");
        } else {
            assert_eq!(status.error()["type"], "TaskNotFound");
        }
        wait_until("no process of the refused task runs", DEADLINE, || {
            !marked_process_runs(&marker)
        });
    }
    drop(holder);
}

/// When the holder of the port is another task of ours, `PortInUse` names it too.
#[test]
fn a_ready_port_held_by_another_task_is_port_in_use_naming_that_task() {
    let sandbox = Sandbox::new();
    let port = free_port();
    let first = sandbox.ok(
        &["start", "--wait", "--timeout", BOUND],
        &json!({"id": "first", "shell": server("", port), "ready": {"port": port}}),
    );
    assert_eq!(first["task"]["ready"], true, "{first}");
    let first_pid = first["task"]["pid"].clone();

    let marker = format!("marker-second-{port}");
    let error = sandbox.fail(
        &["start"],
        &json!({
            "id": "second",
            "shell": server(&format!(": {marker}; "), port),
            "ready": {"port": port},
        }),
    );
    assert_eq!(error["type"], "PortInUse", "{error}");
    assert_eq!(error["details"]["port"], port, "{error}");
    assert_eq!(error["details"]["pid"], first_pid, "{error}");
    assert_eq!(error["details"]["task_id"], "first", "{error}");
    wait_until("no process of the refused task runs", DEADLINE, || {
        !marked_process_runs(&marker)
    });
    assert_eq!(sandbox.status("first")["status"], "running");
    sandbox.stop("first");
}

/// `status` reports the ports the task's processes listen on, children included; a task
/// that listens on nothing shows none.
#[test]
fn status_reports_the_ports_the_tasks_processes_listen_on() {
    let sandbox = Sandbox::new();
    let port = free_port();
    sandbox.start(&json!({"id": "one", "shell": server("", port)}));
    wait_until("status shows the server's port", DEADLINE, || {
        ports(&sandbox, "one") == Some(BTreeSet::from([u64::from(port)]))
    });

    let (a, b) = (free_port(), free_port());
    sandbox.start(&json!({
        "id": "two",
        "shell": format!(
            "python3 -m http.server {a} --bind 127.0.0.1 & \
             python3 -m http.server {b} --bind 127.0.0.1 & wait"
        ),
    }));
    wait_until("status shows both children's ports", DEADLINE, || {
        ports(&sandbox, "two") == Some(BTreeSet::from([u64::from(a), u64::from(b)]))
    });

    sandbox.start(&json!({"id": "quiet", "command": "sleep", "args": ["100"]}));
    let task = sandbox.status("quiet");
    assert_eq!(task["ports"], json!([]), "{task}");
    for id in ["one", "two", "quiet"] {
        sandbox.stop(id);
    }
}

/// Without `--wait`, `start` answers `ready: false` at once; the supervisor then records
/// `ready: true` and a `task.ready` frame. A task without a condition has `ready: null`.
#[test]
fn readiness_is_recorded_without_wait_with_a_task_ready_frame() {
    let sandbox = Sandbox::new();
    let task = sandbox.start(&json!({
        "id": "later",
        "shell": gated("echo READY; sleep 100"),
        "ready": {"log": "^READY$"},
    }));
    assert_eq!(task["ready"], false, "{task}");
    assert_eq!(task["status"], "running", "{task}");
    assert_eq!(sandbox.status("later")["ready"], false);
    assert!(frames_of(&sandbox, "later", "task.ready").is_empty());

    open_gate(&sandbox);
    wait_until("status says ready", DEADLINE, || {
        sandbox.status("later")["ready"] == true
    });
    assert_eq!(sandbox.status("later")["status"], "running");
    let ready = frames_of(&sandbox, "later", "task.ready");
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert_eq!(ready[0]["task_id"], "later", "{ready:?}");
    sandbox.stop("later");

    let plain = sandbox.start(&json!({"id": "plain", "command": "sleep", "args": ["100"]}));
    assert_eq!(plain["ready"], Value::Null, "{plain}");
    assert_eq!(sandbox.status("plain")["ready"], Value::Null);
    sandbox.stop("plain");
}

/// A line printed by run 1 does not make run 2 ready.
#[test]
fn after_restart_the_previous_runs_line_does_not_count() {
    let sandbox = Sandbox::new();
    let data = sandbox.ok(
        &["start", "--wait", "--timeout", BOUND],
        &json!({
            "id": "twice",
            "shell": "if [ -e once ]; then sleep 100; else touch once; echo READY; sleep 100; fi",
            "ready": {"log": "READY"},
        }),
    );
    assert_eq!(data["task"]["ready"], true, "{data}");
    let restarted = sandbox.ok(&["restart"], &json!({"id": "twice"}));
    assert_eq!(restarted["task"]["run"], 2, "{restarted}");
    assert_eq!(restarted["task"]["status"], "running", "{restarted}");

    let error = sandbox.fail(
        &["wait", "--timeout", "1"],
        &json!({"id": "twice", "until": {"log": "READY"}}),
    );
    assert_eq!(error["type"], "TaskWaitTimedOut", "{error}");
    let task = sandbox.status("twice");
    assert_eq!(task["run"], 2, "{task}");
    assert_eq!(task["status"], "running", "{task}");
    assert_eq!(task["ready"], false, "run 2 never printed READY: {task}");
    assert!(
        !sandbox.log("twice").contains("READY"),
        "{:?}",
        sandbox.log("twice")
    );
    sandbox.stop("twice");
}

/// `wait {until}` with a log line, a port or an HTTP answer as its condition: it times out
/// (retryable) while the gated task cannot meet it, and answers the running task once the
/// task is let go and the condition holds.
#[test]
fn wait_until_each_kind_of_condition() {
    let port = free_port();
    let http_port = free_port();
    let cases = [
        Condition {
            id: "w",
            shell: "echo LISTENING; sleep 100".into(),
            condition: json!({"log": "LISTEN\\w+"}),
            holds: Box::new(|sandbox| assert!(sandbox.log("w").contains("LISTENING\n"))),
        },
        Condition {
            id: "p",
            shell: server("", port),
            condition: json!({"port": port}),
            holds: Box::new(move |_| {
                assert!(
                    accepts(port),
                    "wait answered, but nothing accepts on {port}"
                );
            }),
        },
        Condition {
            id: "h",
            shell: server("", http_port),
            condition: json!({"http": format!("http://127.0.0.1:{http_port}/")}),
            holds: Box::new(move |_| assert_eq!(http_status(http_port, "/"), 200)),
        },
    ];
    for Condition {
        id,
        shell,
        condition,
        holds,
    } in cases
    {
        // A sandbox each: the gate is a file in the working directory.
        let sandbox = Sandbox::new();
        sandbox.start(&json!({"id": id, "shell": gated(&shell)}));
        let until = json!({"id": id, "until": condition});
        let error = sandbox.fail(&["wait", "--timeout", "0.5"], &until);
        assert_eq!(error["type"], "TaskWaitTimedOut", "{id}: {error}");
        assert_eq!(error["details"]["retryable"], true, "{id}: {error}");

        let waiter = spawn(sandbox.command_with(&["wait", "--timeout", BOUND], &until));
        open_gate(&sandbox);
        let data = waiter.finish().data();
        assert_eq!(data["task_id"], id, "{data}");
        assert_eq!(data["status"], "running", "{id}: {data}");
        assert_eq!(data["task"]["status"], "running", "{id}: {data}");
        holds(&sandbox);
        sandbox.stop(id);
    }
}

/// `wait {until: "exit"}` is the plain wait for the end.
#[test]
fn wait_until_exit_waits_for_the_end() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "e", "shell": "exit 5"}));
    let data = sandbox.ok(
        &["wait", "--timeout", BOUND],
        &json!({"id": "e", "until": "exit"}),
    );
    assert_eq!(data["status"], "exited", "{data}");
    assert_eq!(data["task"]["exit_code"], 5, "{data}");
}

/// `wait {until}` on a task that ends before the condition holds is `TaskNotReady` with the
/// exit code and the log tail.
#[test]
fn wait_until_on_a_task_that_ends_first_is_task_not_ready() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "quits", "shell": gated("echo bye; exit 2")}));
    let waiter = spawn(sandbox.command_with(
        &["wait", "--timeout", BOUND],
        &json!({"id": "quits", "until": {"log": "never printed"}}),
    ));
    open_gate(&sandbox);
    let outcome: Outcome = waiter.finish();
    let envelope = outcome.failure();
    assert_eq!(envelope["command"], "wait", "{envelope}");
    check_not_ready(&envelope["error"], "exited", &json!(2), "bye");

    // The same when the task had already ended before the wait.
    let error = sandbox.fail(
        &["wait", "--timeout", BOUND],
        &json!({"id": "quits", "until": {"port": free_port()}}),
    );
    check_not_ready(&error, "exited", &json!(2), "bye");
}

/// `wait {until: {http}}`: a 404 never counts as an answer.
#[test]
fn wait_until_an_http_answer_never_counts_a_404() {
    let sandbox = Sandbox::new();
    let port = free_port();
    sandbox.start(&json!({"id": "h", "shell": server("", port)}));
    let until = json!({"id": "h", "until": {"http": format!("http://127.0.0.1:{port}/")}});
    sandbox.ok(&["wait", "--timeout", BOUND], &until);
    assert_eq!(http_status(port, "/missing"), 404);
    let error = sandbox.fail(
        &["wait", "--timeout", "1"],
        &json!({"id": "h", "until": {"http": format!("http://127.0.0.1:{port}/missing")}}),
    );
    assert_eq!(
        error["type"], "TaskWaitTimedOut",
        "a 404 is not ready: {error}"
    );
    sandbox.stop("h");
}

/// One progress form: the line a task prints and the progress it must give.
#[derive(Debug)]
struct Form {
    id: &'static str,
    line: &'static str,
    current: Option<f64>,
    total: Option<f64>,
    percent: f64,
    message: Option<&'static str>,
}

impl Form {
    fn new(id: &'static str, line: &'static str, percent: f64) -> Form {
        Form {
            id,
            line,
            current: None,
            total: None,
            percent,
            message: None,
        }
    }

    fn of(self, current: f64, total: f64) -> Form {
        Form {
            current: Some(current),
            total: Some(total),
            ..self
        }
    }
}

/// Each progress form sets `task.progress` from the newest matching line; lines that match
/// none leave it as it was.
#[test]
fn each_progress_form_sets_the_tasks_progress() {
    let sandbox = Sandbox::new();
    let cases = [
        Form::new("percent-label", "Progress: 42%", 42.0),
        Form::new("percent-end", "downloading 57%", 57.0),
        Form::new("step", "step 3/17", 300.0 / 17.0).of(3.0, 17.0),
        Form::new("bracket", "[5/20] Compiling foo", 25.0).of(5.0, 20.0),
        Form {
            message: Some("linking"),
            ..Form::new(
                "json",
                r#"{"type":"progress","current":3,"total":17,"message":"linking"}"#,
                300.0 / 17.0,
            )
            .of(3.0, 17.0)
        },
    ];
    for form in &cases {
        // An older progress line first, a line that is no progress after.
        let shell = format!("echo 'step 1/2'; printf '%s\\n' '{}'; echo done", form.line);
        sandbox.start(&json!({"id": form.id, "shell": shell}));
    }
    for Form {
        id,
        line,
        current,
        total,
        percent,
        message,
    } in cases
    {
        let task = sandbox.wait(id);
        assert_eq!(task["status"], "exited", "{task}");
        let progress = &task["progress"];
        assert!(progress.is_object(), "{line:?} set no progress: {task}");
        let got = number(progress, "percent");
        assert!(
            (got - percent).abs() < 0.1,
            "{line:?}: percent {got}, not {percent}: {progress}"
        );
        if let Some(current) = current {
            assert_eq!(number(progress, "current"), current, "{line:?}: {progress}");
        }
        if let Some(total) = total {
            assert_eq!(number(progress, "total"), total, "{line:?}: {progress}");
        }
        if let Some(message) = message {
            assert_eq!(progress["message"], message, "{line:?}: {progress}");
        }
        assert_eq!(sandbox.status(id)["progress"], *progress);
        let frames = frames_of(&sandbox, id, "task.progress");
        assert!(!frames.is_empty(), "{line:?}: no task.progress frame");
    }
}

/// Progress shows while the task runs, with a `task.progress` frame, and moves on with it.
#[test]
fn progress_updates_while_the_task_runs() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "live",
        "shell": format!("echo 'step 2/4'; {}", gated("echo 'step 4/4'; sleep 100")),
    }));
    wait_until("status shows step 2 of 4", DEADLINE, || {
        sandbox.status("live")["progress"]["current"].as_f64() == Some(2.0)
    });
    let progress = sandbox.status("live")["progress"].clone();
    assert_eq!(number(&progress, "total"), 4.0, "{progress}");
    assert!(
        (number(&progress, "percent") - 50.0).abs() < 0.1,
        "{progress}"
    );
    wait_until("a task.progress frame for step 2", DEADLINE, || {
        frames_of(&sandbox, "live", "task.progress")
            .iter()
            .any(|f| frame_progress(f)["current"].as_f64() == Some(2.0))
    });

    open_gate(&sandbox);
    wait_until("status shows step 4 of 4", DEADLINE, || {
        sandbox.status("live")["progress"]["current"].as_f64() == Some(4.0)
    });
    let progress = sandbox.status("live")["progress"].clone();
    assert!(
        (number(&progress, "percent") - 100.0).abs() < 0.1,
        "{progress}"
    );
    assert_eq!(sandbox.status("live")["status"], "running");
    sandbox.stop("live");
}

/// 10,000 progress lines in a tight loop make far fewer `task.progress` frames, in order,
/// and the task ends with the last line's progress.
#[test]
fn progress_frames_are_throttled_and_the_last_line_wins() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "flood",
        "shell": "awk 'BEGIN { for (i = 1; i <= 10000; i++) print \"step \" i \"/10000\" }'",
    }));
    let task = sandbox.wait("flood");
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 0, "{task}");
    assert_eq!(sandbox.log("flood").lines().count(), 10_000);
    let progress = &task["progress"];
    assert_eq!(number(progress, "current"), 10_000.0, "{task}");
    assert_eq!(number(progress, "total"), 10_000.0, "{task}");
    assert!((number(progress, "percent") - 100.0).abs() < 0.01, "{task}");
    assert_eq!(sandbox.status("flood")["progress"], *progress);

    let frames = frames_of(&sandbox, "flood", "task.progress");
    assert!(!frames.is_empty(), "no task.progress frame at all");
    assert!(
        frames.len() <= 1_000,
        "{} task.progress frames for 10,000 lines: not throttled",
        frames.len()
    );
    let currents: Vec<f64> = frames
        .iter()
        .map(|f| number(&frame_progress(f), "current"))
        .collect();
    assert!(
        currents.windows(2).all(|w| w[0] < w[1]),
        "frames out of order: {currents:?}"
    );
}

/// Output without progress lines leaves `progress` null and makes no frames.
#[test]
fn output_without_progress_lines_leaves_progress_null() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "plain",
        "shell": "echo hello; echo 'version 1.2.3'; echo 'the rate is 42% higher than before'; \
                  echo '{\"type\":\"log\",\"msg\":\"hi\"}'",
    }));
    let task = sandbox.wait("plain");
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["progress"], Value::Null, "{task}");
    assert_eq!(sandbox.status("plain")["progress"], Value::Null);
    assert!(frames_of(&sandbox, "plain", "task.progress").is_empty());
}

/// Runs the binary with `args` and `payload` under `/bin/sh` and answers the CPU time it
/// used (user + system, in seconds, from the shell's `times`) and its envelope.
fn cpu_seconds(sandbox: &Sandbox, args: &[&str], payload: &Value) -> (f64, Value) {
    let mut command = sandbox.sealed("/bin/sh");
    command
        .arg("-c")
        .arg(r#""$0" "$@" 2>&1; times"#)
        .arg(BIN)
        .args(args)
        .arg(payload.to_string());
    let outcome = spawn(command).finish();
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    let [envelope, _shell, children] = lines[..] else {
        panic!("expected an envelope and two lines of times: {outcome:#?}");
    };
    let envelope: Value =
        serde_json::from_str(envelope).unwrap_or_else(|e| panic!("not JSON ({e}): {outcome:#?}"));
    // "0m0.080000s 0m0.004000s": minutes and seconds of user, then of system time.
    let seconds = children
        .split_ascii_whitespace()
        .map(|t| {
            let (minutes, seconds) = t
                .strip_suffix('s')
                .and_then(|t| t.split_once('m'))
                .unwrap_or_else(|| panic!("a time: {t:?} in {outcome:#?}"));
            minutes.parse::<f64>().expect("minutes") * 60.0
                + seconds.parse::<f64>().expect("seconds")
        })
        .sum();
    (seconds, envelope)
}

/// DESIGN §6: waiting blocks on notifications, it does not spin. Each of these readiness
/// waits runs out its 1 s `--timeout`; one that blocks (trying a port or URL every few tens
/// of ms) uses a few ms of CPU, one that polls in a loop uses the whole second, and starves
/// the very servers it waits for on a busy machine.
#[test]
fn readiness_waits_block_instead_of_spinning() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "idle", "command": "sleep", "args": ["100"]}));
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let cases = [
        (
            &["wait", "--timeout", "1"][..],
            json!({"id": "idle", "until": {"log": "never printed"}}),
            "TaskWaitTimedOut",
        ),
        (
            &["wait", "--timeout", "1"],
            json!({"id": "idle", "until": {"port": port}}),
            "TaskWaitTimedOut",
        ),
        (
            &["wait", "--timeout", "1"],
            json!({"id": "idle", "until": {"http": url}}),
            "TaskWaitTimedOut",
        ),
        // The call's own bound ran out (not the condition's timeout_s): TaskWaitTimedOut,
        // as for wait (DESIGN §1).
        (
            &["start", "--wait", "--timeout", "1"],
            json!({"id": "ready-log", "shell": "sleep 100", "ready": {"log": "never printed"}}),
            "TaskWaitTimedOut",
        ),
        (
            &["start", "--wait", "--timeout", "1"],
            json!({"id": "ready-port", "shell": "sleep 100", "ready": {"port": port}}),
            "TaskWaitTimedOut",
        ),
    ];
    for (args, payload, kind) in cases {
        let (cpu, envelope) = cpu_seconds(&sandbox, args, &payload);
        assert_eq!(
            envelope["error"]["type"], kind,
            "{args:?} {payload}: {envelope}"
        );
        assert!(
            cpu < 0.3,
            "{args:?} {payload} used {cpu:.2} s of CPU in a 1 s wait: it polls instead of blocking"
        );
    }
    for id in ["idle", "ready-log", "ready-port"] {
        sandbox.stop(id);
    }
}

/// Bad ready conditions are `CommandInputError`s naming the JSON path; nothing is created.
#[test]
fn invalid_ready_conditions_name_their_path() {
    let sandbox = Sandbox::new();
    let cases = [
        (json!({"log": "(unclosed"}), "ready.log"),
        (json!({"port": 0}), "ready.port"),
        (json!({"port": 65_536}), "ready.port"),
        (json!({"port": 70_000}), "ready.port"),
        (json!({"http": "ftp://127.0.0.1/"}), "ready.http"),
        (json!({"http": "not a url"}), "ready.http"),
        (json!({"log": "ok", "port": -1}), "ready.port"),
        (json!({"log": "ok", "timeout_s": -1}), "ready.timeout_s"),
    ];
    for (ready, path) in cases {
        let payload = json!({"id": "bad", "command": "true", "ready": ready});
        for args in [&["start"][..], &["start", "--wait", "--timeout", BOUND]] {
            let error = sandbox.fail(args, &payload);
            assert_eq!(error["type"], "CommandInputError", "{payload}: {error}");
            assert_eq!(error["details"]["path"], path, "{payload}: {error}");
            assert_eq!(error["details"]["retryable"], false, "{error}");
        }
    }
    let error = sandbox.fail(
        &["start"],
        &json!({"command": "true", "ready": {"bogus": 1}}),
    );
    assert_eq!(error["type"], "CommandInputError", "{error}");
    let message = error["message"].as_str().expect("a message");
    for field in ["`log`", "`port`", "`http`"] {
        assert!(message.contains(field), "{message} does not name {field}");
    }
    assert!(
        !sandbox.state().join("tasks").join("bad").exists(),
        "an invalid start left a task behind"
    );

    // `wait` takes the same conditions as `until`, checked the same way.
    sandbox.start(&json!({"id": "target", "command": "sleep", "args": ["100"]}));
    let cases = [
        (json!({"log": "(unclosed"}), "until.log"),
        (json!({"port": 0}), "until.port"),
        (json!({"port": 70_000}), "until.port"),
        (json!({"http": "ftp://127.0.0.1/"}), "until.http"),
        (json!("sometime"), "until"),
    ];
    for (until, path) in cases {
        let payload = json!({"id": "target", "until": until});
        let error = sandbox.fail(&["wait", "--timeout", BOUND], &payload);
        assert_eq!(error["type"], "CommandInputError", "{payload}: {error}");
        assert_eq!(error["details"]["path"], path, "{payload}: {error}");
    }
    assert_eq!(sandbox.status("target")["status"], "running");
    sandbox.stop("target");
}
