//! The HTTP adapters: each handler turns a request into the lifecycle's args struct, calls
//! the operation on a blocking thread (or, for a stream, on a thread of its own) and turns
//! the result into the CLI's answer type, sent as JSON. Errors are the CLI's error object,
//! `{"ok":false,"error":{type,message,details}}`, with a status code that says the same.

use std::ops::ControlFlow;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use super::sse::{self, BATCH, Emitter, SpawnError};
use super::{AppState, security};
use crate::error::Error;
use crate::lifecycle::Cancel;
use crate::lifecycle::follow::{Batch, FollowAllArgs, FollowArgs, TaskChange};
use crate::lifecycle::list::ListArgs;
use crate::lifecycle::observe::StatusArgs;
use crate::lifecycle::restart::RestartArgs;
use crate::lifecycle::stop::StopArgs;
use crate::paths::TaskId;
use crate::payload::answer::{ListAnswer, Shown, StopAnswer, TaskAnswer};
use crate::payload::frame::Frame;
use crate::payload::input::RestartInput;
use crate::time::{now_ms, rfc3339};
use crate::timeline::{After, Selection};

/// The page, with `{{NONCE}}` where each answer puts its own nonce.
const PAGE: &str = include_str!("page.html");

/// Past log lines a task's stream starts with when the client does not say (`?lines=`),
/// and the most it may ask for.
const FIRST_LINES: u64 = 1000;
const MAX_FIRST_LINES: u64 = 10_000;

/// The list stream hands at most ten batches a second, whatever the tasks do: what
/// changed in between is one event per task, as it is then.
const LIST_PACE: Duration = Duration::from_millis(100);

pub async fn page() -> Response {
    let Ok(nonce) = security::random_hex(16) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let body = PAGE.replace("{{NONCE}}", &nonce);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CONTENT_SECURITY_POLICY, security::page_csp(&nonce)),
        ],
        body,
    )
        .into_response()
}

pub async fn not_found() -> Response {
    failure(&Error::input(
        "no such path",
        "The API is /api/tasks, /api/tasks/<id>, /api/tasks/<id>/stop, /api/tasks/<id>/restart, /api/tasks/<id>/events and /api/events.",
    ))
    .with_status(StatusCode::NOT_FOUND)
}

/// An error as the CLI prints it (its `error` object), with the status code that says
/// the same to HTTP clients.
fn failure(error: &Error) -> Failure {
    let status = match error {
        Error::TaskNotFound { .. } => StatusCode::NOT_FOUND,
        Error::CommandInput { .. } => StatusCode::BAD_REQUEST,
        Error::TaskAlreadyRunning { .. }
        | Error::SignalRefused { .. }
        | Error::NewerRecord { .. }
        | Error::PortInUse { .. } => StatusCode::CONFLICT,
        _ if error.retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Failure {
        status,
        body: json!({"ok": false, "error": error.to_json()}),
        retry: error.retryable(),
    }
}

/// An error answer being built.
struct Failure {
    status: StatusCode,
    body: serde_json::Value,
    retry: bool,
}

impl Failure {
    fn with_status(mut self, status: StatusCode) -> Response {
        self.status = status;
        self.into_response()
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.retry {
            // Retryable: a wait that ran out, a thread or descriptor refused for now.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        response
    }
}

/// A task id from the path, checked before anything reads a file by it.
fn task_id(id: &str) -> Result<TaskId, Failure> {
    TaskId::parse(id).map_err(|message| {
        failure(&Error::input(
            message,
            "Task ids are 1-64 letters, digits, '.', '_' or '-'; GET /api/tasks lists them.",
        ))
    })
}

/// Runs a lifecycle call on the blocking pool: the async thread never waits on a file, a
/// lock or a process.
async fn blocking<T, F>(call: F) -> Result<T, Response>
where
    F: FnOnce() -> crate::error::Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(failure(&error).into_response()),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

/// A success: the CLI's `data`, as JSON.
fn answer(result: Result<impl Serialize, Response>) -> Response {
    match result {
        Ok(data) => Json(data).into_response(),
        Err(response) => response,
    }
}

/// `GET /api/tasks`: `list`'s data.
pub async fn list(State(app): State<AppState>) -> Response {
    let tasks = app.tasks.clone();
    answer(
        blocking(move || {
            let listed = tasks.list(ListArgs::default())?;
            let tasks: Vec<Shown> = listed
                .tasks
                .into_iter()
                .map(|task| Shown::new(task, None))
                .collect();
            Ok(ListAnswer {
                total: tasks.len(),
                tasks,
                unreadable: listed.unreadable,
            })
        })
        .await,
    )
}

/// `GET /api/tasks/<id>`: `status`'s data.
pub async fn status(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(refused) => return refused.into_response(),
    };
    let tasks = app.tasks.clone();
    answer(blocking(move || Ok(TaskAnswer::new(tasks.status(StatusArgs { id })?))).await)
}

/// `POST /api/tasks/<id>/stop`: `stop`'s data, once the task has ended.
pub async fn stop(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(refused) => return refused.into_response(),
    };
    let tasks = app.tasks.clone();
    answer(
        blocking(move || {
            let stopped = tasks.stop(StopArgs::new(id))?;
            Ok(StopAnswer::new(
                stopped.task,
                stopped.already_terminal,
                stopped.children,
                None,
            ))
        })
        .await,
    )
}

