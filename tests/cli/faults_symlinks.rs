//! RELIABILITY 33 (issue 12, class 9): symlinks planted in the state directory are never
//! followed. A task folder, `events.jsonl`, `supervisor.lock`, `output.log`, `task.json` or
//! `stop.json` that is a symlink to a place outside is a `StoreError` naming it, and no
//! command writes, creates, truncates, removes or `chmod`s anything outside.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::{Outcome, Sandbox, files_under};

/// A directory outside the state directory (in a temp dir of its own) with files a link
/// may point at, each mode 0644 and each holding a line that names it.
#[derive(Debug)]
struct Outside {
    dir: tempfile::TempDir,
}

/// What a file looks like: its bytes (none for a directory) and its mode.
type Snapshot = BTreeMap<PathBuf, (Vec<u8>, u32)>;

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::Builder::new()
            .prefix("bt-outside-")
            .tempdir()
            .expect("create the outside dir");
        Outside { dir }
    }

    /// Creates `name` (0644) holding `bytes` and returns its path.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, bytes).expect("write an outside file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod 0644");
        path
    }

    /// Creates directory `name` (0755) and returns its path.
    fn folder(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir(&path).expect("create an outside dir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        path
    }

    /// Every file and directory under the outside dir, with its bytes and mode.
    fn snapshot(&self) -> Snapshot {
        let mut all = vec![self.dir.path().to_path_buf()];
        all.extend(files_under(self.dir.path()));
        all.into_iter()
            .map(|path| {
                let meta = fs::symlink_metadata(&path).expect("stat an outside file");
                let bytes = if meta.is_file() {
                    fs::read(&path).expect("read an outside file")
                } else {
                    Vec::new()
                };
                (path, (bytes, meta.permissions().mode()))
            })
            .collect()
    }
}

/// Says how `after` differs from `before`, file by file; empty when nothing changed.
fn changes(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut found = Vec::new();
    for (path, (bytes, mode)) in before {
        match after.get(path) {
            None => found.push(format!("{} was removed", path.display())),
            Some((b, _)) if b != bytes => found.push(format!(
                "{} was written ({} bytes, now {})",
                path.display(),
                bytes.len(),
                b.len()
            )),
            Some((_, m)) if m != mode => {
                found.push(format!("{} was chmodded {mode:o} -> {m:o}", path.display()));
            }
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        found.push(format!("{} was created", path.display()));
    }
    found
}

/// Runs each of `calls` and checks, after each, that nothing outside changed and that no
/// answer shows what an outside file holds; returns the outcomes by command (the first
/// call of each command).
fn run_checking_outside(
    sandbox: &Sandbox,
    outside: &Outside,
    calls: &[(&[&str], Value)],
    link: &str,
) -> BTreeMap<String, Outcome> {
    let mut outcomes = BTreeMap::new();
    let mut wrong = Vec::new();
    for (args, payload) in calls {
        let before = outside.snapshot();
        let outcome = sandbox.call(args, payload);
        let name = format!("{} {payload}", args.join(" "));
        let changed = changes(&before, &outside.snapshot());
        // contract: "nothing outside the state dir is written or `chmod`ed" (RELIABILITY
        // 33); "nothing is ever created outside the state directory" (RELIABILITY, State)
        if !changed.is_empty() {
            wrong.push(format!("{name} through {link}: {changed:?}"));
        }
        if outcome.stdout.contains("OUTSIDE") || outcome.stderr.contains("OUTSIDE") {
            wrong.push(format!("{name} answered what {link} points at"));
        }
        outcome.envelope();
        outcomes.entry(args[0].to_owned()).or_insert(outcome);
    }
    assert!(
        wrong.is_empty(),
        "commands went through the planted {link}:\n{}",
        wrong.join("\n")
    );
    outcomes
}

/// Checks `outcome` is a `StoreError` that names `link` (its file name, or the path).
fn assert_store_error_naming(outcome: &Outcome, link: &str, what: &str) {
    let envelope = outcome.envelope();
    // contract: "a planted symlink is a `StoreError` naming it" (RELIABILITY 33)
    assert_eq!(
        envelope["error"]["type"], "StoreError",
        "{what} with {link} a symlink: {outcome:#?}"
    );
    assert!(
        envelope["error"].to_string().contains(link),
        "{what}: the error should name {link}: {}",
        envelope["error"]
    );
}

/// The calls every planted link is tried with, on task `id`.
fn every_command(id: &str) -> Vec<(&'static [&'static str], Value)> {
    vec![
        (&["status"], json!({ "id": id })),
        (&["list"], json!({})),
        (&["logs"], json!({ "id": id })),
        (&["events"], json!({ "id": id })),
        (&["wait", "--timeout", "1"], json!({ "id": id })),
        (&["restart"], json!({ "id": id })),
        (
            &["start"],
            json!({"id": id, "command": "true", "if_running": "restart"}),
        ),
        (&["stop"], json!({ "id": id })),
        (&["rm"], json!({"id": id, "force": true})),
    ]
}

