//! RELIABILITY 35 (issue 12, class 11): records and journal lines written by a newer
//! version (a higher `format_version`, unknown fields at the top or nested in `ready_spec`
//! and `progress`) are read as far as they can be, and never rewritten by this version with
//! what it does not understand dropped.
//!
//! The records are built from the version-1 fixture (`tests/fixtures/record-v1.json`), as a
//! supervisor that has since vanished would have left them.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::Sandbox;

/// The id of the running boot.
fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("read the boot id")
        .trim()
        .to_owned()
}

/// The fixture as task `id` in the sandbox's working directory, in this boot, with every
/// optional field set and fields no version-1 reader knows: at the top, in `progress` and
/// `batch`, and in `ready_spec` if `in_ready_spec`. Its pids name no process (they are
/// beyond the kernel's largest pid).
fn record_with_unknown_fields(
    sandbox: &Sandbox,
    id: &str,
    format_version: u32,
    in_ready_spec: bool,
) -> Value {
    let mut record: Value =
        serde_json::from_str(include_str!("../fixtures/record-v1.json")).expect("the fixture");
    record["format_version"] = json!(format_version);
    record["id"] = json!(id);
    record["workdir"] = json!(sandbox.work());
    record["boot_id"] = json!(boot_id());
    record["timeout_ms"] = json!(3_600_000);
    record["owner_pid"] = json!(2_147_482_998_i64);
    record["owner_start_ticks"] = json!(1);
    record["batch"] = json!({"id": "b1", "index": 0, "concurrency": 2, "added_in_v2": "slot"});
    record["ready_spec"] = json!({
        "log": "listening",
        "port": 3000,
        "http": "http://127.0.0.1:3000/",
        "timeout_s": 30.0,
    });
    if in_ready_spec {
        record["ready_spec"]["expect_status"] = json!(204);
    }
    record["ready"] = json!(false);
    record["ready_at_ms"] = Value::Null;
    record["progress"] = json!({
        "current": 1.0,
        "total": 2.0,
        "percent": 50.0,
        "message": "half way",
        "eta_s": 12,
    });
    record["added_in_v2"] = json!({"nested": [1, 2, 3], "flag": true});
    record
}

/// Writes `record` as task `id`'s `task.json` (folders 0700, file 0600); no supervisor
/// holds its lock. Returns the path and the bytes written.
fn plant(sandbox: &Sandbox, id: &str, record: &Value) -> (PathBuf, Vec<u8>) {
    let dir = sandbox.task_dir(id);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let path = dir.join("task.json");
    let bytes = serde_json::to_vec_pretty(record).expect("encode");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(&bytes))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    (path, bytes)
}

/// Fails if the record at `path` was rewritten with something it held dropped: it must be
/// the bytes written, or still hold every field of `planted` (unknown ones included) with
/// its `format_version`. A record removed (by `rm`) passes.
fn assert_kept(path: &PathBuf, bytes: &[u8], planted: &Value, after: &str) {
    let Ok(now) = fs::read(path) else {
        return;
    };
    if now == bytes {
        return;
    }
    let now: Value = serde_json::from_slice(&now)
        .unwrap_or_else(|e| panic!("after {after}, the record does not parse: {e}"));
    // contract: "never rewritten by an older version: unknown fields are kept or the record
    // is left alone" (RELIABILITY 35)
    assert_eq!(
        now["format_version"], planted["format_version"],
        "after {after}: {now:#}"
    );
    assert_eq!(
        now["added_in_v2"], planted["added_in_v2"],
        "after {after}: {now:#}"
    );
    assert_eq!(
        now["ready_spec"]["expect_status"], planted["ready_spec"]["expect_status"],
        "after {after}: {now:#}"
    );
    assert_eq!(
        now["progress"]["eta_s"], planted["progress"]["eta_s"],
        "after {after}: {now:#}"
    );
    assert_eq!(
        now["batch"]["added_in_v2"], planted["batch"]["added_in_v2"],
        "after {after}: {now:#}"
    );
}