/// `POST /api/tasks/<id>/restart`: `restart`'s data (the next run).
pub async fn restart(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(refused) => return refused.into_response(),
    };
    let tasks = app.tasks.clone();
    answer(
        blocking(move || {
            let input = RestartInput {
                id,
                env: Default::default(),
                fields: None,
            };
            Ok(TaskAnswer::new(tasks.restart(RestartArgs { input })?))
        })
        .await,
    )
}

fn spawn_failed(error: &SpawnError) -> Response {
    let message = match error {
        SpawnError::TooMany => "too many open event streams".to_owned(),
        SpawnError::Thread(e) => format!("no thread for the event stream: {e}"),
    };
    Failure {
        status: StatusCode::SERVICE_UNAVAILABLE,
        body: json!({"ok": false, "error": {
            "type": "StoreError",
            "message": message,
            "details": {"hint": "Close other tabs of this page or other streams, then retry.", "retryable": true},
        }}),
        retry: true,
    }
    .into_response()
}

/// One frame as its own event: `id` is its sequence, `event` its type, `data` the frame as
/// `events --stream` prints it.
fn frame_event(frame: &Frame) -> Event {
    Event::default()
        .id(frame.sequence.to_string())
        .event(frame.event.kind())
        .data(serde_json::to_string(frame).unwrap_or_default())
}

/// `GET /api/events`: every task. `tasks.snapshot` first, on every connect and reconnect
/// (the list is state, not a log, and no sequence spans tasks: a fresh snapshot is exactly
/// what a reconnecting page missed, removals included), then `task.status` with the whole
/// task for each task that appeared or changed, and `task.removed`. No `id`s.
pub async fn all_events(State(app): State<AppState>) -> Response {
    let tasks = app.tasks.clone();
    let started = sse::start(
        "sse-all".into(),
        &app.open_streams,
        &app.shutdown,
        move |emitter| {
            let cancel = cancel_with(&emitter);
            let args = FollowAllArgs {
                timeout: None,
                cancel,
            };
            let _ = tasks.follow_tasks(args, &mut |changes| {
                let events = changes.into_iter().map(change_event).collect();
                if !emitter.send(events) {
                    return ControlFlow::Break(());
                }
                // Coalesce: what changes meanwhile is handed as it is after the pause.
                std::thread::sleep(LIST_PACE);
                ControlFlow::Continue(())
            });
        },
    );
    match started {
        Ok(bridge) => bridge.into_sse(app.keep_alive).into_response(),
        Err(e) => spawn_failed(&e),
    }
}

fn change_event(change: TaskChange) -> Event {
    let timestamp = rfc3339(now_ms());
    let (kind, data) = match change {
        TaskChange::Snapshot(tasks) => (
            "tasks.snapshot",
            json!({"type": "tasks.snapshot", "timestamp": timestamp, "data": {"tasks": tasks}}),
        ),
        TaskChange::Changed(task) => (
            "task.status",
            json!({"type": "task.status", "task_id": task.id, "timestamp": timestamp, "data": *task}),
        ),
        TaskChange::Removed(id) => (
            "task.removed",
            json!({"type": "task.removed", "task_id": id, "timestamp": timestamp, "data": {}}),
        ),
    };
    Event::default().event(kind).data(data.to_string())
}

