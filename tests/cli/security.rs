//! RELIABILITY 20 and 22: ids never escape the state directory, unsafe state directories
//! are refused, modes are private whatever the umask, and environment values stay secret.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use crate::support::{
    DEADLINE, Sandbox, files_under, names_in, note, spawn, wait_until, with_umask,
};

/// RELIABILITY 20: a bad id is an input error for every command, and nothing is created
/// outside the state directory (nor inside it).
#[test]
fn path_like_empty_long_and_nul_ids_are_rejected_and_create_nothing() {
    let sandbox = Sandbox::new();
    let long = "x".repeat(300);
    let bad = [
        "../x",
        "a/b",
        ".",
        "..",
        "",
        long.as_str(),
        "a\0b",
        "/abs",
        "-dash",
    ];
    for id in bad {
        let start = sandbox.fail(&["start"], &json!({"id": id, "command": "true"}));
        assert_eq!(start["type"], "CommandInputError", "{id:?}: {start}");
        assert_eq!(start["details"]["path"], "id", "{id:?}: {start}");
        for command in ["status", "wait", "stop", "restart", "logs"] {
            let error = sandbox.fail(&[command], &json!({"id": id}));
            assert_eq!(
                error["type"], "CommandInputError",
                "{command} {id:?}: {error}"
            );
            assert_eq!(error["details"]["path"], "id", "{command} {id:?}: {error}");
        }
        let error = sandbox.fail(&["list"], &json!({"ids": [id]}));
        assert_eq!(error["details"]["path"], "ids[0]", "{id:?}: {error}");
    }
    let mut outside = names_in(sandbox.root());
    outside.retain(|name| name != "state");
    assert_eq!(outside, ["home", "work"]);
    assert_eq!(names_in(&sandbox.home()), Vec::<String>::new());
    assert_eq!(names_in(&sandbox.work()), Vec::<String>::new());
    let inside = names_in(&sandbox.state());
    assert!(
        inside.is_empty() || inside == ["tasks"],
        "the state dir holds {inside:?}"
    );
    assert_eq!(
        names_in(&sandbox.state().join("tasks")),
        Vec::<String>::new()
    );
}

/// Asserts that every command refuses the state directory `state` with a StoreError that
/// names it, and that nothing was created under `look_in`.
fn assert_refused(sandbox: &Sandbox, state: &Path, look_in: &Path, why: &str) {
    let before = names_in(look_in);
    let calls = [
        ("start", json!({"id": "t", "command": "true"})),
        ("status", json!({"id": "t"})),
        ("list", json!({})),
    ];
    for (command, payload) in calls {
        let mut cmd = sandbox.sealed_with_state(crate::support::BIN, state.to_path_buf());
        cmd.arg(command).arg(payload.to_string());
        let error = spawn(cmd).finish().error();
        assert_eq!(error["type"], "StoreError", "{command}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(why) && message.contains(&*state.to_string_lossy()),
            "{command}: the message should say {why:?} about {}: {error}",
            state.display()
        );
        assert_eq!(error["details"]["path"], state.to_string_lossy().as_ref());
    }
    assert_eq!(names_in(look_in), before, "something was created");
}

/// RELIABILITY 20: a state directory that is a symlink is refused, even to a private dir.
#[test]
fn a_state_dir_that_is_a_symlink_is_refused() {
    let sandbox = Sandbox::new();
    let real = sandbox.root().join("real");
    fs::create_dir(&real).expect("mkdir");
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).expect("chmod");
    let link = sandbox.root().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    assert_refused(&sandbox, &link, &real, "symlink");
}

/// RELIABILITY 20: a state directory others may write to is refused and left as it is.
#[test]
fn a_world_writable_state_dir_is_refused() {
    let sandbox = Sandbox::new();
    let open = sandbox.root().join("open");
    fs::create_dir(&open).expect("mkdir");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
    assert_refused(&sandbox, &open, &open, "others write");
    let mode = fs::metadata(&open).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o777, "the refused directory was changed");

    let file = sandbox.root().join("a-file");
    fs::write(&file, "").expect("write");
    assert_refused(&sandbox, &file, sandbox.root(), "not a directory");
}

/// RELIABILITY 20: a state directory owned by another user is refused. Giving a directory
/// away needs root (CAP_CHOWN); without it the test says so and checks nothing more.
#[test]
fn a_state_dir_owned_by_another_user_is_refused() {
    let sandbox = Sandbox::new();
    let theirs = sandbox.root().join("theirs");
    fs::create_dir(&theirs).expect("mkdir");
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).expect("chmod");
    // 65534 is `nobody` on Linux; any uid but ours will do.
    if let Err(e) = std::os::unix::fs::chown(&theirs, Some(65534), None) {
        note(&format!(
            "skipped: cannot give a directory to another user here ({e}); needs root"
        ));
        return;
    }
    assert_refused(&sandbox, &theirs, &theirs, "owned by uid 65534");
    // The sandbox's cleanup must be able to remove it: take it back.
    std::os::unix::fs::chown(&theirs, Some(nix::unistd::geteuid().as_raw()), None)
        .expect("chown back");
}

