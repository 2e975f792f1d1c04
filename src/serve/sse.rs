//! The bridge from a blocking follow to a Server-Sent Events response.
//!
//! Each SSE connection has a std thread of its own that runs the lifecycle's synchronous
//! follow and sends batches of ready-made events into a bounded tokio channel; the response
//! body is the channel's receiving end. The thread ends promptly when:
//! - the client goes away: hyper drops the body, the receiver goes with it, and the follow's
//!   [`Cancel`](crate::lifecycle::Cancel) (built on [`Emitter::stopped`]) says so at its
//!   next wake (at most the follow's fallback interval), or the next send fails;
//! - the server shuts down: the shared flag is set, same path;
//! - the follow ends (the task's run ended): the sender is dropped and the body ends.
//!
//! The channel is bounded: a slow client makes the send wait, which pauses the follow's
//! reading (the log stays on disk), so the memory of a connection is bounded by
//! [`CAPACITY`] batches. Events are encoded on the follow thread, so the async thread only
//! copies bytes to sockets.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures_core::Stream;
use tokio::sync::mpsc;

/// Batches in flight per connection.
pub const CAPACITY: usize = 16;
/// Frames per batch at most (one read of a follow may hand several).
pub const BATCH: usize = 256;
/// Keep-alive comments after this long without an event: below the 30-60 s idle timeouts
/// of proxies and browsers.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The client's reconnect delay, sent first on every stream.
pub const RETRY: Duration = Duration::from_millis(2000);
/// SSE connections at once (each is a thread).
pub const MAX_STREAMS: usize = 256;
/// A follow thread needs little stack.
const STACK: usize = 256 * 1024;

/// The sending side, handed to the follow thread. Clones share the connection.
#[derive(Debug, Clone)]
pub struct Emitter {
    tx: mpsc::Sender<Vec<Event>>,
    shutdown: Arc<AtomicBool>,
}

impl Emitter {
    /// Whether to stop: the client left or the server is shutting down.
    pub fn stopped(&self) -> bool {
        self.tx.is_closed() || self.shutdown.load(Ordering::Relaxed)
    }

    /// Sends one batch (nothing for an empty one); `false` once the client is gone. Called
    /// only from the follow thread: a blocking send inside the runtime would panic.
    pub fn send(&self, batch: Vec<Event>) -> bool {
        batch.is_empty() || (!self.stopped() && self.tx.blocking_send(batch).is_ok())
    }
}

/// The body stream: the events from the channel, one at a time, after the retry hint.
#[derive(Debug)]
pub struct Bridge {
    rx: mpsc::Receiver<Vec<Event>>,
    pending: VecDeque<Event>,
    _slot: Slot,
}

impl Bridge {
    /// The SSE response of this stream, with keep-alive comments every `keep_alive`.
    pub fn into_sse(self, keep_alive: Duration) -> Sse<KeepAliveStream<Bridge>> {
        Sse::new(self).keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
    }
}

impl Stream for Bridge {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(event) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(event)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(batch)) => {
                self.pending.extend(batch);
                match self.pending.pop_front() {
                    Some(event) => Poll::Ready(Some(Ok(event))),
                    // An empty batch is never sent; look again rather than end.
                    None => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Counts open streams; the slot is given back when the response body is dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a stream could not be opened.
#[derive(Debug)]
pub enum SpawnError {
    /// [`MAX_STREAMS`] are open.
    TooMany,
    /// The OS refused a thread.
    Thread(std::io::Error),
}

/// Starts `follow` on a thread of its own, named `name`; its events become the returned
/// stream's.
pub fn start<F>(
    name: String,
    open: &Arc<AtomicUsize>,
    shutdown: &Arc<AtomicBool>,
    follow: F,
) -> Result<Bridge, SpawnError>
where
    F: FnOnce(Emitter) + Send + 'static,
{
    if open.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        open.fetch_sub(1, Ordering::Relaxed);
        return Err(SpawnError::TooMany);
    }
    let slot = Slot(Arc::clone(open));
    let (tx, rx) = mpsc::channel(CAPACITY);
    let emitter = Emitter {
        tx,
        shutdown: Arc::clone(shutdown),
    };
    std::thread::Builder::new()
        .name(name)
        .stack_size(STACK)
        .spawn(move || follow(emitter))
        .map_err(SpawnError::Thread)?;
    // The reconnect hint goes first, before anything the follow says.
    let mut pending = VecDeque::new();
    pending.push_back(Event::default().retry(RETRY));
    Ok(Bridge {
        rx,
        pending,
        _slot: slot,
    })
}
