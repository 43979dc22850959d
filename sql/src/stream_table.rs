//! `stream('name')`: a Kinesis-style stream read from SQL. One row per record still held (within
//! the retention period), from every shard, in shard then sequence order. Records the Kinesis
//! Producer Library aggregated are split into their user records (one row each, numbered by
//! `sub_sequence_number`), as the KCL does for consumers.

use std::sync::Arc;

use arrow::array::{BinaryArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue, plan_err};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tarn_ingest::stream::{Start, StoredRecord, Streams, deaggregate, shard_id};

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
        // The user record's place in a KPL-aggregated record; 0 for a plain record.
        Field::new("sub_sequence_number", DataType::Int64, false),
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
            let records: Vec<(StoredRecord, i64)> = read
                .records
                .into_iter()
                .flat_map(|r| match deaggregate(&r.data) {
                    Some(users) => users
                        .into_iter()
                        .enumerate()
                        .map(|(i, u)| {
                            let record = StoredRecord {
                                partition_key: u.partition_key,
                                data: u.data,
                                ..r.clone()
                            };
                            (record, i64::try_from(i).unwrap_or(i64::MAX))
                        })
                        .collect::<Vec<_>>(),
                    None => vec![(r, 0)],
                })
                .collect();
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
                            .map(|(r, _)| i64::try_from(r.sequence).unwrap_or(i64::MAX)),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        records.iter().map(|(_, sub)| *sub),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        records.iter().map(|(r, _)| r.partition_key.as_str()),
                    )),
                    Arc::new(
                        TimestampMillisecondArray::from_iter_values(
                            records.iter().map(|(r, _)| r.arrival_ms),
                        )
                        .with_timezone("UTC"),
                    ),
                    Arc::new(BinaryArray::from_iter_values(
                        records.iter().map(|(r, _)| r.data.as_slice()),
                    )),
                    Arc::new(StringArray::from_iter(
                        records
                            .iter()
                            .map(|(r, _)| std::str::from_utf8(&r.data).ok()),
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
