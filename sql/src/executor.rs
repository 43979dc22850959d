//! Query work runs on a thread pool of its own. DataFusion operators compute inside `poll`, and
//! some (a nested-loop join over large inputs) hold a thread for minutes between yields. On
//! the server's runtime that would starve everything else: new connections, cancel requests,
//! statement timeouts, health checks and the ingest endpoints. Here it only delays other
//! queries.

use std::future::Future;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use tokio::runtime::{Handle, Runtime};
use tokio::task::AbortHandle;

/// The query thread pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Executor {
    handle: Handle,
    _runtime: Arc<Owned>,
}

/// Shuts the pool down without blocking when the last engine goes, even inside async code.
#[derive(Debug)]
struct Owned(Option<Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Stops a spawned task when whoever waits for it goes away.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Executor {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("tarn-query")
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            _runtime: Arc::new(Owned(Some(runtime))),
        })
    }

    /// Runs `work` on the pool and waits for it. Dropping the returned future aborts `work`
    /// at its next yield.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, DataFusionError> {
        let task = self.handle.spawn(work);
        let _abort = AbortOnDrop(task.abort_handle());
        match task.await {
            Ok(value) => Ok(value),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }

    /// `df`'s rows, computed on the pool and handed over a batch or two at a time, so the
    /// reader's pace still limits the query. Dropping the stream stops the query.
    pub fn stream(&self, df: DataFrame) -> SendableRecordBatchStream {
        let schema = Arc::clone(df.schema().inner());
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let task = self.handle.spawn(async move {
            let mut batches = match df.execute_stream().await {
                Ok(batches) => batches,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    batch = batches.next() => match batch {
                        Some(batch) => {
                            if tx.send(batch).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                }
            }
        });
        let abort = AbortOnDrop(task.abort_handle());
        let rows = futures::stream::unfold((rx, abort), |(mut rx, abort)| async move {
            rx.recv().await.map(|batch| (batch, (rx, abort)))
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, rows))
    }
}
