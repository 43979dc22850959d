//! The statement running on each connection: `CancelRequest` and `statement_timeout` stop it,
//! whether it is still planning, writing, or streaming rows to the client.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Future, Stream};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::results::SendableRowStream;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::data::DataRow;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Every connection that finished logging in, by its backend key.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    connections: Mutex<HashMap<(i32, Bytes), Arc<Running>>>,
}

impl Statements {
    pub(crate) fn register(
        self: &Arc<Self>,
        pid: i32,
        secret: Bytes,
        running: Arc<Running>,
    ) -> Registration {
        let key = (pid, secret);
        self.lock().insert(key.clone(), running);
        Registration {
            statements: Arc::clone(self),
            key,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, Bytes), Arc<Running>>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a connection cancellable; dropped when the connection ends.
#[derive(Debug)]
pub(crate) struct Registration {
    statements: Arc<Statements>,
    key: (i32, Bytes),
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.statements.lock().remove(&self.key);
    }
}

/// Answers `CancelRequest`s: a wrong key is ignored, as Postgres does.
#[derive(Debug)]
pub(crate) struct TarnCancelHandler {
    pub(crate) statements: Arc<Statements>,
}

#[async_trait]
impl CancelHandler for TarnCancelHandler {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let running = self
            .statements
            .lock()
            .get(&(request.pid, request.secret_key.to_bytes()))
            .cloned();
        if let Some(running) = running {
            running.cancel();
        }
    }
}

/// One connection's current statement.
#[derive(Debug, Default)]
pub(crate) struct Running {
    current: Mutex<Option<CancellationToken>>,
    /// Whether the last statement checked writes (its write is not stopped when the client
    /// hangs up).
    writing: std::sync::atomic::AtomicBool,
}

impl Running {
    /// Records whether the statement about to run writes.
    pub(crate) fn writing(&self, writes: bool) {
        self.writing
            .store(writes, std::sync::atomic::Ordering::Relaxed);
    }

    /// The client went away: cancels the current statement unless it writes.
    pub(crate) fn hung_up(&self) {
        if !self.writing.load(std::sync::atomic::Ordering::Relaxed) {
            self.cancel();
        }
    }

    /// A statement starts: it can be cancelled from now on, and times out after `timeout`.
    pub(crate) fn start(&self, timeout: Option<Duration>) -> Control {
        let token = CancellationToken::new();
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Control {
            token,
            deadline: timeout.map(|t| Instant::now() + t),
        }
    }

    fn cancel(&self) {
        if let Some(token) = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            token.cancel();
        }
    }
}

/// What stops one statement.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    token: CancellationToken,
    deadline: Option<Instant>,
}

fn canceled(why: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        "57014".to_owned(),
        format!("canceling statement due to {why}"),
    )))
}

const USER_REQUEST: &str = "user request";
const TIMEOUT: &str = "statement timeout";

impl Control {
    /// Runs `work` (planning, a write) unless the statement is cancelled or times out first;
    /// then `work` is dropped, which stops it.
    pub(crate) async fn run<T>(
        &self,
        work: impl Future<Output = PgWireResult<T>>,
    ) -> PgWireResult<T> {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = self.token.cancelled() => Err(canceled(USER_REQUEST)),
            () = deadline => Err(canceled(TIMEOUT)),
            result = work => result,
        }
    }

    /// `rows`, ending with a 57014 error if the statement is cancelled or times out while
    /// they are produced or sent. Dropping the rows stops the query.
    pub(crate) fn guard(&self, rows: SendableRowStream) -> SendableRowStream {
        Box::pin(Guarded {
            rows,
            cancelled: Box::pin(self.token.clone().cancelled_owned()),
            token: self.token.clone(),
            deadline: self.deadline,
            sleep: self.deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            done: false,
        })
    }
}

struct Guarded {
    rows: SendableRowStream,
    token: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    done: bool,
}

impl Guarded {
    fn stop(&mut self, why: &str) -> Poll<Option<PgWireResult<DataRow>>> {
        self.done = true;
        // The query's stream goes now, not when the portal does.
        self.rows = Box::pin(futures::stream::empty());
        Poll::Ready(Some(Err(canceled(why))))
    }
}

impl Stream for Guarded {
    type Item = PgWireResult<DataRow>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Cheap checks per row; the wakers are registered only when the rows wait.
        if self.token.is_cancelled() {
            return self.stop(USER_REQUEST);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return self.stop(TIMEOUT);
        }
        match self.rows.as_mut().poll_next(cx) {
            Poll::Ready(item) => Poll::Ready(item),
            Poll::Pending => {
                if self.cancelled.as_mut().poll(cx).is_ready() {
                    return self.stop(USER_REQUEST);
                }
                if let Some(sleep) = self.sleep.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    return self.stop(TIMEOUT);
                }
                Poll::Pending
            }
        }
    }
}
