//! RELIABILITY 32 (issue 12, class 8): `stop`, `restart` and `rm {force}` racing other
//! restarts wait for the run they acted on, never for a newer one. Twenty parallel restarts
//! of one id all answer within the grace period plus a little, exactly one task process is
//! left, and no stop request outlives its run.

use std::fs;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{DEADLINE, Pending, Sandbox, spawn, wait_until};

/// The process groups of the live processes whose environment holds `marker` (as
/// `RACE_MARKER=<marker>`): one group per run of one test's task still alive, and nothing
/// else on the machine.
fn marked_groups(marker: &str) -> Vec<i32> {
    let needle = format!("RACE_MARKER={marker}");
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut groups: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(crate::support::stat)
        .filter(|p| {
            p.state != 'Z'
                && fs::read(format!("/proc/{}/environ", p.pid))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .map(|p| p.pgrp)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// A task that takes 0.3 s to end on SIGTERM (well within its 2 s grace), so that racing
/// callers arrive while a run is being stopped: the window the race needs.
fn slow_to_stop(marker: &str) -> Value {
    json!({
        "id": "raced",
        "shell": "trap 'sleep 0.3; exit 0' TERM; sleep 1000 & wait",
        "grace_s": 2,
        "env": {"RACE_MARKER": marker},
    })
}

/// A restart of that task: its env values are never stored, so a restart gives them again.
fn restart(marker: &str) -> Value {
    json!({"id": "raced", "env": {"RACE_MARKER": marker}})
}

/// Runs the binary with `args` and `payload` after `delay` (`sleep` in a shell that then
/// execs it), so racing callers arrive spread over the phases of each other's stop and
/// start, as callers do in practice, rather than all at the same instant.
fn staggered(sandbox: &Sandbox, delay: Duration, args: &[&str], payload: &Value) -> Pending {
    let mut command = sandbox.sealed("sh");
    command
        .arg("-c")
        .arg(r#"sleep "$1"; shift; exec "$@""#)
        .arg("sh")
        .arg(format!("{:.3}", delay.as_secs_f64()))
        .arg(crate::support::BIN)
        .args(args)
        .arg(payload.to_string());
    spawn(command)
}

/// How long a racing caller may take: the task's grace (2 s), plus generous room for 20
/// callers on two noisy cores. It took the full stop timeout (12 s here) and then failed.
const RACE_BOUND: Duration = Duration::from_secs(8);

/// Bursts of twenty `restart`s of one running task, each arriving over 300 ms: every caller
/// answers within the bound, none with a timeout for a run it did not act on, one run's
/// processes are left (the run the record names), and once that run is stopped no stop
/// request is left behind.
#[test]
fn twenty_parallel_restarts_all_answer_and_leave_one_task_process() {
    let sandbox = Sandbox::new();
    let marker = sandbox.root().display().to_string();
    sandbox.start(&slow_to_stop(&marker));
    // The race is likely, not certain, in one burst: up to three bursts, until one shows it.
    let mut wrong = Vec::new();
    let mut restarted = 0;
    for burst in 0..3 {
        let callers: Vec<_> = (0..20)
            .map(|i| {
                let delay = Duration::from_millis(15 * i);
                staggered(&sandbox, delay, &["restart"], &restart(&marker))
            })
            .collect();
        for (i, caller) in callers.into_iter().enumerate() {
            let outcome = caller.finish_within(Duration::from_secs(60));
            let mut problems = Vec::new();
            // contract: "20 parallel restarts of one id all answer within `grace_s` plus a
            // second" (RELIABILITY 32), bounded generously against noise.
            if outcome.elapsed > RACE_BOUND {
                problems.push(format!("answered after {:?}", outcome.elapsed));
            }
            let envelope = outcome.envelope();
            // contract: "`stop`, `restart` ... wait for the run they acted on, never for a
            // newer run started meanwhile" (RELIABILITY 32): no misleading timeout.
            if envelope["ok"] == true {
                restarted += 1;
            } else {
                let error = &envelope["error"];
                if error["type"] == "TaskWaitTimedOut" {
                    problems.push(format!("timed out: {}", error["message"]));
                } else if error["type"] == "CommandInputError" {
                    problems.push(format!("refused the payload: {}", error["message"]));
                }
            }
            if !problems.is_empty() {
                wrong.push(format!(
                    "burst {burst}, restart {i}: {}",
                    problems.join("; ")
                ));
            }
        }
        if !wrong.is_empty() {
            break;
        }
    }
    assert!(restarted > 0, "no restart succeeded: {wrong:#?}");
    assert!(
        wrong.is_empty(),
        "{} racing restarts went wrong: {wrong:#?}",
        wrong.len()
    );

    // contract: "exactly one task process is left" (RELIABILITY 32)
    let task = sandbox.status("raced");
    assert_eq!(task["status"], "running", "{task}");
    let mut left = Vec::new();
    wait_until("only one run's processes are left", DEADLINE, || {
        left = marked_groups(&marker);
        left.len() <= 1
    });
    assert_eq!(left, [sandbox.leader("raced").pid], "{task}");

    let stopped = sandbox.stop("raced");
    assert_eq!(stopped["status"], "killed", "{stopped}");
    wait_until("no run's process is left", DEADLINE, || {
        marked_groups(&marker).is_empty()
    });
    // contract: "No stale `stop.json` outlives its run" (RELIABILITY 32)
    let stop_request = sandbox.task_dir("raced").join("stop.json");
    assert!(
        !stop_request.exists(),
        "a stop request outlived its run: {:?}",
        fs::read_to_string(&stop_request)
    );
}

/// A `stop` and an `rm {force}` racing bursts of restarts answer within the bound, none
/// with a timeout for a newer run, and the task ends with no process and no stop request
/// left once it is stopped.
#[test]
fn stop_and_rm_force_racing_restarts_wait_for_their_own_run() {
    let sandbox = Sandbox::new();
    let marker = sandbox.root().display().to_string();
    // The race is likely, not certain, in one burst: up to three bursts, until one shows it.
    let mut wrong = Vec::new();
    for burst in 0..3 {
        // A burst starts from a running task (the last one may have removed or stopped it).
        let status = sandbox.call(&["status"], &json!({"id": "raced"}));
        if status.code != Some(0) || status.data()["status"] != "running" {
            sandbox.start(&slow_to_stop(&marker));
        }
        let mut callers = Vec::new();
        for i in 0..12_u64 {
            let (command, payload): (&str, Value) = match i {
                4 => ("stop", json!({"id": "raced"})),
                8 => ("rm", json!({"id": "raced", "force": true})),
                _ => ("restart", restart(&marker)),
            };
            let delay = Duration::from_millis(15 * i);
            callers.push((command, staggered(&sandbox, delay, &[command], &payload)));
        }
        for (command, caller) in callers {
            let outcome = caller.finish_within(Duration::from_secs(60));
            let what = format!("burst {burst}, {command}");
            // contract: "`stop`, `restart`, `rm {force}` ... all answer within `grace_s`
            // plus a second" (RELIABILITY 32), bounded generously against noise.
            if outcome.elapsed > RACE_BOUND {
                wrong.push(format!("{what} answered after {:?}", outcome.elapsed));
            }
            let error = outcome.envelope()["error"].clone();
            if error["type"] == "CommandInputError" {
                wrong.push(format!("{what} refused the payload: {}", error["message"]));
            }
            if error["type"] == "TaskWaitTimedOut" {
                // contract: "wait for the run they acted on, never for a newer run started
                // meanwhile" (RELIABILITY 32)
                wrong.push(format!("{what} timed out: {}", error["message"]));
            }
        }
        if !wrong.is_empty() {
            break;
        }
    }
    assert!(wrong.is_empty(), "racing callers went wrong: {wrong:#?}");

    // Whatever order they ran in, stopping what is left leaves nothing.
    let status = sandbox.call(&["status"], &json!({"id": "raced"}));
    if status.code == Some(0) {
        sandbox.stop("raced");
    }
    wait_until("no run's process is left", DEADLINE, || {
        marked_groups(&marker).is_empty()
    });
    let stop_request = sandbox.task_dir("raced").join("stop.json");
    // contract: "No stale `stop.json` outlives its run" (RELIABILITY 32)
    assert!(
        !stop_request.exists(),
        "a stop request outlived its run: {:?}",
        fs::read_to_string(&stop_request)
    );
}
