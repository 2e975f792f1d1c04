//! Discovery: `doctor`, `capabilities`, `completions` and every command's `--help`, the
//! commands an agent or a person runs to learn the tool and to check the machine it runs on.
//!
//! Doctor's checks are driven into each state they report (missing, unsafe, lost task,
//! stale temp file) on real state directories; capabilities is compared with what the other
//! commands really do, not with itself.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::{
    BIN, DEADLINE, Outcome, Sandbox, live_group_members, names_in, spawn, wait_until,
};

/// Doctor's checks, in the order it answers them.
const CHECKS: [&str; 7] = [
    "state_dir",
    "filesystem",
    "locks",
    "notify",
    "binary",
    "tasks",
    "temp_files",
];

/// Every public command, as the envelope's `command` names it.
const COMMANDS: [&str; 19] = [
    "start",
    "status",
    "list",
    "wait",
    "stop",
    "restart",
    "logs",
    "events",
    "rm",
    "prune",
    "serve",
    "doctor",
    "capabilities",
    "schema list",
    "schema show",
    "examples list",
    "examples show",
    "completions",
    "mcp",
];

/// The commands that take a payload (DESIGN §4).
const PAYLOAD_COMMANDS: [&str; 10] = [
    "start", "status", "list", "wait", "stop", "restart", "logs", "events", "rm", "prune",
];

/// Runs `doctor` with BACKGROUND_TASKS_HOME at `state`.
fn doctor_at(sandbox: &Sandbox, state: PathBuf) -> Outcome {
    let mut command = sandbox.sealed_with_state(BIN, state);
    command.arg("doctor");
    spawn(command).finish()
}

/// A doctor answer that failed a check: exit 1, yet the answer is a success envelope on
/// stdout (the checks are the answer), nothing on stderr.
fn unhealthy_data(outcome: &Outcome) -> Value {
    assert_eq!(
        outcome.code,
        Some(1),
        "a failed check exits 1: {outcome:#?}"
    );
    let envelope = outcome.stdout_envelope();
    assert_eq!(envelope["command"], "doctor", "{envelope}");
    assert_eq!(envelope["data"]["healthy"], false, "{envelope}");
    envelope["data"].clone()
}

/// The check named `name`, which must appear exactly once.
fn check<'a>(data: &'a Value, name: &str) -> &'a Value {
    let found: Vec<&Value> = data["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {data}"))
        .iter()
        .filter(|c| c["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "check {name} once: {data}");
    found[0]
}

/// The names of the checks answered, in order.
fn check_names(data: &Value) -> Vec<String> {
    data["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {data}"))
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Asserts the shape every check has and that `summary` counts them right.
fn assert_checks_consistent(data: &Value) {
    let mut counts = [0u64; 3];
    for check in data["checks"].as_array().expect("checks") {
        assert!(
            check["message"].as_str().is_some_and(|m| !m.is_empty()),
            "every check says what it found: {check}"
        );
        match check["status"].as_str() {
            Some("ok") => {
                counts[0] += 1;
                assert_eq!(
                    check["hint"],
                    Value::Null,
                    "a passed check has no hint: {check}"
                );
            }
            Some(status @ ("warn" | "fail")) => {
                counts[if status == "warn" { 1 } else { 2 }] += 1;
                assert!(
                    check["hint"].as_str().is_some_and(|h| !h.is_empty()),
                    "a warning or failure says what to do: {check}"
                );
            }
            other => panic!("status {other:?} is not ok, warn or fail: {check}"),
        }
    }
    assert_eq!(
        data["summary"],
        json!({"ok": counts[0], "warn": counts[1], "fail": counts[2]}),
        "summary counts the checks: {data}"
    );
    assert_eq!(
        data["healthy"],
        counts[2] == 0,
        "healthy means no failure: {data}"
    );
}

/// The task counts of a doctor answer, in the order of [`TaskCounts`]'s fields.
fn task_counts(data: &Value) -> [u64; 7] {
    [
        "total",
        "queued",
        "running",
        "finished",
        "lost",
        "stale",
        "unreadable",
    ]
    .map(|k| {
        data["tasks"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("tasks.{k} is a count: {data}"))
    })
}

/// Asserts doctor left no scratch folder of its own in `state`.
fn assert_no_scratch_left(state: &Path) {
    let left: Vec<String> = names_in(state)
        .into_iter()
        .filter(|n| n.starts_with(".doctor"))
        .collect();
    assert!(
        left.is_empty(),
        "doctor left {left:?} in {}",
        state.display()
    );
}

/// A directory at `path` with exactly `mode`, whatever the umask.
fn dir_with_mode(path: &Path, mode: u32) {
    fs::create_dir(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

#[test]
fn doctor_on_a_fresh_state_dir_passes_every_check() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "quick", "command": "true"}));
    assert_eq!(sandbox.wait("quick")["status"], "exited");

    let outcome = sandbox.run(&["doctor"]);
    let data = outcome.data();
    assert_eq!(data["healthy"], true, "{data}");
    assert_eq!(check_names(&data), CHECKS, "{data}");
    for name in CHECKS {
        // /tmp is a local filesystem here, so even `filesystem` must be ok.
        assert_eq!(check(&data, name)["status"], "ok", "{name}: {data}");
    }
    assert_checks_consistent(&data);
    assert_eq!(
        data["summary"],
        json!({"ok": 7, "warn": 0, "fail": 0}),
        "{data}"
    );
    assert_eq!(
        data["state_dir"].as_str(),
        sandbox.state().to_str(),
        "{data}"
    );
    // total, queued, running, finished, lost, stale, unreadable
    assert_eq!(task_counts(&data), [1, 0, 0, 1, 0, 0, 0], "{data}");
    assert_no_scratch_left(&sandbox.state());
}

