//! `serve` over raw sockets: who may talk to it, the API's answers and the event streams.

use serde_json::{Value, json};

use super::{Feed, Server, request, wait_for_lines};
use crate::support::{DEADLINE, Sandbox, check_error, wait_until};

/// The follow threads of a `serve` (each stream has one, named `sse-...`).
fn stream_threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|threads| {
            threads
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.starts_with("sse-"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn serve_prints_the_envelope_with_the_urls_and_a_taken_port_is_port_in_use() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox, &[]);
    let envelope = &server.envelope;
    assert_eq!(envelope["ok"], true);
    assert_eq!(envelope["command"], "serve");
    let data = &envelope["data"];
    let base = format!("http://127.0.0.1:{}", server.port);
    assert!(
        data["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("{base}/?token="))),
        "{envelope}"
    );
    assert_eq!(server.token.len(), 64, "256 random bits, hex");
    assert_eq!(
        data["events_url"],
        format!("{base}/api/events?token={}", server.token)
    );
    assert_eq!(data["pid"], server.pid());
    assert_eq!(data["opened"], Value::Null, "no --open, no opener");
    // It listens on 127.0.0.1 only.
    let listening = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{:04X}", server.port);
    assert!(listening.contains(&local), "not on 127.0.0.1: {local}");

    // A second server on the same port: PortInUse, naming who holds it.
    let port = server.port.to_string();
    let error = sandbox.run(&["serve", "--port", &port]).error();
    assert_eq!(error["type"], "PortInUse", "{error}");
    assert_eq!(error["details"]["port"], server.port);
    assert_eq!(error["details"]["pid"], server.pid());
}

#[test]
fn without_the_token_nothing_is_answered() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "secret-task", "shell": "sleep 600"}));
    let server = Server::start(&sandbox, &[]);
    let wrong = format!("bt_session_{}={}", server.port, "0".repeat(64));
    let short = format!("bt_session_{}=abc", server.port);
    let other_port = format!("bt_session_1={}", server.token);
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/api/tasks"),
        ("GET", "/api/tasks/secret-task"),
        ("GET", "/api/events"),
        ("GET", "/api/tasks/secret-task/events"),
        ("POST", "/api/tasks/secret-task/stop"),
        ("GET", "/nonexistent"),
    ] {
        for cookie in [None, Some(&wrong), Some(&short), Some(&other_port)] {
            let headers: Vec<(&str, &str)> =
                cookie.map(|c| ("Cookie", c.as_str())).into_iter().collect();
            let response = request(server.port, method, path, &headers);
            assert_eq!(response.status, 401, "{method} {path} {cookie:?}");
            assert!(
                !response.body.contains("secret-task"),
                "{method} {path}: {}",
                response.body
            );
        }
        let wrong_token = format!("{path}?token={}", "f".repeat(64));
        let response = request(server.port, method, &wrong_token, &[]);
        assert_eq!(response.status, 401, "{method} {path} with a wrong token");
    }
    assert_eq!(sandbox.status("secret-task")["status"], "running");
}

#[test]
fn the_token_is_traded_for_a_strict_http_only_cookie() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox, &[]);
    let response = request(
        server.port,
        "GET",
        &format!("/?token={}", server.token),
        &[],
    );
    // Not a redirect: a page that moves on to "/" by itself, a same-origin navigation that
    // carries the Strict cookie even when the URL was clicked on another site.
    assert_eq!(response.status, 200);
    assert!(
        response.body.contains("location.replace(\"/\")"),
        "{}",
        response.body
    );
    assert!(
        !response.body.contains(&server.token),
        "the token is not echoed"
    );
    let csp = response.header("content-security-policy").expect("a CSP");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let cookie = response.header("set-cookie").expect("a cookie");
    assert!(cookie.starts_with(&server.cookie()), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            cookie.split("; ").any(|a| a == attribute),
            "{attribute} in {cookie}"
        );
    }
    // The cookie alone opens the page and the API, and so does a Bearer header (scripts).
    assert_eq!(server.get("/").status, 200);
    assert_eq!(server.get("/api/tasks").status, 200);
    let bearer = format!("Bearer {}", server.token);
    let response = request(
        server.port,
        "GET",
        "/api/tasks",
        &[("Authorization", &bearer)],
    );
    assert_eq!(response.status, 200);
}

