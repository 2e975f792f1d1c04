//! RELIABILITY.md's failure modes: detaching from the caller, synchronous exec failures,
//! supervisors that die, stop escalation, whole trees and escapees, hostile signal state and
//! leaked descriptors.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Identity, Sandbox, group_members, inherit_fd, live_group_members, open_fds,
    signal_bit, signal_mask, spawn, stat, wait_until, with_sigchld_ignored,
};

/// Signals 1 to 31 in a /proc signal mask.
const CLASSIC_SIGNALS: u64 = 0x7fff_ffff;

/// The signal numbers set in a /proc signal mask.
fn signals_in(mask: u64) -> Vec<i32> {
    (1..=64).filter(|&s| mask & signal_bit(s) != 0).collect()
}

/// Where the harness puts the extra pipe it leaks into `start`.
const EXTRA_FD: i32 = 5;

/// A shell whose group holds three processes: `sh` and two `sleep`s.
const TREE: &str = "sleep 1000 & sleep 1000 & wait";

/// Waits until the task's group has grown to `count` running processes.
fn wait_for_group(sandbox: &Sandbox, id: &str, count: usize) -> i32 {
    let pgid = sandbox.leader(id).pid;
    wait_until(
        &format!("task {id}'s group {pgid} holds {count} processes"),
        DEADLINE,
        || live_group_members(pgid).len() >= count,
    );
    pgid
}

/// Asserts that no process at all (not even a zombie) is left in group `pgid`.
fn assert_group_gone(pgid: i32) {
    let left = group_members(pgid);
    assert!(left.is_empty(), "group {pgid} still holds {left:?}");
}

/// RELIABILITY 1: `out=$(start ...)` and harnesses that read every pipe they pass to EOF
/// must not hang while the task runs on.
#[test]
fn start_releases_stdout_stderr_and_extra_pipes_while_the_task_runs_on() {
    let sandbox = Sandbox::new();
    let (extra_reader, extra_writer) = std::io::pipe().expect("pipe");
    let mut command = sandbox.command_with(
        &["start"],
        &json!({"id": "held", "command": "sleep", "args": ["100"]}),
    );
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    inherit_fd(&mut command, extra_writer.as_raw_fd(), EXTRA_FD);
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn start");
    drop(extra_writer);

    let (sender, receiver) = mpsc::channel();
    let readers: [(&str, Box<dyn Read + Send>); 3] = [
        ("stdout", Box::new(child.stdout.take().expect("stdout"))),
        ("stderr", Box::new(child.stderr.take().expect("stderr"))),
        ("extra pipe", Box::new(extra_reader)),
    ];
    for (name, mut reader) in readers {
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let read = reader.read_to_end(&mut bytes);
            let _ = sender.send((name, read.map(|_| bytes)));
        });
    }
    let mut got = std::collections::BTreeMap::new();
    for _ in 0..3 {
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        let (name, bytes) = receiver.recv_timeout(left).unwrap_or_else(|_| {
            panic!("a pipe given to start did not reach EOF within 5 s; got EOF on {got:?}")
        });
        got.insert(name, bytes.expect("read a pipe"));
    }
    let status = child.wait().expect("wait for start");
    assert!(status.success(), "start failed: {got:?}");
    assert_eq!(got["stderr"], b"");
    assert_eq!(got["extra pipe"], b"", "nobody writes to the extra pipe");
    let envelope: Value = serde_json::from_slice(&got["stdout"]).expect("stdout is JSON");
    assert_eq!(envelope["ok"], true);
    assert_eq!(envelope["data"]["task"]["status"], "running");

    // The caller has all its EOFs, and the task still runs.
    let task = sandbox.status("held");
    assert_eq!(task["status"], "running");
    let leader = sandbox.leader("held");
    assert_eq!(task["pid"], leader.pid);
    assert!(leader.is_alive());
    // No pipe of the caller lives on in the supervisor (its stdio is /dev/null).
    let supervisor = sandbox.supervisor("held");
    let pipes: Vec<_> = open_fds(supervisor.pid)
        .into_iter()
        .filter(|(_, target)| target.starts_with("pipe:"))
        .collect();
    assert!(pipes.is_empty(), "the supervisor holds pipes: {pipes:?}");
    // Its stdio is /dev/null, and it holds the task's lock, handed over by `start`.
    let fds = open_fds(supervisor.pid);
    for stdio in 0..3 {
        assert!(
            fds.iter()
                .any(|(fd, target)| *fd == stdio && target == "/dev/null"),
            "fd {stdio} of the supervisor: {fds:?}"
        );
    }
    let lock = sandbox.task_dir("held").join("supervisor.lock");
    assert!(
        fds.iter()
            .any(|(_, target)| *target == lock.to_string_lossy()),
        "the supervisor holds no lock: {fds:?}"
    );
    assert_eq!(sandbox.stop("held")["status"], "killed");
}

