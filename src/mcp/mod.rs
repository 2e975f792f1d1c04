//! `background-tasks mcp`: the task commands as MCP tools, over stdio.
//!
//! A front end like the CLI's commands: each tool call turns its arguments into a lifecycle
//! args struct ([`crate::lifecycle`]), runs the operation, and answers with the same answer
//! types (`structuredContent`, and the same JSON as text) or the same error object
//! (`isError: true`). Nothing here goes through `crate::commands` or the envelope: stdout
//! carries JSON-RPC only, written by rmcp.
//!
//! The async runtime exists only here (a current-thread tokio runtime, built when `mcp`
//! starts): the lifecycle stays synchronous, and every call to it runs on tokio's blocking
//! pool ([`blocking`]), so that the runtime's one thread is always free to read requests,
//! send progress notifications and pass on cancellations.
//!
//! - [`server`]: rmcp's `ServerHandler`, written by hand so that bad arguments are answered
//!   as `isError` results rather than JSON-RPC errors;
//! - [`tools`]: the tool list (from [`crate::catalog::TOOLS`]) and its schemas;
//! - [`calls`]: one function per tool: arguments → lifecycle → answer;
//! - [`blocking`]: a lifecycle call on the blocking pool, with cancellation and progress;
//! - [`lifetime`]: exit at stdin's EOF and when the parent dies.

mod blocking;
mod calls;
mod lifetime;
mod server;
pub mod tools;

use std::io::Write;
use std::time::Duration;

use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

/// How often the parent pid is checked: parent death is noticed within this (the contract
/// says 5 s).
const PARENT_CHECK: Duration = Duration::from_millis(500);

/// How long the answers already made may take to be written once the server is told to go.
const FLUSH: Duration = Duration::from_secs(1);

/// Serves until stdin's EOF or the parent's death; returns the exit code.
pub fn run() -> u8 {
    // First of all: a parent that dies before this read goes unnoticed.
    let parent = lifetime::parent();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            say(&format!("cannot start the async runtime: {e}"));
            return 1;
        }
    };
    let code = runtime.block_on(serve(parent));
    // Not a plain drop: when stdin is not a pipe (a socket, a tty), tokio reads it on the
    // blocking pool, a read nothing can interrupt, and dropping the runtime would wait for
    // it for ever. A lifecycle call that missed its cancellation must not hold us either.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

async fn serve(parent: i32) -> u8 {
    let shutdown = CancellationToken::new();
    tokio::spawn(lifetime::watch_parent(
        parent,
        shutdown.clone(),
        PARENT_CHECK,
    ));
    // Non-blocking pipes when stdin and stdout are pipes (how MCP clients start servers).
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let stdin = lifetime::EofReader::new(stdin, shutdown.clone());
    // The service's token is a child of `shutdown`, so parent death also ends the wait for
    // the first request, not only the main loop.
    let service = match server::Server::new(shutdown.clone())
        .serve_with_ct((stdin, stdout), shutdown.child_token())
        .await
    {
        Ok(service) => service,
        // EOF before any request, or a first message that is not one.
        Err(e) => {
            if shutdown.is_cancelled() {
                return 0;
            }
            say(&e.to_string());
            return 1;
        }
    };
    let service_token = service.cancellation_token();
    let mut waiting = std::pin::pin!(service.waiting());
    tokio::select! {
        quit = &mut waiting => {
            shutdown.cancel();
            match quit {
                Ok(_) => 0,
                Err(e) => {
                    say(&e.to_string());
                    1
                }
            }
        }
        // stdin's EOF or the parent's death: every blocking call was cancelled through
        // `shutdown`. Let rmcp write the answers that are ready, briefly; with the parent
        // gone and stdin still open it would otherwise read stdin for ever.
        () = shutdown.cancelled() => {
            service_token.cancel();
            let _ = tokio::time::timeout(FLUSH, waiting).await;
            0
        }
    }
}

/// A line on stderr for whoever reads it (clients log a server's stderr). Never
/// `eprintln!`: it panics when stderr is closed, and a panicking handler answers nothing.
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "background-tasks mcp: {message}");
}