#[test]
fn a_foreign_host_is_refused_even_with_the_cookie() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox, &[]);
    let cookie = server.cookie();
    let port = server.port;
    for host in [
        format!("evil.example:{port}"),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
        format!("localhost.evil.example:{port}"),
        String::new(),
    ] {
        let response = request(
            port,
            "GET",
            "/api/tasks",
            &[("Host", &host), ("Cookie", &cookie)],
        );
        assert_eq!(response.status, 403, "Host {host:?}");
        assert!(!response.body.contains("tasks"), "{}", response.body);
    }
    for host in [format!("localhost:{port}"), format!("LOCALHOST:{port}")] {
        let response = request(
            port,
            "GET",
            "/api/tasks",
            &[("Host", &host), ("Cookie", &cookie)],
        );
        assert_eq!(response.status, 200, "Host {host:?}");
    }
}

/// A POST needs this page's Origin; with it, a stop through the API ends the task as
/// `stop` does (killed by the stop, whole group gone, the same answer).
#[test]
fn a_post_needs_this_pages_origin_and_a_stop_ends_the_task_as_the_cli_does() {
    let sandbox = Sandbox::new();
    for id in ["a", "b", "c"] {
        sandbox.start(&json!({"id": id, "shell": "sleep 600"}));
    }
    let server = Server::start(&sandbox, &[]);
    let cookie = server.cookie();
    let port = server.port;
    for origin in [
        None,
        Some("null".to_owned()),
        Some("http://evil.example".to_owned()),
        Some(format!("http://127.0.0.1:{}", port.wrapping_add(1))),
        Some(format!("https://127.0.0.1:{port}")),
        // Not the Host this request named.
        Some(format!("http://localhost:{port}")),
    ] {
        let mut headers = vec![("Cookie", cookie.as_str())];
        if let Some(origin) = &origin {
            headers.push(("Origin", origin.as_str()));
        }
        let response = request(port, "POST", "/api/tasks/a/stop", &headers);
        assert_eq!(response.status, 403, "Origin {origin:?}");
    }
    assert_eq!(
        sandbox.status("a")["status"],
        "running",
        "a refused stop changed nothing"
    );

    // The page's own origin: the stop answers once the task has ended.
    let leader = sandbox.leader("a");
    let response = server.post("/api/tasks/a/stop");
    assert_eq!(response.status, 200, "{}", response.body);
    let stopped = response.json();
    assert_eq!(stopped["task_id"], "a");
    assert_eq!(stopped["status"], "killed");
    assert_eq!(stopped["already_terminal"], false);
    assert_eq!(stopped["task"]["reason"], "stop");
    assert_eq!(stopped["task"]["signal"], "SIGTERM");
    assert!(!leader.is_alive(), "the task's process is gone");
    let status = sandbox.status("a");
    assert_eq!(status["status"], "killed");
    assert_eq!(status["reason"], "stop");
    // The same keys as the CLI's answer to the same call.
    let cli = sandbox.stop("a");
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&cli), keys(&stopped));
    assert_eq!(keys(&cli["task"]), keys(&stopped["task"]));

    // Through localhost, its own origin is http://localhost:PORT.
    let host = format!("localhost:{port}");
    let own = format!("http://localhost:{port}");
    let response = request(
        port,
        "POST",
        "/api/tasks/b/stop",
        &[("Host", &host), ("Cookie", &cookie), ("Origin", &own)],
    );
    assert_eq!(response.status, 200, "{}", response.body);
    // A script with the Bearer token needs no Origin.
    let bearer = format!("Bearer {}", server.token);
    let response = request(
        port,
        "POST",
        "/api/tasks/c/restart",
        &[("Authorization", &bearer)],
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["task"]["run"], 2);
    assert_eq!(sandbox.status("c")["run"], 2);
    // A GET on a POST route is no way around it.
    assert_eq!(server.get("/api/tasks/c/stop").status, 405);
}