/// RELIABILITY 2: an exec failure is reported by `start` itself, with the OS reason, and
/// leaves a `failed` record, no process and a free lock.
#[test]
fn exec_failures_are_synchronous_spawn_failed_with_a_failed_record_and_no_process() {
    let sandbox = Sandbox::new();
    let not_executable = sandbox.work().join("not-executable.sh");
    fs::write(&not_executable, "#!/bin/sh\necho never\n").expect("write script");
    let directory = sandbox.work().join("a-directory");
    fs::create_dir(&directory).expect("mkdir");
    let cases = [
        (
            "missing-on-path",
            json!({"command": "no-such-command-for-background-tasks"}),
            libc::ENOENT,
            "command",
        ),
        (
            "missing-path",
            json!({"command": "/nonexistent/bin/tool"}),
            libc::ENOENT,
            "command",
        ),
        (
            "not-executable",
            json!({"command": not_executable}),
            libc::EACCES,
            "command",
        ),
        (
            "directory",
            json!({"command": directory}),
            libc::EACCES,
            "command",
        ),
        (
            "bad-workdir",
            json!({"command": "true", "workdir": "/nonexistent/workdir"}),
            libc::ENOENT,
            "workdir",
        ),
    ];
    for (id, mut payload, errno, cause) in cases {
        payload["id"] = json!(id);
        let error = sandbox.fail(&["start"], &payload);
        assert_eq!(error["type"], "SpawnFailed", "{id}: {error}");
        let details = &error["details"];
        assert_eq!(details["id"], id, "{error}");
        assert_eq!(details["os_error"], errno, "{id}: {error}");
        let reason = std::io::Error::from_raw_os_error(errno).to_string();
        let reason = reason.split(" (os error").next().unwrap_or_default();
        assert!(
            details["reason"]
                .as_str()
                .is_some_and(|r| r.contains(reason))
                && error["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(reason)),
            "{id}: the OS reason {reason:?} is missing: {error}"
        );
        assert!(
            details["cause"]
                .as_str()
                .is_some_and(|c| c.starts_with(cause)),
            "{id}: {error}"
        );

        let task = sandbox.status(id);
        assert_eq!(task["status"], "failed", "{id}: {task}");
        assert_eq!(task["reason"], "spawn_error", "{id}: {task}");
        assert_eq!(task["pid"], Value::Null, "{id}: no process: {task}");
        assert!(task["error"].is_string(), "{id}: {task}");
        assert_eq!(sandbox.wait(id)["status"], "failed");

        // The supervisor that tried is gone, and so the lock is free.
        let supervisor = sandbox.supervisor(id);
        wait_until(&format!("{id}'s supervisor exits"), DEADLINE, || {
            !supervisor.is_alive()
        });
        let lock = fs::File::open(sandbox.task_dir(id).join("supervisor.lock")).expect("lock");
        assert!(lock.try_lock().is_ok(), "{id}: the lock is still held");
    }
}

/// RELIABILITY 4: a supervisor that is SIGKILLed is reported `lost` by the next `status`
/// (or `stop`), which also kills what is left of the task's group.
#[test]
fn status_or_stop_after_supervisor_sigkill_reports_lost_and_kills_the_leftover_group() {
    let sandbox = Sandbox::new();
    for (id, first_look) in [("orphaned", "status"), ("abandoned", "stop")] {
        sandbox.start(&json!({"id": id, "shell": TREE}));
        let pgid = wait_for_group(&sandbox, id, 3);
        let supervisor = sandbox.supervisor(id);

        supervisor.signal(Signal::SIGKILL);
        wait_until("the supervisor is dead", DEADLINE, || {
            !supervisor.is_alive()
        });
        // PDEATHSIG takes the shell; its two sleeps survive the supervisor.
        assert!(
            live_group_members(pgid).len() >= 2,
            "the leftover sleeps should still run before anyone looks: {:?}",
            group_members(pgid)
        );

        let data = sandbox.ok(&[first_look], &json!({"id": id}));
        let task = &data["task"];
        assert_eq!(task["status"], "lost", "{first_look}: {data}");
        assert_eq!(task["reason"], "supervisor_lost", "{first_look}: {data}");
        assert_eq!(task["success"], false);
        assert!(task["ended_at"].is_string(), "{data}");
        if first_look == "stop" {
            assert_eq!(data["already_terminal"], true, "{data}");
        }
        wait_until(
            "the lost task's group has no running process",
            DEADLINE,
            || live_group_members(pgid).is_empty(),
        );
        // The record now says lost for good, and stopping it changes nothing.
        assert_eq!(sandbox.record(id)["status"], "lost");
        let stop = sandbox.stop(id);
        assert_eq!(stop["already_terminal"], true, "{stop}");
        assert_eq!(stop["status"], "lost");
    }
}

/// RELIABILITY 4: a `wait` blocked on a supervisor that is SIGKILLed wakes and says `lost`.
#[test]
fn wait_blocked_on_a_sigkilled_supervisor_returns_lost() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "doomed", "shell": TREE}));
    let pgid = wait_for_group(&sandbox, "doomed", 3);
    let waiter = spawn(sandbox.command_with(&["wait"], &json!({"id": "doomed"})));
    wait_until("wait blocks on the supervisor's lock", DEADLINE, || {
        waiter.is_blocked_on_a_lock()
    });

    sandbox.supervisor("doomed").signal(Signal::SIGKILL);
    let outcome = waiter.finish();
    let data = outcome.data();
    assert_eq!(data["status"], "lost", "{data}");
    assert_eq!(data["task"]["reason"], "supervisor_lost", "{data}");
    wait_until("the lost task's group is gone", DEADLINE, || {
        live_group_members(pgid).is_empty()
    });
}

