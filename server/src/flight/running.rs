//! The queries Flight SQL is streaming now: what `CancelFlightInfo` stops, and what tests
//! and operators read to see a query stop when its client goes away.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use datafusion::error::DataFusionError;
use futures::Stream;
use uuid::Uuid;

/// Cancellations of queries not started yet are remembered this long, and at most this many.
const EARLY_CANCEL_TTL: Duration = Duration::from_secs(600);
const EARLY_CANCEL_MAX: usize = 10_000;

/// A plan's batches.
pub(crate) type Batches = Pin<Box<dyn Stream<Item = Result<RecordBatch, DataFusionError>> + Send>>;

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

/// The plan's stream, shared between the response (which reads it) and a cancellation
/// (which drops it, stopping the plan even while nobody reads).
type Source = Arc<Shared>;

struct Shared {
    stream: Mutex<Option<Batches>>,
    /// The response's task, woken when a cancellation takes the stream away: a stream that
    /// was waiting for its next batch would otherwise never be polled again.
    waker: futures::task::AtomicWaker,
}

struct Entry {
    id: Uuid,
    user: Option<String>,
    sql: String,
    started: Instant,
    rows: Arc<AtomicU64>,
    source: Source,
}

#[derive(Default)]
struct State {
    /// By a serial number of each `DoGet`: a ticket fetched twice is two entries.
    running: HashMap<u64, Entry>,
    next: u64,
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
    /// It was running and has been stopped.
    Running,
    /// It has not started; it will fail when it does.
    NotStarted,
    /// Too many cancellations of unstarted queries are pending to remember another.
    TooMany,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock leaves plain data behind; carry on with it.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Running {
    /// Every query streaming now.
    pub(crate) fn list(&self) -> Vec<RunningQuery> {
        lock(&self.state)
            .running
            .values()
            .map(|e| RunningQuery {
                id: e.id,
                user: e.user.clone(),
                sql: e.sql.clone(),
                started: e.started,
                rows_sent: e.rows.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Registers `batches` as query `id` about to stream; `None` if it was cancelled before it
    /// started.
    pub(crate) fn start(
        &self,
        id: Uuid,
        user: Option<String>,
        sql: String,
        batches: Batches,
    ) -> Option<Tracked> {
        let mut state = lock(&self.state);
        if state.cancelled_early.remove(&id).is_some() {
            return None;
        }
        let rows = Arc::new(AtomicU64::new(0));
        let source: Source = Arc::new(Shared {
            stream: Mutex::new(Some(batches)),
            waker: futures::task::AtomicWaker::new(),
        });
        let serial = state.next;
        state.next += 1;
        state.running.insert(
            serial,
            Entry {
                id,
                user,
                sql,
                started: Instant::now(),
                rows: Arc::clone(&rows),
                source: Arc::clone(&source),
            },
        );
        Some(Tracked {
            source,
            rows,
            registration: Some(Registration {
                running: self.clone(),
                serial,
            }),
        })
    }

    pub(crate) fn cancel(&self, id: Uuid) -> Cancelled {
        let mut state = lock(&self.state);
        // Stopped queries leave the registry now, not when their response is next polled.
        let serials: Vec<u64> = state
            .running
            .iter()
            .filter(|(_, e)| e.id == id)
            .map(|(serial, _)| *serial)
            .collect();
        let sources: Vec<Source> = serials
            .iter()
            .filter_map(|serial| state.running.remove(serial))
            .map(|e| e.source)
            .collect();
        if !sources.is_empty() {
            drop(state);
            for source in sources {
                // Dropping the plan's stream stops it now, whether or not anyone is reading.
                let stream = lock(&source.stream).take();
                drop(stream);
                source.waker.wake();
            }
            return Cancelled::Running;
        }
        let now = Instant::now();
        state
            .cancelled_early
            .retain(|_, at| now.duration_since(*at) < EARLY_CANCEL_TTL);
        if state.cancelled_early.len() >= EARLY_CANCEL_MAX {
            return Cancelled::TooMany;
        }
        state.cancelled_early.insert(id, now);
        Cancelled::NotStarted
    }
}

/// Removes a query from the registry when its stream is dropped (ended, failed, or its client
/// went away).
struct Registration {
    running: Running,
    serial: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.running.state).running.remove(&self.serial);
    }
}

/// A registered query's batches, counted; it ends with `CANCELLED` once cancelled.
/// Dropping it drops the plan's stream, which stops the query.
pub(crate) struct Tracked {
    source: Source,
    rows: Arc<AtomicU64>,
    registration: Option<Registration>,
}

impl Stream for Tracked {
    type Item = Result<RecordBatch, FlightError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.registration.is_none() {
            return Poll::Ready(None);
        }
        // Registered first, so a cancellation between the poll and the return still wakes us.
        self.source.waker.register(cx.waker());
        let polled = {
            let mut source = lock(&self.source.stream);
            source.as_mut().map(|stream| stream.as_mut().poll_next(cx))
        };
        match polled {
            None => {
                self.registration = None;
                Poll::Ready(Some(Err(FlightError::Tonic(Box::new(
                    tonic::Status::cancelled("the query was cancelled"),
                )))))
            }
            Some(Poll::Ready(Some(Ok(batch)))) => {
                self.rows
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(batch)))
            }
            Some(Poll::Ready(Some(Err(e)))) => {
                self.registration = None;
                let status = super::status(tarn_sql::Error::from(e));
                Poll::Ready(Some(Err(FlightError::Tonic(Box::new(status)))))
            }
            Some(Poll::Ready(None)) => {
                self.registration = None;
                Poll::Ready(None)
            }
            Some(Poll::Pending) => Poll::Pending,
        }
    }
}