#[test]
fn answers_are_the_clis_data_and_errors_its_error_object() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "web", "shell": "sleep 600", "tags": ["dev"]}));
    let server = Server::start(&sandbox, &[]);
    let listed = server.get_json("/api/tasks");
    let cli = sandbox.run(&["list"]).data();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["tasks"][0]["id"], "web");
    assert_eq!(listed["tasks"][0]["tags"], json!(["dev"]));
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&listed), keys(&cli));
    let status = server.get_json("/api/tasks/web");
    assert_eq!(status["task_id"], "web");
    assert_eq!(status["status"], "running");
    assert!(status["task"]["ports"].is_array(), "status carries ports");

    for (path, code, kind) in [
        ("/api/tasks/nope", 404, "TaskNotFound"),
        ("/api/tasks/..%2Fetc/events", 400, "CommandInputError"),
        ("/api/tasks/-x", 400, "CommandInputError"),
        ("/api/nothing-here", 404, "CommandInputError"),
    ] {
        let response = server.get(path);
        assert_eq!(response.status, code, "{path}: {}", response.body);
        let body = response.json();
        assert_eq!(body["ok"], false, "{path}");
        assert_eq!(body["error"]["type"], kind, "{path}: {body}");
        check_error(&body["error"], path);
    }
    let response = server.post("/api/tasks/nope/stop");
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["error"]["details"]["id"], "nope");
}

#[test]
fn every_answer_carries_the_security_headers_and_the_page_a_strict_nonce_csp() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox, &[]);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    let csp = page
        .header("content-security-policy")
        .expect("a CSP")
        .to_owned();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a nonce")
        .to_owned();
    assert!(nonce.len() >= 22, "{nonce}");
    for part in [
        "default-src 'none'",
        &format!("script-src 'nonce-{nonce}'"),
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "connect-src 'self'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(csp.contains(part), "{part} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    // Every script and style tag carries this answer's nonce, and nothing else does.
    let tags = page.body.matches("<script").count() + page.body.matches("<style").count();
    assert!(tags >= 2, "the page has its script and style");
    assert_eq!(
        page.body.matches(&format!("nonce=\"{nonce}\"")).count(),
        tags
    );
    assert!(!page.body.contains("{{NONCE}}"));
    assert!(!page.body.contains("onclick="), "no inline handlers");
    // A fresh nonce per answer.
    let again = server.get("/");
    assert_ne!(again.header("content-security-policy"), Some(csp.as_str()));

    for response in [
        page,
        request(server.port, "GET", "/api/tasks", &[]),
        server.get("/api/tasks"),
        server.get("/api/tasks/nope"),
    ] {
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(response.header("cache-control"), Some("no-store"));
        assert_eq!(response.header("x-frame-options"), Some("DENY"));
        assert!(
            response
                .header("content-security-policy")
                .is_some_and(|c| c.contains("frame-ancestors 'none'")),
            "{response:?}"
        );
    }
}

#[test]
fn requests_from_other_sites_and_ports_are_refused_but_a_link_to_the_page_works() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox, &[]);
    let cookie = server.cookie();
    let own = server.origin();
    for (site, mode, method, path, want) in [
        ("same-origin", "cors", "GET", "/api/tasks", 200),
        ("none", "navigate", "GET", "/", 200),
        ("same-site", "cors", "GET", "/api/tasks", 403),
        ("same-site", "no-cors", "GET", "/api/events", 403),
        ("cross-site", "cors", "GET", "/api/tasks", 403),
        ("same-site", "no-cors", "POST", "/api/tasks/x/stop", 403),
        ("cross-site", "navigate", "GET", "/", 200),
        ("cross-site", "navigate", "GET", "/api/tasks", 403),
    ] {
        let response = request(
            server.port,
            method,
            path,
            &[
                ("Cookie", &cookie),
                ("Sec-Fetch-Site", site),
                ("Sec-Fetch-Mode", mode),
                ("Origin", &own),
            ],
        );
        assert_eq!(response.status, want, "{site} {mode} {method} {path}");
    }
}

