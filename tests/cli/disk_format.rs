//! RELIABILITY 35: records written by a newer version. Disk types forgive what wire types
//! refuse: a record with fields, nested fields and words this version does not know is read
//! as far as it can be, its unknown fields survive a rewrite, and a record this version does
//! not fully understand (a higher `format_version`, an unknown status word) is answered but
//! never rewritten, with a hint to upgrade where an action would need to rewrite it.
//!
//! The records are planted by hand from fixtures under `tests/fixtures/`, as a supervisor of
//! a newer version would have left them.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::support::{Sandbox, check_error, stat};

const EVERY_FIELD: &str = include_str!("../fixtures/record-v1-newer-fields.json");
const FORMAT_2: &str = include_str!("../fixtures/record-v2.json");

/// Writes `record` as task `id`'s record (folders 0700, file 0600) and returns its bytes.
fn plant(sandbox: &Sandbox, id: &str, record: &Value) -> Vec<u8> {
    let dir = sandbox.task_dir(id);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let bytes = serde_json::to_vec_pretty(record).expect("encode the record");
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("task.json"))
        .and_then(|mut file| file.write_all(&bytes))
        .expect("write the record");
    bytes
}

fn on_disk(sandbox: &Sandbox, id: &str) -> Vec<u8> {
    fs::read(sandbox.task_dir(id).join("task.json")).expect("read the record")
}

/// A stand-in for a newer version's live supervisor: a process of ours (`sleep`, in its own
/// group) that the record names, and the task's lock, held the way a supervisor holds it.
/// Dropping it kills and reaps the process and lets the lock go.
struct LiveSupervisor {
    child: Child,
    _lock: File,
}

