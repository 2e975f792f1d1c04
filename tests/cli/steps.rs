//! Steps (DESIGN §4 "Steps", issue 17 item 1): a task reports a tree of steps through step
//! lines, `{"type":"background-tasks.step","id",...}`; the supervisor folds them into
//! `steps`, journals `task.step` frames, bounds them, and closes a step left running with
//! the run's outcome. Ordinary JSON logs are never steps.
//!
//! Tasks print their steps with python3 (`step(...)` below), which keeps the JSON honest.

use std::fs;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{DEADLINE, Sandbox, spawn, wait_until};

/// A python3 program that defines `step(id, **fields)` (one step line, flushed) and then
/// runs `body`.
fn python(body: &str) -> Value {
    let program = format!(
        "import json, sys\n\
         def step(id, **fields):\n    \
             print(json.dumps(dict(type='background-tasks.step', id=id, **fields)), flush=True)\n\
         {body}\n"
    );
    json!(["-c", program])
}

/// Starts task `id` running the python3 `body` and waits for its end; answers the task.
fn run_python(sandbox: &Sandbox, id: &str, body: &str) -> Value {
    sandbox.start(&json!({"id": id, "command": "python3", "args": python(body)}));
    sandbox.wait(id)
}

/// The steps of a task answer, by id: `(parent, status, title)`.
fn steps_of(task: &Value) -> Vec<(String, Value, String, String)> {
    task["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps: {task}"))
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id").to_owned(),
                s["parent"].clone(),
                s["status"].as_str().expect("status").to_owned(),
                s["title"].as_str().expect("title").to_owned(),
            )
        })
        .collect()
}

/// The `task.step` frames `events {id}` answers.
fn step_frames(sandbox: &Sandbox, id: &str) -> Vec<Value> {
    let events = sandbox.ok(&["events"], &json!({"id": id, "lines": 0}));
    events["frames"]
        .as_array()
        .unwrap_or_else(|| panic!("no frames: {events}"))
        .iter()
        .filter(|f| f["type"] == "task.step")
        .cloned()
        .collect()
}

/// A tree three deep with a failed step and a skipped one; the root, left running, is
/// closed `failed` because the task exited 1. `status`, `list` and `events` all show it.
#[test]
fn a_step_tree_with_nested_steps_and_a_failed_step() {
    let sandbox = Sandbox::new();
    let task = run_python(
        &sandbox,
        "ci",
        "step('ci', title='CI')\n\
         step('build', parent='ci', title='Build', total=2)\n\
         step('build.compile', parent='build', title='Compile', status='done')\n\
         step('build', current=1)\n\
         step('build.link', parent='build', title='Link', status='failed', message='ld: undefined symbol')\n\
         step('build', status='failed', current=2)\n\
         step('test', parent='ci', title='Test', status='skipped')\n\
         sys.exit(1)",
    );
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 1, "{task}");
    let expected = [
        ("ci", Value::Null, "failed", "CI"),
        ("build", json!("ci"), "failed", "Build"),
        ("build.compile", json!("build"), "done", "Compile"),
        ("build.link", json!("build"), "failed", "Link"),
        ("test", json!("ci"), "skipped", "Test"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(id, parent, status, title)| {
            (
                (*id).to_owned(),
                parent.clone(),
                (*status).to_owned(),
                (*title).to_owned(),
            )
        })
        .collect();
    assert_eq!(steps_of(&task), expected, "{task}");
    let build = &task["steps"][1];
    assert_eq!(
        (
            build["current"].as_f64(),
            build["total"].as_f64(),
            build["percent"].as_f64()
        ),
        (Some(2.0), Some(2.0), Some(100.0)),
        "{build}"
    );
    assert_eq!(task["steps"][3]["message"], "ld: undefined symbol");
    assert_eq!(task["steps_dropped"], 0);
    for step in task["steps"].as_array().expect("steps") {
        assert!(step["ended_at_ms"].as_i64().is_some(), "{step}");
        assert!(step["started_at"].as_str().is_some(), "{step}");
    }
    assert_eq!(sandbox.status("ci")["steps"], task["steps"]);
    let listed = sandbox.ok(&["list"], &json!({"fields": ["id", "steps"]}));
    assert_eq!(listed["tasks"][0]["steps"], task["steps"], "{listed}");

    // Every step has a frame, and the last frame of each says how it ended.
    let frames = step_frames(&sandbox, "ci");
    for (id, _, status, _) in &expected {
        let last = frames
            .iter()
            .rev()
            .find(|f| f["data"]["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no task.step frame for {id}: {frames:?}"));
        assert_eq!(last["data"]["status"], status.as_str(), "{last}");
    }
}

