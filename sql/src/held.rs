//! Inserts held until their transaction block ends, so that `ROLLBACK` undoes them, as in
//! Postgres: inside a block (see [`Session::hold_writes`]) an `INSERT` (or `COPY … FROM`)
//! into a Delta table computes its rows and keeps them in the session; `COMMIT` writes each table's rows as one
//! Delta commit, `ROLLBACK` (or the connection's end) drops them, `ROLLBACK TO SAVEPOINT`
//! drops those held since the savepoint. The block's own queries read the held rows with the
//! table's (a union with them in the plan, made when the plan runs, so that a prepared
//! statement reads the rows held then), as in Postgres, though not through a view (planned
//! inside its table provider); other sessions see them only once committed.
//!
//! Not held: writes to listing tables (Parquet, CSV and JSON folders, whose files are the
//! table) and DDL, which commit when they run (the server warns at `ROLLBACK`). Held rows are kept in memory until `COMMIT`. A commit of several tables is
//! one Delta commit per table: if one fails, those before it stay committed (the error
//! names them).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TransformedResult};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use tarn_catalog::TableRef;

use crate::engine::Session;
use crate::error::{Error, Result};

/// A session's held inserts, and whether it holds writes (it is in a transaction block).
#[derive(Debug, Default)]
pub(crate) struct HeldWrites {
    holding: bool,
    inserts: Vec<HeldInsert>,
}

/// The rows one `INSERT` would have added to `table`.
#[derive(Debug)]
struct HeldInsert {
    table: TableRef,
    batches: Vec<RecordBatch>,
}

impl Session {
    fn held(&self) -> std::sync::MutexGuard<'_, HeldWrites> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// From now on, inserts into Delta tables are held until [`Self::commit_held_writes`] or
    /// [`Self::end_held_writes`] (a transaction block began).
    pub fn hold_writes(&self) {
        self.held().holding = true;
    }

    /// How many inserts are held (a savepoint keeps the number).
    pub fn held_writes(&self) -> usize {
        self.held().inserts.len()
    }

    /// Drops the inserts held after the first `keep` (`ROLLBACK TO SAVEPOINT`).
    pub fn discard_held_writes(&self, keep: usize) {
        self.held().inserts.truncate(keep);
    }

    /// Drops every held insert and holds no more (the block ended: `ROLLBACK`, or `COMMIT`
    /// after [`Self::commit_held_writes`]).
    pub fn end_held_writes(&self) {
        *self.held() = HeldWrites::default();
    }

    pub(crate) fn holds_writes(&self) -> bool {
        self.held().holding
    }

    /// Writes the held inserts, each table's as one Delta commit in the order the tables were
    /// first written. On an error nothing more is written, and the held inserts are dropped;
    /// writes stay held until the block ends ([`Self::end_held_writes`]).
    pub async fn commit_held_writes(&self) -> Result<()> {
        let inserts = std::mem::take(&mut self.held().inserts);
        let mut tables: Vec<(TableRef, Vec<RecordBatch>)> = Vec::new();
        for insert in inserts {
            match tables.iter_mut().find(|(t, _)| *t == insert.table) {
                Some((_, batches)) => batches.extend(insert.batches),
                None => tables.push((insert.table, insert.batches)),
            }
        }
        let mut committed: Vec<String> = Vec::new();
        for (table, batches) in tables {
            if let Err(e) = self.commit_held(&table, batches).await {
                if committed.is_empty() {
                    return Err(e);
                }
                return Err(Error::Write {
                    message: format!(
                        "COMMIT wrote {} but not \"{table}\": {e}",
                        committed.join(", ")
                    ),
                    sqlstate: e.sqlstate(),
                });
            }
            committed.push(format!("\"{table}\""));
        }
        Ok(())
    }

    async fn commit_held(&self, table: &TableRef, batches: Vec<RecordBatch>) -> Result<()> {
        let entry = self
            .engine
            .catalog
            .snapshot()
            .table(&table.database, &table.table)
            .cloned()
            .ok_or_else(|| tarn_catalog::Error::TableNotFound {
                table: table.clone(),
            })?;
        self.append_to_delta(&entry, |delta| delta.write(batches))
            .await?;
        Ok(())
    }

    /// Computes the rows `input` would insert into `table` (whose columns are `schema`) and
    /// holds them, as `schema` types them; how many. A NULL in a column that may not hold
    /// one fails here (23502), as in Postgres, not at `COMMIT`.
    pub(crate) async fn hold_insert(
        &self,
        table: TableRef,
        schema: SchemaRef,
        input: LogicalPlan,
    ) -> Result<u64> {
        let batches = self
            .ctx
            .execute_logical_plan(input)
            .await?
            .collect()
            .await?;
        let batches = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| as_table_rows(&table, b, &schema))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows > 0 {
            self.held().inserts.push(HeldInsert { table, batches });
        }
        Ok(rows)
    }

    /// `plan` reading the held rows of each table it scans beside the table's own: the scan
    /// becomes a union of the two.
    pub(crate) fn with_held_rows(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        if self.held().inserts.is_empty() {
            return Ok(plan);
        }
        Ok(plan
            .transform_up_with_subqueries(|plan| {
                let LogicalPlan::TableScan(scan) = &plan else {
                    return Ok(Transformed::no(plan));
                };
                let Ok(table) = self.resolve(&scan.table_name) else {
                    return Ok(Transformed::no(plan));
                };
                let schema = scan.source.schema();
                let batches = self.held_rows(&table, &schema)?;
                if batches.is_empty() {
                    return Ok(Transformed::no(plan));
                }
                let held = MemTable::try_new(Arc::clone(&schema), vec![batches])?;
                let held = LogicalPlanBuilder::scan_with_filters(
                    scan.table_name.clone(),
                    provider_as_source(Arc::new(held)),
                    scan.projection.clone(),
                    scan.filters.clone(),
                )?
                .build()?;
                // under the table's name, which the union's columns lose
                let name = scan.table_name.clone();
                let union = LogicalPlanBuilder::from(plan)
                    .union(held)?
                    .alias(name)?
                    .build()?;
                Ok(Transformed::yes(union))
            })
            .data()?)
    }

    /// The rows held for `table`, as `schema` (the scan's) types them.
    fn held_rows(
        &self,
        table: &TableRef,
        schema: &SchemaRef,
    ) -> datafusion::common::Result<Vec<RecordBatch>> {
        let held = self.held();
        held.inserts
            .iter()
            .filter(|i| i.table == *table)
            .flat_map(|i| &i.batches)
            .map(|batch| as_table_rows(table, batch, schema))
            .collect()
    }
}

/// `batch` (rows for `table`) with `schema`'s columns and types; an error where a column is
/// missing, a value does not convert, or a NULL is in a column that may not hold one.
fn as_table_rows(
    table: &TableRef,
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> datafusion::common::Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                datafusion::common::DataFusionError::Plan(format!(
                    "rows for \"{table}\" have no column {}",
                    field.name()
                ))
            })?;
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(datafusion::common::DataFusionError::External(Box::new(
                    Error::Write {
                        message: format!(
                            "null value in column \"{}\" of relation \"{table}\" violates \
                             not-null constraint",
                            field.name()
                        ),
                        sqlstate: "23502",
                    },
                )));
            }
            Ok(datafusion::arrow::compute::cast(column, field.data_type())?)
        })
        .collect::<datafusion::common::Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
