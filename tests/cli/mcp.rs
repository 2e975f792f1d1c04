//! `background-tasks mcp` driven by a real MCP client: rmcp's own, over its child-process
//! transport, in both protocol eras (the `initialize` handshake, and the stateless
//! 2026-07-28 in which every request carries its `_meta`); and by raw pipes for the rules
//! of its lifetime (EOF, a dead parent). What the server answers is checked against what the
//! CLI says about the same state directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest,
    ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, PeerRequestOptions, RunningService,
};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::support::{BIN, DEADLINE, Sandbox, note, stat, wait_until};

/// The protocol eras a client may speak.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Era {
    /// `initialize` first (rmcp's client asks for 2025-11-25).
    Handshake,
    /// 2026-07-28: no `initialize`; `_meta` on every request.
    Stateless,
}

/// Records the progress notifications the server sends.
#[derive(Debug, Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl Recorder {
    fn progress(&self) -> Vec<ProgressNotificationParam> {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(params);
    }
}

type Client = RunningService<RoleClient, Recorder>;

/// `background-tasks mcp` in the sandbox, with rmcp's client speaking `era`.
async fn connect(sandbox: &Sandbox, era: Era) -> (Client, Recorder) {
    let mut command = sandbox.sealed(BIN);
    command.arg("mcp");
    let recorder = Recorder::default();
    let (transport, _stderr) = TokioChildProcess::builder(tokio::process::Command::from(command))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn background-tasks mcp");
    let client = match era {
        Era::Handshake => recorder.clone().serve(transport).await,
        Era::Stateless => {
            let mode = ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            };
            recorder.clone().serve_with_lifecycle(transport, mode).await
        }
    }
    .expect("the server answers the client");
    (client, recorder)
}

fn params(name: &str, arguments: Value) -> CallToolRequestParams {
    let Value::Object(arguments) = arguments else {
        panic!("arguments are an object")
    };
    CallToolRequestParams::new(name.to_owned()).with_arguments(arguments)
}

/// A tool call's result, after checking its text is the compact JSON of `structuredContent`.
async fn call(client: &Client, name: &str, arguments: Value) -> CallToolResult {
    let result = client
        .call_tool(params(name, arguments.clone()))
        .await
        .unwrap_or_else(|e| panic!("tools/call {name} {arguments}: {e}"));
    let structured = result
        .structured_content
        .as_ref()
        .expect("structuredContent");
    let text = &result.content[0].as_text().expect("text content").text;
    assert_eq!(
        text,
        &structured.to_string(),
        "the text is the compact JSON"
    );
    result
}

/// A successful call's `structuredContent`.
async fn ok(client: &Client, name: &str, arguments: Value) -> Value {
    let result = call(client, name, arguments.clone()).await;
    assert_eq!(
        result.is_error,
        Some(false),
        "{name} {arguments}: {result:?}"
    );
    result.structured_content.unwrap_or_default()
}

/// A failed call's error object (`isError: true`), checked as every error object is.
async fn fail(client: &Client, name: &str, arguments: Value) -> Value {
    let result = call(client, name, arguments.clone()).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{name} {arguments}: {result:?}"
    );
    let error = result.structured_content.unwrap_or_default();
    crate::support::check_error(&error, &error.to_string());
    error
}