/// A `running` record of format version 2, with unknown fields (at the top, in `progress`
/// and in `batch`), whose supervisor is gone:
/// `status`, `list`, `wait`, `logs`, `events` and `rm` answer (not "damaged"), and none of
/// them rewrites it with its unknown fields dropped (it was read as version 1 and rewritten
/// `lost` without them).
#[test]
fn a_newer_record_is_read_and_never_rewritten_without_its_unknown_fields() {
    let sandbox = Sandbox::new();
    let mut record = record_with_unknown_fields(&sandbox, "newer", 2, false);
    record["status"] = json!("running");
    record["run"] = json!(1);
    for key in ["reason", "signal", "ended_at_ms", "exit_code"] {
        record[key] = Value::Null;
    }
    let (path, bytes) = plant(&sandbox, "newer", &record);

    let status = sandbox.call(&["status"], &json!({"id": "newer"}));
    // contract: "a record ... written by a newer version ... is read as far as it can be"
    // (RELIABILITY 35): an answer, not a StoreError.
    let data = status.data();
    assert_eq!(data["task_id"], "newer", "{data}");
    assert_kept(&path, &bytes, &record, "status");
    let calls: [(&[&str], Value); 5] = [
        (&["status"], json!({"id": "newer"})),
        (&["list"], json!({})),
        (&["wait", "--timeout", "1"], json!({"id": "newer"})),
        (&["logs"], json!({"id": "newer"})),
        (&["events"], json!({"id": "newer"})),
    ];
    for (args, payload) in calls {
        let outcome = sandbox.call(args, &payload);
        let envelope = outcome.envelope();
        assert_ne!(
            envelope["error"]["type"], "StoreError",
            "{args:?} on a newer record: {outcome:#?}"
        );
        assert_kept(&path, &bytes, &record, args[0]);
    }
    let listed = sandbox.ok(&["list"], &json!({}));
    assert_eq!(listed["tasks"][0]["id"], "newer", "{listed}");
    let rm = sandbox.call(&["rm"], &json!({"id": "newer", "force": true}));
    rm.envelope();
    assert_kept(&path, &bytes, &record, "rm");
}

/// A version-1 record with every optional field set and unknown fields nested in
/// `ready_spec`, `progress` and `batch`: it loads (it was refused as damaged, because the
/// record embedded the payload's `ReadySpec`, which denies unknown fields).
#[test]
fn a_record_with_unknown_nested_fields_still_loads() {
    let sandbox = Sandbox::new();
    let record = record_with_unknown_fields(&sandbox, "nested", 1, true);
    assert_eq!(record["status"], "killed", "the fixture's task has ended");
    let (path, bytes) = plant(&sandbox, "nested", &record);

    let task = sandbox.status("nested");
    // contract: "a fixture with every optional field and unknown nested fields must always
    // load" (issue 12.11); "Disk types are their own types (no `deny_unknown_fields`)"
    // (RELIABILITY 35)
    assert_eq!(task["status"], "killed", "{task}");
    assert_eq!(task["signal"], "SIGTERM", "{task}");
    assert_eq!(task["ready"], false, "{task}");
    assert_eq!(task["progress"]["message"], "half way", "{task}");
    let listed = sandbox.ok(&["list"], &json!({}));
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["tasks"][0]["id"], "nested", "{listed}");
    assert_kept(&path, &bytes, &record, "status and list");
}

/// A version-1 `running` record with unknown fields (at the top, in `progress` and in
/// `batch`) whose supervisor is gone: found `lost`, and the record written for that keeps
/// the unknown fields (or is left alone).
#[test]
fn a_record_found_lost_keeps_fields_this_version_does_not_know() {
    let sandbox = Sandbox::new();
    let mut record = record_with_unknown_fields(&sandbox, "gone", 1, false);
    record["status"] = json!("running");
    record["run"] = json!(1);
    for key in ["reason", "signal", "ended_at_ms", "exit_code"] {
        record[key] = Value::Null;
    }
    let (path, bytes) = plant(&sandbox, "gone", &record);
    let status = sandbox.call(&["status"], &json!({"id": "gone"}));
    let data = status.data();
    assert_eq!(data["status"], "lost", "{data}");
    assert_kept(&path, &bytes, &record, "status");
    assert_eq!(sandbox.status("gone")["status"], "lost");
    assert_kept(&path, &bytes, &record, "a second status");
}

/// Journal lines from a newer version (an unknown frame type, unknown fields on a known
/// one) do not stop `events` from answering the lines it knows.
#[test]
fn journal_lines_from_a_newer_version_do_not_stop_events() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "journaled", "shell": "echo hello"}));
    assert_eq!(sandbox.wait("journaled")["exit_code"], 0);
    let journal = sandbox.task_dir("journaled").join("events.jsonl");
    let last = fs::read_to_string(&journal)
        .expect("the journal")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["sequence"].as_u64())
        .max()
        .expect("a sequence");
    let newer = [
        json!({"sequence": last + 1, "type": "task.checkpoint", "timestamp_ms": 1, "run": 1,
               "log_offset": 6, "data": {"what": "from a newer version"}, "added_in_v2": true}),
        json!({"sequence": last + 2, "type": "task.status", "timestamp_ms": 1, "run": 1,
               "log_offset": 6, "data": {"status": "exited", "run": 1, "pid": 2, "extra": [1]},
               "added_in_v2": {"x": 1}}),
    ];
    let mut file = OpenOptions::new()
        .append(true)
        .open(&journal)
        .expect("open the journal");
    for line in newer {
        writeln!(file, "{line}").expect("append a line");
    }
    let events = sandbox.call(&["events"], &json!({"id": "journaled"}));
    // contract: "a ... journal line ... written by a newer version ... is read as far as it
    // can be" (RELIABILITY 35)
    let data = events.data();
    let frames = data["frames"].as_array().expect("frames");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "task.log.line" && f["data"]["line"] == "hello"),
        "{data}"
    );
}
