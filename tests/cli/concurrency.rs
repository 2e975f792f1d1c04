//! RELIABILITY 14 (concurrency): parallel starts with distinct and with equal ids, and
//! parallel reads during churn.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::support::{
    Outcome, STATUSES, Sandbox, sleeps_in, supervisors_of, tasks_by_id, wait_for_no_supervisor,
};

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