#[tokio::test]
async fn mcp_lists_every_tool_with_its_schemas_and_annotations() {
    let sandbox = Sandbox::new();
    let (client, _) = connect(&sandbox, Era::Handshake).await;
    let info = client.peer_info().expect("the server's initialize answer");
    assert!(
        info.capabilities.tools.is_some(),
        "the tools capability is on"
    );
    let server = info.server_info.as_ref().expect("server info");
    assert_eq!(server.name, "background-tasks");
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        [
            "start", "status", "list", "wait", "stop", "restart", "logs", "events", "rm", "prune"
        ]
    );
    // capabilities lists the same tools with the same annotations.
    let listed = sandbox.run(&["capabilities"]).data();
    let listed = listed["mcp_tools"].as_array().expect("mcp_tools");
    assert_eq!(listed.len(), tools.len());
    for (tool, info) in tools.iter().zip(listed) {
        let name = tool.name.as_ref();
        assert_eq!(info["name"], name);
        let a = tool.annotations.as_ref().expect("annotations");
        let (read_only, destructive) = match name {
            "status" | "list" | "wait" | "logs" | "events" => (true, false),
            "stop" | "rm" | "prune" => (false, true),
            _ => (false, false),
        };
        assert_eq!(a.read_only_hint, Some(read_only), "{name}");
        assert_eq!(a.destructive_hint, Some(destructive), "{name}");
        assert_eq!(
            a.idempotent_hint,
            Some(!matches!(name, "start" | "restart")),
            "{name}"
        );
        assert_eq!(info["read_only"], read_only, "{name}");
        assert_eq!(info["destructive"], destructive, "{name}");
        let input = Value::Object(tool.input_schema.as_ref().clone());
        assert_eq!(input["type"], "object", "{name}");
        for combinator in ["anyOf", "oneOf", "allOf", "$defs"] {
            assert!(
                input.get(combinator).is_none(),
                "{name}: {combinator} at the root"
            );
        }
        assert!(!input.to_string().contains("$ref"), "{name}");
        let output = Value::Object(
            tool.output_schema
                .as_ref()
                .expect("an output schema")
                .as_ref()
                .clone(),
        );
        assert_eq!(output["type"], "object", "{name}");
        // Every field of the CLI's payload is an argument.
        let payload = sandbox.run(&["schema", "show", name]).data();
        let payload = payload["schemas"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["kind"] == "input"))
            .map(|s| s["schema"].clone())
            .expect("an input schema");
        // A command that takes a batch: one item, or an array of them.
        let payload = match payload["anyOf"][1]["type"].as_str() {
            Some("array") => {
                let reference = payload["anyOf"][0]["$ref"].as_str().expect("a reference");
                let item = reference.rsplit('/').next().expect("a name");
                payload["$defs"][item].clone()
            }
            _ => payload,
        };
        for field in payload["properties"]
            .as_object()
            .expect("properties")
            .keys()
        {
            assert!(
                input["properties"].get(field).is_some(),
                "{name}: {field} is missing"
            );
        }
        // The bound of a blocking call: default 25 s, at most 50 s.
        let bound = match name {
            "start" | "restart" => Some("wait_timeout_s"),
            "wait" | "stop" | "logs" | "events" => Some("timeout_s"),
            _ => None,
        };
        if let Some(bound) = bound {
            assert_eq!(info["bound"], bound, "{name}");
            assert_eq!(input["properties"][bound]["maximum"], 50.0, "{name}");
            assert_eq!(input["properties"][bound]["default"], 25.0, "{name}");
        }
    }
    let start = tools.iter().find(|t| t.name == "start").expect("start");
    assert_eq!(start.input_schema["properties"]["items"]["type"], "array");
    assert_eq!(
        start.input_schema["properties"]["timeout_s"]["exclusiveMinimum"], 0,
        "the task's own timeout"
    );
    client.cancel().await.expect("close");
}

