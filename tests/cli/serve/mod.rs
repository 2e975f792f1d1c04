//! `serve`: the browser view, driven as a browser and a script would, through the real
//! binary. `http.rs` speaks raw HTTP and SSE over sockets (security, the API, streams);
//! `browser.rs` drives headless Chromium through chromedriver.
//!
//! The harness here: [`Server`] (a `serve` started in a test's sandbox, killed by pid when
//! dropped), [`request`] (one raw HTTP/1.1 request), [`SseReader`] (an event stream read
//! event by event, comments included) and [`Feed`] (a task whose output the test writes,
//! line by line, through a FIFO).

mod browser;
mod http;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::{BIN, DEADLINE, Sandbox, make_fifo, open_fifo_writer, wait_until};

/// How long a read from the server may take before it counts as a hang.
const READ_HANG: Duration = Duration::from_secs(30);

/// A `serve` in a sandbox. Dropping it kills it (our own child, by pid).
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub port: u16,
    pub token: String,
    pub url: String,
    pub envelope: Value,
}

impl Server {
    pub fn start(sandbox: &Sandbox, extra: &[&str]) -> Server {
        Server::start_with_path(sandbox, extra, None)
    }

    /// Like [`Server::start`], with another PATH (to offer a desktop opener, or none).
    pub fn start_with_path(sandbox: &Sandbox, extra: &[&str], path: Option<&str>) -> Server {
        let mut command = sandbox.sealed(BIN);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        command
            .arg("serve")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().expect("spawn serve");
        let stdout = child.stdout.take().expect("serve's stdout");
        let (sender, first_line) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = first_line
            .recv_timeout(READ_HANG)
            .expect("serve prints its envelope");
        let envelope: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("serve's first line is not JSON ({e}): {line:?}"));
        let url = envelope["data"]["url"]
            .as_str()
            .expect("data.url")
            .to_owned();
        let port =
            u16::try_from(envelope["data"]["port"].as_u64().expect("data.port")).expect("a port");
        let token = url.split("token=").nth(1).expect("a token").to_owned();
        Server {
            child,
            port,
            token,
            url,
            envelope,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("a pid")
    }

    /// The session cookie the token is traded for.
    pub fn cookie(&self) -> String {
        format!("bt_session_{}={}", self.port, self.token)
    }

    /// The page's own origin.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A GET with the cookie.
    pub fn get(&self, path: &str) -> Response {
        request(self.port, "GET", path, &[("Cookie", &self.cookie())])
    }

    /// A GET with the cookie, as JSON (after checking the status).
    pub fn get_json(&self, path: &str) -> Value {
        let response = self.get(path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        response.json()
    }

    /// A POST as the page sends it: the cookie and its own Origin.
    pub fn post(&self, path: &str) -> Response {
        request(
            self.port,
            "POST",
            path,
            &[("Cookie", &self.cookie()), ("Origin", &self.origin())],
        )
    }

    /// Opens a stream with the cookie.
    pub fn stream(&self, path: &str, headers: &[(&str, &str)]) -> SseReader {
        let cookie = self.cookie();
        let mut all = vec![("Cookie", cookie.as_str())];
        all.extend_from_slice(headers);
        SseReader::open(self.port, path, &all)
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        kill(Pid::from_raw(self.pid()), Signal::SIGTERM).expect("SIGTERM to serve");
        let deadline = Instant::now() + READ_HANG;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10)); // bounded by the deadline
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response read off a raw socket (HTTP/1.1, `Connection: close`).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One request; `headers` are sent as given (Host included, so a test can lie about it).
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect to serve");
    socket.set_read_timeout(Some(READ_HANG)).expect("a timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        head.push_str("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    } else {
        head.push_str("\r\n");
    }
    socket.write_all(head.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: dechunk(body),
    }
}

/// The body of a chunked answer, or the body as it is.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if size == 0 {
            return out;
        }
        let Some(chunk) = after.get(..size) else {
            return body.to_owned();
        };
        out.push_str(chunk);
        rest = after.get(size + 2..).unwrap_or("");
    }
}

/// An open SSE answer, read event by event.
#[derive(Debug)]
pub struct SseReader {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body ended with its terminating chunk (not cut off).
    pub clean_end: bool,
}

/// One SSE event as the wire carried it (comments kept, for the keep-alive test).
#[derive(Debug, Default, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<String>,
    pub comments: Vec<String>,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

impl SseReader {
    pub fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> SseReader {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect to serve");
        socket.set_read_timeout(Some(READ_HANG)).expect("a timeout");
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        socket.write_all(head.as_bytes()).expect("send the request");
        let mut reader = BufReader::new(socket);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("a status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        SseReader {
            reader,
            status,
            headers,
            clean_end: false,
        }
    }

    /// The next event (or block of comments); `None` at the end of the body. Chunk framing
    /// is read through: hyper sends the body chunked, each chunk whole lines.
    pub fn next(&mut self) -> Option<SseEvent> {
        let mut event = SseEvent::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            // A chunk-size line (hex digits only) between events.
            if !any && !line.is_empty() && line.bytes().all(|b| b.is_ascii_hexdigit()) {
                if line == "0" {
                    self.clean_end = true;
                    return None;
                }
                continue;
            }
            if line.is_empty() {
                if any {
                    return Some(event);
                }
                continue;
            }
            any = true;
            if let Some(comment) = line.strip_prefix(':') {
                event.comments.push(comment.trim().to_owned());
            } else if let Some((field, value)) = line.split_once(':') {
                let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                match field {
                    "id" => event.id = Some(value),
                    "event" => event.event = Some(value),
                    "data" => event.data.push_str(&value),
                    "retry" => event.retry = Some(value),
                    _ => {}
                }
            }
        }
    }

    /// The next event that has an `id` or a type (skipping keep-alive comments).
    pub fn next_event(&mut self) -> SseEvent {
        loop {
            let event = self.next().expect("an event before the stream ended");
            if event.event.is_some() || event.id.is_some() {
                return event;
            }
        }
    }
}

/// A task whose output the test writes: `cat` of a FIFO in the sandbox's working directory.
/// Dropping the feed (or [`Feed::close`]) closes the FIFO, and the task exits 0.
#[derive(Debug)]
pub struct Feed {
    file: File,
}

impl Feed {
    /// Starts task `id` with `tags`, copying FIFO `<id>.fifo` to its output.
    pub fn start(sandbox: &Sandbox, id: &str, tags: &[&str]) -> Feed {
        let name = format!("{id}.fifo");
        let path = sandbox.work().join(&name);
        make_fifo(&path);
        sandbox.start(&json!({"id": id, "shell": format!("cat {name}"), "tags": tags}));
        Feed::open(&path)
    }

    fn open(path: &Path) -> Feed {
        let file = open_fifo_writer(path);
        fcntl(&file, FcntlArg::F_SETFL(OFlag::empty())).expect("make the FIFO blocking");
        Feed { file }
    }

    /// Writes one line (a newline is added) to the task's output.
    pub fn line(&mut self, text: &str) {
        self.file
            .write_all(format!("{text}\n").as_bytes())
            .expect("write to the task");
    }

    /// Ends the task (exit 0 once `cat` reads the end).
    pub fn close(self) {}
}

/// Waits until task `id`'s log holds `lines` lines.
pub fn wait_for_lines(sandbox: &Sandbox, id: &str, lines: usize) {
    wait_until(&format!("{id}'s log has {lines} lines"), DEADLINE, || {
        sandbox.log(id).lines().count() == lines
    });
}