/// A task folder that is a symlink to a folder outside holding a task's record: no command
/// writes through it, and `start` and `status` refuse it naming it.
#[test]
fn a_task_folder_that_is_a_symlink_is_refused_and_nothing_is_written_through_it() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "real", "command": "true"}));
    sandbox.wait("real");
    let outside = Outside::new();
    let target = outside.folder("task");
    let mut record = sandbox.record("real");
    record["id"] = json!("evil");
    outside.file(
        "task/task.json",
        &serde_json::to_vec_pretty(&record).expect("encode"),
    );
    outside.file("task/output.log", b"OUTSIDE output.log\n");
    let link = sandbox.task_dir("evil");
    symlink(&target, &link).expect("plant the folder link");

    let mut calls = vec![(&["start"][..], json!({"id": "evil", "command": "true"}))];
    calls.extend(every_command("evil"));
    let outcomes = run_checking_outside(&sandbox, &outside, &calls, "tasks/evil");
    assert_store_error_naming(&outcomes["start"], "tasks/evil", "start");
    assert_store_error_naming(&outcomes["status"], "tasks/evil", "status");
}

/// Plants `name` in task `id`'s folder as a symlink to an outside file and returns it.
fn plant_file_link(sandbox: &Sandbox, outside: &Outside, id: &str, name: &str) -> PathBuf {
    let target = if name == "task.json" {
        // A record that parses, so commands go on to act on it.
        let bytes = serde_json::to_vec_pretty(&sandbox.record(id)).expect("encode");
        outside.file(&format!("{id}-{name}"), &bytes)
    } else {
        outside.file(
            &format!("{id}-{name}"),
            format!("OUTSIDE {name}\n").as_bytes(),
        )
    };
    let link = sandbox.task_dir(id).join(name);
    let _ = fs::remove_file(&link);
    symlink(&target, &link).expect("plant the link");
    link
}

/// An ended task whose `name` is replaced by a symlink to an outside file; then every
/// command. Returns the outcomes by command.
fn try_file_link(name: &str) -> BTreeMap<String, Outcome> {
    let sandbox = Sandbox::new();
    let id = "linked";
    sandbox.start(&json!({"id": id, "command": "true"}));
    assert_eq!(sandbox.wait(id)["status"], "exited");
    let outside = Outside::new();
    plant_file_link(&sandbox, &outside, id, name);
    run_checking_outside(&sandbox, &outside, &every_command(id), name)
}

/// `events.jsonl` as a symlink: `restart` appended to the outside file and chmodded it
/// 0600. Nothing outside changes; `events` and `restart` refuse it naming it.
#[test]
fn a_journal_that_is_a_symlink_is_never_appended_to_or_chmodded() {
    let outcomes = try_file_link("events.jsonl");
    assert_store_error_naming(&outcomes["events"], "events.jsonl", "events");
    assert_store_error_naming(&outcomes["restart"], "events.jsonl", "restart");
}

/// `supervisor.lock` as a symlink: it was chmodded. Nothing outside changes; `restart`
/// refuses it naming it.
#[test]
fn a_lock_that_is_a_symlink_is_never_opened_through() {
    let outcomes = try_file_link("supervisor.lock");
    assert_store_error_naming(&outcomes["restart"], "supervisor.lock", "restart");
}

/// `output.log` as a symlink: nothing outside is truncated or written, and `logs` refuses
/// it naming it rather than answering what it points at.
#[test]
fn a_log_that_is_a_symlink_is_never_read_or_written_through() {
    let outcomes = try_file_link("output.log");
    assert_store_error_naming(&outcomes["logs"], "output.log", "logs");
}

/// `task.json` as a symlink to a copy of the record: nothing outside is rewritten, and
/// `status` refuses it naming it.
#[test]
fn a_record_that_is_a_symlink_is_never_read_or_replaced_through() {
    let outcomes = try_file_link("task.json");
    assert_store_error_naming(&outcomes["status"], "task.json", "status");
}

/// `stop.json` planted as a symlink beside a running task: `stop` writes nothing through
/// it (and still stops the task, or refuses naming the link).
#[test]
fn a_stop_request_that_is_a_symlink_is_never_written_through() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "running", "command": "sleep", "args": ["1000"]}));
    let outside = Outside::new();
    plant_file_link(&sandbox, &outside, "running", "stop.json");
    let outcomes = run_checking_outside(
        &sandbox,
        &outside,
        &[(&["stop"], json!({"id": "running"}))],
        "stop.json",
    );
    let envelope = outcomes["stop"].envelope();
    if envelope["ok"] == false {
        assert_store_error_naming(&outcomes["stop"], "stop.json", "stop");
    }
}
