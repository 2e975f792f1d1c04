//! `stop_with_pid`: a task stopped when the process that owns it exits.

use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::support::{Sandbox, sleeps_in, stat, wait_for_no_supervisor};

/// A process of the test's own (an "owner" for `stop_with_pid`), killed and reaped on drop.
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

    /// Kills it and reaps it, the way an agent session ends.
    fn end(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Our own unreaped child: its pid cannot name anything else yet.
        self.end();
    }
}

/// `stop_with_pid`: the task is stopped when that process exits (killed, reason
/// `owner_exited`); a pid that names no process is refused as CommandInputError.
#[test]
fn stop_with_pid_stops_the_task_when_its_owner_exits() {
    let sandbox = Sandbox::new();
    let mut owner = Owner::sleep();
    let task = sandbox.start(&json!({
        "id": "owned", "command": "sleep", "args": ["1000"], "stop_with_pid": owner.pid(),
    }));
    assert_eq!(task["status"], "running", "{task}");
    let leader = sandbox.leader("owned");
    assert_eq!(sandbox.status("owned")["status"], "running");

    owner.end();
    let data = sandbox.ok(&["wait", "--timeout", "20"], &json!({"id": "owned"}));
    assert_eq!(data["status"], "killed", "{data}");
    assert_eq!(data["task"]["reason"], "owner_exited", "{data}");
    assert!(!leader.exists(), "the task outlived its owner");

    // A pid that was just reaped names no process.
    let gone = Command::new("true")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn true");
    let gone_pid = gone.id() as i32;
    let _ = gone.wait_with_output();
    assert!(
        stat(gone_pid).is_none(),
        "pid {gone_pid} was reused at once"
    );
    let error = sandbox.fail(
        &["start"],
        &json!({
            "id": "orphan", "command": "sleep", "args": ["1000"], "stop_with_pid": gone_pid,
        }),
    );
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert_eq!(error["details"]["path"], "stop_with_pid", "{error}");
    assert!(
        sleeps_in(&sandbox.work()).is_empty(),
        "a refused start started a process"
    );
    wait_for_no_supervisor(&sandbox);
}
