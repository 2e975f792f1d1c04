//! RELIABILITY 25 (issue 12, class 1): a full disk while a task runs. The task's end is never
//! lost, readers answer what they see without writing, the journal never contradicts
//! itself, `stop` reaches a task that is filling the disk, and full-disk errors are
//! retryable.
//!
//! Each test mounts a small tmpfs as its state directory ([`SmallDisk`], as RELIABILITY 24's
//! test in `failures.rs` does) and says so through [`note`] where it cannot (not root).

use std::ffi::CString;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::{
    DEADLINE, Identity, Outcome, Sandbox, live_group_members, make_fifo, note, open_fifo_writer,
    spawn, stat, wait_until,
};

/// A small tmpfs mounted as one sandbox's state directory. Dropping it kills what the
/// records on it name (the sandbox's guard), then every other process holding a file on it,
/// then unmounts it.
#[derive(Debug)]
struct SmallDisk {
    sandbox: Option<Sandbox>,
    mountpoint: PathBuf,
    root: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` bytes as a new sandbox's state directory, or says why not.
    fn mount(size: usize) -> Result<SmallDisk, String> {
        let sandbox = Sandbox::new();
        let mountpoint = sandbox.state();
        DirBuilder::new()
            .mode(0o700)
            .create(&mountpoint)
            .map_err(|e| format!("create the mount point: {e}"))?;
        let target = CString::new(mountpoint.as_os_str().as_encoded_bytes()).expect("no NUL");
        let options = CString::new(format!("size={size},mode=0700")).expect("no NUL");
        // SAFETY: every argument is a valid NUL-terminated string that outlives the call.
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        if mounted != 0 {
            return Err(format!(
                "mounting a tmpfs failed ({}); it needs root or CAP_SYS_ADMIN",
                io::Error::last_os_error()
            ));
        }
        Ok(SmallDisk {
            root: sandbox.root().to_path_buf(),
            sandbox: Some(sandbox),
            mountpoint,
        })
    }

    fn sandbox(&self) -> &Sandbox {
        self.sandbox.as_ref().expect("the sandbox")
    }

    /// Writes a file of the test's own until the disk is full, to the last byte.
    fn fill(&self) {
        let mut file = File::create(self.mountpoint.join("filler")).expect("create the filler");
        let block = vec![0_u8; 4096];
        for chunk in [&block[..], &block[..1]] {
            loop {
                match file.write(chunk) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => panic!("fill the disk: {e}"),
                }
            }
        }
    }

    /// Removes the test's filler.
    fn free(&self) {
        fs::remove_file(self.mountpoint.join("filler")).expect("remove the filler");
    }

    /// Bytes still free on the disk.
    fn available(&self) -> u64 {
        let stats = nix::sys::statvfs::statvfs(&self.mountpoint).expect("statvfs the disk");
        stats.blocks_available() * stats.fragment_size()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        drop(self.sandbox.take());
        // A process that no record names (a supervisor that could not write one) may still
        // hold a file on the disk; the disk is this test's own, so the process is too.
        let me = std::process::id() as i32;
        let left: Vec<_> = holders_of(&self.mountpoint)
            .into_iter()
            .filter(|&pid| pid != me)
            .filter_map(stat)
            .map(|p| p.identity())
            .collect();
        for process in left.into_iter().filter(|p| p.is_alive()) {
            let _ = kill(Pid::from_raw(process.pid), Signal::SIGKILL);
        }
        if let Ok(target) = CString::new(self.mountpoint.as_os_str().as_encoded_bytes()) {
            // SAFETY: `target` is a valid NUL-terminated string that outlives the call.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The processes that hold a descriptor on a file under `dir`.
fn holders_of(dir: &Path) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten()
                    .filter_map(|fd| fs::read_link(fd.path()).ok())
                    .any(|target| target.starts_with(dir))
            })
        })
        .collect()
}

/// Polls `condition` like [`wait_until`] for at most `bound`, without failing when it stays
/// false: for a state the code under test may reach in more than one way.
fn settle(what: &str, bound: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !condition() {
        if Instant::now() >= deadline {
            note(&format!(
                "gave up after {bound:?} waiting until {what}; going on"
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(20)); // bounded by the deadline
    }
}

/// Mounts a disk of `size` bytes, or says why this test is skipped.
fn small_disk(size: usize, test: &str) -> Option<SmallDisk> {
    match SmallDisk::mount(size) {
        Ok(disk) => Some(disk),
        Err(why) => {
            note(&format!("RELIABILITY 25 ({test}): skipped: {why}"));
            None
        }
    }
}

/// The journal's entries (`events.jsonl`) that parse, in order.
fn journal(sandbox: &Sandbox, id: &str) -> Vec<Value> {
    let bytes = fs::read(sandbox.task_dir(id).join("events.jsonl")).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Fails if the journal contradicts itself about run `run`: more than one `task.ended`, or
/// terminal statuses that disagree (an end, then `lost`).
fn assert_journal_agrees(sandbox: &Sandbox, id: &str, run: u64) {
    let entries: Vec<Value> = journal(sandbox, id)
        .into_iter()
        .filter(|e| e["run"] == run)
        .collect();
    let ended = entries.iter().filter(|e| e["type"] == "task.ended").count();
    // contract: "the journal gets no contradictory duplicates" (RELIABILITY 25)
    assert!(
        ended <= 1,
        "run {run} of {id} ended {ended} times in its journal: {entries:#?}"
    );
    let mut terminal: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["data"]["status"].as_str())
        .filter(|s| !matches!(*s, "queued" | "running"))
        .collect();
    terminal.dedup();
    // contract: "each failure appends contradictory journal lines" must not happen (issue 12.1)
    assert!(
        terminal.len() <= 1,
        "the journal of {id} gives run {run} several ends {terminal:?}: {entries:#?}"
    );
}

/// A reader's answer on a full disk: an envelope, and not a `StoreError` (readers answer
/// what they observe without needing to write it).
fn assert_answers_without_writing(outcome: &Outcome, what: &str) -> Value {
    let envelope = outcome.envelope();
    // contract: "readers answer without writing" (issue 12.1); "A reader that cannot persist
    // what it observes still answers it" (RELIABILITY 25)
    assert_ne!(
        envelope["error"]["type"], "StoreError",
        "{what} on a full disk: {outcome:#?}"
    );
    envelope
}

/// The task ends (exit 7) while the disk is full. Readers answer meanwhile, never `lost`,
/// and once there is room the record holds the real end: `exited`, exit code 7.
#[test]
fn a_task_ending_on_a_full_disk_keeps_its_exit_code() {
    let Some(disk) = small_disk(1 << 20, "a task ending on a full disk") else {
        return;
    };
    let sandbox = disk.sandbox();
    let go = sandbox.work().join("go");
    make_fifo(&go);
    sandbox.start(&json!({
        "id": "seven",
        "shell": format!("read line < '{}'; exit 7", go.display()),
    }));
    let leader = sandbox.leader("seven");
    let supervisor = sandbox.supervisor("seven");
    let mut release = open_fifo_writer(&go);
    disk.fill();
    release.write_all(b"go\n").expect("release the task");
    drop(release);
    wait_until("the task has exited", DEADLINE, || !leader.is_alive());

    // Let the supervisor see the end first: it journals it (the journal's last page still
    // has room) or exits. A supervisor that does neither is given a few seconds, not failed.
    settle(
        "the supervisor has journaled the end or exited",
        Duration::from_secs(5),
        || {
            !supervisor.is_alive()
                || journal(sandbox, "seven")
                    .iter()
                    .any(|e| e["type"] == "task.ended")
        },
    );

    for _ in 0..2 {
        let status = sandbox.call(&["status"], &json!({"id": "seven"}));
        let envelope = assert_answers_without_writing(&status, "status");
        let task = &envelope["data"]["task"];
        // contract: "the real end is never lost (... answered before that where it is
        // known)" (issue 12.1): never `lost`; an end, if answered, is the real one.
        assert_ne!(task["status"], "lost", "{status:#?}");
        if task["status"] != "running" {
            assert_eq!(task["status"], "exited", "{status:#?}");
            assert_eq!(task["exit_code"], 7, "{status:#?}");
        }
    }
    let listed = sandbox.call(&["list"], &json!({}));
    assert_answers_without_writing(&listed, "list");
    let logs = sandbox.call(&["logs"], &json!({"id": "seven"}));
    assert_answers_without_writing(&logs, "logs");
    let waited = sandbox.call(&["wait", "--timeout", "1"], &json!({"id": "seven"}));
    let envelope = assert_answers_without_writing(&waited, "wait");
    assert_ne!(envelope["data"]["status"], "lost", "{waited:#?}");
    assert_journal_agrees(sandbox, "seven", 1);

    disk.free();
    let mut task = Value::Null;
    wait_until(
        "status reads an end once there is room",
        Duration::from_secs(10),
        || {
            task = sandbox.status("seven");
            task["status"] != "running"
        },
    );
    // contract: "once space is back the record reads the real end, never `lost`"
    // (RELIABILITY 25)
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 7, "{task}");
    assert_eq!(task["reason"], "exit", "{task}");
    let waited = sandbox.wait("seven");
    assert_eq!(waited["status"], "exited", "{waited}");
    assert_eq!(waited["exit_code"], 7, "{waited}");
    assert_eq!(sandbox.record("seven")["exit_code"], 7);
    assert_journal_agrees(sandbox, "seven", 1);
    wait_until("the supervisor has exited", DEADLINE, || {
        !supervisor.is_alive()
    });
}

/// A supervisor SIGKILLed while the disk is full: every reader answers `lost` (it cannot
/// record it, and need not), and however often they look the journal says so at most once.
#[test]
fn readers_answer_a_lost_task_on_a_full_disk_without_contradicting_the_journal() {
    let Some(disk) = small_disk(1 << 20, "a lost task on a full disk") else {
        return;
    };
    let sandbox = disk.sandbox();
    sandbox.start(&json!({"id": "gone", "command": "sleep", "args": ["1000"]}));
    let supervisor = sandbox.supervisor("gone");
    let leader = sandbox.leader("gone");
    disk.fill();
    supervisor.signal(Signal::SIGKILL);
    wait_until("the supervisor is dead", DEADLINE, || {
        !supervisor.is_alive()
    });

    for _ in 0..3 {
        let status = sandbox.call(&["status"], &json!({"id": "gone"}));
        let envelope = assert_answers_without_writing(&status, "status");
        // contract: "A reader that cannot persist what it observes still answers it"
        // (RELIABILITY 25)
        assert_eq!(envelope["data"]["status"], "lost", "{status:#?}");
    }
    let listed = sandbox.call(&["list"], &json!({}));
    let envelope = assert_answers_without_writing(&listed, "list");
    assert_eq!(
        envelope["data"]["tasks"][0]["status"], "lost",
        "{listed:#?}"
    );
    let waited = sandbox.call(&["wait", "--timeout", "5"], &json!({"id": "gone"}));
    let envelope = assert_answers_without_writing(&waited, "wait");
    assert_eq!(envelope["data"]["status"], "lost", "{waited:#?}");
    let logs = sandbox.call(&["logs"], &json!({"id": "gone"}));
    assert_answers_without_writing(&logs, "logs");
    let events = sandbox.call(&["events"], &json!({"id": "gone"}));
    assert_answers_without_writing(&events, "events");
    assert_journal_agrees(sandbox, "gone", 1);

    disk.free();
    for _ in 0..2 {
        assert_eq!(sandbox.status("gone")["status"], "lost");
    }
    assert_journal_agrees(sandbox, "gone", 1);
    wait_until("nothing of the task is left", DEADLINE, || {
        live_group_members(leader.pid).is_empty()
    });
}

/// A task that keeps writing into a full disk can be stopped: `stop` reaches its supervisor
/// without needing room for a new file, the task's processes end, and once there is room
/// the record says it was killed, not `lost`.
#[test]
fn a_task_filling_the_disk_can_be_stopped() {
    let Some(disk) = small_disk(1 << 20, "stopping a task that fills the disk") else {
        return;
    };
    let sandbox = disk.sandbox();
    sandbox.start(&json!({
        "id": "filler",
        "shell": "while :; do head -c 100000 /dev/zero; sleep 0.01; done",
        "grace_s": 1,
    }));
    let leader = sandbox.leader("filler");
    let supervisor = sandbox.supervisor("filler");
    wait_until("the task has filled the disk", DEADLINE, || {
        disk.available() == 0
    });

    let stop = spawn(sandbox.command_with(&["stop"], &json!({"id": "filler"})))
        .finish_within(Duration::from_secs(15));
    let envelope = stop.envelope();
    // contract: "`stop` can stop a task that is filling the disk (no new file needed to
    // ask)" (RELIABILITY 25): it answers the end, or (if the end cannot be known without
    // room to record it) an error that says trying again can help.
    if envelope["ok"] == true {
        assert_eq!(envelope["data"]["status"], "killed", "{stop:#?}");
    } else {
        assert_eq!(
            envelope["error"]["details"]["retryable"], true,
            "stop on a full disk: {stop:#?}"
        );
    }
    // contract: the task is stopped either way (RELIABILITY 25).
    wait_until(
        "the task's processes have ended",
        Duration::from_secs(10),
        || live_group_members(leader.pid).is_empty(),
    );

    // Make room: the task's own log is what filled the disk.
    File::options()
        .write(true)
        .open(sandbox.task_dir("filler").join("output.log"))
        .and_then(|log| log.set_len(0))
        .expect("truncate the log");
    let mut task = Value::Null;
    wait_until(
        "the record says how it ended",
        Duration::from_secs(10),
        || {
            task = sandbox.status("filler");
            task["status"] != "running"
        },
    );
    // contract: "once space is back the record reads the real end, never `lost`"
    assert_eq!(task["status"], "killed", "{task}");
    assert_journal_agrees(sandbox, "filler", 1);
    wait_until("the supervisor has exited", DEADLINE, || {
        !supervisor.is_alive()
    });
}

/// On a full disk, `start` and `restart` fail saying the disk is full, and say that trying
/// again can help.
#[test]
fn full_disk_errors_are_retryable() {
    let Some(disk) = small_disk(1 << 20, "full-disk errors") else {
        return;
    };
    let sandbox = disk.sandbox();
    sandbox.start(&json!({"id": "done", "command": "true"}));
    assert_eq!(sandbox.wait("done")["status"], "exited");
    disk.fill();

    let start = sandbox.call(&["start"], &json!({"id": "new", "command": "true"}));
    let restart = sandbox.call(&["restart"], &json!({"id": "done"}));
    for (what, outcome) in [("start", &start), ("restart", &restart)] {
        let envelope = outcome.envelope();
        if envelope["ok"] == true {
            continue;
        }
        let error = &envelope["error"];
        assert!(
            error.to_string().contains("No space left on device"),
            "{what}: the error should say the disk is full: {error}"
        );
        // contract: "full-disk errors are retryable and say so" (issue 12.1); "Errors
        // caused by a full disk say so and are retryable" (RELIABILITY 25)
        assert_eq!(
            error["details"]["retryable"], true,
            "{what} on a full disk: {error}"
        );
    }
    assert_eq!(
        start.code,
        Some(1),
        "start cannot succeed on a full disk: {start:#?}"
    );
}

/// Starts task `id` (it ends with exit 7 once `go` is written) with the supervisor's room
/// for the end left unset (`no_end_reserve`), fills the disk and lets the task end: the end
/// cannot be recorded. Returns the supervisor, once its end is journaled.
fn end_without_room(disk: &SmallDisk, id: &str) -> Identity {
    let sandbox = disk.sandbox();
    let go = sandbox.work().join(format!("{id}.go"));
    make_fifo(&go);
    let mut command = sandbox.command_with(
        &["start"],
        &json!({"id": id, "shell": format!("read line < '{}'; exit 7", go.display())}),
    );
    command.env("BACKGROUND_TASKS_FAULT", "no_end_reserve");
    assert_eq!(spawn(command).finish().envelope()["ok"], true);
    let leader = sandbox.leader(id);
    let supervisor = sandbox.supervisor(id);
    let mut release = open_fifo_writer(&go);
    disk.fill();
    release.write_all(b"go\n").expect("release the task");
    drop(release);
    wait_until("the task has exited", DEADLINE, || !leader.is_alive());
    wait_until("the end is journaled", DEADLINE, || {
        journal(sandbox, id)
            .iter()
            .any(|e| e["type"] == "task.ended")
    });
    supervisor
}

/// An end that does not fit on the full disk (its room was not set aside: a fault): the
/// supervisor journals it, `status` answers it at once, and the supervisor keeps trying,
/// holding the lock, until there is room; then the record says it.
#[test]
fn an_end_that_does_not_fit_is_answered_and_recorded_once_there_is_room() {
    let Some(disk) = small_disk(1 << 20, "an end that does not fit") else {
        return;
    };
    let sandbox = disk.sandbox();
    let supervisor = end_without_room(&disk, "seven");
    // contract: "answered before that where it is known" (issue 12.1)
    let task = sandbox.status("seven");
    assert_eq!(
        (&task["status"], &task["exit_code"]),
        (&json!("exited"), &json!(7)),
        "{task}"
    );
    assert_eq!(
        sandbox.record("seven")["status"],
        "running",
        "nothing could be recorded"
    );
    assert!(supervisor.is_alive(), "the supervisor keeps trying");
    assert_journal_agrees(sandbox, "seven", 1);

    disk.free();
    wait_until(
        "the supervisor has recorded the end and exited",
        DEADLINE,
        || !supervisor.is_alive(),
    );
    let record = sandbox.record("seven");
    // contract: "once space is back the record reads the real end, never `lost`"
    assert_eq!(
        (&record["status"], &record["exit_code"]),
        (&json!("exited"), &json!(7))
    );
    assert_journal_agrees(sandbox, "seven", 1);
}

/// A supervisor told to end (SIGTERM) while its end does not fit leaves it in the journal:
/// readers answer it and, once there is room, record it; never `lost`.
#[test]
fn an_end_left_in_the_journal_is_read_back_never_lost() {
    let Some(disk) = small_disk(1 << 20, "an end left in the journal") else {
        return;
    };
    let sandbox = disk.sandbox();
    let supervisor = end_without_room(&disk, "seven");
    supervisor.signal(Signal::SIGTERM);
    wait_until("the supervisor has exited", DEADLINE, || {
        !supervisor.is_alive()
    });
    for _ in 0..2 {
        let status = sandbox.call(&["status"], &json!({"id": "seven"}));
        let task = &assert_answers_without_writing(&status, "status")["data"]["task"];
        assert_eq!(
            (&task["status"], &task["exit_code"]),
            (&json!("exited"), &json!(7)),
            "{task}"
        );
    }
    assert_journal_agrees(sandbox, "seven", 1);

    disk.free();
    let waited = sandbox.wait("seven");
    assert_eq!(
        (&waited["status"], &waited["exit_code"]),
        (&json!("exited"), &json!(7))
    );
    let record = sandbox.record("seven");
    assert_eq!(
        (&record["status"], &record["reason"]),
        (&json!("exited"), &json!("exit"))
    );
    assert_journal_agrees(sandbox, "seven", 1);
}

/// A run that ends while the disk is full, of a task whose `restart_policy` would restart it:
/// the restart cannot be recorded, so the run's end is the task's end. That end says why
/// there was no restart (`error`), is journaled once (not once by the restart and again by
/// the end), and the run's output is still where the record says it is (`logs` shows it),
/// not moved aside for a next run that never came.
#[test]
fn a_restart_that_cannot_be_recorded_on_a_full_disk_ends_the_task_once_with_its_log() {
    let Some(disk) = small_disk(1 << 20, "a restart on a full disk") else {
        return;
    };
    let sandbox = disk.sandbox();
    let go = sandbox.work().join("go");
    make_fifo(&go);
    sandbox.start(&json!({
        "id": "loop",
        "shell": format!("echo output-of-run-1; read line < '{}'; exit 3", go.display()),
        "restart_policy": {"on": "failure", "max_restarts": 3, "backoff": {"initial_s": 0.1}},
    }));
    let leader = sandbox.leader("loop");
    let supervisor = sandbox.supervisor("loop");
    wait_until("the run has written its line", DEADLINE, || {
        sandbox.log("loop").contains("output-of-run-1")
    });
    let mut release = open_fifo_writer(&go);
    disk.fill();
    release.write_all(b"go\n").expect("release the task");
    drop(release);
    wait_until("the task has exited", DEADLINE, || !leader.is_alive());
    let mut task = Value::Null;
    wait_until("the task has ended", DEADLINE, || {
        task = sandbox.status("loop");
        task["status"] != "running"
    });
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 3, "{task}");
    assert_eq!(task["run"], 1, "{task}");
    assert!(
        task["error"]
            .as_str()
            .is_some_and(|e| e.contains("restart")),
        "the end says why the task was not restarted: {task}"
    );
    assert_journal_agrees(sandbox, "loop", 1);
    let logs = sandbox.ok(&["logs"], &json!({"id": "loop"}));
    let lines: Vec<&str> = logs["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(lines, ["output-of-run-1"], "{logs}");
    wait_until("the supervisor has exited", DEADLINE, || {
        !supervisor.is_alive()
    });
}
