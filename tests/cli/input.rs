//! What callers send and how the answers come back: payload errors with paths and hints,
//! usage errors in the envelope, `--help`/`--version`, and a closed stdout.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::support::{Sandbox, inherit_fd, names_in, spawn};

/// An unknown field is an error that names the accepted fields, for every command.
#[test]
fn unknown_payload_fields_are_rejected_naming_the_accepted_fields() {
    let sandbox = Sandbox::new();
    let cases = [
        (
            "start",
            json!({"command": "true", "bogus": 1}),
            &[
                "`command`",
                "`args`",
                "`workdir`",
                "`env`",
                "`shell`",
                "`grace_s`",
            ][..],
        ),
        ("status", json!({"id": "x", "bogus": 1}), &["`id`"][..]),
        ("wait", json!({"id": "x", "bogus": 1}), &["`id`"][..]),
        (
            "stop",
            json!({"id": "x", "bogus": 1}),
            &["`id`", "`signal`", "`grace_s`"][..],
        ),
        (
            "restart",
            json!({"id": "x", "bogus": 1}),
            &["`id`", "`env`"][..],
        ),
        (
            "logs",
            json!({"id": "x", "bogus": 1}),
            &["`id`", "`lines`"][..],
        ),
        (
            "list",
            json!({"bogus": 1}),
            &[
                "`ids`",
                "`status`",
                "`tag`",
                "`tags`",
                "`name`",
                "`workdir`",
            ][..],
        ),
    ];
    for (command, payload, accepted) in cases {
        let envelope = sandbox.call(&[command], &payload).failure();
        assert_eq!(envelope["command"], command);
        let error = &envelope["error"];
        assert_eq!(error["type"], "CommandInputError", "{command}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains("bogus"), "{command}: {message}");
        for field in accepted {
            assert!(
                message.contains(field),
                "{command}: {field} missing in {message}"
            );
        }
    }
    assert!(
        !sandbox.task_dir("x").exists(),
        "a rejected payload created a task"
    );
}

/// Text that is not one JSON value is a `CommandInputError`, whichever way it is given.
#[test]
fn malformed_json_payloads_are_command_input_errors() {
    let sandbox = Sandbox::new();
    for bad in [
        "{",
        "",
        "[1,",
        "{} {}",
        "{\"command\":}",
        "nul\u{1}l",
        "web",
    ] {
        for command in ["start", "status", "list"] {
            let outcome = sandbox.run(&[command, bad]);
            let envelope = outcome.failure();
            assert_eq!(envelope["command"], command, "{bad:?}");
            assert_eq!(
                envelope["error"]["type"], "CommandInputError",
                "{command} {bad:?}: {envelope}"
            );
        }
    }
    // A bare id is the likeliest mistake; the hint shows the JSON to send.
    let error = sandbox.run(&["status", "web"]).error();
    let hint = error["details"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains(r#"{"id":"web"}"#), "{hint}");

    let missing = sandbox.work().join("missing.json");
    let error = sandbox
        .run(&["status", &format!("@{}", missing.display())])
        .error();
    assert_eq!(error["type"], "CommandInputError", "{error}");
    let error = sandbox.run(&["status"]).error();
    assert_eq!(error["type"], "CommandInputError", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("needs a payload")),
        "{error}"
    );

    let mut command = sandbox.command(&["status", "-"]);
    command.stdin(Stdio::piped());
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"{\"id\":")
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(1));
    let envelope: Value = serde_json::from_slice(&output.stderr).expect("stderr is JSON");
    assert_eq!(envelope["error"]["type"], "CommandInputError", "{envelope}");
}

/// A payload read from a file or stdin is the same payload.
#[test]
fn payloads_from_a_file_and_from_stdin_are_read() {
    let sandbox = Sandbox::new();
    let file = sandbox.work().join("payload.json");
    fs::write(&file, r#"{"id":"from-file","shell":"exit 6"}"#).expect("write");
    sandbox
        .run(&["start", &format!("@{}", file.display())])
        .data();
    assert_eq!(sandbox.wait("from-file")["exit_code"], 6);

    let mut command = sandbox.command(&["wait", "-"]);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"id":"from-file"}"#)
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let envelope: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(envelope["data"]["task"]["exit_code"], 6, "{envelope}");
}

/// A value of the wrong type or out of range names its JSON path.
#[test]
fn wrong_types_and_bad_values_carry_the_json_path() {
    let sandbox = Sandbox::new();
    let cases = [
        (
            "start",
            json!({"command": "true", "tags": ["a", 2]}),
            "tags[1]",
        ),
        ("start", json!({"command": 5}), "command"),
        ("start", json!({"command": ""}), "command"),
        ("start", json!({"command": "true", "args": "-l"}), "args"),
        (
            "start",
            json!({"command": "true", "args": ["ok", "a\u{0}b"]}),
            "args[1]",
        ),
        (
            "start",
            json!({"command": "true", "env": {"K": 1}}),
            "env.K",
        ),
        (
            "start",
            json!({"command": "true", "grace_s": "5"}),
            "grace_s",
        ),
        (
            "start",
            json!({"command": "true", "grace_s": -1}),
            "grace_s",
        ),
        (
            "start",
            json!({"command": "true", "shell": "true"}),
            "shell",
        ),
        ("start", json!({"id": 7, "command": "true"}), "id"),
        ("start", json!({}), "command"),
        ("status", json!({"id": ["web"]}), "id"),
        ("stop", json!({"id": "web", "signal": "SIGNOPE"}), "signal"),
        ("stop", json!({"id": "web", "grace_s": 1e12}), "grace_s"),
        ("logs", json!({"id": "web", "lines": -1}), "lines"),
        ("list", json!({"status": "sleeping"}), "status"),
        ("list", json!({"tags": "web"}), "tags"),
    ];
    for (command, payload, path) in cases {
        let error = sandbox.fail(&[command], &payload);
        assert_eq!(
            error["type"], "CommandInputError",
            "{command} {payload}: {error}"
        );
        assert_eq!(
            error["details"]["path"], path,
            "{command} {payload}: {error}"
        );
        assert_eq!(error["details"]["retryable"], false, "{error}");
    }
    assert_eq!(
        names_in(&sandbox.state().join("tasks")),
        Vec::<String>::new()
    );
}

