//! Bulk loads from a stream of record batches: Flight SQL's `CommandStatementIngest`, which
//! ADBC's `adbc_ingest` sends. The batches are written into the table as they arrive, as one
//! Delta commit; nothing waits for the whole load in memory.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{Column, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{
    CreateMemoryTable, DmlStatement, Expr, LogicalPlan, LogicalPlanBuilder, WriteOp, cast, lit,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use tarn_catalog::{Op, TableFormat, TableRef};

use crate::engine::Session;
use crate::error::{Error, Result};
use crate::table::generation;

/// What a load does when its table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Creates a managed Delta table with the batches' schema.
    Create,
    Fail,
}

/// What a load does when its table exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    Fail,
    /// Appends; columns are matched by name and cast to the table's types.
    Append,
    /// Replaces the data, and the schema with the batches' own, in one Delta commit.
    Replace,
}

impl Session {
    /// Loads `source` into `table`; returns the number of rows written.
    pub async fn ingest(
        &self,
        table: TableRef,
        source: SendableRecordBatchStream,
        if_missing: IfMissing,
        if_exists: IfExists,
    ) -> Result<u64> {
        let snapshot = self
            .engine
            .catalog
            .snapshot_within(self.engine.metadata_ttl)
            .await;
        if snapshot.database(&table.database).is_none() {
            return Err(tarn_catalog::Error::DatabaseNotFound {
                database: table.database.clone(),
            }
            .into());
        }
        let existing = snapshot.table(&table.database, &table.table).cloned();
        let input = self.one_shot_plan(source)?;
        let name = TableReference::full(
            crate::engine::CATALOG_NAME,
            table.database.clone(),
            table.table.clone(),
        );
        match (existing, if_missing, if_exists) {
            (None, IfMissing::Fail, _) => Err(tarn_catalog::Error::TableNotFound { table }.into()),
            (None, IfMissing::Create, _) => {
                let tag = self
                    .create_managed_table(CreateMemoryTable {
                        name,
                        constraints: Default::default(),
                        input: Arc::new(input),
                        if_not_exists: false,
                        or_replace: false,
                        column_defaults: Vec::new(),
                        temporary: false,
                    })
                    .await?;
                Ok(tag.rows.unwrap_or(0))
            }
            (Some(_), _, IfExists::Fail) => Err(tarn_catalog::Error::TableExists { table }.into()),
            (Some(entry), _, IfExists::Append) => {
                let input = conform(input, &entry.schema, &table)?;
                let provider = self.ctx.table_provider(name.clone()).await?;
                let dml = DmlStatement::new(
                    name,
                    provider_as_source(provider),
                    WriteOp::Insert(InsertOp::Append),
                    Arc::new(input),
                );
                Ok(self.execute_insert(dml).await?.rows.unwrap_or(0))
            }
            (Some(entry), _, IfExists::Replace) => {
                self.replace(entry.as_ref().clone(), input).await
            }
        }
    }

    /// A plan whose one scan reads `source`, once.
    fn one_shot_plan(&self, source: SendableRecordBatchStream) -> Result<LogicalPlan> {
        let schema = source.schema();
        let partition = Arc::new(OneShot {
            schema: Arc::clone(&schema),
            stream: Mutex::new(Some(source)),
        });
        let table = StreamingTable::try_new(schema, vec![partition])?;
        Ok(self
            .ctx
            .read_table(Arc::new(table))?
            .into_unoptimized_plan())
    }

    /// Overwrites a managed Delta table with `input`, its schema included; the catalog takes
    /// the new schema as a new table version.
    async fn replace(&self, entry: tarn_catalog::Table, input: LogicalPlan) -> Result<u64> {
        let table_ref = TableRef::new(&entry.database, &entry.name);
        if entry.format != TableFormat::Delta {
            return Err(Error::not_supported(format!(
                "replacing the data of {table_ref}, which is not a Delta table"
            )));
        }
        let (location, url, delta) = self.open_delta_table(&entry).await?;
        let mut write = delta
            .write(Vec::new())
            .with_input_plan(self.checked_input(&input)?)
            .with_session_state(Arc::new(self.ctx.state()))
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite);
        if !entry.partition_columns.is_empty() {
            write = write.with_partition_columns(entry.partition_columns.clone());
        }
        let written = write.await.map_err(|source| Error::Delta {
            location: location.clone(),
            source: Box::new(source),
        })?;
        let rows = crate::ddl::added_rows(&written).await;
        let schema = self.delta_schema(&written, &location).await?;
        if schema != entry.schema {
            let mut updated = entry.clone();
            updated.schema = schema;
            updated.updated_at = chrono::Utc::now();
            self.engine
                .catalog
                .commit(vec![Op::UpdateTable {
                    table: updated,
                    reason: "replaced by a bulk load".to_owned(),
                }])
                .await?;
        }
        self.engine
            .ingester
            .committed_delta(&url, generation(&entry), &written);
        Ok(rows)
    }
}

/// `input` with the table's columns in the table's order and types: matched by name (exactly,
/// else ignoring case), cast, and null where the load has no such nullable column.
fn conform(input: LogicalPlan, target: &SchemaRef, table: &TableRef) -> Result<LogicalPlan> {
    let source = Arc::clone(input.schema().inner());
    let bad = |reason: String, sqlstate| Error::Load {
        table: table.clone(),
        reason,
        sqlstate,
    };
    let find = |name: &str| {
        source
            .fields()
            .iter()
            .find(|f| f.name() == name)
            .or_else(|| {
                source
                    .fields()
                    .iter()
                    .find(|f| f.name().eq_ignore_ascii_case(name))
            })
    };
    for field in source.fields() {
        let known = target
            .fields()
            .iter()
            .any(|t| t.name() == field.name() || t.name().eq_ignore_ascii_case(field.name()));
        if !known {
            return Err(bad(
                format!("the table has no column \"{}\"", field.name()),
                "42703",
            ));
        }
    }
    let mut exprs: Vec<Expr> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let expr = match find(field.name()) {
            Some(f) if f.data_type() == field.data_type() => {
                Expr::Column(Column::from_name(f.name()))
            }
            Some(f) => {
                if !datafusion::arrow::compute::can_cast_types(f.data_type(), field.data_type()) {
                    return Err(bad(
                        format!(
                            "column \"{}\" is {} in the load but {} in the table",
                            field.name(),
                            f.data_type(),
                            field.data_type()
                        ),
                        "42804",
                    ));
                }
                cast(
                    Expr::Column(Column::from_name(f.name())),
                    field.data_type().clone(),
                )
            }
            None if field.is_nullable() => cast(
                lit(datafusion::common::ScalarValue::Null),
                field.data_type().clone(),
            ),
            None => {
                return Err(bad(
                    format!(
                        "the load has no value for column \"{}\", which is NOT NULL",
                        field.name()
                    ),
                    "23502",
                ));
            }
        };
        exprs.push(expr.alias(field.name()));
    }
    Ok(LogicalPlanBuilder::from(input).project(exprs)?.build()?)
}

/// A partition that hands out one stream, once.
struct OneShot {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneShot").finish_non_exhaustive()
    }
}

impl PartitionStream for OneShot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        taken.unwrap_or_else(|| {
            let error = DataFusionError::Execution("a load's input is read once".to_owned());
            Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                futures::stream::once(async move { Err(error) }),
            ))
        })
    }
}