/// Found by `cargo xtask soak` (its stop_race class, 1 stop in 400): a `stop` that read the
/// record while it still said `running`, an instant before the supervisor recorded the end
/// and exited, answered `SignalRefused` ("the record's supervisor is not the running
/// process") for a task that had simply ended; the soak's stop_race class keeps checking
/// that timing. The same refusal came when the supervisor had died and another reader held
/// the lock to record the task `lost`, which this test makes deterministic: `stop` answers
/// the task lost, having signalled nothing.
#[test]
fn stop_racing_the_supervisors_end_answers_the_ended_task_not_signal_refused() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "racing", "command": "sleep", "args": ["1000"]}));
    let supervisor = sandbox.supervisor("racing");
    let leader = sandbox.leader("racing");
    // Holding the lock stands for the reader that is recording the task lost.
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(sandbox.task_dir("racing").join("supervisor.lock"))
        .expect("open the lock");
    supervisor.signal(Signal::SIGKILL);
    wait_until("the supervisor is dead", DEADLINE, || {
        !supervisor.is_alive()
    });
    lock.lock().expect("take the lock the supervisor left");

    let stop = spawn(sandbox.command_with(&["stop"], &json!({"id": "racing"})));
    let blocked_on_a_lock = || {
        fs::read_dir(format!("/proc/{}/task", stop.pid()))
            .into_iter()
            .flatten()
            .flatten()
            .any(|t| fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w.contains("lock")))
    };
    // Whether stop answers at once or waits for the lock, it must not refuse.
    wait_until("stop waits for the lock, or has answered", DEADLINE, || {
        blocked_on_a_lock() || !stop.is_running()
    });
    drop(lock);
    let outcome = stop.finish();
    let data = outcome.data();
    assert_eq!(data["status"], "lost", "{data}");
    assert_eq!(data["already_terminal"], true, "{data}");
    assert_eq!(data["task"]["reason"], "supervisor_lost", "{data}");
    wait_until("the lost task's leftovers are gone", DEADLINE, || {
        !leader.is_alive()
    });
}