#[test]
fn doctor_without_a_state_dir_warns_once_and_does_not_create_it() {
    let sandbox = Sandbox::new();
    let state = sandbox.state();
    assert!(fs::symlink_metadata(&state).is_err(), "no state dir yet");

    let data = sandbox.run(&["doctor"]).data();
    assert_eq!(check_names(&data), ["state_dir"], "{data}");
    let state_dir = check(&data, "state_dir");
    assert_eq!(state_dir["status"], "warn", "{data}");
    assert!(
        state_dir["message"]
            .as_str()
            .is_some_and(|m| m.contains(state.to_str().expect("UTF-8 path"))),
        "the warning names the missing directory: {data}"
    );
    assert_checks_consistent(&data);
    assert_eq!(data["healthy"], true, "{data}");
    assert_eq!(task_counts(&data), [0; 7], "{data}");
    assert!(
        fs::symlink_metadata(&state).is_err(),
        "doctor created the state directory {}",
        state.display()
    );
}

#[test]
fn doctor_reports_a_task_whose_supervisor_was_killed_as_lost_and_cleans_its_group() {
    let sandbox = Sandbox::new();
    // The shell dies with its supervisor (PDEATHSIG); its sleep is left over in the group.
    sandbox.start(&json!({"id": "abandoned", "shell": "sleep 1000 & wait"}));
    let pgid = sandbox.leader("abandoned").pid;
    wait_until(
        "the task's group holds the shell and its sleep",
        DEADLINE,
        || live_group_members(pgid).len() >= 2,
    );
    let supervisor = sandbox.supervisor("abandoned");
    supervisor.signal(Signal::SIGKILL);
    wait_until("the supervisor is dead", DEADLINE, || {
        !supervisor.is_alive()
    });
    wait_until("the shell went with its supervisor", DEADLINE, || {
        live_group_members(pgid).len() == 1
    });
    assert_eq!(
        sandbox.record("abandoned")["status"],
        "running",
        "nobody has looked yet"
    );

    let data = sandbox.run(&["doctor"]).data();
    assert_checks_consistent(&data);
    assert_eq!(data["healthy"], true, "a lost task is a warning: {data}");
    assert_eq!(task_counts(&data), [1, 0, 0, 0, 1, 0, 0], "{data}");
    let tasks = check(&data, "tasks");
    assert_eq!(tasks["status"], "warn", "{data}");
    assert!(
        tasks["message"]
            .as_str()
            .is_some_and(|m| m.contains("abandoned")),
        "the warning names the lost task: {data}"
    );
    // Doctor reads like status: the record now says lost and the leftover sleep is gone
    // (killed; init reaps it in its own time, so a zombie may linger).
    assert_eq!(sandbox.record("abandoned")["status"], "lost");
    wait_until(
        "no process of the lost task's group is left",
        DEADLINE,
        || live_group_members(pgid).is_empty(),
    );
}

