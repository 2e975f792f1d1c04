//! Batches and the start options that go with them: arrays for `start`, `stop`, `restart`
//! and `rm`; `start --concurrency` and its queue; `timeout_s`; `if_running`;
//! `stop_with_pid`; `rm` and `prune`; `list {fields}`; and RELIABILITY 14 (concurrency:
//! parallel starts with distinct and with equal ids, parallel reads during churn).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Identity, Outcome, Sandbox, check_error, live_group_members, make_fifo,
    open_fifo_writer, processes, signal_bit, signal_mask, spawn, stat, wait_until,
};

/// Every status a task can have.
const STATUSES: [&str; 7] = [
    "queued",
    "running",
    "exited",
    "killed",
    "timed_out",
    "failed",
    "lost",
];

/// A batch answer's `data`, after checking the whole contract of its shape: a success
/// envelope of `command` on stdout (one line, nothing on stderr), counts that agree with
/// the results, an outcome that agrees with the counts, one result per item in input
/// order with `data` when ok and `error` when not (never both), and exit code 1 exactly
/// when an item failed.
fn batch_answer(outcome: &Outcome, command: &str) -> Value {
    let envelope = outcome.stdout_envelope();
    assert_eq!(envelope["command"], command, "{outcome:#?}");
    let data = envelope["data"].clone();
    let results = data["results"]
        .as_array()
        .unwrap_or_else(|| panic!("a batch answer has results: {data}"));
    let total = results.len();
    let succeeded = results.iter().filter(|r| r["ok"] == true).count();
    assert_eq!(data["total"], total, "{data}");
    assert_eq!(data["success_count"], succeeded, "{data}");
    assert_eq!(data["error_count"], total - succeeded, "{data}");
    let expected = if succeeded == total {
        "succeeded"
    } else if succeeded == 0 {
        "failed"
    } else {
        "partial_failure"
    };
    assert_eq!(data["outcome"], expected, "{data}");
    assert!(
        data.get("concurrency")
            .is_some_and(|c| c.is_null() || c.as_u64().is_some_and(|n| n >= 1)),
        "concurrency is a number or null: {data}"
    );
    let code = if succeeded == total { 0 } else { 1 };
    assert_eq!(
        outcome.code,
        Some(code),
        "a batch with {} failed item(s) exits {code}: {outcome:#?}",
        total - succeeded
    );
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i, "results are in input order: {data}");
        assert!(result["ok"].is_boolean(), "{result}");
        assert!(
            result
                .get("target")
                .is_some_and(|t| t.is_string() || t.is_null()),
            "every result has a target: {result}"
        );
        if result["ok"] == true {
            assert!(result.get("data").is_some_and(Value::is_object), "{result}");
            assert!(result.get("error").is_none(), "ok and error: {result}");
        } else {
            assert!(result.get("data").is_none(), "failed and data: {result}");
            check_error(&result["error"], &result.to_string());
        }
    }
    data
}

/// Runs `args` with a batch `payload` and checks the answer.
fn call_batch(sandbox: &Sandbox, args: &[&str], payload: &Value) -> Value {
    assert!(payload.is_array(), "a batch payload is an array");
    batch_answer(&sandbox.call(args, payload), args[0])
}

/// The `i`th result of a batch answer.
fn result(data: &Value, i: usize) -> &Value {
    &data["results"][i]
}

/// Asserts that the `i`th result failed with `error_type`, for item `target`.
fn assert_item_failed(data: &Value, i: usize, target: &str, error_type: &str) {
    let item = result(data, i);
    assert_eq!(item["ok"], false, "item {i}: {data}");
    assert_eq!(item["target"], target, "item {i}: {data}");
    assert_eq!(item["error"]["type"], error_type, "item {i}: {data}");
}

/// The `i`th result's task, after checking it succeeded for task `id`.
fn item_task(data: &Value, i: usize, id: &str) -> Value {
    let item = result(data, i);
    assert_eq!(item["ok"], true, "item {i}: {data}");
    assert_eq!(item["target"], id, "item {i}: {data}");
    let task = item["data"]["task"].clone();
    assert_eq!(task["id"], id, "item {i}: {data}");
    task
}

/// Every task `list` answers, by id.
fn tasks_by_id(sandbox: &Sandbox, filter: &Value) -> BTreeMap<String, Value> {
    let data = sandbox.ok(&["list"], filter);
    let tasks = data["tasks"].as_array().expect("tasks");
    assert_eq!(data["total"], tasks.len(), "{data}");
    tasks
        .iter()
        .map(|t| (t["id"].as_str().expect("an id").to_owned(), t.clone()))
        .collect()
}

/// Asserts that `status` answers TaskNotFound for `id`.
fn assert_not_found(sandbox: &Sandbox, id: &str) {
    let error = sandbox.fail(&["status"], &json!({ "id": id }));
    assert_eq!(error["type"], "TaskNotFound", "{id}: {error}");
}

/// The running `sleep` processes whose working directory is `dir`: the tasks of one sandbox
/// that run `sleep` (a supervisor's working directory is `/`).
fn sleeps_in(dir: &Path) -> Vec<i32> {
    let dir = fs::canonicalize(dir).expect("canonicalize");
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            fs::read_to_string(format!("/proc/{}/comm", p.pid)).is_ok_and(|c| c == "sleep\n")
        })
        .filter(|p| fs::read_link(format!("/proc/{}/cwd", p.pid)).is_ok_and(|c| c == dir))
        .map(|p| p.pid)
        .collect()
}

/// The live supervisors of this sandbox: our binary's `__supervise` processes whose
/// BACKGROUND_TASKS_HOME is the sandbox's state directory.
fn supervisors_of(sandbox: &Sandbox) -> Vec<i32> {
    let home = format!("BACKGROUND_TASKS_HOME={}", sandbox.state().display());
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"__supervise"))
        })
        .filter(|p| {
            fs::read(format!("/proc/{}/environ", p.pid))
                .is_ok_and(|e| e.split(|&b| b == 0).any(|var| var == home.as_bytes()))
        })
        .map(|p| p.pid)
        .collect()
}