/// Found by `cargo xtask soak` (its lost class, 6 tasks in 250, with a `list` running beside
/// it): once a task's supervisor was SIGKILLed, `status` answered `running` while another
/// reader held the lock to record the task `lost`, since a held lock was taken for a live
/// supervisor. A lock held while the supervisor the record names is dead is a reader's:
/// the answer is `lost` at once.
#[test]
fn status_says_lost_while_another_reader_holds_the_lock_of_a_dead_supervisor() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "orphan", "command": "sleep", "args": ["1000"]}));
    let supervisor = sandbox.supervisor("orphan");
    // Holding the lock stands for the reader that is recording the task lost.
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(sandbox.task_dir("orphan").join("supervisor.lock"))
        .expect("open the lock");
    supervisor.signal(Signal::SIGKILL);
    wait_until("the supervisor is dead", DEADLINE, || {
        !supervisor.is_alive()
    });
    lock.lock().expect("take the lock the supervisor left");

    let data = sandbox.ok(&["status"], &json!({"id": "orphan"}));
    assert_eq!(data["status"], "lost", "{data}");
    assert_eq!(data["task"]["reason"], "supervisor_lost", "{data}");
    let listed = sandbox.ok(&["list"], &json!({"fields": ["id", "status"]}));
    assert_eq!(listed["tasks"][0]["status"], "lost", "{listed}");
    // The lock's holder records it; until then the record still says running.
    assert_eq!(sandbox.record("orphan")["status"], "running");
    drop(lock);
    assert_eq!(sandbox.status("orphan")["status"], "lost");
    assert_eq!(sandbox.record("orphan")["status"], "lost");
}

/// RELIABILITY 5: SIGTERM to the supervisor stops the task's group, records it and exits.
#[test]
fn sigterm_to_the_supervisor_stops_the_group_and_records_killed() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "told", "shell": TREE}));
    let pgid = wait_for_group(&sandbox, "told", 3);
    let supervisor = sandbox.supervisor("told");

    supervisor.signal(Signal::SIGTERM);
    let task = sandbox.wait("told");
    assert_eq!(task["status"], "killed", "{task}");
    assert_eq!(task["reason"], "supervisor_signal", "{task}");
    assert_eq!(task["signal"], "SIGTERM", "{task}");
    assert_eq!(task["exit_code"], Value::Null, "{task}");
    wait_until("the supervisor exits", DEADLINE, || !supervisor.is_alive());
    assert_group_gone(pgid);
}

