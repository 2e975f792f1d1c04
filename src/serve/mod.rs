//! `background-tasks serve`: a live view of the tasks in the browser (DESIGN §8).
//!
//! ```text
//! browser ──HTTP──▶ guard (Host, Fetch Metadata, token or cookie, Origin) ──▶ handler
//!                                                                              │
//!   page (one embedded file)      GET/POST /api/...  ── spawn_blocking ──▶ lifecycle call
//!   EventSource ◀── SSE body ◀── channel ◀── follow thread ◀── lifecycle follow (disk)
//! ```
//!
//! The only place (with `mcp`) where an async runtime exists: a current-thread tokio
//! runtime built inside [`run`], so every other command starts as it did without it. All
//! blocking work (lifecycle calls, follows, encoding frames) runs on threads of its own;
//! the async thread routes requests and copies ready-made bytes to sockets.
//!
//! It binds 127.0.0.1 only and prints the usual envelope as its first line, with the URL
//! that carries a fresh token ([`security`] says who may talk to it), then serves until
//! SIGTERM or SIGINT, which end it with exit code 0 even while streams are open.

mod api;
mod security;
mod sse;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::cli::ServeArgs;
use crate::commands::Reply;
use crate::envelope::Output;
use crate::error::{Error, Result};
use crate::lifecycle::Tasks;
use crate::payload::answer::ServeAnswer;

/// How long open streams get to end after SIGTERM or SIGINT before the server exits anyway
/// (a client that stopped reading holds its stream's thread in a send).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What every handler shares.
#[derive(Debug)]
pub struct Shared {
    token: String,
    /// `bt_session_<port>`: cookies ignore ports, so two servers must not share a name.
    cookie_name: String,
    /// `127.0.0.1:PORT` and `localhost:PORT`.
    allowed_hosts: [String; 2],
    tasks: Tasks,
    shutdown: Arc<AtomicBool>,
    open_streams: Arc<AtomicUsize>,
    keep_alive: Duration,
}

type AppState = Arc<Shared>;

fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(api::page))
        .route("/api/tasks", get(api::list))
        .route("/api/tasks/{id}", get(api::status))
        .route("/api/tasks/{id}/stop", post(api::stop))
        .route("/api/tasks/{id}/restart", post(api::restart))
        .route("/api/events", get(api::all_events))
        .route("/api/tasks/{id}/events", get(api::task_events))
        .fallback(api::not_found)
        // Layers run outside-in from the last added: the headers wrap everything, and the
        // guard runs before every route and the fallback, so nothing answers without it.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            security::guard,
        ))
        .layer(middleware::from_fn(security::headers))
        .with_state(app)
}

/// Serves until SIGTERM or SIGINT. The envelope is printed (through `output`) once the
/// port is bound, so its URL works the moment it is read.
pub fn run(args: ServeArgs, output: &Output) -> Result<Reply> {
    let tasks = Tasks::open()?;
    // glibc gives each thread that allocates an arena of its own and keeps what was freed
    // there: with a thread per stream, a 1,000-task snapshot left ~10 MB behind per list
    // stream (measured); two arenas keep that near 1.4 MB.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(32)
        .build()
        .map_err(|e| Error::store("start the server's runtime for", tasks.state().root(), e))?;
    let result = runtime.block_on(serve(args, tasks, output));
    // Blocking calls still running (a stop waiting out its grace period) are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result.map(|()| Reply::Streamed)
}

async fn serve(args: ServeArgs, tasks: Tasks, output: &Output) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Signals first: a SIGTERM that comes once the URL is printed must find them set.
    let signal_error = |e| Error::store("watch signals for", tasks.state().root(), e);
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;

    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| bind_error(args.port, &e))?;
    let port = listener
        .local_addr()
        .map_err(|e| bind_error(args.port, &e))?
        .port();
    let token = security::random_hex(32)
        .map_err(|e| Error::store("read random bytes for", tasks.state().root(), e))?;
    let app = Arc::new(Shared {
        cookie_name: format!("bt_session_{port}"),
        allowed_hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")],
        token: token.clone(),
        tasks,
        shutdown: Arc::new(AtomicBool::new(false)),
        open_streams: Arc::new(AtomicUsize::new(0)),
        keep_alive: args
            .keep_alive
            .map_or(sse::KEEP_ALIVE, Duration::from_secs_f64),
    });
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("{base}/?token={token}");
    let opened = args.open.then(|| open_in_browser(&url));
    let answer = ServeAnswer {
        url,
        events_url: format!("{base}/api/events?token={token}"),
        port,
        pid: std::process::id(),
        opened: opened.as_ref().map(Result::is_ok),
        open_error: opened.and_then(Result::err),
    };
    let data = serde_json::value::to_raw_value(&answer).map_err(|e| {
        Error::input(
            format!("could not encode the answer: {e}"),
            "This is a bug; please report it.",
        )
    })?;
    // The first line, flushed: a caller reading a pipe must not wait for a buffer. A reader
    // that went away already changes nothing: the server is for the browser.
    let _ = output.success("serve", &data);

    let shutdown = Arc::clone(&app.shutdown);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    // Nagle's algorithm holds a small event until the last one is acknowledged, and the
    // client delays its ACK: without NODELAY a lone log line waited tens of milliseconds.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router(app)).with_graceful_shutdown(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        // Open streams never end by themselves: their follows end at their next wake.
        shutdown.store(true, Ordering::Relaxed);
        let _ = stopping_tx.send(());
    });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => {
            result.map_err(|e| Error::store("serve on", address.to_string(), e))
        }
        () = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    }
}

/// `--port N` could not be had: in use (`PortInUse`, naming who holds it), or refused.
fn bind_error(port: u16, error: &std::io::Error) -> Error {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        let holder = crate::ready::port_holder(port);
        return Error::PortInUse {
            port,
            pid: holder.as_ref().map(|(pid, _)| *pid),
            process: holder.map(|(_, name)| name),
            task_id: None,
        };
    }
    Error::input(
        format!("could not listen on 127.0.0.1:{port}: {error}"),
        "Pick another --port (ports below 1024 need privileges), or leave it out for any free port.",
    )
}

/// `--open`: hands the URL to the desktop's opener (`xdg-open`), detached, without waiting
/// for it. Says why not when there is none (a headless machine).
#[expect(
    clippy::disallowed_methods,
    reason = "the desktop's opener is not a task: it gets the URL and nothing of ours, and is reaped here"
)]
fn open_in_browser(url: &str) -> std::result::Result<(), String> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let opener = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("xdg-open"))
            .find(|candidate| candidate.is_file())
    });
    let Some(opener) = opener else {
        return Err("no desktop opener (xdg-open) was found: open the url yourself".into());
    };
    let child = Command::new(&opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Not in our group: a Ctrl-C meant for the server is not the browser's.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{} could not be run: {e}", opener.display()))?;
    // Reap it when it exits (xdg-open returns once the browser has the URL).
    let _ = std::thread::Builder::new()
        .name("opener".into())
        .spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
    Ok(())
}