/// Each event's `id` is its frame's sequence, its type the frame's type, its data the
/// frame as `events --stream` prints it; a reconnect with `Last-Event-ID` gets exactly
/// what came after, from disk, and then what happens live.
#[test]
fn task_events_carry_ids_and_a_reconnect_with_last_event_id_replays_only_what_came_after() {
    let sandbox = Sandbox::new();
    let mut feed = Feed::start(&sandbox, "web", &[]);
    for i in 1..=5 {
        feed.line(&format!("line {i}"));
    }
    wait_for_lines(&sandbox, "web", 5);
    let server = Server::start(&sandbox, &[]);
    let mut stream = server.stream("/api/tasks/web/events", &[]);
    assert_eq!(stream.status, 200);
    let content_type = stream
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone());
    assert!(
        content_type.is_some_and(|c| c.starts_with("text/event-stream")),
        "{:?}",
        stream.headers
    );
    let first = stream.next().expect("the retry hint");
    assert_eq!(first.retry.as_deref(), Some("2000"));
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let event = stream.next_event();
        let frame = event.json();
        assert_eq!(
            event.id.as_deref(),
            Some(frame["sequence"].to_string().as_str())
        );
        assert_eq!(event.event.as_deref(), frame["type"].as_str());
        seen.push(frame);
    }
    assert_eq!(seen[0]["type"], "task.status");
    assert_eq!(seen[3]["data"]["line"], "line 3");
    // The same frames `events` answers.
    let events = sandbox.ok(&["events"], &json!({"id": "web"}));
    assert_eq!(
        events["frames"]
            .as_array()
            .map(|f| f.iter().map(|f| f["sequence"].clone()).collect::<Vec<_>>()),
        Some(seen.iter().map(|f| f["sequence"].clone()).collect())
    );

    // A reconnect after the third frame gets exactly frames 4 to 6, then live ones.
    let after = seen[2]["sequence"].to_string();
    let mut again = server.stream(
        "/api/tasks/web/events?lines=1",
        &[("Last-Event-ID", &after)],
    );
    again.next().expect("the retry hint");
    for expected in &seen[3..6] {
        let frame = again.next_event().json();
        assert_eq!(frame["sequence"], expected["sequence"]);
        assert_eq!(frame["data"]["line"], expected["data"]["line"]);
    }
    feed.line("live one");
    for stream in [&mut stream, &mut again] {
        let frame = stream.next_event().json();
        assert_eq!(frame["data"]["line"], "live one", "{frame}");
    }
    // `?after=` does the same for a first connect.
    let mut first_connect = server.stream(&format!("/api/tasks/web/events?after={after}"), &[]);
    first_connect.next().expect("the retry hint");
    assert_eq!(first_connect.next_event().json()["data"]["line"], "line 3");
}

#[test]
fn a_quiet_stream_gets_keep_alive_comments() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "quiet", "shell": "sleep 600"}));
    // Shortened from 15 s for the test.
    let server = Server::start(&sandbox, &["--keep-alive", "0.2"]);
    let mut stream = server.stream("/api/tasks/quiet/events", &[]);
    stream.next().expect("the retry hint");
    assert_eq!(
        stream.next().expect("task.status").event.as_deref(),
        Some("task.status")
    );
    let event = stream.next().expect("a keep-alive");
    assert_eq!(event.comments, ["keep-alive"], "{event:?}");
    assert!(event.id.is_none() && event.data.is_empty(), "{event:?}");
}

