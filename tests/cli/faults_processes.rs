//! RELIABILITY 28 and 36 (issue 12, classes 4 and 12): processes that left the task's group
//! die with a SIGKILLed supervisor too; a supervisor survives every stray signal it does
//! not use; and `stop` wakes a task that was stopped (SIGSTOP) instead of waiting out its
//! grace period.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{
    DEADLINE, Identity, Sandbox, signal_bit, signal_mask, spawn, stat, wait_until,
};

/// How long a dead supervisor's leftovers may take to be found and killed.
const CLEANUP: Duration = Duration::from_secs(10);

/// The process whose pid a task wrote into `file`, once it has.
fn written_pid(file: &Path) -> Identity {
    let mut pid = None;
    wait_until(
        &format!("the task writes a pid into {}", file.display()),
        DEADLINE,
        || {
            pid = fs::read_to_string(file)
                .ok()
                .and_then(|text| text.trim().parse::<i32>().ok());
            pid.is_some()
        },
    );
    let pid = pid.expect("a pid");
    stat(pid)
        .unwrap_or_else(|| panic!("no process {pid}"))
        .identity()
}

/// Escapees of a task (one in a session of its own, one double-forked into one, one in a
/// group of its own) outlive a SIGKILLed supervisor today: whoever finds the task `lost`
/// must find and kill them too, as a live supervisor does.
#[test]
fn escapees_die_when_a_sigkilled_supervisors_task_is_found_lost() {
    let sandbox = Sandbox::new();
    let work = sandbox.work();
    let (setsid, double, group) = (
        work.join("setsid.pid"),
        work.join("double.pid"),
        work.join("group.pid"),
    );
    let shell = format!(
        "setsid sleep 1000 & echo $! > '{}'; \
         (setsid sh -c 'echo $$ > \"{}\"; exec sleep 1000' &); \
         perl -e 'setpgrp(0, 0); open(my $f, \">\", $ARGV[0]) or die; print $f $$; close $f; \
                  exec \"sleep\", \"1000\"' '{}' & \
         exec sleep 1000",
        setsid.display(),
        double.display(),
        group.display()
    );
    sandbox.start(&json!({"id": "leaky", "shell": shell}));
    let leader = sandbox.leader("leaky");
    let escapees: Vec<(&str, Identity)> = [
        ("setsid", &setsid),
        ("double fork", &double),
        ("setpgid", &group),
    ]
    .into_iter()
    .map(|(how, file)| (how, written_pid(file)))
    .collect();
    for (how, escapee) in &escapees {
        sandbox.track(*escapee);
        // Its pid is written when it is forked, before it leaves the group (`setsid`
        // runs in the child): wait for it to have left.
        wait_until(
            &format!("the {how} escapee to leave the task's group"),
            DEADLINE,
            || stat(escapee.pid).is_some_and(|process| process.pgrp != leader.pid),
        );
    }

    sandbox.supervisor("leaky").signal(Signal::SIGKILL);
    let mut task = serde_json::Value::Null;
    wait_until("status says lost", DEADLINE, || {
        task = sandbox.status("leaky");
        task["status"] == "lost"
    });
    // contract: "processes that left the task's group or session (setsid, setpgid, double
    // fork) are found and killed when a SIGKILLed supervisor's task is reconciled as
    // `lost`" (RELIABILITY 28)
    let survivors = || -> Vec<&str> {
        escapees
            .iter()
            .filter(|(_, e)| e.is_alive())
            .map(|(how, _)| *how)
            .collect()
    };
    wait_until(
        "every escapee (setsid, double fork, setpgid) is dead, looking with status",
        CLEANUP,
        || {
            sandbox.status("leaky");
            survivors().is_empty()
        },
    );
}

