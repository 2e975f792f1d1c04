//! The schemas are the contract: what `schema show` says a command accepts is what it
//! accepts, every real answer fits its command's answer schema, and every example payload
//! fits its command's payload schema and runs.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use jsonschema::Validator;
use serde_json::{Value, json};

use crate::support::{DEADLINE, Sandbox, wait_until};

/// Every schema the binary serves, compiled, by `(name, kind)`.
struct Schemas {
    validators: BTreeMap<(String, String), Validator>,
}

impl Schemas {
    fn load(sandbox: &Sandbox) -> Schemas {
        let list = sandbox.run(&["schema", "list"]).data();
        let mut names: Vec<String> = list["schemas"]
            .as_array()
            .expect("schemas")
            .iter()
            .map(|s| s["name"].as_str().expect("name").to_owned())
            .collect();
        names.dedup();
        let mut validators = BTreeMap::new();
        for name in names {
            let shown = sandbox.run(&["schema", "show", &name]).data();
            for item in shown["schemas"].as_array().expect("schemas") {
                let schema = &item["schema"];
                assert_eq!(
                    schema["$schema"],
                    "https://json-schema.org/draft/2020-12/schema"
                );
                assert_eq!(schema["$id"], item["id"]);
                let validator = jsonschema::validator_for(schema)
                    .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", item["id"]));
                let kind = item["kind"].as_str().expect("kind").to_owned();
                validators.insert((name.clone(), kind), validator);
            }
        }
        Schemas { validators }
    }

    fn validator(&self, name: &str, kind: &str) -> &Validator {
        self.validators
            .get(&(name.to_owned(), kind.to_owned()))
            .unwrap_or_else(|| panic!("no {kind} schema for {name}"))
    }

    fn accepts(&self, name: &str, kind: &str, value: &Value) -> bool {
        self.validator(name, kind).is_valid(value)
    }

    /// Panics with every violation when `value` does not fit.
    fn check(&self, name: &str, kind: &str, value: &Value) {
        let errors: Vec<String> = self
            .validator(name, kind)
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name} {kind} does not fit its schema:\n{}\n{value:#}",
            errors.join("\n")
        );
    }

    /// A success envelope's data, checked against `command`'s answer schema.
    fn answer(&self, command: &str, data: Value) -> Value {
        self.check(command, "output", &data);
        data
    }
}

/// Whether the binary accepted `payload` for `command`: any answer but a CommandInputError
/// (a TaskNotFound means the payload was fine and the task is simply not there).
fn parser_accepts(sandbox: &Sandbox, command: &str, payload: &Value) -> bool {
    let outcome = sandbox.call(&[command], payload);
    // A batch whose items failed answers on stdout with exit code 1: it was parsed.
    if outcome.code == Some(0) || !outcome.stdout.is_empty() {
        return true;
    }
    let error = outcome.error();
    error["type"] != "CommandInputError"
}