/// A pid no process has now: the highest free one, which the kernel hands out last.
fn dead_pid() -> i32 {
    let max: i32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(32768);
    (2..max)
        .rev()
        .find(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .expect("a free pid")
}

#[test]
fn doctor_reports_temp_files_of_dead_writers_only() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "done", "command": "true"}));
    sandbox.wait("done");
    let dir = sandbox.task_dir("done");

    // A writer that is alive (this test) may be between its write and its rename.
    let live = dir.join(format!(".task.json.tmp.{}.0", std::process::id()));
    fs::write(&live, b"{}").expect("write the live writer's temp file");
    let data = sandbox.run(&["doctor"]).data();
    assert_eq!(check(&data, "temp_files")["status"], "ok", "{data}");

    let dead = dir.join(format!(".task.json.tmp.{}.0", dead_pid()));
    fs::write(&dead, b"{").expect("write the dead writer's temp file");
    let data = sandbox.run(&["doctor"]).data();
    assert_checks_consistent(&data);
    assert_eq!(data["healthy"], true, "{data}");
    let temp_files = check(&data, "temp_files");
    assert_eq!(temp_files["status"], "warn", "{data}");
    let message = temp_files["message"].as_str().expect("a message");
    assert!(
        message.contains(dead.to_str().expect("UTF-8 path")),
        "the warning names the dead writer's file: {data}"
    );
    let live_name = live.file_name().expect("a name").to_string_lossy();
    assert!(
        !message.contains(live_name.as_ref()),
        "a live writer's file is not stale: {data}"
    );
    // Only this check warns: the task itself is fine.
    assert_eq!(check(&data, "tasks")["status"], "ok", "{data}");
    assert_eq!(data["summary"]["warn"], 1, "{data}");
}

#[test]
fn doctor_fails_on_a_symlinked_or_group_writable_state_dir_and_warns_on_a_readable_one() {
    let sandbox = Sandbox::new();

    // A symlink to a private directory: refused, whatever it points at.
    let real = sandbox.root().join("real");
    dir_with_mode(&real, 0o700);
    let link = sandbox.root().join("link");
    symlink(&real, &link).expect("symlink");
    let data = unhealthy_data(&doctor_at(&sandbox, link.clone()));
    assert_checks_consistent(&data);
    assert_eq!(check_names(&data), ["state_dir"], "{data}");
    let state_dir = check(&data, "state_dir");
    assert_eq!(state_dir["status"], "fail", "{data}");
    assert!(
        state_dir["message"]
            .as_str()
            .is_some_and(|m| m.contains("symlink")),
        "the failure says why: {data}"
    );
    assert_eq!(data["summary"]["fail"], 1, "{data}");
    assert_eq!(
        names_in(&real),
        Vec::<String>::new(),
        "nothing written through the link"
    );
    assert!(
        fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()),
        "the link is left as it was"
    );

    // Writable by the group: refused like every command refuses it.
    let open = sandbox.root().join("open");
    dir_with_mode(&open, 0o770);
    let data = unhealthy_data(&doctor_at(&sandbox, open.clone()));
    assert_checks_consistent(&data);
    assert_eq!(check(&data, "state_dir")["status"], "fail", "{data}");
    assert_eq!(
        names_in(&open),
        Vec::<String>::new(),
        "nothing written there"
    );

    // Readable by the group: usable, but worth a warning.
    let shared = sandbox.root().join("shared");
    dir_with_mode(&shared, 0o750);
    let outcome = doctor_at(&sandbox, shared.clone());
    let data = outcome.data();
    assert_checks_consistent(&data);
    assert_eq!(data["healthy"], true, "{data}");
    assert_eq!(
        check_names(&data),
        CHECKS,
        "the other checks still run: {data}"
    );
    assert_eq!(check(&data, "state_dir")["status"], "warn", "{data}");
    assert_eq!(
        data["summary"],
        json!({"ok": 6, "warn": 1, "fail": 0}),
        "{data}"
    );
    assert_eq!(
        fs::metadata(&shared).expect("stat").permissions().mode() & 0o777,
        0o750,
        "doctor only looks: the mode is left as it was"
    );
    assert_no_scratch_left(&shared);
}