async fn a_whole_conversation(era: Era) {
    let sandbox = Sandbox::new();
    let (client, _) = connect(&sandbox, era).await;
    let info = client.peer_info().expect("server info");
    let version = match era {
        Era::Handshake => "2025-11-25",
        Era::Stateless => "2026-07-28",
    };
    assert_eq!(info.protocol_version.as_str(), version);

    // A server task with a ready condition: start answers once it is ready.
    let id = "web";
    let started = ok(
        &client,
        "start",
        json!({
            "id": id,
            "shell": "echo booting; echo listening; sleep 1; echo later; exec sleep 30",
            "ready": {"log": "^listening$"},
            "wait": true,
            "wait_timeout_s": 20
        }),
    )
    .await;
    assert_eq!(started["task"]["status"], "running", "{started}");
    assert_eq!(started["task"]["ready"], true, "{started}");
    let cli = sandbox.status(id);
    assert_eq!(cli["pid"], started["task"]["pid"]);
    assert_eq!(cli["ready"], true);

    let status = ok(&client, "status", json!({"id": id})).await;
    assert_eq!(status["status"], "running");
    assert_eq!(status["task"]["pid"], cli["pid"]);

    // Logs with a cursor: only what came after it, waited for with follow.
    let logs = ok(&client, "logs", json!({"id": id})).await;
    let lines = logs["lines"].as_array().expect("lines");
    assert!(
        lines.starts_with(&[json!("booting"), json!("listening")]),
        "{logs}"
    );
    if lines.len() == 2 {
        let cursor = logs["next_cursor"].as_str().expect("a cursor").to_owned();
        let more = ok(
            &client,
            "logs",
            json!({"id": id, "after": cursor, "follow": true, "timeout_s": 20}),
        )
        .await;
        assert_eq!(more["lines"], json!(["later"]), "{more}");
    }
    let cli_logs = sandbox.ok(&["logs"], &json!({"id": id}));
    assert_eq!(cli_logs["lines"], json!(["booting", "listening", "later"]));

    let listed = ok(&client, "list", json!({"fields": ["id", "status"]})).await;
    assert_eq!(listed["tasks"], json!([{"id": id, "status": "running"}]));

    let stopped = ok(&client, "stop", json!({"id": id})).await;
    assert_eq!(stopped["status"], "killed", "{stopped}");
    assert_eq!(sandbox.status(id)["status"], "killed");
    let again = ok(&client, "stop", json!({"id": id})).await;
    assert_eq!(again["already_terminal"], true);

    // Errors are results with isError and the CLI's error object, never protocol errors.
    let error = fail(&client, "status", json!({"id": "no-such-task"})).await;
    assert_eq!(
        error,
        sandbox.fail(&["status"], &json!({"id": "no-such-task"}))
    );
    let error = fail(&client, "status", json!({"id": id, "bogus": 1})).await;
    assert_eq!(error["type"], "CommandInputError");
    assert_eq!(error["details"]["path"], "bogus");
    let error = fail(&client, "wait", json!({"id": id, "timeout_s": 51})).await;
    assert_eq!(error["details"]["path"], "timeout_s");
    let error = fail(
        &client,
        "start",
        json!({"items": [{"shell": "true"}, {"shell": 5}]}),
    )
    .await;
    assert_eq!(error["details"]["path"], "items[1].shell", "{error}");

    let removed = ok(&client, "rm", json!({"id": id})).await;
    assert_eq!(removed["removed"], true);
    crate::support::assert_not_found(&sandbox, id);
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn mcp_a_whole_conversation_in_the_handshake_era() {
    a_whole_conversation(Era::Handshake).await;
}

#[tokio::test]
async fn mcp_a_whole_conversation_in_the_stateless_era() {
    a_whole_conversation(Era::Stateless).await;
}

#[tokio::test]
async fn mcp_a_wait_that_runs_out_answers_the_status_and_a_cursor_to_call_again() {
    let sandbox = Sandbox::new();
    let (client, _) = connect(&sandbox, Era::Handshake).await;
    ok(
        &client,
        "start",
        json!({"id": "slow", "shell": "echo one; exec sleep 30"}),
    )
    .await;
    wait_until("the task printed its line", DEADLINE, || {
        sandbox.log("slow") == "one\n"
    });
    let began = Instant::now();
    let error = fail(&client, "wait", json!({"id": "slow", "timeout_s": 0.5})).await;
    assert!(began.elapsed() < DEADLINE, "the bound held");
    assert_eq!(error["type"], "TaskWaitTimedOut", "{error}");
    assert_eq!(error["details"]["retryable"], true);
    assert_eq!(error["details"]["status"], "running");
    assert_eq!(error["details"]["status"], sandbox.status("slow")["status"]);
    let cursor = sandbox.ok(
        &["logs", "--output", "inline"],
        &json!({"id": "slow", "lines": 0}),
    )["next_cursor"]
        .clone();
    assert_eq!(error["details"]["cursor"], cursor, "{error}");
    assert!(
        error["details"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("wait")),
        "{error}"
    );
    // A follow of the log runs out the same way, where it got to.
    let error = fail(
        &client,
        "logs",
        json!({"id": "slow", "after": cursor, "follow": true, "timeout_s": 0.3}),
    )
    .await;
    assert_eq!(error["type"], "TaskWaitTimedOut", "{error}");
    assert_eq!(error["details"]["cursor"], cursor);
    // The task runs on.
    assert_eq!(sandbox.status("slow")["status"], "running");
    client.cancel().await.expect("close");
}

async fn progress_during_a_long_wait(era: Era) {
    let sandbox = Sandbox::new();
    let (client, recorder) = connect(&sandbox, era).await;
    let id = "steps";
    ok(
        &client,
        "start",
        json!({"id": id, "shell": "echo 'step 1/4'; sleep 2; echo 'step 2/4'; sleep 3; echo 'step 4/4'"}),
    )
    .await;
    // rmcp's client puts a progress token on every request.
    let waited = ok(&client, "wait", json!({"id": id, "timeout_s": 30})).await;
    assert_eq!(waited["status"], "exited", "{waited}");
    let seen = recorder.progress();
    assert!(seen.len() >= 2, "progress notifications: {seen:?}");
    assert!(
        seen.windows(2)
            .all(|pair| pair[1].progress > pair[0].progress),
        "the progress only grows: {seen:?}"
    );
    assert!(seen.iter().all(|p| p.total == Some(30.0)), "{seen:?}");
    let messages: Vec<&str> = seen.iter().filter_map(|p| p.message.as_deref()).collect();
    assert!(
        messages.iter().all(|m| m.starts_with("steps running")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains('%')),
        "the task's own progress is in the message: {messages:?}"
    );
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn mcp_progress_notifications_during_a_long_wait_in_the_handshake_era() {
    progress_during_a_long_wait(Era::Handshake).await;
}

#[tokio::test]
async fn mcp_progress_notifications_during_a_long_wait_in_the_stateless_era() {
    progress_during_a_long_wait(Era::Stateless).await;
}

#[tokio::test]
async fn mcp_cancelling_a_wait_ends_the_waiting_not_the_task() {
    let sandbox = Sandbox::new();
    let (client, recorder) = connect(&sandbox, Era::Handshake).await;
    ok(
        &client,
        "start",
        json!({"id": "c", "command": "sleep", "args": ["60"]}),
    )
    .await;
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params(
        "wait",
        json!({"id": "c", "timeout_s": 40}),
    )));
    let handle = client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .expect("send the wait");
    // Cancelled once the wait is under way: after its first progress notification.
    let deadline = Instant::now() + DEADLINE;
    while recorder.progress().is_empty() {
        assert!(Instant::now() < deadline, "no progress notification");
        tokio::time::sleep(Duration::from_millis(20)).await; // polled against the deadline
    }
    handle
        .cancel(Some("the test".into()))
        .await
        .expect("cancel");
    // The server goes on answering, and the task was not touched.
    let status = ok(&client, "status", json!({"id": "c"})).await;
    assert_eq!(status["status"], "running");
    assert_eq!(sandbox.status("c")["status"], "running");
    client.cancel().await.expect("close");
}