/// `schema show <cmd>`'s payload schema is what the parser really accepts: each payload is
/// judged by both, and both must give the expected verdict.
#[test]
fn payload_schemas_accept_exactly_what_the_parser_accepts() {
    let sandbox = Sandbox::new();
    let schemas = Schemas::load(&sandbox);
    let me = std::process::id();
    let cases: Vec<(&str, Value, bool)> = vec![
        // start: command or shell, not both, not neither; args only with command.
        ("start", json!({"id": "s1", "command": "true"}), true),
        (
            "start",
            json!({"id": "s2", "command": "true", "args": ["a", "b"]}),
            true,
        ),
        ("start", json!({"id": "s3", "shell": "true"}), true),
        (
            "start",
            json!({"id": "s4", "shell": "true", "args": []}),
            true,
        ),
        (
            "start",
            json!({"id": "s5", "shell": "true", "command": null}),
            true,
        ),
        (
            "start",
            json!({"id": "s6", "command": "true", "shell": "true"}),
            false,
        ),
        ("start", json!({"id": "s7"}), false),
        (
            "start",
            json!({"id": "s8", "shell": "true", "args": ["x"]}),
            false,
        ),
        ("start", json!({"id": "s9", "command": ""}), false),
        (
            "start",
            json!({"id": "s10", "command": "true", "bogus": 1}),
            false,
        ),
        ("start", json!({"id": "../x", "command": "true"}), false),
        ("start", json!({"id": "", "command": "true"}), false),
        (
            "start",
            json!({"id": "a".repeat(65), "command": "true"}),
            false,
        ),
        (
            "start",
            json!({"id": "a".repeat(64), "command": "true"}),
            true,
        ),
        (
            "start",
            json!({"id": "s11", "command": "true", "args": "x"}),
            false,
        ),
        (
            "start",
            json!({"id": "s12", "command": "true", "tags": ["a", ""]}),
            false,
        ),
        (
            "start",
            json!({"id": "s13", "command": "true", "tags": ["a", "b"]}),
            true,
        ),
        (
            "start",
            json!({"id": "s14", "command": "true", "env": {"A": "1"}}),
            true,
        ),
        (
            "start",
            json!({"id": "s15", "command": "true", "env": {"A=B": "1"}}),
            false,
        ),
        (
            "start",
            json!({"id": "s16", "command": "true", "env": {"": "1"}}),
            false,
        ),
        (
            "start",
            json!({"id": "s17", "command": "true", "env": {"A": 1}}),
            false,
        ),
        (
            "start",
            json!({"id": "s18", "command": "true", "grace_s": 0}),
            true,
        ),
        (
            "start",
            json!({"id": "s19", "command": "true", "grace_s": -1}),
            false,
        ),
        (
            "start",
            json!({"id": "s20", "command": "true", "grace_s": 86401}),
            false,
        ),
        (
            "start",
            json!({"id": "s21", "command": "true", "timeout_s": 0}),
            false,
        ),
        (
            "start",
            json!({"id": "s22", "command": "true", "timeout_s": 0.5}),
            true,
        ),
        (
            "start",
            json!({"id": "s23", "command": "true", "timeout_s": 2_592_001}),
            false,
        ),
        (
            "start",
            json!({"id": "s24", "command": "true", "if_running": "reuse"}),
            true,
        ),
        (
            "start",
            json!({"id": "s25", "command": "true", "if_running": "never"}),
            false,
        ),
        (
            "start",
            json!({"id": "s26", "command": "true", "stop_with_pid": me}),
            true,
        ),
        (
            "start",
            json!({"id": "s27", "command": "true", "stop_with_pid": 1}),
            false,
        ),
        (
            "start",
            json!({"id": "s28", "command": "true", "ready": {}}),
            false,
        ),
        (
            "start",
            json!({"id": "s29", "command": "true", "ready": {"timeout_s": 1}}),
            false,
        ),
        (
            "start",
            json!({"id": "s30", "command": "true", "ready": {"log": "x"}}),
            true,
        ),
        (
            "start",
            json!({"id": "s31", "command": "true", "ready": {"port": 0}}),
            false,
        ),
        (
            "start",
            json!({"id": "s32", "command": "true", "ready": {"port": 65536}}),
            false,
        ),
        (
            "start",
            json!({"id": "s33", "command": "true", "ready": {"http": "https://x/"}}),
            false,
        ),
        (
            "start",
            json!({"id": "s34", "command": "true", "ready": {"log": "x", "extra": 1}}),
            false,
        ),
        (
            "start",
            json!([{"id": "s35", "command": "true"}, {"id": "s36", "shell": "true"}]),
            true,
        ),
        ("start", json!([]), false),
        (
            "start",
            json!([{"id": "s37", "command": "true"}, {"bogus": 1}]),
            false,
        ),
        ("start", json!("web"), false),
        ("start", json!(42), false),
        // status and the other one-id commands.
        ("status", json!({"id": "nope"}), true),
        ("status", json!({}), false),
        ("status", json!({"id": "a/b"}), false),
        ("status", json!({"id": "nope", "x": 1}), false),
        // list: every filter optional; fields from the task's fields only.
        ("list", json!({}), true),
        ("list", json!({"status": "running", "tag": "dev"}), true),
        ("list", json!({"status": "sleeping"}), false),
        ("list", json!({"fields": ["id", "status"]}), true),
        ("list", json!({"fields": ["id", "colour"]}), false),
        ("list", json!({"ids": ["a", "b"]}), true),
        ("list", json!({"ids": ["a", "../b"]}), false),
        // wait: until "exit" or conditions.
        ("wait", json!({"id": "nope"}), true),
        ("wait", json!({"id": "nope", "until": "exit"}), true),
        ("wait", json!({"id": "nope", "until": "ready"}), false),
        ("wait", json!({"id": "nope", "until": {"port": 3000}}), true),
        ("wait", json!({"id": "nope", "until": {}}), false),
        (
            "wait",
            json!({"id": "nope", "until": {"port": 70000}}),
            false,
        ),
        ("wait", json!({"ids": ["nope", "nope2"]}), true),
        ("wait", json!({"ids": ["nope"], "mode": "any"}), true),
        ("wait", json!({"ids": ["nope"], "mode": "some"}), false),
        ("wait", json!({"ids": []}), false),
        ("wait", json!({"id": "nope", "ids": ["nope"]}), false),
        ("wait", json!({"id": "nope", "mode": "any"}), false),
        (
            "wait",
            json!({"ids": ["nope"], "until": {"port": 3000}}),
            false,
        ),
        ("wait", json!({"ids": ["nope"], "until": "exit"}), true),
        ("wait", json!({}), false),
        // stop: signal by name (any case, SIG optional) or number; grace in range.
        ("stop", json!({"id": "nope"}), true),
        ("stop", json!({"id": "nope", "signal": "SIGINT"}), true),
        ("stop", json!({"id": "nope", "signal": "int"}), true),
        ("stop", json!({"id": "nope", "signal": "Hup"}), true),
        ("stop", json!({"id": "nope", "signal": 9}), true),
        ("stop", json!({"id": "nope", "signal": "SIGNOPE"}), false),
        ("stop", json!({"id": "nope", "signal": 0}), false),
        ("stop", json!({"id": "nope", "signal": 99}), false),
        ("stop", json!({"id": "nope", "grace_s": 2.5}), true),
        ("stop", json!({"id": "nope", "grace_s": -0.1}), false),
        ("stop", json!([{"id": "nope"}, {"id": "nope2"}]), true),
        ("stop", json!([{"id": "nope"}, {"di": "nope2"}]), false),
        // restart
        ("restart", json!({"id": "nope"}), true),
        ("restart", json!({"id": "nope", "env": {"K": "v"}}), true),
        ("restart", json!({"id": "nope", "env": {"K=": "v"}}), false),
        ("restart", json!({"id": "nope", "command": "x"}), false),
        // logs: a cursor is <run>:<offset>.
        ("logs", json!({"id": "nope", "lines": 5}), true),
        ("logs", json!({"id": "nope", "lines": -5}), false),
        ("logs", json!({"id": "nope", "after": "1:0"}), true),
        ("logs", json!({"id": "nope", "after": "1-0"}), false),
        ("logs", json!({"id": "nope", "after": ":5"}), false),
        ("logs", json!({"id": "nope", "grep": "err"}), true),
        ("logs", json!({"lines": 5}), false),
        // events: after and lines need an id.
        ("events", json!({}), true),
        ("events", json!({"id": "nope", "after": 12}), true),
        ("events", json!({"id": "nope", "after": "1:20"}), true),
        ("events", json!({"id": "nope", "after": "soon"}), false),
        ("events", json!({"after": 12}), false),
        ("events", json!({"lines": 3}), false),
        ("events", json!({"id": "nope", "lines": 3}), true),
        // rm and prune.
        ("rm", json!({"id": "nope"}), true),
        ("rm", json!({"id": "nope", "force": true}), true),
        ("rm", json!({"id": "nope", "force": "yes"}), false),
        ("rm", json!([{"id": "nope"}]), true),
        ("prune", json!({}), true),
        (
            "prune",
            json!({"older_than_s": 60, "keep_last": 3, "status": "exited"}),
            true,
        ),
        ("prune", json!({"older_than_s": -1}), false),
        ("prune", json!({"keep_last": -1}), false),
        ("prune", json!({"status": "finished"}), false),
    ];
    let mut wrong = Vec::new();
    for (command, payload, expected) in &cases {
        let by_schema = schemas.accepts(command, "input", payload);
        let by_parser = parser_accepts(&sandbox, command, payload);
        if by_schema != *expected || by_parser != *expected {
            wrong.push(format!(
                "{command} {payload}: expected {expected}, schema says {by_schema}, parser says {by_parser}"
            ));
        }
    }
    assert!(wrong.is_empty(), "disagreements:\n{}", wrong.join("\n"));
}

