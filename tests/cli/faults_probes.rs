//! RELIABILITY 27 (issue 12, class 3): readiness probes never block the supervisor's loop.
//! Against a server that accepts connections and answers a byte a second, never a status
//! line, a stop request and the task's own exit are handled at once, and the record's end
//! time is when the task ended.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{DEADLINE, Sandbox, spawn, wait_until};

/// A TCP server on 127.0.0.1 that accepts every connection, reads the request, and then
/// answers one byte a second, never a status line: each read a client makes succeeds just
/// before a read timeout of a second or more would end it. Dropping it stops accepting; each
/// connection's thread ends within a second after.
#[derive(Debug)]
struct SlowServer {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowServer {
    fn start() -> SlowServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let address = listener.local_addr().expect("the local address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, closing) = (accepted.clone(), closing.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if closing.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let closing = closing.clone();
                    std::thread::spawn(move || trickle(stream, &closing));
                }
            })
        };
        SlowServer {
            address,
            accepted,
            closing,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/health", self.address)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads the request, then writes a byte a second until the client goes or the server
/// closes. The pause is the server's behaviour under test, not a wait of the test's.
fn trickle(mut stream: TcpStream, closing: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.read(&mut [0_u8; 4096]);
    while !closing.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
        if stream.write_all(b"x").is_err() {
            return;
        }
    }
}

impl Drop for SlowServer {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `closing`.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A task whose `ready.http` probe hangs on a slow server is stopped promptly: the stop
/// request is not held up behind the probe (it was, for 15 s, until `stop` gave up).
#[test]
fn stop_answers_promptly_while_an_http_probe_hangs() {
    let sandbox = Sandbox::new();
    let server = SlowServer::start();
    sandbox.start(&json!({
        "id": "probed",
        "command": "sleep",
        "args": ["1000"],
        "grace_s": 1,
        "ready": {"http": server.url(), "timeout_s": 120},
    }));
    let leader = sandbox.leader("probed");
    wait_until("the probe has connected", DEADLINE, || {
        server.accepted() > 0
    });

    let stop = spawn(sandbox.command_with(&["stop"], &json!({"id": "probed"})))
        .finish_within(Duration::from_secs(30));
    let data = stop.data();
    assert_eq!(data["status"], "killed", "{data}");
    // contract: "a stop request or the task's exit is handled within 50 ms even against a
    // server that accepts and never answers" (RELIABILITY 27); bounded generously here
    // against noise (it took 15 s, then failed).
    assert!(
        stop.elapsed < Duration::from_secs(5),
        "stop took {:?} while a probe hung",
        stop.elapsed
    );
    assert!(!leader.is_alive());
}

/// A task that ends by itself while its probe hangs is recorded when it ended: its
/// duration is about its own run (1 s), not the probe's wait (it was recorded 30 s long).
#[test]
fn a_task_ending_while_an_http_probe_hangs_keeps_its_real_duration() {
    let sandbox = Sandbox::new();
    let server = SlowServer::start();
    let started = Instant::now();
    sandbox.start(&json!({
        "id": "short",
        "shell": "sleep 1; exit 3",
        "ready": {"http": server.url(), "timeout_s": 120},
    }));
    wait_until("the probe has connected", DEADLINE, || {
        server.accepted() > 0
    });

    let wait = spawn(sandbox.command_with(&["wait", "--timeout", "60"], &json!({"id": "short"})))
        .finish_within(Duration::from_secs(90));
    let task = wait.data()["task"].clone();
    assert_eq!(task["status"], "exited", "{task}");
    assert_eq!(task["exit_code"], 3, "{task}");
    let recorded = Duration::from_millis(task["duration_ms"].as_u64().expect("duration_ms"));
    // contract: "`ended_at`/`duration_ms` are taken when the task actually ended"
    // (RELIABILITY 27): a 1 s task, recorded well under the 30 s the probe held it.
    assert!(
        recorded < Duration::from_secs(8),
        "a 1 s task was recorded {recorded:?} long: {task}"
    );
    // contract: "the task's exit is handled within 50 ms" (RELIABILITY 27): the end is
    // known long before the probe would have given up.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the end of a 1 s task was known after {:?}",
        started.elapsed()
    );
}