#[test]
fn a_stream_ends_with_its_run_and_a_reconnect_after_the_end_gets_204() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "short", "shell": "echo bye"}));
    wait_until("short has ended", DEADLINE, || {
        sandbox.status("short")["status"] == "exited"
    });
    let server = Server::start(&sandbox, &[]);
    let mut stream = server.stream("/api/tasks/short/events", &[]);
    let mut last = None;
    while let Some(event) = stream.next() {
        if event.id.is_some() {
            last = Some(event);
        }
    }
    assert!(stream.clean_end, "the body ended, not cut off");
    let last = last.expect("frames");
    assert_eq!(last.event.as_deref(), Some("task.ended"));
    // EventSource reconnects after any ended answer; 204 is what stops it.
    let id = last.id.expect("an id");
    let response = request(
        server.port,
        "GET",
        "/api/tasks/short/events",
        &[("Cookie", &server.cookie()), ("Last-Event-ID", &id)],
    );
    assert_eq!(response.status, 204);
    // An earlier id still replays what came after it.
    let earlier = (id.parse::<u64>().expect("a number") - 1).to_string();
    let mut replay = server.stream("/api/tasks/short/events", &[("Last-Event-ID", &earlier)]);
    replay.next().expect("the retry hint");
    assert_eq!(replay.next_event().event.as_deref(), Some("task.ended"));
}

/// `/api/events`: a snapshot first (on every connect), then each change with the whole
/// task, and removals.
#[test]
fn the_list_stream_starts_with_a_snapshot_then_changes_and_removals() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "one", "shell": "sleep 600"}));
    let server = Server::start(&sandbox, &[]);
    let mut stream = super::SseReader::open(
        server.port,
        &format!("/api/events?token={}", server.token),
        &[],
    );
    stream.next().expect("the retry hint");
    let snapshot = stream.next_event();
    assert_eq!(snapshot.event.as_deref(), Some("tasks.snapshot"));
    assert!(snapshot.id.is_none(), "no ids on the list stream");
    let tasks = snapshot.json()["data"]["tasks"].clone();
    assert_eq!(tasks[0]["id"], "one");
    assert_eq!(tasks[0]["status"], "running");

    sandbox.start(&json!({"id": "two", "shell": "sleep 600", "tags": ["x"]}));
    let event = stream.next_event();
    assert_eq!(event.event.as_deref(), Some("task.status"));
    let frame = event.json();
    assert_eq!(frame["task_id"], "two");
    assert_eq!(frame["data"]["tags"], json!(["x"]), "the whole task");

    sandbox.stop("one");
    let frame = loop {
        let frame = stream.next_event().json();
        if frame["task_id"] == "one" && frame["data"]["status"] == "killed" {
            break frame;
        }
    };
    assert_eq!(frame["data"]["reason"], "stop");
    sandbox.ok(&["rm"], &json!({"id": "one"}));
    loop {
        let event = stream.next_event();
        if event.event.as_deref() == Some("task.removed") {
            assert_eq!(event.json()["task_id"], "one");
            break;
        }
    }
}

#[test]
fn the_page_asks_for_batches_whose_id_is_their_last_sequence() {
    let sandbox = Sandbox::new();
    let mut feed = Feed::start(&sandbox, "b", &[]);
    for i in 0..3 {
        feed.line(&i.to_string());
    }
    wait_for_lines(&sandbox, "b", 3);
    let server = Server::start(&sandbox, &[]);
    let mut stream = server.stream("/api/tasks/b/events?batch=1", &[]);
    stream.next().expect("the retry hint");
    let event = stream.next_event();
    assert_eq!(event.event.as_deref(), Some("frames"));
    let frames = event.json();
    let frames = frames.as_array().expect("a list of frames");
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_eq!(
        event.id.as_deref(),
        Some(frames[3]["sequence"].to_string().as_str())
    );
    feed.line("3");
    let frames = stream.next_event().json();
    assert_eq!(frames.as_array().map(Vec::len), Some(1), "{frames}");
    assert_eq!(frames[0]["data"]["line"], "3");
}