/// The catchable signals a supervisor does not use, sent to it one by one (a supervisor
/// per signal): each supervisor lives on, its task runs on, and `status` says `running`.
#[test]
fn stray_signals_do_not_kill_a_supervisor() {
    let sandbox = Sandbox::new();
    // By number: real-time signals have no name in nix. SIGUSR1 and the signals that ask
    // the supervisor to stop its task (TERM, INT, HUP, QUIT) are the ones it uses.
    let strays: Vec<(String, i32)> = [
        Signal::SIGUSR2,
        Signal::SIGALRM,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
        Signal::SIGXCPU,
        Signal::SIGXFSZ,
        Signal::SIGTRAP,
        Signal::SIGPIPE,
        Signal::SIGIO,
        Signal::SIGSYS,
        Signal::SIGPWR,
        Signal::SIGSTKFLT,
    ]
    .into_iter()
    .map(|s| (s.as_str().to_owned(), s as i32))
    .chain([35, 50, 64].map(|n| (format!("SIGRT{n}"), n)))
    .collect();
    for (name, _) in &strays {
        let id = name.to_lowercase();
        sandbox.start(&json!({"id": id, "command": "sleep", "args": ["1000"]}));
    }
    let mut killed = Vec::new();
    for (name, number) in &strays {
        let id = name.to_lowercase();
        let supervisor = sandbox.supervisor(&id);
        let leader = sandbox.leader(&id);
        assert!(supervisor.is_alive(), "the supervisor of {id}");
        // SAFETY: kill takes plain integers; the pid was just checked to name the
        // supervisor this sandbox started.
        let sent = unsafe { libc::kill(supervisor.pid, *number) };
        assert_eq!(sent, 0, "kill -{number} {}", supervisor.pid);
        let bit = signal_bit(*number);
        wait_until(
            &format!("{name} is delivered to the supervisor, or blocked"),
            DEADLINE,
            || {
                !supervisor.is_alive() || {
                    let pid = supervisor.pid;
                    let pending = signal_mask(pid, "SigPnd") | signal_mask(pid, "ShdPnd");
                    pending & bit == 0 || signal_mask(pid, "SigBlk") & bit != 0
                }
            },
        );
        let status = sandbox.status(&id);
        // contract: "a supervisor ignores or handles every catchable signal it does not use
        // (SIGUSR2, SIGALRM, SIGPROF, …) instead of dying and leaving the task `lost`"
        // (RELIABILITY 36)
        if !supervisor.is_alive() || status["status"] != "running" || !leader.is_alive() {
            killed.push(format!("{name}: task {}", status["status"]));
        }
    }
    assert!(
        killed.is_empty(),
        "supervisors did not survive stray signals: {killed:?}"
    );
}

/// A task stopped with SIGSTOP is woken by `stop` (SIGCONT with the SIGTERM), so it ends at
/// once instead of after its whole grace period (30 s here) and a SIGKILL.
#[test]
fn stop_wakes_a_stopped_task_instead_of_waiting_out_its_grace() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "frozen",
        "command": "sleep",
        "args": ["1000"],
        "grace_s": 30,
    }));
    let leader = sandbox.leader("frozen");
    leader.signal(Signal::SIGSTOP);
    wait_until("the task is stopped", DEADLINE, || {
        stat(leader.pid).is_some_and(|p| p.state == 'T')
    });
    // Still running (stopped, not ended): a stopped task is not terminal.
    assert_eq!(sandbox.status("frozen")["status"], "running");

    let stop = spawn(sandbox.command_with(&["stop"], &json!({"id": "frozen"})))
        .finish_within(Duration::from_secs(60));
    let data = stop.data();
    assert_eq!(data["status"], "killed", "{data}");
    // contract: "`stop` wakes it (SIGCONT) so it ends at once" (RELIABILITY 36); bounded
    // generously (it took the whole 30 s grace).
    assert!(
        stop.elapsed < Duration::from_secs(10),
        "stop of a stopped task took {:?} (grace 30 s): {data}",
        stop.elapsed
    );
    // contract: ended by the SIGTERM it was woken for, not the SIGKILL after the grace.
    assert_eq!(data["task"]["signal"], "SIGTERM", "{data}");
    assert!(!leader.is_alive());
}