/// The command names a `--help` text lists under "Commands:", clap's own `help` left out.
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A name is indented by two spaces; wrapped summaries by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every runnable command that `background-tasks --help` leads to, with groups (`schema`)
/// expanded into their subcommands (`schema list`).
fn commands_in_help(sandbox: &Sandbox) -> BTreeSet<String> {
    let top = sandbox.run(&["--help"]);
    assert_eq!(top.code, Some(0), "{top:#?}");
    let mut found = BTreeSet::new();
    for name in listed_commands(&top.stdout) {
        let help = sandbox.run(&[&name, "--help"]);
        assert_eq!(help.code, Some(0), "{help:#?}");
        let subcommands = listed_commands(&help.stdout);
        if subcommands.is_empty() {
            found.insert(name);
        } else {
            found.extend(subcommands.into_iter().map(|sub| format!("{name} {sub}")));
        }
    }
    found
}

/// The flag named `flag` of command `command` in a capabilities answer.
fn flag<'a>(capabilities: &'a Value, command: &str, flag: &str) -> &'a Value {
    let info = capabilities["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .find(|c| c["name"] == command)
        .unwrap_or_else(|| panic!("no command {command}: {capabilities}"));
    info["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .find(|f| f["name"] == flag)
        .unwrap_or_else(|| panic!("{command} has no flag {flag}: {info}"))
}

#[test]
fn capabilities_lists_every_command_status_and_error_type_and_its_defaults_are_real() {
    let sandbox = Sandbox::new();
    let caps = sandbox.run(&["capabilities"]).data();

    // Commands: exactly those --help leads to, and those the envelope can name.
    let listed: BTreeSet<String> = caps["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| c["name"].as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(listed, commands_in_help(&sandbox), "{caps}");
    let known: BTreeSet<String> = COMMANDS.iter().map(|&c| c.to_owned()).collect();
    assert_eq!(listed, known, "{caps}");
    for command in caps["commands"].as_array().expect("commands") {
        let name = command["name"].as_str().expect("a name");
        assert!(
            command["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{command}"
        );
        let payload = if PAYLOAD_COMMANDS.contains(&name) {
            ["required", "optional"].as_slice()
        } else {
            ["none"].as_slice()
        };
        assert!(
            payload.contains(&command["payload"].as_str().unwrap_or_default()),
            "{name} takes a payload: {payload:?}: {command}"
        );
        let batch = matches!(name, "start" | "stop" | "restart" | "rm");
        assert_eq!(command["batch"], batch, "{command}");
        let stream = matches!(name, "logs" | "events");
        assert_eq!(command["stream"], stream, "{command}");
    }
    for wanted in ["--wait", "--timeout", "--concurrency"] {
        flag(&caps, "start", wanted);
    }
    let output = flag(&caps, "logs", "--output");
    assert_eq!(
        output["values"],
        json!(["auto", "inline", "artifact"]),
        "{output}"
    );
    assert_eq!(flag(&caps, "logs", "--stream")["value"], Value::Null);
    let shells = &flag(&caps, "completions", "<SHELL>")["values"];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(
            shells.as_array().is_some_and(|v| v.contains(&json!(shell))),
            "completions takes {shell}: {shells}"
        );
    }
    let globals: Vec<&Value> = caps["global_flags"]
        .as_array()
        .expect("global flags")
        .iter()
        .map(|f| &f["name"])
        .collect();
    assert!(globals.contains(&&json!("--pretty")), "{caps}");

    // Statuses: DESIGN §3's seven, terminal = all but queued and running.
    let statuses: Vec<(String, bool)> = caps["statuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("a name").to_owned(),
                s["terminal"].as_bool().expect("a terminal flag"),
            )
        })
        .collect();
    let expected: Vec<(String, bool)> = [
        ("queued", false),
        ("running", false),
        ("exited", true),
        ("killed", true),
        ("timed_out", true),
        ("failed", true),
        ("lost", true),
    ]
    .map(|(name, terminal)| (name.to_owned(), terminal))
    .into();
    assert_eq!(statuses, expected, "{caps}");

    // Error types: DESIGN §2's names are kept, and a timed-out wait is worth retrying.
    let errors = caps["error_types"].as_array().expect("error types");
    let kinds: BTreeSet<&str> = errors.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds.len(), errors.len(), "each type once: {caps}");
    for kind in [
        "CommandInputError",
        "TaskNotFound",
        "TaskAlreadyRunning",
        "TaskWaitTimedOut",
        "SpawnFailed",
        "StoreError",
        "TaskNotReady",
        "PortInUse",
    ] {
        assert!(kinds.contains(kind), "{kind} missing: {caps}");
    }
    let timed_out = errors
        .iter()
        .find(|e| e["type"] == "TaskWaitTimedOut")
        .expect("TaskWaitTimedOut");
    assert_eq!(timed_out["retryable"], "always", "{timed_out}");
    let codes: Vec<&Value> = caps["exit_codes"]
        .as_array()
        .expect("exit codes")
        .iter()
        .map(|c| &c["code"])
        .collect();
    // 0 and 1, then what --exit-status and an interrupted wait add (issue 20).
    assert_eq!(
        codes,
        [0, 1, 124, 125, 127, 130, 137]
            .map(|c| json!(c))
            .iter()
            .collect::<Vec<_>>(),
        "{caps}"
    );
    assert_eq!(
        caps["limits"]["task_id_pattern"], "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        "{caps}"
    );

    // The version is the binary's.
    let version = sandbox.run(&["--version"]);
    assert_eq!(version.code, Some(0), "{version:#?}");
    let version_text = version.stdout.trim().strip_prefix("background-tasks ");
    assert_eq!(caps["version"].as_str(), version_text, "{version:#?}");

    // Defaults are what a task without grace_s and a logs without lines really get.
    let defaults = &caps["defaults"];
    sandbox.start(&json!({"id": "counter", "command": "seq", "args": ["1", "150"]}));
    let task = sandbox.wait("counter");
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(
        task["grace_s"].as_f64(),
        defaults["grace_s"].as_f64(),
        "{task} vs {defaults}"
    );
    let log_lines = defaults["log_lines"].as_u64().expect("log_lines");
    assert!(
        log_lines < 150,
        "150 lines must exceed the default: {defaults}"
    );
    let expected_tail: Vec<Value> = (151 - log_lines..=150)
        .map(|n| json!(n.to_string()))
        .collect();
    // auto: lines were left out, so the pointer form, with the default number of lines.
    let auto = sandbox.ok(&["logs"], &json!({"id": "counter"}));
    assert_eq!(auto["kind"], "summary+artifact", "{auto}");
    assert_eq!(auto["total_lines"], 150, "{auto}");
    assert_eq!(auto["shown_lines"], log_lines, "{auto}");
    assert_eq!(auto["lines"], json!(expected_tail), "{auto}");
    assert_eq!(auto["omitted"]["before"], 150 - log_lines, "{auto}");
    // inline: nothing is cut by the byte budget, but `lines` still defaults the same.
    let inline = sandbox.ok(&["logs", "--output", "inline"], &json!({"id": "counter"}));
    assert_eq!(inline["kind"], "inline", "{inline}");
    assert_eq!(inline["lines"], json!(expected_tail), "{inline}");
}

