//! How long the server lives: until stdin reaches EOF, or its parent dies (even when the
//! stdin pipe stays open because another process holds its write end).
//!
//! Both end in one `CancellationToken` (`shutdown`): every in-flight blocking call is
//! cancelled through it, and the rmcp service is cancelled too.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rmcp::transport::StdioReader;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

/// stdin, which cancels `eof` when it reaches EOF (or fails).
///
/// rmcp notices EOF too, but then gives in-flight handlers up to 5 s to finish before it
/// cancels them (`serve_inner`'s drain): a `wait` in progress would keep the process alive
/// that long. Seeing EOF here lets us cancel the waits at once.
pub struct EofReader {
    inner: StdioReader,
    eof: CancellationToken,
}

impl EofReader {
    pub fn new(inner: StdioReader, eof: CancellationToken) -> EofReader {
        EofReader { inner, eof }
    }
}

impl AsyncRead for EofReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &poll {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                self.eof.cancel()
            }
            Poll::Ready(Err(_)) => self.eof.cancel(),
            _ => {}
        }
        poll
    }
}

/// Cancels `parent_gone` once our parent process has died: the parent pid changes when we
/// are re-parented (to init or a subreaper). `original` is the parent pid read as early as
/// possible ([`parent`]); it is checked every `every`.
///
/// Not `PR_SET_PDEATHSIG`: it fires when the *thread* that forked us exits, not the process,
/// so a client that spawns servers from a short-lived thread (a thread pool, a tokio blocking
/// thread) would have a healthy server killed; and it misses a parent that died before the
/// `prctl`.
pub async fn watch_parent(original: i32, parent_gone: CancellationToken, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if parent() != original {
            parent_gone.cancel();
            return;
        }
    }
}

/// Our parent's pid now.
pub fn parent() -> i32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}