/// RELIABILITY 20: directories are created 0700 and files 0600 whatever the caller's umask,
/// and the task keeps the caller's umask.
#[test]
fn state_dirs_are_0700_and_files_0600_under_umask_0_077_and_277() {
    // 0277 takes owner bits away too: only an explicit chmod gives 0700 and 0600 then.
    for (mask, shown) in [(0o000, "0000"), (0o077, "0077"), (0o277, "0277")] {
        let sandbox = Sandbox::new();
        let mut start = sandbox.command_with(
            &["start"],
            &json!({"id": "modes", "shell": "umask; sleep 100"}),
        );
        with_umask(&mut start, mask);
        spawn(start).finish().data();
        wait_until("the task printed its umask", DEADLINE, || {
            sandbox.log("modes").ends_with('\n')
        });
        assert_eq!(
            sandbox.log("modes").trim(),
            shown,
            "the task's umask was changed"
        );
        let mut stop = sandbox.command_with(&["stop"], &json!({"id": "modes"}));
        with_umask(&mut stop, mask);
        spawn(stop).finish().data();
        let mut restart = sandbox.command_with(&["restart"], &json!({"id": "modes"}));
        with_umask(&mut restart, mask);
        spawn(restart).finish().data();
        wait_until("run 2 printed its umask", DEADLINE, || {
            sandbox.log("modes").ends_with('\n')
        });

        let state = sandbox.state();
        let mut checked = vec![state.clone()];
        checked.extend(files_under(&state));
        assert!(
            checked.len() >= 7,
            "expected state, tasks, the task dir and its files: {checked:?}"
        );
        for path in checked {
            let meta = fs::symlink_metadata(&path).expect("stat");
            let mode = meta.permissions().mode() & 0o7777;
            let want = if meta.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(
                mode,
                want,
                "umask {mask:03o}: {} has mode {mode:o}",
                path.display()
            );
        }
        sandbox.stop("modes");
    }
}

/// RELIABILITY 22: an `env` value reaches the task but no record, answer, argv or
/// environment of the supervisor; only its name is kept.
#[test]
fn env_values_appear_nowhere_in_the_state_dir_except_the_task_output() {
    const SECRET: &str = "s3cr3t-VALUE-7f2a91";
    let sandbox = Sandbox::new();
    let payload = json!({
        "id": "secret",
        "shell": "echo \"token=$API_TOKEN\"; sleep 100",
        "env": {"API_TOKEN": SECRET},
    });
    let outcome = sandbox.call(&["start"], &payload);
    assert!(!outcome.stdout.contains(SECRET), "start printed the value");
    assert_eq!(outcome.data()["task"]["env_keys"], json!(["API_TOKEN"]));
    wait_until("the task printed the value", DEADLINE, || {
        sandbox.log("secret").contains(SECRET)
    });

    let assert_hidden = |when: &str| {
        for path in files_under(&sandbox.state()) {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            assert!(!name.contains(SECRET), "{when}: a file is named after it");
            if path.is_dir() || (name.starts_with("output.") && name.ends_with(".log")) {
                continue;
            }
            let bytes = fs::read(&path).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(SECRET),
                "{when}: {} holds the value",
                path.display()
            );
        }
        for args in [vec!["status"], vec!["list"], vec!["logs"]] {
            let payload = if args[0] == "list" {
                json!({})
            } else {
                json!({"id": "secret"})
            };
            let outcome = sandbox.call(&args, &payload);
            let shown = args[0] == "logs";
            assert_eq!(
                outcome.stdout.contains(SECRET),
                shown,
                "{when}: {args:?} answered {}",
                outcome.stdout
            );
        }
    };
    assert_hidden("while running");
    let supervisor = sandbox.supervisor("secret");
    for file in ["cmdline", "environ"] {
        let bytes = fs::read(format!("/proc/{}/{file}", supervisor.pid)).expect("read /proc");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET),
            "the supervisor's {file} holds the value"
        );
    }

    sandbox.ok(
        &["restart"],
        &json!({"id": "secret", "env": {"API_TOKEN": SECRET}}),
    );
    wait_until("run 2 printed the value", DEADLINE, || {
        sandbox.log("secret").contains(SECRET)
    });
    sandbox.stop("secret");
    assert_hidden("after restart and stop");
}