/// Whether `shell` can be run (it is installed on this machine).
fn installed(shell: &str) -> bool {
    std::process::Command::new(shell)
        .args(["-c", "exit 0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The completion script for `shell`, after checking it is plain text on stdout, exit 0.
fn completion_script(sandbox: &Sandbox, shell: &str) -> String {
    let outcome = sandbox.run(&["completions", shell]);
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    assert_eq!(outcome.stderr, "", "{outcome:#?}");
    assert!(!outcome.stdout.trim().is_empty(), "{shell}: empty script");
    assert!(
        serde_json::from_str::<Value>(&outcome.stdout).is_err() && !outcome.stdout.starts_with('{'),
        "{shell}: a script, not an envelope: {}",
        outcome.stdout
    );
    outcome.stdout
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "a skipped syntax check says why in the test's output"
)]
fn completions_are_plain_scripts_that_their_shells_accept() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = completion_script(&sandbox, shell);
        for command in ["start", "status", "logs", "doctor", "completions"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
        if !matches!(shell, "bash" | "zsh" | "fish") {
            continue;
        }
        if !installed(shell) {
            eprintln!("note: {shell} is not installed; its script's syntax is not checked");
            continue;
        }
        let file = sandbox.root().join(format!("completion.{shell}"));
        fs::write(&file, &script).expect("write the script");
        let check = std::process::Command::new(shell)
            .arg("-n")
            .arg(&file)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {shell} -n: {e}"));
        assert!(
            check.status.success(),
            "{shell} -n rejects the script: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // No state is needed, and none is created.
    assert!(fs::symlink_metadata(sandbox.state()).is_err());
}

/// The hidden supervisor entry must not be offered: `background-tasks <TAB>` would suggest a
/// command that refuses to run by hand.
#[test]
fn completions_never_offer_the_hidden_supervise_command() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = completion_script(&sandbox, shell);
        let mentions: Vec<&str> = script
            .lines()
            .filter(|l| l.contains("__supervise"))
            .collect();
        assert!(
            mentions.is_empty(),
            "{shell} completes the hidden __supervise: {mentions:#?}"
        );
    }
}

#[test]
fn completions_for_an_unknown_shell_is_an_input_error_naming_the_shells() {
    let sandbox = Sandbox::new();
    let envelope = sandbox.run(&["completions", "tcsh"]).failure();
    assert_eq!(envelope["command"], "completions", "{envelope}");
    let error = &envelope["error"];
    assert_eq!(error["type"], "CommandInputError", "{error}");
    let message = error["message"].as_str().expect("a message");
    for shell in ["tcsh", "bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(
            message.contains(shell),
            "the message names {shell}: {error}"
        );
    }
}