/// Waits until no supervisor of this sandbox runs any more.
fn wait_for_no_supervisor(sandbox: &Sandbox) {
    wait_until(
        "every supervisor of the sandbox has exited",
        DEADLINE,
        || supervisors_of(sandbox).is_empty(),
    );
}

/// Opens a FIFO gate once a task has it open for reading, and lets the task through.
fn open_gate(gate: &Path) {
    open_fifo_writer(gate)
        .write_all(b"go\n")
        .expect("write to the gate");
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Waits until the wall clock has moved past the task's `ended_at_ms`, so the next task to
/// end is strictly younger.
fn after_the_end_of(sandbox: &Sandbox, id: &str) {
    let ended = sandbox.record(id)["ended_at_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("{id} has ended_at_ms: {}", sandbox.record(id)));
    wait_until("the clock moves on", DEADLINE, || now_ms() > ended);
}

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

/// RELIABILITY 14: 50 starts at once with distinct ids give 50 running tasks, each with
/// its own live process; stopping them leaves 50 terminal tasks.
#[test]
fn fifty_parallel_starts_with_distinct_ids_make_fifty_tasks() {
    let sandbox = Sandbox::new();
    let ids: Vec<String> = (0..50).map(|i| format!("many-{i}")).collect();
    let tasks: Vec<Value> = std::thread::scope(|scope| {
        let runs: Vec<_> = ids
            .iter()
            .map(|id| {
                let sandbox = &sandbox;
                scope.spawn(move || {
                    sandbox.start(&json!({"id": id, "command": "sleep", "args": ["1000"]}))
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a start thread"))
            .collect()
    });
    let mut pids = BTreeSet::new();
    for (id, task) in ids.iter().zip(&tasks) {
        assert_eq!(&task["id"], id, "{task}");
        assert_eq!(task["status"], "running", "{task}");
        assert_eq!(task["run"], 1, "{task}");
        let leader = sandbox.leader(id);
        assert_eq!(task["pid"], leader.pid, "{task}");
        assert!(leader.is_alive(), "{id}'s process is not running");
        pids.insert(leader.pid);
    }
    assert_eq!(pids.len(), 50, "50 tasks share processes: {pids:?}");
    let mut running = sleeps_in(&sandbox.work());
    running.sort_unstable();
    assert_eq!(
        running,
        pids.iter().copied().collect::<Vec<_>>(),
        "the task processes are exactly the recorded ones"
    );
    let listed = tasks_by_id(&sandbox, &json!({"status": "running"}));
    assert_eq!(listed.len(), 50, "{listed:?}");

    std::thread::scope(|scope| {
        for id in &ids {
            let sandbox = &sandbox;
            scope.spawn(move || {
                let data = sandbox.stop(id);
                assert_eq!(data["status"], "killed", "{data}");
            });
        }
    });
    let listed = tasks_by_id(&sandbox, &json!({}));
    assert_eq!(listed.len(), 50);
    for id in &ids {
        assert_eq!(listed[id]["status"], "killed", "{}", listed[id]);
        assert_eq!(sandbox.status(id)["status"], "killed");
    }
    assert!(
        sleeps_in(&sandbox.work()).is_empty(),
        "task processes survived their stop"
    );
    wait_for_no_supervisor(&sandbox);
}

/// Runs 50 `start`s of one payload at once; their outcomes in launch order.
fn fifty_starts_of(sandbox: &Sandbox, payload: &Value) -> Vec<Outcome> {
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..50)
            .map(|_| scope.spawn(|| sandbox.call(&["start"], payload)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a start thread"))
            .collect()
    })
}

/// RELIABILITY 14: 50 starts of one id at once: exactly one starts a process, the other 49
/// are refused with TaskAlreadyRunning, and exactly one task process exists.
#[test]
fn fifty_parallel_starts_of_one_id_run_exactly_one_process() {
    let sandbox = Sandbox::new();
    let payload = json!({"id": "only", "command": "sleep", "args": ["1000"]});
    let outcomes = fifty_starts_of(&sandbox, &payload);
    let (started, refused): (Vec<&Outcome>, Vec<&Outcome>) =
        outcomes.iter().partition(|o| o.code == Some(0));
    assert_eq!(
        started.len(),
        1,
        "exactly one start succeeds: {}",
        started
            .iter()
            .map(|o| o.stdout.as_str())
            .collect::<String>()
    );
    for outcome in &refused {
        let error = outcome.error();
        assert_eq!(error["type"], "TaskAlreadyRunning", "{error}");
    }
    let task = started[0].data()["task"].clone();
    assert_eq!(task["status"], "running", "{task}");
    let leader = sandbox.leader("only");
    assert_eq!(task["pid"], leader.pid, "{task}");
    assert!(leader.is_alive());
    let record = sandbox.record("only");
    assert_eq!(record["run"], 1, "a refused start made a new run: {record}");
    assert_eq!(
        sleeps_in(&sandbox.work()),
        [leader.pid],
        "exactly one task process runs"
    );
    assert_eq!(
        supervisors_of(&sandbox),
        [sandbox.supervisor("only").pid],
        "exactly one supervisor runs"
    );
    assert_eq!(sandbox.stop("only")["status"], "killed");
    wait_for_no_supervisor(&sandbox);
}

/// RELIABILITY 14: 50 starts of one id at once with `if_running: "reuse"` all succeed with
/// the one task: one started it, 49 reused it, and only one process exists.
#[test]
fn fifty_parallel_reusing_starts_of_one_id_share_one_process() {
    let sandbox = Sandbox::new();
    let payload = json!({
        "id": "shared", "command": "sleep", "args": ["1000"], "if_running": "reuse",
    });
    let outcomes = fifty_starts_of(&sandbox, &payload);
    let answers: Vec<Value> = outcomes.iter().map(Outcome::data).collect();
    let leader = sandbox.leader("shared");
    assert!(leader.is_alive());
    let mut fresh = 0;
    for data in &answers {
        assert_eq!(data["task"]["id"], "shared", "{data}");
        assert_eq!(data["task"]["status"], "running", "{data}");
        assert_eq!(
            data["task"]["pid"], leader.pid,
            "all report one pid: {data}"
        );
        assert_eq!(data["task"]["run"], 1, "{data}");
        match data.get("reused") {
            None | Some(Value::Bool(false)) => fresh += 1,
            Some(Value::Bool(true)) => {}
            Some(other) => panic!("reused is a boolean: {other}"),
        }
    }
    assert_eq!(fresh, 1, "exactly one start is not a reuse");
    assert_eq!(
        sleeps_in(&sandbox.work()),
        [leader.pid],
        "exactly one task process runs"
    );
    assert_eq!(
        supervisors_of(&sandbox),
        [sandbox.supervisor("shared").pid],
        "exactly one supervisor runs"
    );
    assert_eq!(sandbox.stop("shared")["status"], "killed");
    wait_for_no_supervisor(&sandbox);
}

/// RELIABILITY 14: 1,000 `status` reads from 8 threads while 2 threads start and stop
/// tasks: every answer is a well-formed success or a well-formed TaskNotFound.
#[test]
fn a_thousand_parallel_status_reads_during_starts_and_stops_all_parse() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "stable", "command": "sleep", "args": ["1000"]}));
    let churning = AtomicBool::new(true);
    let (found, not_found) = std::thread::scope(|scope| {
        let churners: Vec<_> = (0..2)
            .map(|t| {
                let (sandbox, churning) = (&sandbox, &churning);
                scope.spawn(move || {
                    let mut n = 0;
                    while churning.load(Ordering::Relaxed) && n < 200 {
                        let id = format!("churn-{t}-{n}");
                        sandbox.start(&json!({"id": id, "command": "sleep", "args": ["1000"]}));
                        assert_eq!(sandbox.stop(&id)["status"], "killed");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let readers: Vec<_> = (0..8)
            .map(|r| {
                let sandbox = &sandbox;
                scope.spawn(move || {
                    let (mut found, mut not_found) = (0, 0);
                    for c in 0..125usize {
                        let id = match (r + c) % 3 {
                            0 => "stable".to_owned(),
                            1 => format!("churn-{}-{}", c % 2, (c / 3) % 12),
                            _ => "never-started".to_owned(),
                        };
                        let outcome = sandbox.call(&["status"], &json!({ "id": id }));
                        match outcome.code {
                            Some(0) => {
                                let data = outcome.data();
                                assert_eq!(data["task_id"], id.as_str(), "{data}");
                                assert_eq!(data["task"]["id"], id.as_str(), "{data}");
                                let status = data["status"].as_str().unwrap_or_default();
                                assert!(STATUSES.contains(&status), "{data}");
                                assert_eq!(data["task"]["status"], status, "{data}");
                                assert_ne!(id, "never-started", "{data}");
                                if id == "stable" {
                                    assert_eq!(status, "running", "{data}");
                                }
                                found += 1;
                            }
                            Some(1) => {
                                let error = outcome.error();
                                assert_eq!(error["type"], "TaskNotFound", "{outcome:#?}");
                                assert_ne!(id, "stable", "the stable task was not found");
                                not_found += 1;
                            }
                            _ => panic!("status neither succeeded nor failed: {outcome:#?}"),
                        }
                    }
                    (found, not_found)
                })
            })
            .collect();
        let counts: Vec<(usize, usize)> = readers
            .into_iter()
            .map(|r| r.join().expect("a reader thread"))
            .collect();
        churning.store(false, Ordering::Relaxed);
        for churner in churners {
            assert!(churner.join().expect("a churn thread") > 0);
        }
        counts
            .into_iter()
            .fold((0, 0), |(f, n), (a, b)| (f + a, n + b))
    });
    assert_eq!(found + not_found, 1000);
    // 333 reads of "stable" and 333 of "never-started"; the rest were of churned ids.
    assert!(
        found >= 333 && not_found >= 333,
        "{found} found, {not_found} not"
    );
    assert_eq!(sandbox.status("stable")["status"], "running");
    sandbox.stop("stable");
    wait_for_no_supervisor(&sandbox);
}

/// `start --concurrency 2` with 6 FIFO-gated items: items 0 and 1 run at once, the rest
/// are answered and listed `queued` with no pid; released one by one, no sample of `list`
/// ever shows more than 2 running, the queue starts in input order as slots free up, and
/// all 6 end `exited` 0.
#[test]
fn a_concurrency_2_batch_runs_at_most_2_and_starts_the_queue_in_input_order() {
    let sandbox = Sandbox::new();
    let ids: Vec<String> = (0..6).map(|i| format!("slot-{i}")).collect();
    let items: Vec<Value> = (0..6)
        .map(|i| {
            make_fifo(&sandbox.work().join(format!("gate-{i}.fifo")));
            json!({"id": ids[i], "shell": format!("read line < gate-{i}.fifo")})
        })
        .collect();
    let items = Value::Array(items);

    let error = sandbox.fail(&["start", "--concurrency", "0"], &items);
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert!(
        tasks_by_id(&sandbox, &json!({})).is_empty(),
        "a refused batch started something"
    );

    let data = call_batch(&sandbox, &["start", "--concurrency", "2"], &items);
    assert_eq!(data["outcome"], "succeeded", "{data}");
    assert_eq!(data["total"], 6, "{data}");
    assert_eq!(data["concurrency"], 2, "{data}");
    for (i, id) in ids.iter().enumerate() {
        let task = item_task(&data, i, id);
        if i < 2 {
            assert_eq!(task["status"], "running", "item {i}: {task}");
            assert!(task["pid"].is_i64(), "item {i}: {task}");
        } else {
            assert_eq!(task["status"], "queued", "item {i}: {task}");
            assert_eq!(task["pid"], Value::Null, "item {i}: {task}");
        }
    }

    let mut seen_queued = [false; 6];
    let mut most_running = 0;
    let mut samples = 0;
    // `list` reads one record after another, so one sample is not an instant. Asking for
    // the ids last to first (which this implementation reads in that order) keeps every
    // sample consistent: item i + 2 starts only after item i ended, so a sample that sees
    // i + 2 running (read first) cannot then see i still running (read later).
    let newest_first: Vec<&String> = ids.iter().rev().collect();
    let mut sample = || -> Vec<String> {
        let listed = tasks_by_id(&sandbox, &json!({ "ids": newest_first }));
        let statuses: Vec<String> = ids
            .iter()
            .map(|id| {
                listed[id]["status"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{id} is listed: {listed:?}"))
                    .to_owned()
            })
            .collect();
        samples += 1;
        for (i, status) in statuses.iter().enumerate() {
            assert!(
                ["queued", "running", "exited"].contains(&status.as_str()),
                "sample {samples}: {statuses:?}"
            );
            if status == "queued" {
                seen_queued[i] = true;
                assert_eq!(listed[&ids[i]]["pid"], Value::Null, "{}", listed[&ids[i]]);
            }
        }
        let running = statuses.iter().filter(|s| *s == "running").count();
        assert!(
            running <= 2,
            "sample {samples}: {running} running at once: {statuses:?}"
        );
        most_running = most_running.max(running);
        if let Some(first) = statuses.iter().position(|s| s == "queued") {
            assert!(
                statuses[first..].iter().all(|s| s == "queued"),
                "sample {samples}: the queue did not start in input order: {statuses:?}"
            );
        }
        statuses
    };

    let first = sample();
    assert!(
        first[2..].iter().all(|s| s == "queued"),
        "items 2.. wait while 0 and 1 are held: {first:?}"
    );
    for i in 0..6 {
        let next = (i + 2).min(6);
        wait_until(
            &format!("items {i}..{next} run while {i} is held"),
            DEADLINE,
            || sample()[i..next].iter().all(|s| s == "running"),
        );
        open_gate(&sandbox.work().join(format!("gate-{i}.fifo")));
        wait_until(&format!("item {i} has exited"), DEADLINE, || {
            sample()[i] == "exited"
        });
    }
    let last = sample();
    assert!(last.iter().all(|s| s == "exited"), "{last:?}");
    assert_eq!(most_running, 2, "the batch never used its 2 slots");
    assert_eq!(
        seen_queued,
        [false, false, true, true, true, true],
        "the queued items were listed as queued"
    );

    let records: Vec<Value> = ids.iter().map(|id| sandbox.record(id)).collect();
    for (i, id) in ids.iter().enumerate() {
        let task = sandbox.status(id);
        assert_eq!(task["status"], "exited", "{task}");
        assert_eq!(task["exit_code"], 0, "{task}");
        if i >= 2 {
            let started = records[i]["started_at_ms"].as_i64().expect("started");
            let slot_freed = records[i - 2]["ended_at_ms"].as_i64().expect("ended");
            assert!(
                started >= slot_freed,
                "item {i} started at {started} before item {} ended at {slot_freed}",
                i - 2
            );
            let before = records[i - 1]["started_at_ms"].as_i64().expect("started");
            assert!(started >= before, "item {i} started before item {}", i - 1);
        }
    }
    wait_for_no_supervisor(&sandbox);
}

/// A batch whose middle item cannot start: the others start, the answer is a partial
/// failure in input order, and the exit code is 1. `stop` takes an array too.
#[test]
fn a_batch_with_one_bad_item_is_a_partial_failure_in_input_order() {
    let sandbox = Sandbox::new();
    let data = call_batch(
        &sandbox,
        &["start"],
        &json!([
            {"id": "first", "command": "sleep", "args": ["1000"]},
            {"id": "broken", "command": "no-such-command-for-background-tasks"},
            {"id": "third", "command": "sleep", "args": ["1000"]},
        ]),
    );
    assert_eq!(data["outcome"], "partial_failure", "{data}");
    assert_eq!(data["total"], 3, "{data}");
    assert_eq!(data["success_count"], 2, "{data}");
    assert_eq!(data["error_count"], 1, "{data}");
    assert_eq!(data["concurrency"], Value::Null, "{data}");
    for (i, id) in [(0, "first"), (2, "third")] {
        let task = item_task(&data, i, id);
        assert_eq!(task["status"], "running", "{task}");
        assert_eq!(task["pid"], sandbox.leader(id).pid, "{task}");
        assert!(sandbox.leader(id).is_alive());
    }
    assert_item_failed(&data, 1, "broken", "SpawnFailed");
    assert_eq!(sandbox.status("broken")["status"], "failed");

    let data = call_batch(
        &sandbox,
        &["stop"],
        &json!([{"id": "first"}, {"id": "third"}]),
    );
    assert_eq!(data["outcome"], "succeeded", "{data}");
    for (i, id) in ["first", "third"].into_iter().enumerate() {
        let item = result(&data, i);
        assert_eq!(item["target"], id, "{data}");
        assert_eq!(item["data"]["task_id"], id, "{data}");
        assert_eq!(item["data"]["status"], "killed", "{data}");
        assert_eq!(sandbox.status(id)["status"], "killed");
    }
    assert!(sleeps_in(&sandbox.work()).is_empty());
    wait_for_no_supervisor(&sandbox);
}

/// The same id twice in one batch: the first wins, the second is TaskAlreadyRunning, and
/// only the first's process runs.
#[test]
fn a_duplicate_id_in_one_batch_fails_after_the_first() {
    let sandbox = Sandbox::new();
    let data = call_batch(
        &sandbox,
        &["start"],
        &json!([
            {"id": "twice", "command": "sleep", "args": ["1000"]},
            {"id": "twice", "command": "sleep", "args": ["2000"]},
            {"id": "once", "command": "true"},
        ]),
    );
    assert_eq!(data["outcome"], "partial_failure", "{data}");
    let task = item_task(&data, 0, "twice");
    assert_eq!(task["status"], "running", "{task}");
    assert_eq!(task["args"], json!(["1000"]), "{task}");
    assert_item_failed(&data, 1, "twice", "TaskAlreadyRunning");
    item_task(&data, 2, "once");

    let leader = sandbox.leader("twice");
    assert_eq!(sandbox.status("twice")["args"], json!(["1000"]));
    assert_eq!(sandbox.record("twice")["run"], 1);
    assert_eq!(sleeps_in(&sandbox.work()), [leader.pid]);
    assert_eq!(sandbox.wait("once")["exit_code"], 0);
    sandbox.stop("twice");
    wait_for_no_supervisor(&sandbox);
}

/// `timeout_s`: the supervisor stops the task after that long (SIGTERM); it ends
/// `timed_out` with reason `timeout`. A task that traps SIGTERM is SIGKILLed after `grace_s`.
#[test]
fn timeout_s_stops_the_task_as_timed_out_escalating_to_sigkill() {
    let sandbox = Sandbox::new();
    let error = sandbox.fail(
        &["start"],
        &json!({"id": "zero", "shell": "sleep 100", "timeout_s": 0}),
    );
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert_eq!(error["details"]["path"], "timeout_s", "{error}");

    let task = sandbox.start(&json!({"id": "brief", "shell": "sleep 100", "timeout_s": 0.5}));
    assert_eq!(task["status"], "running", "{task}");
    let pgid = sandbox.leader("brief").pid;
    let data = sandbox.ok(&["wait", "--timeout", "30"], &json!({"id": "brief"}));
    let task = &data["task"];
    assert_eq!(data["status"], "timed_out", "{data}");
    assert_eq!(task["reason"], "timeout", "{task}");
    assert_eq!(task["signal"], "SIGTERM", "{task}");
    assert_eq!(task["exit_code"], Value::Null, "{task}");
    assert_eq!(task["success"], false, "{task}");
    assert!(live_group_members(pgid).is_empty());
    let listed = tasks_by_id(&sandbox, &json!({"status": "timed_out"}));
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["brief"]);

    // A timeout long enough for the shell to set its trap first.
    sandbox.start(&json!({
        "id": "stubborn", "shell": "trap '' TERM; sleep 100", "timeout_s": 3, "grace_s": 0.5,
    }));
    let leader = sandbox.leader("stubborn");
    let data = sandbox.ok(&["wait", "--timeout", "30"], &json!({"id": "stubborn"}));
    let task = &data["task"];
    assert_eq!(data["status"], "timed_out", "{data}");
    assert_eq!(task["reason"], "timeout", "{task}");
    assert_eq!(task["signal"], "SIGKILL", "{task}");
    assert!(!leader.exists(), "the stubborn task survived its timeout");
    assert!(live_group_members(leader.pid).is_empty());
    wait_for_no_supervisor(&sandbox);
}

/// `if_running: "reuse"` answers the running task when the command is the same (same pid,
/// no new process, `reused: true`) and refuses a different one naming the differences;
/// without it a second start is TaskAlreadyRunning.
#[test]
fn if_running_reuse_answers_the_same_task_and_refuses_a_different_one() {
    let sandbox = Sandbox::new();
    let payload = json!({"id": "web", "command": "sleep", "args": ["1000"]});
    let first = sandbox.ok(&["start"], &payload);
    assert!(
        first.get("reused").is_none_or(|r| r == false),
        "a fresh start is no reuse: {first}"
    );
    let leader = sandbox.leader("web");

    let error = sandbox.fail(&["start"], &payload);
    assert_eq!(error["type"], "TaskAlreadyRunning", "{error}");

    let mut reuse = payload.clone();
    reuse["if_running"] = json!("reuse");
    let again = sandbox.ok(&["start"], &reuse);
    assert_eq!(again["reused"], true, "{again}");
    assert_eq!(again["task"]["id"], "web", "{again}");
    assert_eq!(again["task"]["pid"], leader.pid, "{again}");
    assert_eq!(again["task"]["run"], 1, "{again}");
    assert_eq!(again["task"]["status"], "running", "{again}");
    assert!(leader.is_alive());
    assert_eq!(sleeps_in(&sandbox.work()), [leader.pid], "no new process");

    let mut other = reuse.clone();
    other["args"] = json!(["2000"]);
    let error = sandbox.fail(&["start"], &other);
    assert_eq!(error["type"], "TaskAlreadyRunning", "{error}");
    assert_eq!(error["details"]["differences"], json!(["args"]), "{error}");
    assert_eq!(sandbox.status("web")["args"], json!(["1000"]));
    assert_eq!(sleeps_in(&sandbox.work()), [leader.pid], "no new process");
    sandbox.stop("web");
    wait_for_no_supervisor(&sandbox);
}

/// `if_running: "restart"` stops the running task and starts its next run: run 2, a new
/// process, and the old one gone.
#[test]
fn if_running_restart_replaces_the_running_task_with_its_next_run() {
    let sandbox = Sandbox::new();
    let payload = json!({"id": "dev", "command": "sleep", "args": ["1000"]});
    let first = sandbox.start(&payload);
    let old = sandbox.leader("dev");
    assert_eq!(first["pid"], old.pid);

    let mut restart = payload.clone();
    restart["if_running"] = json!("restart");
    let data = sandbox.ok(&["start"], &restart);
    let task = &data["task"];
    assert_eq!(task["run"], 2, "{data}");
    assert_eq!(task["status"], "running", "{data}");
    assert_ne!(task["pid"], old.pid, "{data}");
    assert!(!old.exists(), "run 1's process survived");
    let new = sandbox.leader("dev");
    assert_eq!(task["pid"], new.pid, "{data}");
    assert!(new.is_alive());
    assert_eq!(sleeps_in(&sandbox.work()), [new.pid]);
    assert_eq!(sandbox.stop("dev")["task"]["run"], 2);
    wait_for_no_supervisor(&sandbox);
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

/// `rm`: removes an ended task's folder; refuses a running one (TaskAlreadyRunning, with a
/// hint, nothing removed) unless `force`, which stops it first; an unknown id is
/// TaskNotFound; an array gives a batch answer.
#[test]
fn rm_removes_ended_tasks_refuses_running_ones_unless_forced() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "done", "shell": "exit 3"}));
    sandbox.wait("done");
    assert!(sandbox.task_dir("done").join("task.json").exists());
    let data = sandbox.ok(&["rm"], &json!({"id": "done"}));
    assert_eq!(data["task_id"], "done", "{data}");
    assert_eq!(data["removed"], true, "{data}");
    assert_eq!(data["status"], "exited", "{data}");
    assert!(
        !sandbox.task_dir("done").exists(),
        "the folder is still there"
    );
    assert_not_found(&sandbox, "done");
    assert!(tasks_by_id(&sandbox, &json!({})).is_empty());

    let error = sandbox.fail(&["rm"], &json!({"id": "done"}));
    assert_eq!(error["type"], "TaskNotFound", "{error}");

    sandbox.start(&json!({"id": "busy", "command": "sleep", "args": ["1000"]}));
    let leader = sandbox.leader("busy");
    let supervisor = sandbox.supervisor("busy");
    let error = sandbox.fail(&["rm"], &json!({"id": "busy"}));
    assert_eq!(error["type"], "TaskAlreadyRunning", "{error}");
    assert!(
        error["details"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("force")),
        "the hint offers force: {error}"
    );
    assert_eq!(sandbox.status("busy")["status"], "running");
    assert!(leader.is_alive());
    assert!(sandbox.task_dir("busy").join("output.log").exists());

    // Were force to remove the record and leave the processes, the guard could no longer
    // find them through it.
    sandbox.track(leader);
    sandbox.track(supervisor);
    let data = sandbox.ok(&["rm"], &json!({"id": "busy", "force": true}));
    assert_eq!(data["task_id"], "busy", "{data}");
    assert_eq!(data["removed"], true, "{data}");
    assert_eq!(data["status"], "killed", "{data}");
    assert!(!leader.exists(), "the forced task's process survived");
    wait_until("the forced task's supervisor exits", DEADLINE, || {
        !supervisor.is_alive()
    });
    assert!(!sandbox.task_dir("busy").exists());
    assert_not_found(&sandbox, "busy");

    sandbox.start(&json!({"id": "old", "command": "true"}));
    sandbox.wait("old");
    sandbox.start(&json!({"id": "live", "command": "sleep", "args": ["1000"]}));
    let data = call_batch(
        &sandbox,
        &["rm"],
        &json!([{"id": "old"}, {"id": "ghost"}, {"id": "live"}]),
    );
    assert_eq!(data["outcome"], "partial_failure", "{data}");
    let item = result(&data, 0);
    assert_eq!(item["target"], "old", "{data}");
    assert_eq!(item["data"]["removed"], true, "{data}");
    assert_eq!(item["data"]["status"], "exited", "{data}");
    assert_item_failed(&data, 1, "ghost", "TaskNotFound");
    assert_item_failed(&data, 2, "live", "TaskAlreadyRunning");
    assert_not_found(&sandbox, "old");
    assert_eq!(sandbox.status("live")["status"], "running");

    let data = call_batch(&sandbox, &["rm"], &json!([{"id": "ghost"}, {"id": "old"}]));
    assert_eq!(data["outcome"], "failed", "{data}");
    let data = call_batch(&sandbox, &["rm"], &json!([{"id": "live", "force": true}]));
    assert_eq!(data["outcome"], "succeeded", "{data}");
    assert_not_found(&sandbox, "live");
    assert!(sleeps_in(&sandbox.work()).is_empty());
    wait_for_no_supervisor(&sandbox);
}

/// Copies the format-1 fixture in as task `legacy`: a task that ended in 2000.
fn add_ancient_task(sandbox: &Sandbox) {
    let dir = sandbox.task_dir("legacy");
    fs::create_dir_all(&dir).expect("mkdir");
    for path in [sandbox.state(), sandbox.state().join("tasks"), dir.clone()] {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/record-v1.json");
    let record = dir.join("task.json");
    fs::copy(fixture, &record).expect("copy the fixture");
    fs::set_permissions(&record, fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// `prune`'s removed ids, sorted, after checking the answer's shape and that each removed
/// task is gone.
fn prune(sandbox: &Sandbox, payload: Option<Value>) -> Vec<String> {
    let data = match payload {
        Some(payload) => sandbox.ok(&["prune"], &payload),
        None => sandbox.run(&["prune"]).data(),
    };
    let removed = data["removed"].as_array().expect("removed ids");
    assert_eq!(data["total_removed"], removed.len(), "{data}");
    let mut ids: Vec<String> = removed
        .iter()
        .map(|id| id.as_str().expect("an id").to_owned())
        .collect();
    ids.sort();
    for id in &ids {
        assert!(
            !sandbox.task_dir(id).exists(),
            "{id}'s folder is still there"
        );
        assert_not_found(sandbox, id);
    }
    ids
}

/// `prune` removes ended tasks by age, status and `keep_last`, and never touches running
/// or queued ones.
#[test]
fn prune_removes_ended_tasks_by_age_status_and_keep_last_never_running_or_queued() {
    let sandbox = Sandbox::new();
    add_ancient_task(&sandbox);
    let gate = sandbox.work().join("gate.fifo");
    make_fifo(&gate);
    let data = call_batch(
        &sandbox,
        &["start", "--concurrency", "1"],
        &json!([
            {"id": "holder", "shell": "read line < gate.fifo"},
            {"id": "waiting", "command": "true"},
        ]),
    );
    assert_eq!(item_task(&data, 1, "waiting")["status"], "queued", "{data}");
    sandbox.start(&json!({"id": "server", "command": "sleep", "args": ["1000"]}));
    let server = sandbox.leader("server");

    // Ended tasks, each strictly after the one before: failed, killed, exited, exited.
    assert_eq!(
        sandbox.fail(
            &["start"],
            &json!({"id": "failed-1", "command": "/nonexistent/x"})
        )["type"],
        "SpawnFailed"
    );
    assert_eq!(sandbox.wait("failed-1")["status"], "failed");
    after_the_end_of(&sandbox, "failed-1");
    sandbox.start(&json!({"id": "killed-1", "command": "sleep", "args": ["1000"]}));
    sandbox.stop("killed-1");
    after_the_end_of(&sandbox, "killed-1");
    sandbox.start(&json!({"id": "exited-1", "command": "true"}));
    sandbox.wait("exited-1");
    after_the_end_of(&sandbox, "exited-1");
    sandbox.start(&json!({"id": "exited-2", "command": "false"}));
    sandbox.wait("exited-2");

    let untouched = |sandbox: &Sandbox| {
        assert_eq!(sandbox.status("holder")["status"], "running");
        assert_eq!(sandbox.status("waiting")["status"], "queued");
        assert_eq!(sandbox.status("server")["status"], "running");
        assert!(server.is_alive());
    };

    assert_eq!(
        prune(&sandbox, Some(json!({"older_than_s": 3600}))),
        ["legacy"]
    );
    untouched(&sandbox);
    assert_eq!(
        prune(&sandbox, Some(json!({"status": "exited", "keep_last": 1}))),
        ["exited-1"]
    );
    assert_eq!(sandbox.status("exited-2")["status"], "exited");
    assert_eq!(
        prune(&sandbox, Some(json!({"status": "exited"}))),
        ["exited-2"]
    );
    assert_eq!(sandbox.status("failed-1")["status"], "failed");
    assert_eq!(sandbox.status("killed-1")["status"], "killed");
    untouched(&sandbox);

    sandbox.start(&json!({"id": "exited-3", "command": "true"}));
    sandbox.wait("exited-3");
    assert_eq!(
        prune(&sandbox, Some(json!({"older_than_s": 3600}))),
        [""; 0]
    );
    assert_eq!(
        prune(&sandbox, Some(json!({"keep_last": 1}))),
        ["failed-1", "killed-1"]
    );
    assert_eq!(sandbox.status("exited-3")["status"], "exited");
    untouched(&sandbox);
    assert_eq!(prune(&sandbox, None), ["exited-3"]);
    untouched(&sandbox);
    assert_eq!(
        tasks_by_id(&sandbox, &json!({})).keys().collect::<Vec<_>>(),
        ["holder", "server", "waiting"]
    );

    open_gate(&gate);
    assert_eq!(sandbox.wait("holder")["exit_code"], 0);
    assert_eq!(
        sandbox.ok(&["wait", "--timeout", "30"], &json!({"id": "waiting"}))["task"]["exit_code"],
        0
    );
    sandbox.stop("server");
    assert_eq!(prune(&sandbox, None), ["holder", "server", "waiting"]);
    assert!(tasks_by_id(&sandbox, &json!({})).is_empty());
    wait_for_no_supervisor(&sandbox);
}

/// `start --wait` answers the finished task even when it failed (the start succeeded); a
/// batch with `--wait` answers each item finished, and `--timeout` fails only the items
/// still running, which run on.
#[test]
fn start_wait_answers_finished_tasks_for_single_and_batch_payloads() {
    let sandbox = Sandbox::new();
    let data = sandbox.ok(
        &["start", "--wait"],
        &json!({"id": "no", "command": "false"}),
    );
    assert_eq!(data["task"]["status"], "exited", "{data}");
    assert_eq!(data["task"]["exit_code"], 1, "{data}");
    assert_eq!(data["task"]["success"], false, "{data}");

    let data = call_batch(
        &sandbox,
        &["start", "--wait"],
        &json!([
            {"id": "b0", "shell": "exit 0"},
            {"id": "b1", "shell": "exit 3"},
            {"id": "b2", "shell": "sleep 0.2; exit 5"},
        ]),
    );
    assert_eq!(data["outcome"], "succeeded", "{data}");
    for (i, code) in [0, 3, 5].into_iter().enumerate() {
        let task = item_task(&data, i, &format!("b{i}"));
        assert_eq!(task["status"], "exited", "{task}");
        assert_eq!(task["exit_code"], code, "{task}");
    }

    let data = call_batch(
        &sandbox,
        &["start", "--wait", "--concurrency", "1"],
        &json!([{"id": "q0", "shell": "exit 6"}, {"id": "q1", "shell": "exit 7"}]),
    );
    assert_eq!(data["concurrency"], 1, "{data}");
    assert_eq!(item_task(&data, 0, "q0")["exit_code"], 6, "{data}");
    assert_eq!(item_task(&data, 1, "q1")["exit_code"], 7, "{data}");

    let data = call_batch(
        &sandbox,
        &["start", "--wait", "--timeout", "3"],
        &json!([
            {"id": "quick", "command": "true"},
            {"id": "slow", "command": "sleep", "args": ["1000"]},
        ]),
    );
    assert_eq!(data["outcome"], "partial_failure", "{data}");
    assert_eq!(item_task(&data, 0, "quick")["status"], "exited", "{data}");
    assert_item_failed(&data, 1, "slow", "TaskWaitTimedOut");
    assert_eq!(result(&data, 1)["error"]["details"]["retryable"], true);
    assert_eq!(sandbox.status("slow")["status"], "running");
    assert!(sandbox.leader("slow").is_alive());
    sandbox.stop("slow");
    wait_for_no_supervisor(&sandbox);
}

/// `list {fields}` keeps only the named keys of each task; an unknown name is a
/// CommandInputError that names the valid fields.
#[test]
fn list_fields_projects_each_task_and_rejects_unknown_fields() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "up", "command": "sleep", "args": ["1000"]}));
    sandbox.start(&json!({"id": "down", "shell": "exit 2"}));
    sandbox.wait("down");

    let data = sandbox.ok(&["list"], &json!({"fields": ["id", "status"]}));
    assert_eq!(data["total"], 2, "{data}");
    let mut seen = BTreeMap::new();
    for task in data["tasks"].as_array().expect("tasks") {
        let keys: BTreeSet<&str> = task
            .as_object()
            .expect("a task object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["id", "status"]), "{task}");
        seen.insert(task["id"].as_str().expect("id").to_owned(), task.clone());
    }
    assert_eq!(seen["up"]["status"], "running");
    assert_eq!(seen["down"]["status"], "exited");

    let data = sandbox.ok(
        &["list"],
        &json!({"status": "exited", "fields": ["exit_code", "id"]}),
    );
    // Objects compare whatever their key order.
    assert_eq!(
        data["tasks"],
        json!([{"id": "down", "exit_code": 2}]),
        "{data}"
    );

    let full = sandbox.ok(&["list"], &json!({"ids": ["up"]}));
    for key in ["id", "status", "pid", "command", "args", "log"] {
        assert!(
            full["tasks"][0].get(key).is_some(),
            "no {key} without fields: {full}"
        );
    }

    let error = sandbox.fail(&["list"], &json!({"fields": ["id", "colour"]}));
    assert_eq!(error["type"], "CommandInputError", "{error}");
    let text = error.to_string();
    assert!(
        text.contains("colour"),
        "the error names the bad field: {error}"
    );
    for valid in ["status", "pid", "exit_code", "started_at", "workdir"] {
        assert!(
            text.contains(valid),
            "the error names the valid field {valid}: {error}"
        );
    }
    sandbox.stop("up");
    wait_for_no_supervisor(&sandbox);
}

/// The shell line of a task that, on SIGTERM, notes it in `term-<id>` and then waits for
/// its release gate before exiting.
fn held_on_term(id: &str) -> String {
    format!(
        "trap 'echo term > term-{id}; read line < release-{id}.fifo; exit 0' TERM; sleep 1000 & wait"
    )
}

/// `stop` with an array stops its items in parallel: every item has had SIGTERM while none
/// of them could end yet, and the results come in input order with an unknown id failing
/// alone. `restart` with an array restarts each item.
#[test]
fn stop_and_restart_arrays_work_on_items_in_parallel_in_input_order() {
    let sandbox = Sandbox::new();
    let ids = ["p0", "p1", "p2"];
    for id in ids {
        make_fifo(&sandbox.work().join(format!("release-{id}.fifo")));
        sandbox.start(&json!({"id": id, "shell": held_on_term(id)}));
        let leader = sandbox.leader(id);
        wait_until(&format!("{id} traps SIGTERM"), DEADLINE, || {
            signal_mask(leader.pid, "SigCgt") & signal_bit(libc::SIGTERM) != 0
        });
    }
    let stopping = spawn(sandbox.command_with(
        &["stop"],
        &json!([
            {"id": "p0", "grace_s": 60},
            {"id": "ghost"},
            {"id": "p1", "grace_s": 60},
            {"id": "p2", "grace_s": 60},
        ]),
    ));
    // A stop that did one item after the other would not signal p1 before p0 has ended,
    // and p0 cannot end before it is released (or 60 s later).
    wait_until("every item has had SIGTERM", DEADLINE, || {
        ids.iter()
            .all(|id| sandbox.work().join(format!("term-{id}")).exists())
    });
    assert!(stopping.is_running(), "stop answered before any item ended");
    for id in ["p2", "p0", "p1"] {
        open_gate(&sandbox.work().join(format!("release-{id}.fifo")));
    }
    let data = batch_answer(&stopping.finish(), "stop");
    assert_eq!(data["outcome"], "partial_failure", "{data}");
    assert_item_failed(&data, 1, "ghost", "TaskNotFound");
    for (i, id) in [(0, "p0"), (2, "p1"), (3, "p2")] {
        let item = result(&data, i);
        assert_eq!(item["ok"], true, "{data}");
        assert_eq!(item["target"], id, "{data}");
        assert_eq!(item["data"]["task_id"], id, "{data}");
        let status = item["data"]["status"].as_str().unwrap_or_default();
        assert!(
            STATUSES.contains(&status) && status != "running" && status != "queued",
            "{data}"
        );
    }

    let mut old: Vec<Identity> = Vec::new();
    for id in ["r0", "r1"] {
        sandbox.start(&json!({"id": id, "command": "sleep", "args": ["1000"]}));
        old.push(sandbox.leader(id));
    }
    let data = call_batch(
        &sandbox,
        &["restart"],
        &json!([{"id": "r0"}, {"id": "nobody"}, {"id": "r1"}]),
    );
    assert_eq!(data["outcome"], "partial_failure", "{data}");
    assert_item_failed(&data, 1, "nobody", "TaskNotFound");
    for (i, id, before) in [(0, "r0", old[0]), (2, "r1", old[1])] {
        let item = result(&data, i);
        assert_eq!(item["target"], id, "{data}");
        assert_eq!(item["data"]["task_id"], id, "{data}");
        assert_eq!(item["data"]["task"]["run"], 2, "{data}");
        assert_ne!(item["data"]["task"]["pid"], before.pid, "{data}");
        assert!(!before.exists(), "{id}'s run 1 survived the restart");
        assert_eq!(sandbox.leader(id).pid, item["data"]["task"]["pid"]);
    }
    let data = call_batch(&sandbox, &["stop"], &json!([{"id": "r0"}, {"id": "r1"}]));
    assert_eq!(data["outcome"], "succeeded", "{data}");
    assert!(sleeps_in(&sandbox.work()).is_empty());
    wait_for_no_supervisor(&sandbox);
}