/// An unknown id is `TaskNotFound` with the id and a hint pointing to `list`.
#[test]
fn unknown_ids_are_task_not_found_with_a_hint() {
    let sandbox = Sandbox::new();
    for command in ["status", "wait", "stop", "restart", "logs"] {
        let envelope = sandbox.call(&[command], &json!({"id": "ghost"})).failure();
        assert_eq!(envelope["command"], command);
        let error = &envelope["error"];
        assert_eq!(error["type"], "TaskNotFound", "{command}: {error}");
        assert_eq!(error["details"]["id"], "ghost", "{error}");
        assert_eq!(error["details"]["retryable"], false, "{error}");
        assert!(
            error["details"]["hint"]
                .as_str()
                .is_some_and(|h| h.contains("list")),
            "{error}"
        );
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("ghost")),
            "{error}"
        );
    }
    assert_eq!(sandbox.ok(&["list"], &json!({}))["total"], 0);
}

/// Usage errors are enveloped `CommandInputError`s with exit code 1.
#[test]
fn usage_errors_are_enveloped_command_input_errors() {
    let sandbox = Sandbox::new();
    let cases: [(&[&str], &str); 6] = [
        (&["start", "--bogus", "{}"], "start"),
        (&["frobnicate"], "background-tasks"),
        (&["--bogus"], "background-tasks"),
        (&["wait", "--timeout", "soon", r#"{"id":"x"}"#], "wait"),
        (&["wait", "--timeout", "-1", r#"{"id":"x"}"#], "wait"),
        (
            &["start", "--timeout", "1", r#"{"command":"true"}"#],
            "start",
        ),
    ];
    for (args, command) in cases {
        let envelope = sandbox.run(args).failure();
        assert_eq!(envelope["command"], command, "{args:?}: {envelope}");
        assert_eq!(
            envelope["error"]["type"], "CommandInputError",
            "{args:?}: {envelope}"
        );
        let hint = envelope["error"]["details"]["hint"]
            .as_str()
            .unwrap_or_default();
        assert!(hint.contains("--help"), "{args:?}: {hint}");
    }
    assert!(!sandbox.state().join("tasks").exists());
}

/// `--help` and `--version` print text and succeed.
#[test]
fn help_and_version_print_normally_and_exit_0() {
    let sandbox = Sandbox::new();
    for args in [
        &["--help"][..],
        &["help"],
        &["start", "--help"],
        &["stop", "-h"],
    ] {
        let outcome = sandbox.run(args);
        assert_eq!(outcome.code, Some(0), "{outcome:#?}");
        assert_eq!(outcome.stderr, "", "{outcome:#?}");
        assert!(outcome.stdout.contains("Usage"), "{outcome:#?}");
        assert!(serde_json::from_str::<Value>(&outcome.stdout).is_err());
    }
    let outcome = sandbox.run(&["--version"]);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(
        outcome.stdout.trim(),
        format!("background-tasks {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Runs `args` with a stdout whose reader is already gone.
fn run_with_closed_stdout(sandbox: &Sandbox, args: &[&str]) -> crate::support::Outcome {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut command = sandbox.command(args);
    // Give the pipe's write end as stdout (fd 1); spawn() then only pipes stderr for us.
    inherit_fd(&mut command, writer.as_raw_fd(), 1);
    let mut outcome = spawn(command).finish();
    drop(writer);
    // The harness's own stdout pipe was replaced in the child; nothing can arrive there.
    outcome.stdout.clear();
    outcome
}

/// A reader that went away (`... | head -c0`) ends the command quietly with exit 0.
#[test]
fn a_closed_stdout_ends_quietly_with_exit_0() {
    let sandbox = Sandbox::new();
    let start = json!({"id": "unheard", "command": "sleep", "args": ["100"]}).to_string();
    let status = json!({"id": "unheard"}).to_string();
    for args in [
        &["start", start.as_str()][..],
        &["status", status.as_str()],
        &["list"],
        &["logs", status.as_str()],
        &["--help"],
        &["--version"],
    ] {
        let outcome = run_with_closed_stdout(&sandbox, args);
        assert_eq!(outcome.code, Some(0), "{args:?}: {outcome:#?}");
        assert_eq!(outcome.stderr, "", "{args:?}: {outcome:#?}");
    }
    // The unheard start still started its task.
    assert_eq!(sandbox.status("unheard")["status"], "running");

    // A stdout that is not open at all is no worse.
    let mut command = sandbox.command(&["list"]);
    // SAFETY: close is async-signal-safe; the hook allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::close(1);
            Ok(())
        });
    }
    let outcome = spawn(command).finish();
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert!(!outcome.stderr.contains("panicked"), "{outcome:#?}");
    sandbox.stop("unheard");
}