impl LiveSupervisor {
    fn hold(sandbox: &Sandbox, id: &str, record: &mut Value) -> LiveSupervisor {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn the stand-in");
        let pid = child.id() as i64;
        let ticks = stat(pid as i32).expect("its stat").start_ticks;
        for key in ["pid", "pgid", "supervisor_pid"] {
            record[key] = json!(pid);
        }
        record["pid_start_ticks"] = json!(ticks);
        record["supervisor_start_ticks"] = json!(ticks);
        plant(sandbox, id, record);
        let path = sandbox.task_dir(id).join("supervisor.lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .expect("open the lock");
        lock.try_lock().expect("take the lock");
        LiveSupervisor { child, _lock: lock }
    }

    /// Whether the stand-in still runs, untouched.
    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for LiveSupervisor {
    fn drop(&mut self) {
        // Our own unreaped child: its pid cannot have been handed to anyone else.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every optional field set, and fields unknown to this version at the top and inside
/// `batch`, `ready_spec` and `progress`: the record loads, answers its known fields, and
/// when a reader records it `lost` (its supervisor is gone) the rewrite keeps every unknown
/// field as it was.
#[test]
fn a_record_with_every_field_and_unknown_ones_keeps_them_when_recorded_lost() {
    let sandbox = Sandbox::new();
    let planted: Value = serde_json::from_str(EVERY_FIELD).expect("the fixture");
    plant(&sandbox, "future", &planted);

    let task = sandbox.status("future");
    assert_eq!(task["status"], "lost", "{task}");
    assert_eq!(task["reason"], "supervisor_lost", "{task}");
    assert_eq!(task["run"], 2, "{task}");
    assert_eq!(task["timeout_s"], 600.0, "{task}");
    assert_eq!(task["stop_with_pid"], 2147482998_i64, "{task}");
    assert_eq!(task["ready"], false, "{task}");
    // The wire names only what this version documents.
    assert_eq!(
        task["progress"],
        json!({"current": 3.0, "total": 17.0, "percent": 17.6, "message": "step 3/17"}),
        "{task}"
    );
    // Steps are this version's too: the one a newer version wrote answers what this
    // version knows of it (not its `children`), closed `failed` with the lost run.
    let step = &task["steps"][0];
    assert_eq!(
        (&step["id"], &step["title"]),
        (&json!("build"), &json!("build")),
        "{task}"
    );
    assert_eq!(step["status"], "failed", "{task}");
    assert!(step.get("children").is_none(), "{task}");

    let rewritten: Value = serde_json::from_slice(&on_disk(&sandbox, "future")).expect("json");
    assert_eq!(rewritten["status"], "lost", "{rewritten}");
    for pointer in [
        "/steps",
        "/restart_policy",
        "/batch/priority",
        "/ready_spec/expect_status",
        "/progress/eta_s",
        "/ready_spec/log",
        "/progress/message",
    ] {
        assert_eq!(
            rewritten.pointer(pointer),
            planted.pointer(pointer),
            "{pointer} after the rewrite: {rewritten}"
        );
        assert!(rewritten.pointer(pointer).is_some(), "{pointer}");
    }
}

/// A `format_version` 2 record whose supervisor is gone: `status` and `list` answer it
/// `lost` and say why it stays so, `stop` answers it ended (nothing is left to signal),
/// and every action that would rewrite it (`restart`, `start` of its id, `rm` of a task not
/// known to have ended) is refused with a hint to upgrade. Its bytes never change, and no
/// journal entry is written for it.
#[test]
fn a_record_of_a_newer_format_is_answered_and_never_rewritten() {
    let sandbox = Sandbox::new();
    let record: Value = serde_json::from_str(FORMAT_2).expect("the fixture");
    let planted = plant(&sandbox, "format2", &record);

    let task = sandbox.status("format2");
    assert_eq!(task["status"], "lost", "{task}");
    let error = task["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("newer version") && error.contains("record format 2"),
        "{task}"
    );
    let listed = sandbox.ok(&["list"], &json!({}));
    assert_eq!(listed["tasks"][0]["status"], "lost", "{listed}");

    let stopped = sandbox.ok(&["stop"], &json!({"id": "format2"}));
    assert_eq!(stopped["already_terminal"], true, "{stopped}");
    assert_eq!(stopped["status"], "lost", "{stopped}");

    for (args, payload) in [
        (
            &["restart"][..],
            json!({"id": "format2", "env": {"PORT": "1"}}),
        ),
        (&["start"][..], json!({"id": "format2", "shell": "true"})),
        (&["rm"][..], json!({"id": "format2"})),
    ] {
        let error = sandbox.fail(args, &payload);
        check_error(&error, &format!("{args:?}"));
        assert_eq!(error["type"], "StoreError", "{args:?}: {error}");
        let hint = error["details"]["hint"].as_str().unwrap_or_default();
        assert!(hint.contains("Upgrade"), "{args:?}: {error}");
    }
    assert_eq!(
        on_disk(&sandbox, "format2"),
        planted,
        "the record was rewritten"
    );
    assert!(
        !sandbox.task_dir("format2").join("events.jsonl").exists(),
        "a journal entry was written for a newer version's task"
    );
}

/// A newer version's task whose supervisor is alive is `running`, and `stop` leaves it to
/// that version (how it takes a stop request may have changed): refused, nothing signalled.
#[test]
fn a_newer_record_whose_supervisor_lives_runs_and_stop_leaves_it_alone() {
    let sandbox = Sandbox::new();
    let mut record: Value = serde_json::from_str(FORMAT_2).expect("the fixture");
    let mut supervisor = LiveSupervisor::hold(&sandbox, "format2", &mut record);
    let planted = on_disk(&sandbox, "format2");

    assert_eq!(sandbox.status("format2")["status"], "running");
    let error = sandbox.fail(&["stop"], &json!({"id": "format2"}));
    check_error(&error, "stop");
    assert_eq!(error["type"], "StoreError", "{error}");
    assert!(supervisor.alive(), "stop signalled a newer version's task");
    assert_eq!(
        on_disk(&sandbox, "format2"),
        planted,
        "the record was rewritten"
    );
}

/// A status word this version does not know (`paused`, from a newer version) makes no
/// record unreadable: it reads `running` while its supervisor lives, and `lost` once it is
/// gone, and the record keeps its word.
#[test]
fn an_unknown_status_word_reads_running_while_its_supervisor_lives_and_lost_after() {
    let sandbox = Sandbox::new();
    let mut record: Value = serde_json::from_str(EVERY_FIELD).expect("the fixture");
    record["status"] = json!("paused");
    let supervisor = LiveSupervisor::hold(&sandbox, "future", &mut record);
    let planted = on_disk(&sandbox, "future");

    let task = sandbox.status("future");
    assert_eq!(task["status"], "running", "{task}");
    let listed = sandbox.ok(&["list"], &json!({"status": "running"}));
    assert_eq!(listed["total"], 1, "{listed}");

    drop(supervisor);
    let task = sandbox.status("future");
    assert_eq!(task["status"], "lost", "{task}");
    assert_eq!(
        on_disk(&sandbox, "future"),
        planted,
        "the record was rewritten"
    );
    let stored: Value = serde_json::from_slice(&planted).expect("json");
    assert_eq!(stored["status"], "paused");
}
