//! Batches: arrays for `start`, `stop`, `restart` and `rm`, answered item by item in input
//! order (a partial failure is exit 1); `start --concurrency` and its queue; `start --wait`
//! over a batch with one deadline for the whole call.

use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Identity, STATUSES, Sandbox, assert_item_failed, batch_answer, call_batch, item_task,
    make_fifo, open_gate, result, signal_bit, signal_mask, sleeps_in, spawn, tasks_by_id,
    wait_for_no_supervisor, wait_until,
};

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