/// A follow's [`Cancel`]: cancelled once the client left or the server is stopping.
fn cancel_with(emitter: &Emitter) -> Cancel {
    let emitter = emitter.clone();
    Cancel::when(move || emitter.stopped())
}

/// `GET /api/tasks/<id>/events`'s query.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Resume after this sequence (a first connect; a reconnect sends `Last-Event-ID`).
    after: Option<u64>,
    /// Without `after`: how many past log lines to start with (default 1,000, at most
    /// 10,000).
    lines: Option<u64>,
    /// `1`: one `frames` event per batch (a JSON array; `id` is its last frame's sequence)
    /// instead of one event per frame. The page asks for it: a browser dispatching 10,000
    /// events a second has no time left to draw.
    batch: Option<u8>,
}

/// `GET /api/tasks/<id>/events`: one task's run, log lines included. Each event's `id` is
/// its frame's sequence, so the browser's `Last-Event-ID` on a reconnect resumes exactly
/// after the last frame it got, from the journal and the log on disk. The stream ends
/// after `task.ended`; a reconnect after that gets 204 No Content, which is what makes an
/// EventSource stop reconnecting.
pub async fn task_events(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let id = match task_id(&id) {
        Ok(id) => id,
        Err(refused) => return refused.into_response(),
    };
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = last_event_id.or(query.after).map(After::Sequence);
    let selection = Selection {
        after,
        // With `after`, `lines` would cap what is resumed: everything after it comes.
        lines: match after {
            Some(_) => None,
            None => Some(query.lines.unwrap_or(FIRST_LINES).min(MAX_FIRST_LINES)),
        },
        only_lines: false,
        // A stream, not a page: every frame comes, each line cut to the line budget.
        budget: None,
        // The page renders the colours itself (and escapes the text).
        ansi: true,
    };
    let batched = query.batch == Some(1);
    let tasks = app.tasks.clone();
    let (opened_tx, opened_rx) = oneshot::channel();
    let started = sse::start(
        format!("sse-{id}"),
        &app.open_streams,
        &app.shutdown,
        move |emitter| {
            let args = FollowArgs {
                id,
                selection,
                grep: None,
                timeout: None,
                cancel: cancel_with(&emitter),
            };
            follow_task(&tasks, args, &emitter, batched, opened_tx);
        },
    );
    let bridge = match started {
        Ok(bridge) => bridge,
        Err(e) => return spawn_failed(&e),
    };
    match opened_rx.await {
        Ok(Opened::Streaming) => bridge.into_sse(app.keep_alive).into_response(),
        Ok(Opened::Finished) => StatusCode::NO_CONTENT.into_response(),
        Ok(Opened::Failed(error)) => failure(&error).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// What the opening read of a task's stream found.
enum Opened {
    /// Frames, or a run that may still say more: answer the stream.
    Streaming,
    /// The run has ended and nothing came after `after`: nothing to stream.
    Finished,
    /// The task could not be followed (not found, unreadable).
    Failed(Error),
}

/// The thread of one task's stream: the lifecycle's follow, one event per frame or per
/// batch, until the run ends, the client leaves or the server stops.
fn follow_task(
    tasks: &crate::lifecycle::Tasks,
    args: FollowArgs,
    emitter: &Emitter,
    batched: bool,
    opened: oneshot::Sender<Opened>,
) {
    let mut opened = Some(opened);
    let result = tasks.follow_batches(args, BATCH, &mut |batch: Batch| {
        if let Some(opened) = opened.take() {
            let finished = batch.frames.is_empty() && batch.ended;
            let _ = opened.send(if finished {
                Opened::Finished
            } else {
                Opened::Streaming
            });
        }
        let events = match batch.frames.last() {
            None => Vec::new(),
            Some(last) if batched => vec![
                Event::default()
                    .id(last.sequence.to_string())
                    .event("frames")
                    .data(serde_json::to_string(&batch.frames).unwrap_or_default()),
            ],
            Some(_) => batch.frames.iter().map(frame_event).collect(),
        };
        if emitter.send(events) && !batch.ended {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    });
    if let (Err(error), Some(opened)) = (result, opened.take()) {
        let _ = opened.send(Opened::Failed(error));
    }
}