/// RELIABILITY 6: a task that ignores SIGTERM gets SIGKILL once `grace_s` has passed.
#[test]
fn stop_escalates_to_sigkill_after_grace_when_sigterm_is_trapped() {
    let sandbox = Sandbox::new();
    let stubborn = |id: &str, grace_s: f64| {
        sandbox.start(&json!({"id": id, "shell": "trap '' TERM; sleep 100", "grace_s": grace_s}));
        let leader = sandbox.leader(id);
        wait_until(&format!("{id} ignores SIGTERM"), DEADLINE, || {
            signal_mask(leader.pid, "SigIgn") & signal_bit(libc::SIGTERM) != 0
        });
        leader.pid
    };

    // The task's own grace.
    let pgid = stubborn("stubborn", 1.0);
    let outcome = sandbox.call(&["stop"], &json!({"id": "stubborn"}));
    let data = outcome.data();
    assert_eq!(data["status"], "killed", "{data}");
    assert_eq!(data["already_terminal"], false);
    assert_eq!(data["task"]["signal"], "SIGKILL", "{data}");
    assert_eq!(data["task"]["reason"], "stop", "{data}");
    assert!(
        outcome.elapsed >= Duration::from_millis(900),
        "SIGKILL came before the grace period: {:?}",
        outcome.elapsed
    );
    assert!(
        outcome.elapsed < Duration::from_secs(11),
        "stop took {:?} with grace_s 1",
        outcome.elapsed
    );
    assert_group_gone(pgid);

    // A grace given to stop overrides the task's (60 s here).
    let pgid = stubborn("patient", 60.0);
    let outcome = sandbox.call(&["stop"], &json!({"id": "patient", "grace_s": 0.5}));
    let data = outcome.data();
    assert_eq!(data["task"]["signal"], "SIGKILL", "{data}");
    assert!(
        outcome.elapsed < Duration::from_secs(30),
        "stop's grace_s 0.5 was not used: {:?}",
        outcome.elapsed
    );
    assert_group_gone(pgid);
}

/// RELIABILITY 7: `stop` ends the whole tree, and the supervisor reaps it.
#[test]
fn stop_leaves_no_process_of_the_task_group() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "tree", "shell": TREE}));
    let pgid = wait_for_group(&sandbox, "tree", 3);
    let supervisor = sandbox.supervisor("tree");

    let data = sandbox.stop("tree");
    assert_eq!(data["status"], "killed", "{data}");
    assert_eq!(data["task"]["signal"], "SIGTERM", "{data}");
    assert_group_gone(pgid);
    // It records the end and then exits: a moment after the answer, at most.
    wait_until("the supervisor exits", DEADLINE, || !supervisor.is_alive());
}

/// Starts an escapee and writes its pid and start time (field 22 of its stat) to FILE.
const ESCAPE: &str = "setsid sleep 1000 & echo \"$! $(cut -d' ' -f22 /proc/$!/stat)\" > escapee.id";

/// The escapee's identity as the task wrote it, or `None` before it is written.
fn read_escapee(sandbox: &Sandbox) -> Option<Identity> {
    let text = fs::read_to_string(sandbox.work().join("escapee.id")).ok()?;
    let (pid, ticks) = text.strip_suffix('\n')?.split_once(' ')?;
    Some(Identity {
        pid: pid.parse().ok()?,
        start_ticks: ticks.parse().ok()?,
    })
}

/// RELIABILITY 8: a descendant that left the task's session and group (setsid) is still
/// killed when the task is stopped.
#[test]
fn stop_kills_an_escapee_that_left_the_group_with_setsid() {
    let sandbox = Sandbox::new();
    let task = sandbox.start(&json!({"id": "escape", "shell": format!("{ESCAPE}; wait")}));
    let mut escaped = None;
    wait_until("the task wrote the escapee's identity", DEADLINE, || {
        escaped = read_escapee(&sandbox);
        escaped.is_some()
    });
    let escaped = escaped.expect("an escapee");
    sandbox.track(escaped);
    wait_until("the escapee is in its own session", DEADLINE, || {
        stat(escaped.pid).is_some_and(|p| p.session == escaped.pid && p.pgrp == escaped.pid)
    });
    assert!(escaped.is_alive());
    assert_ne!(task["pgid"], escaped.pid);

    let data = sandbox.stop("escape");
    assert_eq!(data["status"], "killed", "{data}");
    assert!(
        !escaped.exists(),
        "the setsid'ed sleep survived the stop: {:?}",
        stat(escaped.pid)
    );
}