#[test]
fn a_client_that_leaves_ends_its_follow_thread() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "idle", "shell": "sleep 600"}));
    let server = Server::start(&sandbox, &[]);
    let mut streams: Vec<_> = (0..3)
        .map(|_| server.stream("/api/tasks/idle/events", &[]))
        .collect();
    for stream in &mut streams {
        stream.next().expect("the retry hint");
    }
    let pid = server.pid();
    wait_until("three follow threads", DEADLINE, || {
        stream_threads(pid) == 3
    });
    // The task says nothing more: the threads notice at their next wake.
    drop(streams);
    wait_until("the follow threads end", DEADLINE, || {
        stream_threads(pid) == 0
    });
}

#[test]
fn sigterm_ends_the_server_with_exit_0_while_streams_are_open() {
    let sandbox = Sandbox::new();
    sandbox.start(&json!({"id": "idle", "shell": "sleep 600"}));
    let mut server = Server::start(&sandbox, &[]);
    let mut task_stream = server.stream("/api/tasks/idle/events", &[]);
    task_stream.next().expect("the retry hint");
    let mut list_stream = server.stream("/api/events", &[]);
    list_stream.next().expect("the retry hint");
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}");
    // The streams were ended (their terminating chunk), not cut.
    for stream in [&mut task_stream, &mut list_stream] {
        while stream.next().is_some() {}
        assert!(stream.clean_end);
    }
    // The task runs on: it belongs to its supervisor, not to the view.
    assert_eq!(sandbox.status("idle")["status"], "running");
}

/// `--open` hands the URL to the desktop's opener when there is one, and says so when not.
#[test]
fn open_hands_the_url_to_the_desktops_opener_or_says_there_is_none() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let bin = sandbox.root().join("bin");
    std::fs::create_dir(&bin).expect("a bin dir");
    let opened = sandbox.root().join("opened");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display()),
    )
    .expect("a fake opener");
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755))
        .expect("make it executable");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let server = Server::start_with_path(&sandbox, &["--open"], Some(&path));
    assert_eq!(
        server.envelope["data"]["opened"], true,
        "{}",
        server.envelope
    );
    wait_until("the opener got the url", DEADLINE, || {
        std::fs::read_to_string(&opened).is_ok_and(|url| url == server.url)
    });
    drop(server);

    let empty = sandbox.root().join("empty");
    std::fs::create_dir(&empty).expect("an empty dir");
    let server = Server::start_with_path(&sandbox, &["--open"], Some(&empty.display().to_string()));
    let data = &server.envelope["data"];
    assert_eq!(data["opened"], false, "{data}");
    assert!(
        data["open_error"]
            .as_str()
            .is_some_and(|e| e.contains("xdg-open")),
        "{data}"
    );
    assert_eq!(
        server.get("/api/tasks").status,
        200,
        "it serves all the same"
    );
}

/// `serve` runs under `start` like any task: its envelope is in the task's log.
#[test]
fn serve_runs_as_a_task() {
    let sandbox = Sandbox::new();
    let bin = crate::support::BIN;
    sandbox.ok(
        &["start", "--wait", "--timeout", "30"],
        &json!({"id": "ui", "command": bin, "args": ["serve"],
                "ready": {"log": "\"command\":\"serve\""}}),
    );
    let line = sandbox.log("ui");
    let envelope: Value = serde_json::from_str(line.lines().next().expect("a line"))
        .expect("the envelope in the log");
    let port = u16::try_from(envelope["data"]["port"].as_u64().expect("a port")).expect("a port");
    let token = envelope["data"]["url"]
        .as_str()
        .and_then(|u| u.split("token=").nth(1))
        .expect("a token");
    let bearer = format!("Bearer {token}");
    let response = request(port, "GET", "/api/tasks/ui", &[("Authorization", &bearer)]);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["task"]["ports"], json!([port]));
    let stopped = sandbox.stop("ui");
    assert_eq!(stopped["task"]["reason"], "stop", "{stopped}");
}
