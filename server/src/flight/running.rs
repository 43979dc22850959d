//! The queries Flight SQL is streaming now: what `CancelFlightInfo` stops, and what tests
//! and operators read to see a query stop when its client goes away.

use std::collections::HashMap;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use datafusion::error::DataFusionError;
use futures::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use uuid::Uuid;

/// Cancellations of queries not started yet are remembered this long.
const EARLY_CANCEL_TTL: Duration = Duration::from_secs(600);

/// One running query, as [`Running::list`] reports it.
#[derive(Debug, Clone)]
pub struct RunningQuery {
    pub id: Uuid,
    pub user: Option<String>,
    pub sql: String,
    pub started: Instant,
    /// Rows handed to the encoder: at most what the client read plus what the transport
    /// buffers.
    pub rows_sent: u64,
}

struct Entry {
    user: Option<String>,
    sql: String,
    started: Instant,
    rows: Arc<AtomicU64>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct State {
    running: HashMap<Uuid, Entry>,
    /// Ids cancelled before their `DoGet`: when it comes, it fails at once.
    cancelled_early: HashMap<Uuid, Instant>,
}

/// The registry of running queries.
#[derive(Default, Clone)]
pub(crate) struct Running {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

/// The outcome of a cancellation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// It was running and has been told to stop.
    Running,
    /// It has not started; it will fail when it does.
    NotStarted,
}

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; carry on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every query streaming now.
    pub(crate) fn list(&self) -> Vec<RunningQuery> {
        self.lock()
            .running
            .iter()
            .map(|(id, e)| RunningQuery {
                id: *id,
                user: e.user.clone(),
                sql: e.sql.clone(),
                started: e.started,
                rows_sent: e.rows.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Registers a query about to stream; `None` if it was cancelled before it started.
    pub(crate) fn start(&self, id: Uuid, user: Option<String>, sql: String) -> Option<Guard> {
        let mut state = self.lock();
        if state.cancelled_early.remove(&id).is_some() {
            return None;
        }
        let rows = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        state.running.insert(
            id,
            Entry {
                user,
                sql,
                started: Instant::now(),
                rows: Arc::clone(&rows),
                cancel: cancel.clone(),
            },
        );
        Some(Guard {
            running: self.clone(),
            id,
            rows,
            cancel,
        })
    }

    pub(crate) fn cancel(&self, id: Uuid) -> Cancelled {
        let mut state = self.lock();
        if let Some(entry) = state.running.get(&id) {
            entry.cancel.cancel();
            return Cancelled::Running;
        }
        let now = Instant::now();
        state
            .cancelled_early
            .retain(|_, at| now.duration_since(*at) < EARLY_CANCEL_TTL);
        state.cancelled_early.insert(id, now);
        Cancelled::NotStarted
    }
}

/// A registered query; dropping it (the stream ended, failed, or its client went away)
/// removes it from the registry.
pub(crate) struct Guard {
    running: Running,
    id: Uuid,
    rows: Arc<AtomicU64>,
    cancel: CancellationToken,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.running.lock().running.remove(&self.id);
    }
}

/// A query's batches, counted, ending with a `Cancelled` error when the query is cancelled.
/// Dropping it drops the plan's stream, which stops the query.
pub(crate) struct Tracked<S> {
    inner: Pin<Box<S>>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    guard: Option<Guard>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, guard: Guard) -> Self {
        Self {
            inner: Box::pin(inner),
            cancelled: Box::pin(guard.cancel.clone().cancelled_owned()),
            guard: Some(guard),
        }
    }
}

impl<S> Stream for Tracked<S>
where
    S: Stream<Item = Result<RecordBatch, DataFusionError>>,
{
    type Item = Result<RecordBatch, FlightError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(guard) = &self.guard else {
            return Poll::Ready(None);
        };
        let rows = Arc::clone(&guard.rows);
        if self.cancelled.as_mut().poll(cx).is_ready() {
            self.guard = None;
            return Poll::Ready(Some(Err(FlightError::Tonic(Box::new(
                tonic::Status::cancelled("the query was cancelled"),
            )))));
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => {
                rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.guard = None;
                let status = super::status(tarn_sql::Error::DataFusion(e));
                Poll::Ready(Some(Err(FlightError::Tonic(Box::new(status)))))
            }
            Poll::Ready(None) => {
                self.guard = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