/// Ordinary programs' JSON logs are not steps, not even a `"type":"step"` one or one that
/// mentions the step line's type in a string; seed 000's progress line is still progress.
#[test]
fn json_logs_that_are_not_steps() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "logger",
        "command": "python3",
        "args": ["-c", concat!(
            "import json\n",
            "for line in [\n",
            "  {'level': 'info', 'step': 'compile', 'status': 'done'},\n",
            "  {'type': 'step', 'id': 1},\n",
            "  {'type': 'step', 'id': 'a', 'status': 'running', 'title': 'A'},\n",
            "  {'msg': 'got {\"type\":\"background-tasks.step\",\"id\":\"x\"}'},\n",
            "  {'type': 'background-tasks.step', 'id': 'bad', 'status': 'paused'},\n",
            "  {'type': 'progress', 'current': 3, 'total': 17},\n",
            "]: print(json.dumps(line))\n",
            "print('2026-01-01T00:00:00Z ' + json.dumps({'type': 'background-tasks.step', 'id': 'prefixed'}))\n",
        )],
    }));
    let task = sandbox.wait("logger");
    assert_eq!(task["exit_code"], 0, "{task}");
    assert_eq!(task["steps"], Value::Null, "{task}");
    assert_eq!(task["steps_dropped"], Value::Null, "{task}");
    assert_eq!(task["progress"]["current"], 3.0, "{task}");
    assert_eq!(task["progress"]["total"], 17.0, "{task}");
    assert!(step_frames(&sandbox, "logger").is_empty());
    assert_eq!(sandbox.log("logger").lines().count(), 7);
}

/// A step still running when the task ends is closed with the task's outcome: `done` after
/// exit 0, `failed` after another exit code or a stop. A step that ended itself keeps its
/// status.
#[test]
fn a_step_left_running_is_closed_with_the_tasks_outcome() {
    let sandbox = Sandbox::new();
    let ok = run_python(
        &sandbox,
        "ok",
        "step('a')\nstep('b', parent='a', status='skipped')",
    );
    assert_eq!(ok["steps"][0]["status"], "done", "{ok}");
    assert_eq!(ok["steps"][1]["status"], "skipped", "{ok}");
    let bad = run_python(&sandbox, "bad", "step('a')\nsys.exit(3)");
    assert_eq!(bad["steps"][0]["status"], "failed", "{bad}");

    sandbox.start(&json!({
        "id": "stopped",
        "command": "python3",
        "args": python("import time\nstep('serve', title='Serve')\ntime.sleep(1000)"),
    }));
    wait_until("the running step is recorded", DEADLINE, || {
        sandbox.status("stopped")["steps"][0]["status"] == "running"
    });
    let stopped = sandbox.stop("stopped");
    let task = if stopped["task"].is_object() {
        stopped["task"].clone()
    } else {
        sandbox.status("stopped")
    };
    assert_eq!(task["status"], "killed", "{task}");
    assert_eq!(sandbox.status("stopped")["steps"][0]["status"], "failed");
    let last = step_frames(&sandbox, "stopped")
        .pop()
        .expect("a task.step frame");
    assert_eq!(last["data"]["status"], "failed", "{last}");
    assert!(last["data"]["ended_at"].is_string(), "{last}");
}

