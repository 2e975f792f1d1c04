//! Faults aimed at the supervisor process and at readers of a task's output (issue 12,
//! RELIABILITY 26-28, 30, 36, 37): each test is named after what broke.

use std::fs;

use serde_json::json;

use crate::support::{DEADLINE, Sandbox, wait_until};

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
