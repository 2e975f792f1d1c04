//! For people at a terminal (issue 19): `logs --raw` and `logs --stream --raw` print the
//! log's bytes as written, `events --stream --raw` follows every task with an `id | `
//! prefix and a line per run that begins or ends, and `list --table`/`status --table`
//! print an aligned table. JSON stays the default whether or not stdout is a terminal.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::process::Command;
use std::time::Instant;

use serde_json::json;

use crate::support::{DEADLINE, Sandbox, note, spawn, wait_until};

/// Bytes no JSON answer could carry as they are: an ANSI colour, an invalid UTF-8 byte, a
/// NUL, a `\r`, and a last line without a newline.
const AWKWARD: &str = r"printf '\033[31mred\033[0m\n\377\376 not utf-8\n\000nul\rcr\nlast'";

#[test]
fn raw_logs_are_the_log_files_bytes() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "raw", "shell": AWKWARD}));
    sandbox.wait("raw");
    let file = fs::read(sandbox.task_dir("raw").join("output.log")).expect("the log");
    assert!(file.ends_with(b"last") && file.contains(&0xff), "{file:?}");
    let whole = sandbox.run(&["logs", "--raw", r#"{"id":"raw","lines":1000}"#]);
    assert_eq!(whole.code, Some(0), "{whole:#?}");
    assert_eq!(
        whole.stdout_bytes.clone(),
        file,
        "logs --raw is the file's bytes"
    );
    // The last two lines: the one after the NUL's `\r` and the unterminated one.
    let tail = sandbox.run(&["logs", "--raw", r#"{"id":"raw","lines":2}"#]);
    assert_eq!(tail.stdout_bytes.clone(), b"\0nul\rcr\nlast", "{tail:#?}");
    // After a cursor: what came after it.
    let answer = sandbox.ok(&["logs"], &json!({"id": "raw", "lines": 1}));
    let cursor = answer["next_cursor"].as_str().expect("a cursor").to_owned();
    let after = sandbox.run(&[
        "logs",
        "--raw",
        &json!({"id": "raw", "after": cursor}).to_string(),
    ]);
    assert_eq!(
        after.stdout_bytes.clone(),
        b"",
        "nothing after the end: {after:#?}"
    );
    // Errors are still envelopes on stderr.
    let missing = sandbox.run(&["logs", "--raw", r#"{"id":"nobody"}"#]);
    assert_eq!(missing.error()["type"], "TaskNotFound");
    let grep = sandbox.run(&["logs", "--raw", r#"{"id":"raw","grep":"x"}"#]);
    assert_eq!(grep.error()["details"]["path"], "grep");
}

#[test]
fn a_raw_follow_prints_what_comes_and_ends_when_the_task_ends() {
    let sandbox = Sandbox::new();
    let gate = sandbox.work().join("gate");
    let shell = format!(
        "echo first; while [ ! -e {} ]; do sleep 0.02; done; {AWKWARD}; exit 3",
        gate.display()
    );
    sandbox.start(&json!({"id": "f", "shell": shell}));
    let follower =
        spawn(sandbox.command(&["logs", "--stream", "--raw", r#"{"id":"f","lines":1000}"#]));
    wait_until("the task printed its first line", DEADLINE, || {
        fs::read(sandbox.task_dir("f").join("output.log")).is_ok_and(|log| !log.is_empty())
    });
    fs::write(&gate, b"").expect("open the gate");
    let followed = follower.finish();
    assert_eq!(followed.code, Some(0), "{followed:#?}");
    let file = fs::read(sandbox.task_dir("f").join("output.log")).expect("the log");
    assert_eq!(
        followed.stdout_bytes.clone(),
        file,
        "every byte, in order, then the end"
    );
    assert_eq!(sandbox.status("f")["exit_code"], 3);
}

#[test]
fn events_raw_follows_every_task_with_its_id_and_says_how_each_ended() {
    let sandbox = Sandbox::new();
    // A task already running when the follow begins: its end is news, its past is not.
    sandbox.start(&json!({"id": "old", "shell": "echo before the follow; exec sleep 1000"}));
    let follower = spawn(sandbox.command(&["events", "--stream", "--raw", "--timeout", "8"]));
    wait_until("the follower watches", DEADLINE, || {
        fs::read_dir(format!("/proc/{}/fd", follower.pid()))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains("inotify"))
            })
    });
    sandbox.start(&json!({"id": "one", "shell": "echo one-a; echo one-b; exit 4"}));
    sandbox.start(&json!({"id": "two", "shell": "echo two-a; kill -TERM $$"}));
    sandbox.wait("one");
    sandbox.wait("two");
    sandbox.stop("old");
    let out = follower.finish();
    assert_eq!(out.code, Some(0), "{out:#?}");
    let text = String::from_utf8_lossy(&out.stdout_bytes.clone()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "one | — run 1 started",
        "one | one-a",
        "one | one-b",
        "two | two-a",
        "old | — killed by SIGTERM after",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "no line {expected:?} in:\n{text}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("one | — exited 4 after")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("two | — killed by SIGTERM after")),
        "{text}"
    );
    // Each task's lines keep their order; the past of a task running before is not shown.
    let at = |needle: &str| lines.iter().position(|l| *l == needle);
    assert!(at("one | one-a") < at("one | one-b"), "{text}");
    assert!(!text.contains("before the follow"), "{text}");
    // Not a terminal: no colour.
    assert!(!text.contains('\u{1b}'), "{text}");
}

/// Runs the shell `script` with stdout a pseudo-terminal (through script(1)), with
/// `NO_COLOR` set or not; `BT` in it is the binary.
fn on_a_terminal(sandbox: &Sandbox, script: &str, no_color: bool) -> String {
    let mut command = sandbox.sealed("script");
    command.args([
        "-qec",
        &script.replace("BT", crate::support::BIN),
        "/dev/null",
    ]);
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let out = spawn(command).finish();
    String::from_utf8_lossy(&out.stdout_bytes).into_owned()
}

#[test]
fn prefixes_are_coloured_on_a_terminal_unless_no_color() {
    let sandbox = Sandbox::new();
    // The follow ends when its one task has ended: the task waits for a file the script
    // makes once the follow watches (its inotify descriptor is there).
    for (no_color, gate) in [(false, "gate-a"), (true, "gate-b")] {
        let gate = sandbox.work().join(gate);
        let shell = format!(
            "while [ ! -e {} ]; do sleep 0.02; done; echo hi",
            gate.display()
        );
        let id = if no_color { "plain" } else { "colour" };
        sandbox.start(&json!({"id": id, "shell": shell}));
        let script = format!(
            "BT events --stream --raw '{{\"id\":\"{id}\"}}' & \
             while ! ls -l /proc/$!/fd 2>/dev/null | grep -q inotify; do sleep 0.02; done; \
             touch {}; wait",
            gate.display()
        );
        let out = on_a_terminal(&sandbox, &script, no_color);
        if no_color {
            assert!(!out.contains('\u{1b}'), "NO_COLOR: {out:?}");
            assert!(out.contains("plain | hi"), "{out:?}");
        } else {
            assert!(out.contains("\u{1b}[3"), "a coloured prefix: {out:?}");
            assert!(out.contains(" | hi"), "{out:?}");
        }
    }
    // JSON stays JSON on a terminal.
    let json = on_a_terminal(&sandbox, r#"BT status '{"id":"plain"}'"#, false);
    assert!(json.trim_start().starts_with("{\"ok\":true"), "{json:?}");
}

#[test]
fn tables_fit_long_ids_no_tasks_and_a_thousand_tasks() {
    let sandbox = Sandbox::new();
    let empty = sandbox.run(&["list", "--table"]);
    assert_eq!(empty.code, Some(0));
    let text = String::from_utf8_lossy(&empty.stdout_bytes.clone()).into_owned();
    assert!(text.starts_with("ID  "), "{text}");
    assert!(text.contains("(no tasks)"), "{text}");

    let long = "a-very-long-task-identifier-that-goes-on-and-on-and-on";
    sandbox.start(&json!({"id": long, "shell": "echo 'Progress: 40%'; exec sleep 1000", "tags": ["dev", "agent-session-7"]}));
    sandbox.start(&json!({"id": "short", "shell": "exit 3"}));
    sandbox.wait("short");
    wait_until("the progress is recorded", DEADLINE, || {
        sandbox.status(long)["progress"]["percent"].as_f64() == Some(40.0)
    });
    let wide = sandbox.run(&["list", "--table"]);
    let text = String::from_utf8_lossy(&wide.stdout_bytes.clone()).into_owned();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[1].starts_with(long) && rows[1].contains("running"),
        "{text}"
    );
    assert!(
        rows[1].contains("40%") && rows[1].ends_with("dev,agent-session-7"),
        "{text}"
    );
    assert!(
        rows[2].starts_with("short") && rows[2].contains("exited"),
        "{text}"
    );
    // Columns line up: each header starts where its cells do.
    let status_at = rows[0].find("STATUS").expect("STATUS");
    assert_eq!(rows[1].find("running"), Some(status_at), "{text}");
    assert_eq!(rows[2].find("exited"), Some(status_at), "{text}");

    // A narrow terminal cuts tags, then ids, with an ellipsis.
    let mut narrow = sandbox.command(&["list", "--table"]);
    narrow.env("COLUMNS", "80");
    let text = String::from_utf8_lossy(&spawn(narrow).finish().stdout_bytes.clone()).into_owned();
    assert!(text.contains('…'), "{text}");
    assert!(!text.contains(long), "the long id is cut: {text}");
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} > 80: {line}",
            line.chars().count()
        );
    }
    let status = sandbox.run(&["status", "--table", r#"{"id":"short"}"#]);
    let text = String::from_utf8_lossy(&status.stdout_bytes.clone()).into_owned();
    assert_eq!(text.lines().count(), 2, "{text}");

    // A thousand tasks: planted copies of an ended record.
    let record = sandbox.record("short");
    for i in 0..1000 {
        let id = format!("copy-{i:04}");
        let dir = sandbox.task_dir(&id);
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("a folder");
        let mut copy = record.clone();
        copy["id"] = json!(id);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("task.json"))
            .and_then(|mut f| f.write_all(&serde_json::to_vec(&copy).expect("encode")))
            .expect("plant a record");
    }
    let began = Instant::now();
    let many = sandbox.run(&["list", "--table"]);
    note(&format!(
        "list --table of 1,002 tasks took {:?}",
        began.elapsed()
    ));
    let text = String::from_utf8_lossy(&many.stdout_bytes.clone()).into_owned();
    assert_eq!(text.lines().count(), 1003, "a header and 1,002 rows");
    assert!(
        text.lines().any(|l| l.starts_with("copy-0999 ")),
        "{}",
        &text[..200]
    );
}

#[test]
fn raw_and_table_are_never_chosen_on_their_own() {
    // Without the flags, a pipe and a terminal both get JSON (the terminal case is in
    // prefixes_are_coloured_on_a_terminal_unless_no_color).
    let sandbox = Sandbox::new();
    let list = sandbox.run(&["list"]);
    assert!(list.stdout.starts_with("{\"ok\":true"), "{list:#?}");
    let mut plain = Command::new(crate::support::BIN);
    plain.arg("--help");
    let help = spawn(plain).finish();
    assert!(help.stdout.contains("list"), "{help:#?}");
}

#[test]
fn events_raw_by_selector_follows_only_the_chosen_tasks_until_they_end() {
    let sandbox = Sandbox::new();
    let gate = sandbox.work().join("gate");
    let waits = format!("while [ ! -e {} ]; do sleep 0.02; done", gate.display());
    for id in ["g1", "g2"] {
        sandbox.start(
            &json!({"id": id, "shell": format!("{waits}; echo {id} says hi"), "tags": ["grp"]}),
        );
    }
    sandbox.start(
        &json!({"id": "other", "shell": format!("{waits}; echo other says hi; exec sleep 1000")}),
    );
    let follower = spawn(sandbox.command(&["events", "--stream", "--raw", r#"{"tag":"grp"}"#]));
    wait_until("the follower watches", DEADLINE, || {
        fs::read_dir(format!("/proc/{}/fd", follower.pid()))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains("inotify"))
            })
    });
    fs::write(&gate, b"").expect("open the gate");
    // It ends by itself once both chosen tasks have ended; "other" runs on.
    let out = follower.finish();
    assert_eq!(out.code, Some(0), "{out:#?}");
    let text = String::from_utf8_lossy(&out.stdout_bytes).into_owned();
    for line in ["g1 | g1 says hi", "g2 | g2 says hi"] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.lines().any(|l| l.starts_with("g1 | — exited 0 after")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("g2 | — exited 0 after")),
        "{text}"
    );
    assert!(!text.contains("other"), "{text}");
    sandbox.stop("other");
    // A selector with an id, or the JSON-only fields, are refused with their path.
    let both = sandbox.call(
        &["events", "--stream", "--raw"],
        &json!({"id": "g1", "tag": "grp"}),
    );
    assert_eq!(both.error()["details"]["path"], "id", "{both:#?}");
    let after = sandbox.call(&["events", "--stream", "--raw"], &json!({"after": 3}));
    assert_eq!(after.error()["type"], "CommandInputError", "{after:#?}");
}