/// Many step ids: the first 256 are kept, the rest counted in `steps_dropped`.
#[test]
fn step_count_is_bounded_and_says_so() {
    let sandbox = Sandbox::new();
    let task = run_python(
        &sandbox,
        "many",
        "for i in range(300): step(f's{i}', status='done')",
    );
    let steps = task["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 256, "{}", steps.len());
    assert_eq!(steps[255]["id"], "s255");
    assert_eq!(task["steps_dropped"], 44, "{}", task["steps_dropped"]);
}

/// A 100 KB title is cut to the line budget, saying so; the record stays small.
#[test]
fn a_huge_title_is_cut() {
    let sandbox = Sandbox::new();
    let task = run_python(
        &sandbox,
        "huge",
        "step('big', title='t' * 100000, message='m' * 100000, status='done')",
    );
    let step = &task["steps"][0];
    let budget = 8 * 1024;
    let cut = format!("{}…[{} more bytes]", "t".repeat(budget), 100_000 - budget);
    assert_eq!(step["title"], cut.as_str());
    assert!(
        step["message"]
            .as_str()
            .is_some_and(|m| m.len() < budget + 32 && m.ends_with("more bytes]")),
        "{}",
        step["message"]
    );
    let record = fs::read(sandbox.task_dir("huge").join("task.json")).expect("record");
    assert!(
        record.len() < 4 * budget,
        "task.json is {} bytes",
        record.len()
    );
}

/// `task.step` frames come in `events` and in `events --stream`, as the task goes.
#[test]
fn task_step_frames_in_events_and_events_stream() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "live",
        "command": "python3",
        "args": python(
            "import os, time\n\
             step('one', title='One')\n\
             while not os.path.exists('go'): time.sleep(0.02)\n\
             step('one', status='done')\n\
             step('two', parent='one', title='Two', status='done')"
        ),
    }));
    wait_until("a task.step frame for one", DEADLINE, || {
        step_frames(&sandbox, "live")
            .iter()
            .any(|f| f["data"]["id"] == "one" && f["data"]["status"] == "running")
    });
    let stream =
        spawn(sandbox.command_with(&["events", "--stream"], &json!({"id": "live", "lines": 0})));
    fs::write(sandbox.work().join("go"), b"").expect("open the gate");
    let outcome = stream.finish_within(Duration::from_secs(60));
    assert_eq!(outcome.code, Some(0), "{outcome:#?}");
    let frames: Vec<Value> = outcome
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let steps: Vec<(&str, &str)> = frames
        .iter()
        .filter(|f| f["type"] == "task.step")
        .map(|f| {
            (
                f["data"]["id"].as_str().expect("id"),
                f["data"]["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert!(steps.contains(&("one", "running")), "{steps:?}");
    assert!(steps.contains(&("one", "done")), "{steps:?}");
    assert!(steps.contains(&("two", "done")), "{steps:?}");
    let ended = frames
        .iter()
        .position(|f| f["type"] == "task.ended")
        .expect("task.ended");
    let last_step = frames
        .iter()
        .rposition(|f| f["type"] == "task.step")
        .expect("a step");
    assert!(last_step < ended, "a step frame after task.ended");
    let two = frames
        .iter()
        .find(|f| f["type"] == "task.step" && f["data"]["id"] == "two")
        .expect("two");
    assert_eq!(two["data"]["parent"], "one", "{two}");
}

/// The `steps` example of `examples show start` runs by itself and shows its tree: a parent
/// with at least two children, all done.
#[test]
fn the_steps_example_runs_and_shows_the_tree() {
    let sandbox = Sandbox::new();
    let shown = sandbox.run(&["examples", "show", "start"]).data();
    let example = shown["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .find(|e| e["name"] == "steps")
        .unwrap_or_else(|| panic!("no steps example: {shown}"))
        .clone();
    let mut args = vec!["start"];
    args.extend(
        example["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .map(|f| f.as_str().expect("a flag")),
    );
    let data = sandbox.ok(&args, &example["payload"]);
    let task = &data["task"];
    assert_eq!(task["status"], "exited", "{data}");
    let steps = task["steps"].as_array().expect("steps");
    let root = steps
        .iter()
        .find(|s| s["parent"].is_null())
        .expect("a root step");
    let children = steps.iter().filter(|s| s["parent"] == root["id"]).count();
    assert!(children >= 2, "{steps:?}");
    assert!(steps.iter().all(|s| s["status"] == "done"), "{steps:?}");
}

/// A 50 MB step line is passed over (never held whole, counted as dropped); the steps
/// around it are read, and the supervisor's answers stay small.
#[test]
fn a_fifty_megabyte_step_line_is_passed_over() {
    let sandbox = Sandbox::new();
    let task = run_python(
        &sandbox,
        "big",
        "step('before', status='done')\n\
         step('huge', title='x' * (50 * 1024 * 1024))\n\
         step('after', status='done')",
    );
    assert_eq!(task["exit_code"], 0, "{task}");
    let ids: Vec<&str> = task["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["before", "after"], "{task}");
    assert_eq!(task["steps_dropped"], 1, "{task}");
    let record = fs::read(sandbox.task_dir("big").join("task.json")).expect("record");
    assert!(
        record.len() < 64 * 1024,
        "task.json is {} bytes",
        record.len()
    );
}

/// 100,000 updates of one step in a tight loop: the record and the journal follow at most
/// every 250 ms (a handful of frames, not 100,000), the last update wins, and the
/// supervisor's CPU time stays bounded (measured while the task waits after the flood).
#[test]
fn a_hundred_thousand_step_updates_stay_rate_limited() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "flood",
        "command": "python3",
        "args": python(
            "import os, time\n\
             line = lambda i: json.dumps(dict(type='background-tasks.step', id='loop', current=i, total=100000))\n\
             sys.stdout.write('\\n'.join(line(i) for i in range(1, 100001)) + '\\n')\n\
             sys.stdout.flush()\n\
             step('flooded', status='done')\n\
             while not os.path.exists('go'): time.sleep(0.02)"
        ),
    }));
    wait_until("the flood is read", DEADLINE, || {
        let steps = &sandbox.status("flood")["steps"];
        steps[0]["current"] == 100_000.0 && steps[1]["id"] == "flooded"
    });
    let supervisor = sandbox.supervisor("flood");
    let cpu = cpu_seconds(supervisor.pid);
    assert!(cpu < 10.0, "the supervisor used {cpu:.2} s of CPU");
    fs::write(sandbox.work().join("go"), b"").expect("open the gate");
    let task = sandbox.wait("flood");
    assert_eq!(task["steps"][0]["status"], "done", "{task}");
    let frames = step_frames(&sandbox, "flood");
    let loops: Vec<f64> = frames
        .iter()
        .filter(|f| f["data"]["id"] == "loop")
        .map(|f| f["data"]["current"].as_f64().expect("current"))
        .collect();
    assert!(
        !loops.is_empty() && loops.len() < 1_000,
        "{} frames",
        loops.len()
    );
    assert!(loops.windows(2).all(|w| w[0] <= w[1]), "{loops:?}");
}

/// Invalid UTF-8 inside a step line is read as U+FFFD, not a failure.
#[test]
fn invalid_utf8_inside_a_step_line() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({
        "id": "bytes",
        "shell": r#"printf '{"type":"background-tasks.step","id":"s","title":"caf\351 \377","status":"done"}\n'"#,
    }));
    let task = sandbox.wait("bytes");
    assert_eq!(task["exit_code"], 0, "{task}");
    assert_eq!(task["steps"][0]["title"], "caf\u{fffd} \u{fffd}", "{task}");
}

/// A step that names itself as parent, and a cycle a → b → a, end as a tree: the first
/// sight decides the parent, and only a known step can be one.
#[test]
fn a_step_whose_parent_is_itself_or_a_cycle() {
    let sandbox = Sandbox::new();
    let task = run_python(
        &sandbox,
        "cycle",
        "step('self', parent='self')\n\
         step('a', parent='b')\n\
         step('b', parent='a')\n\
         step('a', parent='b', status='done')\n\
         step('self', parent='self', status='done')\n\
         step('b', status='done')",
    );
    let parents: Vec<(String, Value)> = steps_of(&task)
        .into_iter()
        .map(|(id, parent, _, _)| (id, parent))
        .collect();
    assert_eq!(
        parents,
        [
            ("self".to_owned(), Value::Null),
            ("a".to_owned(), Value::Null),
            ("b".to_owned(), json!("a")),
        ],
        "{task}"
    );
}

/// CPU time a process has used so far (user + system), in seconds: fields 14 and 15 of
/// `/proc/<pid>/stat`.
fn cpu_seconds(pid: i32) -> f64 {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    let rest = &text[text.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second as f64
}