/// RELIABILITY 8: the escapee also goes when the task ends by itself.
#[test]
fn an_escapee_is_killed_when_the_task_ends_by_itself() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "leaves", "shell": ESCAPE}));
    let task = sandbox.wait("leaves");
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 0, "{task}");
    let escaped = read_escapee(&sandbox).expect("the task wrote the escapee's identity");
    if escaped.exists() {
        sandbox.track(escaped);
        panic!("the escapee outlived its task: {:?}", stat(escaped.pid));
    }
}

/// RELIABILITY 11: a caller with SIGCHLD ignored must not cost the exit code, and the
/// task starts with no ignored signal.
#[test]
fn start_from_a_parent_ignoring_sigchld_still_records_the_exit_code() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.command_with(&["start"], &json!({"id": "five", "shell": "exit 5"}));
    with_sigchld_ignored(&mut command);
    spawn(command).finish().data();
    let task = sandbox.wait("five");
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 5, "{task}");

    let mut command = sandbox.command_with(
        &["start", "--wait"],
        &json!({"id": "five-again", "shell": "exit 5"}),
    );
    with_sigchld_ignored(&mut command);
    let task = spawn(command).finish().data()["task"].clone();
    assert_eq!(task["exit_code"], 5, "{task}");

    let mut command = sandbox.command_with(
        &["start"],
        &json!({"id": "sleeper", "command": "sleep", "args": ["100"]}),
    );
    with_sigchld_ignored(&mut command);
    spawn(command).finish().data();
    let leader = sandbox.leader("sleeper");
    let ignored = signal_mask(leader.pid, "SigIgn");
    assert_eq!(
        ignored & signal_bit(libc::SIGCHLD),
        0,
        "the task inherited SIGCHLD ignored"
    );
    assert_eq!(
        ignored & CLASSIC_SIGNALS,
        0,
        "the task inherited ignored signals {:?}",
        signals_in(ignored)
    );
    sandbox.stop("sleeper");
}

/// RELIABILITY 11: `bash -c 'start ... &'` hands SIGINT and SIGQUIT down ignored; the task
/// must not inherit that (nor a blocked signal).
#[test]
fn a_task_started_from_a_background_bash_job_ignores_no_signal() {
    let sandbox = Sandbox::new();
    // The hostile state is real: bash's background jobs ignore SIGINT and SIGQUIT.
    let mut control = sandbox.sealed("bash");
    control.args(["-c", "grep SigIgn /proc/self/status & wait"]);
    let control = spawn(control).finish();
    let ignored = control
        .stdout
        .trim()
        .strip_prefix("SigIgn:")
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn line: {control:?}"));
    let int_quit = signal_bit(libc::SIGINT) | signal_bit(libc::SIGQUIT);
    assert_eq!(
        ignored & int_quit,
        int_quit,
        "bash did not ignore them here"
    );

    let mut command = sandbox.sealed("bash");
    command.args(["-c", "\"$0\" start \"$1\" & wait"]).args([
        crate::support::BIN.to_owned(),
        json!({"id": "bg", "command": "sleep", "args": ["100"]}).to_string(),
    ]);
    let task = spawn(command).finish().data()["task"].clone();
    assert_eq!(task["status"], "running", "{task}");
    let leader = sandbox.leader("bg");
    let ignored = signal_mask(leader.pid, "SigIgn");
    let blocked = signal_mask(leader.pid, "SigBlk");
    sandbox.stop("bg");
    assert_eq!(
        ignored & int_quit,
        0,
        "the task inherited SIGINT/SIGQUIT ignored"
    );
    assert_eq!(
        blocked,
        0,
        "the task inherited blocked signals {:?}",
        signals_in(blocked)
    );
    assert_eq!(
        ignored,
        0,
        "the task inherited ignored signals {:?}",
        signals_in(ignored)
    );
}

