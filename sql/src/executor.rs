//! Query work runs on a thread pool of its own. DataFusion operators compute inside `poll`, and
//! some (a nested-loop join over large inputs) hold a thread for minutes between yields. On
//! the server's runtime that would starve everything else: new connections, cancel requests,
//! statement timeouts, health checks and the ingest endpoints. Here it only delays other
//! queries.

use std::future::Future;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{FieldRef, Schema};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
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

/// Marks a query cancelled when its reader goes away: the cancel that the abort of its task
/// cannot deliver while an operator computes inside one poll (see [`Cancellable`]).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A nested-loop join's filter that fails once its query is cancelled. The join evaluates
/// its filter for each build-side row against a whole probe batch inside one poll, with no
/// yield in between: tens of seconds for two large inputs, in which an aborted task goes on
/// computing. The flag is read at each evaluation, so a cancelled join stops within one.
#[derive(Debug)]
struct Cancellable {
    inner: Arc<dyn PhysicalExpr>,
    cancelled: Arc<AtomicBool>,
}

impl PartialEq for Cancellable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cancelled, &other.cancelled)
            && self.inner.as_ref() == other.inner.as_ref()
    }
}

impl Eq for Cancellable {}

impl std::hash::Hash for Cancellable {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl std::fmt::Display for Cancellable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl PhysicalExpr for Cancellable {
    fn return_field(&self, input_schema: &Schema) -> datafusion::common::Result<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> datafusion::common::Result<ColumnarValue> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(DataFusionError::Execution(
                "canceling statement: its reader went away".to_owned(),
            ));
        }
        self.inner.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> datafusion::common::Result<Arc<dyn PhysicalExpr>> {
        let inner = children.pop().ok_or_else(|| {
            DataFusionError::Internal("a cancellable filter has one child".to_owned())
        })?;
        Ok(Arc::new(Self {
            inner,
            cancelled: Arc::clone(&self.cancelled),
        }))
    }

    fn fmt_sql(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt_sql(f)
    }
}

/// `plan` with the filters of its nested-loop joins [`Cancellable`] by `cancelled`.
fn cancellable_joins(
    plan: Arc<dyn ExecutionPlan>,
    cancelled: &Arc<AtomicBool>,
) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::physical_plan::joins::utils::JoinFilter;
    use datafusion::physical_plan::joins::{NestedLoopJoinExec, NestedLoopJoinExecBuilder};
    plan.transform_up(|node| {
        let Some(join) = node.downcast_ref::<NestedLoopJoinExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some(filter) = join.filter() else {
            return Ok(Transformed::no(node));
        };
        let expression: Arc<dyn PhysicalExpr> = Arc::new(Cancellable {
            inner: Arc::clone(filter.expression()),
            cancelled: Arc::clone(cancelled),
        });
        let filter = JoinFilter::new(
            expression,
            filter.column_indices().to_vec(),
            Arc::clone(filter.schema()),
        );
        let join = NestedLoopJoinExecBuilder::from(join)
            .with_filter(Some(filter))
            .build()?;
        Ok(Transformed::yes(Arc::new(join) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
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
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancelled);
        let task = self.handle.spawn(async move {
            let execute = async move {
                let context = Arc::new(df.task_ctx());
                let plan = cancellable_joins(df.create_physical_plan().await?, &flag)?;
                datafusion::physical_plan::execute_stream(plan, context)
            };
            let mut batches = match execute.await {
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
        let abort = (AbortOnDrop(task.abort_handle()), CancelOnDrop(cancelled));
        let rows = futures::stream::unfold((rx, abort), |(mut rx, abort)| async move {
            rx.recv().await.map(|batch| (batch, (rx, abort)))
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn join(ctx: &SessionContext, cancelled: bool) -> datafusion::common::Result<usize> {
        let df = ctx
            .sql(
                "SELECT a.x, b.y FROM (VALUES (1), (2), (3)) a(x) \
                 CROSS JOIN (VALUES (1), (2)) b(y) WHERE a.x + b.y > 3",
            )
            .await?;
        let plan = df.create_physical_plan().await?;
        let plan = cancellable_joins(plan, &Arc::new(AtomicBool::new(cancelled)))?;
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(shown.contains("NestedLoopJoinExec"), "{shown}");
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
        Ok(batches.iter().map(RecordBatch::num_rows).sum())
    }

    #[tokio::test]
    async fn a_cancelled_nested_loop_join_stops_at_its_filter() {
        let ctx = SessionContext::new();
        assert_eq!(join(&ctx, false).await.expect("runs"), 3);
        let err = join(&ctx, true).await.expect_err("cancelled");
        assert!(err.to_string().contains("canceling statement"), "{err}");
    }
}
