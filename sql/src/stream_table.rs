//! `stream('name')`: a Kinesis-style stream read from SQL. One row per record still held (within
//! the retention period), from every shard, in shard then sequence order.

use std::sync::Arc;

use arrow::array::{BinaryArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue, plan_err};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tarn_ingest::stream::{Start, Streams, shard_id};

/// The `stream` table function.
#[derive(Debug)]
pub(crate) struct StreamFunction {
    pub(crate) streams: Option<Arc<Streams>>,
}

impl TableFunctionImpl for StreamFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let name = match args.exprs() {
            [
                Expr::Literal(ScalarValue::Utf8(Some(name)) | ScalarValue::Utf8View(Some(name)), _),
            ] => name.clone(),
            _ => return plan_err!("stream() takes one argument, the stream's name as a string"),
        };
        let Some(streams) = &self.streams else {
            return Err(DataFusionError::External(Box::new(
                crate::Error::not_supported("streams in an engine started without them"),
            )));
        };
        // Unknown streams fail here, at planning, with the stream's name.
        streams
            .describe(&name)
            .map_err(|e| DataFusionError::External(Box::new(crate::Error::Stream(e))))?;
        Ok(Arc::new(StreamTable {
            streams: Arc::clone(streams),
            name,
        }))
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("shard_id", DataType::Utf8, false),
        Field::new("sequence_number", DataType::Int64, false),
        Field::new("partition_key", DataType::Utf8, false),
        Field::new(
            "arrival_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("data", DataType::Binary, false),
        // The data as text when it is UTF-8 (JSON records usually are), else NULL.
        Field::new("text", DataType::Utf8, true),
    ]))
}

#[derive(Debug)]
struct StreamTable {
    streams: Arc<Streams>,
    name: String,
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let info = self
            .streams
            .describe(&self.name)
            .map_err(|e| DataFusionError::External(Box::new(crate::Error::Stream(e))))?;
        let mut batches = Vec::new();
        for shard in 0..info.shards {
            let read = self
                .streams
                .read(
                    &self.name,
                    shard,
                    Start::TrimHorizon,
                    limit.unwrap_or(usize::MAX),
                )
                .await
                .map_err(|e| DataFusionError::External(Box::new(crate::Error::Stream(e))))?;
            let records = read.records;
            let id = shard_id(shard);
            let batch = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        records.iter().map(|_| id.as_str()),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        records
                            .iter()
                            .map(|r| i64::try_from(r.sequence).unwrap_or(i64::MAX)),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        records.iter().map(|r| r.partition_key.as_str()),
                    )),
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(
                            records.iter().map(|r| r.arrival_ms),
                        )
                        .with_timezone("UTC"),
                    ),
                    Arc::new(BinaryArray::from_iter_values(
                        records.iter().map(|r| r.data.as_slice()),
                    )),
                    Arc::new(StringArray::from_iter(
                        records.iter().map(|r| std::str::from_utf8(&r.data).ok()),
                    )),
                ],
            )?;
            batches.push(batch);
        }
        MemTable::try_new(schema(), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}
