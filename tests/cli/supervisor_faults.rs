//! Faults aimed at the supervisor process and at readers of a task's output (issue 12,
//! RELIABILITY 26-28, 30, 36, 37, and the supervisor's part of issue 13): each test is named
//! after what broke.

use std::fs;

use serde_json::json;

use crate::support::{DEADLINE, Sandbox, spawn, wait_until};

/// `ps` showed every supervisor as `background-tasks __supervise`: nothing told which task
/// each one ran (DESIGN §6).
#[test]
fn the_supervisor_command_line_names_its_task() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "named.web-1", "command": "sleep", "args": ["1000"]}));
    let supervisor = sandbox.supervisor("named.web-1");
    let cmdline = fs::read(format!("/proc/{}/cmdline", supervisor.pid)).expect("cmdline");
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(args[1..], ["__supervise", "named.web-1"]);
    sandbox.stop("named.web-1");
    wait_until("the supervisor has exited", DEADLINE, || {
        !supervisor.exists()
    });
}

// ---------------------------------------------------------------------------------------
// RELIABILITY 26: no panic from any input; a panic's last word is an envelope; a panicking
// supervisor records its task.

#[test]
fn a_huge_ready_timeout_is_an_input_error_not_a_panic() {
    let sandbox = Sandbox::new();
    for timeout in [1e19, 1e300, 86_400.5] {
        let error = sandbox.fail(
            &["start", "--wait"],
            &json!({"id": "t", "command": "true", "ready": {"log": "x", "timeout_s": timeout}}),
        );
        assert_eq!(error["type"], "CommandInputError", "{error}");
        assert_eq!(error["details"]["path"], "ready.timeout_s", "{error}");
    }
    sandbox.start(&json!({"id": "w", "command": "sleep", "args": ["1000"]}));
    for timeout in [1e19, 1e300] {
        let error = sandbox.fail(
            &["wait"],
            &json!({"id": "w", "until": {"log": "x", "timeout_s": timeout}}),
        );
        assert_eq!(error["details"]["path"], "until.timeout_s", "{error}");
    }
    sandbox.stop("w");
}

#[test]
fn a_panic_ends_with_an_internal_error_envelope_not_a_backtrace() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.command_with(&["status"], &json!({"id": "x"}));
    command.env("BACKGROUND_TASKS_FAULT", "panic");
    let outcome = spawn(command).finish();
    let error = outcome.error();
    assert_eq!(error["type"], "InternalError", "{outcome:#?}");
    assert_eq!(error["details"]["retryable"], false);
    assert!(
        error["details"]["where"]
            .as_str()
            .is_some_and(|w| w.starts_with("src/")),
        "{error}"
    );
    assert!(!outcome.stderr.contains("panicked at"), "{outcome:#?}");
}