/// RELIABILITY 11: the task's ignored-signal set is empty even when its caller ignores
/// signals above 31 (the real-time range, which a launcher may leave ignored).
#[test]
fn a_task_does_not_inherit_ignored_realtime_signals() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.command_with(
        &["start"],
        &json!({"id": "rt", "command": "sleep", "args": ["100"]}),
    );
    let (low, high) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    // SAFETY: signal is async-signal-safe; SIG_IGN installs no handler.
    unsafe {
        command.pre_exec(move || {
            for signo in low..=high {
                libc::signal(signo, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    spawn(command).finish().data();
    let ignored = signal_mask(sandbox.leader("rt").pid, "SigIgn");
    sandbox.stop("rt");
    assert_eq!(
        ignored,
        0,
        "the task inherited ignored signals {:?}",
        signals_in(ignored)
    );
}

/// RELIABILITY 21: the task holds only stdin, stdout and stderr, even when its caller leaked
/// a descriptor into `start`.
#[test]
fn the_task_holds_only_fds_0_1_2() {
    let sandbox = Sandbox::new();
    let (_reader, writer) = std::io::pipe().expect("pipe");
    let mut command = sandbox.command_with(
        &["start"],
        &json!({"id": "fds", "command": "sleep", "args": ["100"]}),
    );
    inherit_fd(&mut command, writer.as_raw_fd(), EXTRA_FD);
    let task = spawn(command).finish().data()["task"].clone();
    drop(writer);
    let pid = task["pid"].as_i64().expect("a pid") as i32;

    let fds = open_fds(pid);
    let numbers: Vec<i32> = fds.iter().map(|(fd, _)| *fd).collect();
    assert_eq!(numbers, [0, 1, 2], "the task's descriptors: {fds:?}");
    let log = sandbox.task_dir("fds").join("output.log");
    assert_eq!(fds[0].1, "/dev/null");
    assert_eq!(fds[1].1, log.to_string_lossy());
    assert_eq!(fds[2].1, log.to_string_lossy());
    sandbox.stop("fds");
}

/// RELIABILITY 18: the task survives SIGINT and SIGHUP sent to its caller's process group
/// (a Ctrl-C or a closed terminal while `start --wait` blocks), and the caller answers the
/// task as it is, with its id, before exiting 130 (issue 20.3).
#[test]
fn the_task_survives_sigint_and_sighup_to_the_callers_process_group() {
    let sandbox = Sandbox::new();
    for (id, signal) in [("ctrl-c", Signal::SIGINT), ("hangup", Signal::SIGHUP)] {
        let mut command = sandbox.command_with(
            &["start", "--wait"],
            &json!({"id": id, "command": "sleep", "args": ["100"]}),
        );
        command.process_group(0);
        let caller = spawn(command);
        wait_until(&format!("{id} is running"), DEADLINE, || {
            fs::read(sandbox.task_dir(id).join("task.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|r| r["status"] == "running")
        });
        wait_until("start --wait blocks on the lock", DEADLINE, || {
            caller.is_blocked_on_a_lock()
        });
        let group = caller.pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(-group), signal).expect("signal");
        let outcome = caller.finish();
        assert_eq!(
            outcome.code,
            Some(130),
            "the caller should answer and exit 130 on {signal}: {outcome:?}"
        );
        let data = outcome.stdout_envelope()["data"].clone();
        assert_eq!(data["task"]["id"], id, "{data}");
        assert_eq!(data["task"]["status"], "running", "{data}");
        assert_eq!(data["interrupted"], signal.as_str(), "{data}");

        assert_eq!(sandbox.status(id)["status"], "running");
        assert!(sandbox.leader(id).is_alive());
        assert!(sandbox.supervisor(id).is_alive());
        sandbox.stop(id);
    }
}