/// Every file under examples/ is served by `examples`, fits its command's payload schema,
/// and every example `examples list` names is a file.
#[test]
fn examples_are_the_files_and_fit_their_schemas() {
    let sandbox = Sandbox::new();
    let schemas = Schemas::load(&sandbox);
    let listed = schemas.answer("examples list", sandbox.run(&["examples", "list"]).data());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in fs::read_dir(root.join("examples")).expect("examples/") {
        let dir = dir.expect("entry").path();
        for file in fs::read_dir(&dir).expect("a command's examples") {
            let file = file.expect("entry").path();
            files.push(
                file.strip_prefix(root)
                    .expect("under the root")
                    .display()
                    .to_string(),
            );
        }
    }
    files.sort();
    let mut served: Vec<String> = listed["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .map(|e| e["file"].as_str().expect("file").to_owned())
        .collect();
    served.sort();
    assert_eq!(files, served, "examples/ and `examples list` differ");

    let mut per_command: BTreeMap<String, usize> = BTreeMap::new();
    for command in [
        "start", "status", "list", "wait", "stop", "restart", "logs", "events", "rm", "prune",
    ] {
        let shown = schemas.answer(
            "examples show",
            sandbox.run(&["examples", "show", command]).data(),
        );
        for example in shown["examples"].as_array().expect("examples") {
            let file = root.join(example["file"].as_str().expect("file"));
            let text = fs::read_to_string(&file).expect("the example's file");
            let payload: Value = serde_json::from_str(&text).expect("an example is JSON");
            assert_eq!(example["payload"], payload, "{}", file.display());
            schemas.check(command, "input", &payload);
            assert!(
                example["run"]
                    .as_str()
                    .expect("run")
                    .starts_with(&format!("background-tasks {command} ")),
                "{example}"
            );
            *per_command.entry(command.to_owned()).or_default() += 1;
        }
    }
    for (command, count) in &per_command {
        let needed = if command == "status" { 1 } else { 2 };
        assert!(*count >= needed, "{command} has {count} examples");
    }
    assert!(per_command["start"] >= 4);
}

/// The `start` examples run for real, with their flags: the dev server answers ready and is
/// reused on a second start; the batch ends with every item exited 0.
#[test]
fn start_examples_run_for_real() {
    let sandbox = Sandbox::new();
    let schemas = Schemas::load(&sandbox);
    let shown = sandbox.run(&["examples", "show", "start"]).data();
    for example in shown["examples"].as_array().expect("examples") {
        let name = example["name"].as_str().expect("name");
        let mut args: Vec<&str> = vec!["start"];
        args.extend(
            example["flags"]
                .as_array()
                .expect("flags")
                .iter()
                .map(|f| f.as_str().expect("flag")),
        );
        let data = schemas.answer("start", sandbox.ok(&args, &example["payload"]));
        match name {
            "dev-server" => {
                assert_eq!(data["task"]["ready"], true, "{data}");
                assert_eq!(data["task"]["status"], "running", "{data}");
                let again = schemas.answer("start", sandbox.ok(&args, &example["payload"]));
                assert_eq!(again["reused"], true, "{again}");
                assert_eq!(again["task"]["pid"], data["task"]["pid"]);
            }
            "batch" => {
                assert_eq!(data["outcome"], "succeeded", "{data}");
                for result in data["results"].as_array().expect("results") {
                    assert_eq!(result["data"]["task"]["exit_code"], 0, "{result}");
                }
            }
            "wait-for-the-end" => {
                assert_eq!(data["task"]["status"], "exited", "{data}");
                assert_eq!(data["task"]["progress"]["current"], 2.0, "{data}");
            }
            "steps" => {
                assert_eq!(data["task"]["status"], "exited", "{data}");
                let steps = data["task"]["steps"].as_array().expect("steps");
                assert!(steps.len() >= 3, "{data}");
            }
            "command-and-args" | "timeout" => {
                let id = data["task"]["id"].as_str().expect("id");
                assert!(data["task"]["pid"].as_i64().is_some(), "{data}");
                assert_eq!(
                    data["task"]["timeout_s"].as_f64(),
                    example["payload"]["timeout_s"].as_f64()
                );
                sandbox.stop(id);
            }
            "restart-on-failure" => {
                let task = &data["task"];
                assert_eq!(task["status"], "failed", "{data}");
                assert_eq!(task["reason"], "restart_limit", "{data}");
                assert_eq!(task["run"], 3, "{data}");
                assert_eq!(task["restarts"], 2, "{data}");
                let events = sandbox.ok(&["events"], &json!({"id": "flaky"}));
                let frame = &events["frames"][0];
                assert_eq!(frame["type"], "task.restarting", "{events}");
                schemas.check("frame", "frame", frame);
                schemas.answer("events", events.clone());
            }
            other => panic!("the start example {other} is not exercised here"),
        }
    }
    sandbox.stop("web");
}

/// Real answers of every command fit their answer schemas; stream frames fit the frame
/// schema; error objects fit the error schema.
#[test]
fn every_answer_fits_its_schema() {
    let sandbox = Sandbox::new();
    let s = Schemas::load(&sandbox);

    // start: one, with --wait, a batch with --concurrency.
    let web = json!({"id": "web", "shell": "echo listening; echo 'Progress: 40%'; exec sleep 1000",
                     "ready": {"log": "listening"}, "tags": ["dev"], "env": {"K": "v"}});
    s.answer("start", sandbox.ok(&["start", "--wait"], &web));
    let many: Vec<Value> = (0..120).map(|i| json!(format!("line {i}"))).collect();
    let printer = json!({"id": "printer", "command": "printf", "args": ["%s\\n"]});
    let mut printer_args = printer.clone();
    printer_args["args"]
        .as_array_mut()
        .expect("args")
        .extend(many);
    s.answer("start", sandbox.ok(&["start", "--wait"], &printer_args));
    s.answer(
        "start",
        sandbox.ok(
            &["start", "--concurrency", "1", "--wait"],
            &json!([{"id": "b1", "command": "true"}, {"id": "b2", "command": "false"}]),
        ),
    );
    // A batch with a failed item: exit 1, the answer still on stdout.
    let partial = sandbox.call(
        &["start"],
        &json!([{"id": "b3", "command": "true"}, {"id": "web", "command": "true"}]),
    );
    assert_eq!(partial.code, Some(1));
    let partial = partial.stdout_envelope();
    let partial = s.answer("start", partial["data"].clone());
    assert_eq!(partial["outcome"], "partial_failure");
    sandbox.wait("b3");

    // Readers.
    s.answer("status", sandbox.ok(&["status"], &json!({"id": "web"})));
    s.answer("list", sandbox.ok(&["list"], &json!({})));
    s.answer(
        "list",
        sandbox.ok(&["list"], &json!({"fields": ["id", "status"]})),
    );
    s.answer("wait", sandbox.ok(&["wait"], &json!({"id": "printer"})));
    s.answer(
        "wait",
        sandbox.ok(
            &["wait"],
            &json!({"id": "web", "until": {"log": "listening"}}),
        ),
    );
    let inline = s.answer(
        "logs",
        sandbox.ok(&["logs"], &json!({"id": "printer", "lines": 200})),
    );
    assert_eq!(inline["kind"], "inline");
    let artifact = s.answer(
        "logs",
        sandbox.ok(&["logs"], &json!({"id": "printer", "lines": 5})),
    );
    assert_eq!(artifact["kind"], "summary+artifact");
    s.answer(
        "logs",
        sandbox.ok(&["logs", "--output", "artifact"], &json!({"id": "printer"})),
    );
    let cursor = inline["next_cursor"].as_str().expect("cursor").to_owned();
    s.answer(
        "logs",
        sandbox.ok(&["logs"], &json!({"id": "printer", "after": cursor})),
    );
    let events = s.answer("events", sandbox.ok(&["events"], &json!({"id": "printer"})));
    for frame in events["frames"].as_array().expect("frames") {
        s.check("frame", "frame", frame);
    }
    s.answer("events", sandbox.ok(&["events"], &json!({})));
    s.answer(
        "events",
        sandbox.ok(&["events"], &json!({"id": "web", "after": 1})),
    );

    // Streams: every frame of a follow.
    for args in [["logs", "--stream"], ["events", "--stream"]] {
        let outcome = sandbox.call(&args, &json!({"id": "printer"}));
        assert_eq!(outcome.code, Some(0), "{outcome:#?}");
        let mut frames = 0;
        for line in outcome.stdout.lines() {
            let frame: Value = serde_json::from_str(line).expect("a frame is JSON");
            s.check("frame", "frame", &frame);
            frames += 1;
        }
        assert!(frames >= 100, "{args:?} printed {frames} frames");
    }

    // Changes.
    s.answer(
        "restart",
        sandbox.ok(&["restart"], &json!({"id": "web", "env": {"K": "v"}})),
    );
    wait_until("web runs again", DEADLINE, || {
        sandbox.status("web")["status"] == "running"
    });
    s.answer("restart", sandbox.ok(&["restart"], &json!([{"id": "b1"}])));
    sandbox.wait("b1");
    s.answer(
        "stop",
        sandbox.ok(&["stop"], &json!({"id": "web", "grace_s": 1})),
    );
    s.answer(
        "stop",
        sandbox.ok(&["stop"], &json!([{"id": "web"}, {"id": "printer"}])),
    );
    s.answer("rm", sandbox.ok(&["rm"], &json!({"id": "b2"})));
    s.answer("rm", sandbox.ok(&["rm"], &json!([{"id": "b3"}])));
    s.answer("prune", sandbox.ok(&["prune"], &json!({"keep_last": 1})));

    // The browser view's envelope (it goes on serving; the guard ends it).
    #[cfg(feature = "serve")]
    {
        let server = crate::serve::Server::start(&sandbox, &[]);
        s.answer("serve", server.envelope["data"].clone());
    }

    // Discovery.
    s.answer("doctor", sandbox.run(&["doctor"]).data());
    s.answer("capabilities", sandbox.run(&["capabilities"]).data());
    s.answer("schema list", sandbox.run(&["schema", "list"]).data());
    s.answer(
        "schema show",
        sandbox.run(&["schema", "show", "start"]).data(),
    );
    s.answer("examples list", sandbox.run(&["examples", "list"]).data());
    s.answer(
        "examples show",
        sandbox.run(&["examples", "show", "logs"]).data(),
    );

    // Errors, of several types.
    let errors = [
        sandbox.fail(&["status"], &json!({"id": "ghost"})),
        sandbox.fail(&["status"], &json!({"bogus": 1})),
        sandbox.fail(
            &["start"],
            &json!({"id": "x", "command": "/nonexistent/program"}),
        ),
        sandbox.run(&["nonsense"]).error(),
    ];
    let mut types: Vec<&str> = errors
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    for error in &errors {
        s.check("error", "error", error);
    }
    types.sort();
    types.dedup();
    assert!(types.len() >= 3, "{types:?}");
    // A failed batch item's error fits too (checked inside the start answer above).
    assert!(
        partial["results"][1]["error"]["type"] == "TaskAlreadyRunning",
        "{partial}"
    );
}