// The lifetime rules, with raw pipes.

fn line(value: Value) -> String {
    let mut text = value.to_string();
    text.push('\n');
    text
}

fn initialize() -> String {
    line(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}}),
    ) + &line(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
}

fn tool_call(id: u64, name: &str, arguments: Value) -> String {
    line(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": {"progressToken": id}}}))
}

/// The server's stdout, read on a thread of its own so that every read has a deadline.
struct Messages(mpsc::Receiver<Value>);

impl Messages {
    fn new(stdout: impl Read + Send + 'static) -> Messages {
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for text in BufReader::new(stdout).lines() {
                let Ok(text) = text else { return };
                let message = serde_json::from_str(&text)
                    .unwrap_or_else(|e| json!({"not JSON-RPC": text, "error": e.to_string()}));
                if sender.send(message).is_err() {
                    return;
                }
            }
        });
        Messages(receiver)
    }

    /// Messages until the one `until` accepts (each must be JSON-RPC); all of them.
    fn until(&self, what: &str, until: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .0
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no {what} ({e}) after {seen:?}"));
            assert_eq!(
                message["jsonrpc"], "2.0",
                "stdout carries JSON-RPC only: {message}"
            );
            let done = until(&message);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }

    /// Every message until stdout's EOF.
    fn rest(&self) -> Vec<Value> {
        self.0.iter().collect()
    }
}

/// Whether `pid` is gone (a zombie nobody reaped counts as gone).
fn gone(pid: i32) -> bool {
    stat(pid).is_none_or(|p| p.state == 'Z')
}

