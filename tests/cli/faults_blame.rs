//! RELIABILITY 37 (issue 12, class 13): errors blame the right thing. A workdir that exists
//! but cannot be entered is named (the command was blamed); a `stop_with_pid` that is a
//! thread id, or another user's process, is refused at `start` (a thread id started a task
//! that was at once killed, and another user's process was said not to exist).
//!
//! Permissions do not bind root, so the workdir test and one of the ownership cases run
//! the binary as `nobody` (uid and gid 65534), in a sandbox handed to that user; where this
//! process cannot switch users they say so through [`note`] and stop.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::{Value, json};

use crate::support::{Outcome, Sandbox, note, spawn};

/// The unprivileged user the binary runs as where permissions must bind.
const NOBODY: u32 = 65_534;

/// Hands the sandbox to `nobody`: its root can be traversed, and its home, working dir and
/// state dir (0700) are nobody's. Says why not where it cannot.
fn hand_to_nobody(sandbox: &Sandbox) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("switching to another user needs root".to_owned());
    }
    fs::set_permissions(sandbox.root(), fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod the sandbox: {e}"))?;
    fs::create_dir(sandbox.state()).map_err(|e| format!("create the state dir: {e}"))?;
    fs::set_permissions(sandbox.state(), fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod the state dir: {e}"))?;
    for dir in [sandbox.home(), sandbox.work(), sandbox.state()] {
        chown(&dir, Some(NOBODY), Some(NOBODY)).map_err(|e| format!("chown {dir:?}: {e}"))?;
    }
    let probe = spawn(as_nobody(sandbox.command(&["capabilities"]))).finish();
    if probe.code != Some(0) {
        return Err(format!("nobody cannot run the binary here: {probe:?}"));
    }
    Ok(())
}

/// `command`, run as `nobody` (std drops supplementary groups when root switches uid).
fn as_nobody(mut command: Command) -> Command {
    command.uid(NOBODY).gid(NOBODY);
    command
}

/// The sandbox handed to nobody, or `None` after saying why this test is skipped.
fn nobody_sandbox(test: &str) -> Option<Sandbox> {
    let sandbox = Sandbox::new();
    match hand_to_nobody(&sandbox) {
        Ok(()) => Some(sandbox),
        Err(why) => {
            note(&format!("RELIABILITY 37 ({test}): skipped: {why}"));
            None
        }
    }
}

/// A workdir that exists but has no search permission for the user: `start` fails naming
/// the workdir (it blamed the command: "command `true`: Permission denied").
#[test]
fn a_workdir_that_cannot_be_entered_is_named_in_the_error() {
    let Some(sandbox) = nobody_sandbox("a workdir that cannot be entered") else {
        return;
    };
    let locked = sandbox.work().join("locked");
    fs::create_dir(&locked).expect("create the workdir");
    chown(&locked, Some(NOBODY), Some(NOBODY)).expect("chown the workdir");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o600)).expect("chmod 0600");

    let payload = json!({"id": "blamed", "command": "true", "workdir": locked});
    let outcome = spawn(as_nobody(sandbox.command_with(&["start"], &payload))).finish();
    let error = outcome.error();
    let message = error["message"].as_str().unwrap_or_default();
    // contract: "a workdir that exists but cannot be entered names the workdir"
    // (RELIABILITY 37)
    assert!(
        message.contains(&*locked.to_string_lossy()),
        "the error should name the workdir {}: {error}",
        locked.display()
    );
    assert!(
        !message.contains("command `true`"),
        "the command is not what failed: {error}"
    );
}

/// A thread of this process that lives until dropped, and its thread id.
#[derive(Debug)]
struct Thread {
    tid: i32,
    stop: Option<mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Thread {
    fn spawn() -> Thread {
        let (tid_sender, tid) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let _ = tid_sender.send(unsafe { libc::gettid() });
            let _ = stopped.recv();
        });
        let tid = tid.recv().expect("the thread's id");
        assert_ne!(tid, std::process::id() as i32, "a thread, not the process");
        Thread {
            tid,
            stop: Some(stop),
            handle: Some(handle),
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Checks `outcome` refused `stop_with_pid` at start, and that no task of `id` runs.
fn assert_refused(sandbox: &Sandbox, outcome: &Outcome, id: &str, what: &str) -> Value {
    // contract: "a `stop_with_pid` that is a thread id or another user's process is refused
    // at `start`" (RELIABILITY 37)
    assert_eq!(outcome.code, Some(1), "{what}: {outcome:#?}");
    let error = outcome.error();
    assert!(
        error.to_string().contains("stop_with_pid"),
        "{what}: the error should name stop_with_pid: {error}"
    );
    let status = sandbox.call(&["status"], &json!({ "id": id }));
    if status.code == Some(0) {
        let task = status.data()["task"].clone();
        assert!(
            task["status"] != "running" && task["status"] != "killed",
            "{what}: a refused start ran a task: {task}"
        );
    }
    error
}

/// `stop_with_pid` naming a thread of a live process (not a process): refused at `start`
/// (it started a task that was at once `killed`, `owner_exited`, and never ran).
#[test]
fn stop_with_pid_naming_a_thread_is_refused_at_start() {
    let sandbox = Sandbox::new();
    let thread = Thread::spawn();
    let outcome = sandbox.call(
        &["start"],
        &json!({"id": "owned", "command": "sleep", "args": ["1000"], "stop_with_pid": thread.tid}),
    );
    assert_refused(&sandbox, &outcome, "owned", "a thread id");
}

/// A `sleep` of ours run as nobody: another user's live process. Dropping it kills it.
#[derive(Debug)]
struct Foreign(Child);

impl Drop for Foreign {
    fn drop(&mut self) {
        // Our own unreaped child: its pid cannot have been reused.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `stop_with_pid` naming another user's live process: refused at `start`, without saying
/// the process does not exist (it said "no process N is running"). Tried both ways where
/// this process is root: root's task owned by nobody's process, and nobody's task owned
/// by root's (this test's own) process.
#[test]
fn stop_with_pid_naming_another_users_process_is_refused_at_start() {
    let Some(sandbox) = nobody_sandbox("another user's process") else {
        return;
    };
    let mut command = Command::new("sleep");
    command
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .uid(NOBODY)
        .gid(NOBODY);
    let foreign = Foreign(command.spawn().expect("run sleep as nobody"));

    // Nobody's task, owned by a root process (this test).
    let payload = json!({
        "id": "nobodys",
        "command": "sleep",
        "args": ["1000"],
        "stop_with_pid": std::process::id(),
    });
    let outcome = spawn(as_nobody(sandbox.command_with(&["start"], &payload))).finish();
    let error = assert_refused(&sandbox, &outcome, "nobodys", "root's process, as nobody");
    assert!(
        !error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no process"),
        "the process exists; it is another user's: {error}"
    );

    // Root's task, owned by nobody's process: in a sandbox of root's own.
    let rooted = Sandbox::new();
    let outcome = rooted.call(
        &["start"],
        &json!({
            "id": "roots",
            "command": "sleep",
            "args": ["1000"],
            "stop_with_pid": foreign.0.id(),
        }),
    );
    let error = assert_refused(&rooted, &outcome, "roots", "nobody's process, as root");
    assert!(
        !error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no process"),
        "the process exists; it is another user's: {error}"
    );
}