#[test]
fn every_command_has_plain_text_help_with_examples() {
    let sandbox = Sandbox::new();
    let top = sandbox.run(&["--help"]);
    assert_eq!(top.code, Some(0), "{top:#?}");
    assert!(top.stdout.contains("Example"), "{}", top.stdout);

    for name in COMMANDS {
        let mut args: Vec<&str> = name.split(' ').collect();
        args.push("--help");
        let help = sandbox.run(&args);
        assert_eq!(help.code, Some(0), "{help:#?}");
        assert_eq!(help.stderr, "", "{help:#?}");
        let text = &help.stdout;
        assert!(
            serde_json::from_str::<Value>(text).is_err() && !text.starts_with('{'),
            "{name} --help is text, not an envelope: {text}"
        );
        assert!(
            text.contains(&format!("Usage: background-tasks {name}")),
            "{name}: {text}"
        );
        assert!(
            text.contains("Example"),
            "{name} --help has examples: {text}"
        );
        if PAYLOAD_COMMANDS.contains(&name) {
            assert!(
                text.contains("Payload"),
                "{name} --help explains its payload: {text}"
            );
        }
    }
    assert!(
        fs::symlink_metadata(sandbox.state()).is_err(),
        "help creates no state"
    );
}

#[test]
fn a_missing_command_or_subcommand_is_an_input_error_naming_where() {
    let sandbox = Sandbox::new();
    for (args, command) in [
        (&[][..], "background-tasks"),
        (&["schema"][..], "schema"),
        (&["examples"][..], "examples"),
    ] {
        let envelope = sandbox.run(args).failure();
        assert_eq!(envelope["command"], command, "{args:?}: {envelope}");
        assert_eq!(
            envelope["error"]["type"], "CommandInputError",
            "{args:?}: {envelope}"
        );
        assert!(
            envelope["error"]["details"]["hint"]
                .as_str()
                .is_some_and(|h| h.contains("--help")),
            "the hint points at the help: {envelope}"
        );
    }
}

/// A usage error's message is clap's first line; for a missing argument the argument's name
/// is on the next line, and must not be lost.
#[test]
fn a_missing_argument_error_names_the_argument() {
    let sandbox = Sandbox::new();
    for (args, argument) in [
        (&["completions"][..], "<SHELL>"),
        (&["schema", "show"][..], "<NAME>"),
        (&["examples", "show"][..], "<COMMAND>"),
    ] {
        let error = sandbox.run(args).error();
        assert_eq!(error["type"], "CommandInputError", "{args:?}: {error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains(argument)),
            "{args:?}: the message names {argument}: {error}"
        );
    }
}
