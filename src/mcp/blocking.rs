//! A synchronous lifecycle call, run from an async tool handler: on tokio's blocking pool,
//! cancelled by the client (`notifications/cancelled` for its request) or by the server's
//! shutdown, with progress notifications while it runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{RequestContext, RoleServer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::lifecycle::Cancel;
use crate::lifecycle::wait::OnProgress;
use crate::payload::task::Task;

/// How often a progress notification goes out while a call blocks.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What a blocking call says about itself, for the progress notifications' message.
#[derive(Debug, Clone)]
pub struct Reporter {
    latest: Arc<watch::Sender<String>>,
}

impl Reporter {
    /// Says `message` (the next notification carries the latest one).
    pub fn say(&self, message: String) {
        self.latest.send_replace(message);
    }

    /// A lifecycle progress callback that says how the task stands.
    pub fn on_task(&self) -> OnProgress {
        let reporter = self.clone();
        Box::new(move |task: &Task| reporter.say(describe(task)))
    }
}

/// `web running, 40% (compiling)`, `web running, ready`, `web exited`.
pub fn describe(task: &Task) -> String {
    let mut text = format!("{} {}", task.id, task.status.as_str());
    if task.ready == Some(true) {
        text.push_str(", ready");
    }
    if let Some(progress) = &task.progress {
        if let Some(percent) = progress.percent {
            text.push_str(&format!(", {percent:.0}%"));
        } else if let (Some(current), Some(total)) = (progress.current, progress.total) {
            text.push_str(&format!(", {current}/{total}"));
        }
        if let Some(message) = &progress.message {
            text.push_str(&format!(" ({message})"));
        }
    }
    text
}

/// Runs `call` on the blocking pool and answers what it returns. While it runs:
/// - the client's cancellation of this request (`ctx.ct`) or the server's `shutdown` cancels
///   the [`Cancel`] it was given: the waiting ends, never the task (rmcp sends no answer to
///   a cancelled request);
/// - when the request carried a progress token, a `notifications/progress` goes out every
///   [`PROGRESS_EVERY`]: `progress` is the seconds waited (it only grows, where a task's own
///   percentage may go back), `total` the bound, and `message` what the call last said
///   through its [`Reporter`] (the task's status and progress).
pub async fn run<T, F>(
    ctx: &RequestContext<RoleServer>,
    shutdown: &CancellationToken,
    bound: Option<Duration>,
    call: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Cancel, Reporter) -> Result<T> + Send + 'static,
{
    let cancel = Cancel::new();
    let (latest, said) = watch::channel(String::new());
    let reporter = Reporter {
        latest: Arc::new(latest),
    };
    let mut handle = tokio::task::spawn_blocking({
        let cancel = cancel.clone();
        move || call(cancel, reporter)
    });
    let token: Option<ProgressToken> = ctx.meta.get_progress_token();
    let started = Instant::now();
    let first = tokio::time::Instant::now() + PROGRESS_EVERY;
    let mut tick = tokio::time::interval_at(first, PROGRESS_EVERY);
    let mut last_sent = 0.0_f64;
    loop {
        tokio::select! {
            joined = &mut handle => {
                return joined.unwrap_or_else(|e| Err(Error::Internal {
                    location: "src/mcp/blocking.rs".into(),
                    message: format!("a lifecycle call failed: {e}"),
                }));
            }
            () = ctx.ct.cancelled(), if !cancel.is_cancelled() => cancel.cancel(),
            () = shutdown.cancelled(), if !cancel.is_cancelled() => cancel.cancel(),
            _ = tick.tick(), if token.is_some() && !cancel.is_cancelled() => {
                let Some(token) = &token else { continue };
                // Tenths of a second, forced to grow: a tick that ran late and then early
                // must not repeat a value.
                let mut progress = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
                if progress <= last_sent {
                    progress = last_sent + 0.1;
                }
                last_sent = progress;
                let mut param = ProgressNotificationParam::new(token.clone(), progress);
                if let Some(bound) = bound {
                    param = param.with_total(bound.as_secs_f64());
                }
                let message = said.borrow().clone();
                if !message.is_empty() {
                    param = param.with_message(message);
                }
                // A client that went away is noticed by the EOF of stdin.
                let _ = ctx.peer.notify_progress(param).await;
            }
        }
    }
}