fn server(sandbox: &Sandbox) -> Child {
    let mut command = sandbox.sealed(BIN);
    command
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command.spawn().expect("spawn background-tasks mcp")
}

#[test]
fn mcp_exits_within_2s_of_stdin_eof_even_during_a_wait_and_its_tasks_run_on() {
    let sandbox = Sandbox::new();
    let mut child = KillOnDrop(server(&sandbox));
    let mut stdin = child.0.stdin.take().expect("stdin");
    let messages = Messages::new(child.0.stdout.take().expect("stdout"));
    let owner = child.0.id() as i32;
    // Calls run concurrently: each start is answered before the wait is sent.
    let mut send = |text: String| stdin.write_all(text.as_bytes()).expect("write a request");
    send(initialize());
    messages.until("initialize's answer", |m| m["id"] == 1);
    send(tool_call(
        2,
        "start",
        json!({"id": "free", "command": "sleep", "args": ["60"]}),
    ));
    send(tool_call(
        3,
        "start",
        json!({"id": "tied", "command": "sleep", "args": ["60"], "stop_with_pid": owner}),
    ));
    // The two answers come in either order: wait for the second, whichever it is.
    let first = messages.until("start's answers", |m| m["id"] == 2 || m["id"] == 3);
    let other = if first.last().is_some_and(|m| m["id"] == 2) {
        3
    } else {
        2
    };
    messages.until("start's answers", |m| m["id"] == other);
    send(tool_call(4, "wait", json!({"id": "free", "timeout_s": 40})));
    // Until the wait is under way: its first progress notification.
    messages.until("a progress notification", |m| {
        m["method"] == "notifications/progress"
    });
    let closed = Instant::now();
    drop(stdin);
    let code = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            closed.elapsed() < DEADLINE,
            "still running {DEADLINE:?} after stdin's EOF"
        );
        std::thread::sleep(Duration::from_millis(5)); // polled against the deadline
    };
    let took = closed.elapsed();
    note(&format!(
        "mcp exited {took:?} after stdin's EOF during a wait ({code})"
    ));
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(code.code(), Some(0));
    // The wait was answered before the exit (its waiting cancelled).
    let rest = messages.rest();
    assert!(rest.iter().any(|m| m["id"] == 4), "{rest:?}");
    // The task started through the server runs on; the one tied to it ends with it.
    assert_eq!(sandbox.status("free")["status"], "running");
    wait_until("the task tied to the server has ended", DEADLINE, || {
        sandbox.status("tied")["status"] != "running"
    });
    assert_eq!(sandbox.status("tied")["reason"], "owner_exited");
}

#[test]
fn mcp_exits_within_5s_of_its_parent_dying_while_its_stdin_stays_open() {
    let sandbox = Sandbox::new();
    // The parent: a shell that starts the server in the background (its stdin is the
    // test's pipe, handed over as fd 3: an async list's stdin would be /dev/null), says its
    // pid, then sleeps.
    let mut parent = sandbox.sealed("sh");
    parent
        .arg("-c")
        .arg(r#"exec 3<&0; "$0" mcp <&3 3<&- & echo $!; exec sleep 1000 3<&-"#)
        .arg(BIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut parent = KillOnDrop(parent.spawn().expect("spawn the parent"));
    let mut stdin = parent.0.stdin.take().expect("stdin");
    let mut out = BufReader::new(parent.0.stdout.take().expect("stdout"));
    let mut pid = String::new();
    out.read_line(&mut pid).expect("the server's pid");
    let out = out.into_inner();
    let server: i32 = pid.trim().parse().expect("a pid");
    // Once it serves: initialize answered.
    stdin
        .write_all(initialize().as_bytes())
        .expect("write initialize");
    let messages = Messages::new(out);
    messages.until("initialize's answer", |m| m["id"] == 1);
    drop(parent);
    let died = Instant::now();
    wait_until("the server has exited", DEADLINE, || gone(server));
    let took = died.elapsed();
    note(&format!("mcp exited {took:?} after its parent died"));
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(stdin);
}

/// The test's own child, killed when the test ends, passed or failed.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Our own unreaped child: its pid cannot have been reused.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
