//! Where each column of a result comes from, as Postgres's RowDescription says it: the OID
//! of the table (or view) a column is read straight from, and the column's number in it (pgjdbc's
//! `getBaseTableName`, `getBaseColumnName` and `isNullable`, which look both up in
//! `pg_attribute`). A computed column, or one read through a derived table, has neither (0).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use datafusion::logical_expr::expr::Alias;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use crate::engine::Session;
use crate::error::Result;
use crate::table::LakeTableProvider;
use crate::view::LakeViewProvider;

/// The field metadata keys the Postgres server reads.
pub const TABLE_OID: &str = "tarn.pg.table_oid";
pub const COLUMN_NUMBER: &str = "tarn.pg.column_number";

/// The `pg_class` OIDs of lake tables, by (database, table). The crate keeps a name's OID for
/// the life of the process, so they are looked up once.
#[derive(Debug, Default)]
pub(crate) struct TableOids(Mutex<HashMap<(String, String), i32>>);

impl TableOids {
    fn get(&self, key: &(String, String)) -> Option<i32> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
    }

    fn put(&self, found: impl IntoIterator<Item = ((String, String), i32)>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(found);
    }
}

/// A column read straight from a lake table or view: its database, table and column number.
type Origin = (String, String, i16);

impl Session {
    /// `plan` with each output column that is a lake table's (or view's) column marked with
    /// that table's OID and the column's number (see [`TABLE_OID`]); `plan` itself if none
    /// is.
    pub(crate) async fn with_origins(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        if !crate::engine::returns_rows(&plan) {
            return Ok(plan);
        }
        let origins = origins(&plan);
        if origins.iter().all(Option::is_none) {
            return Ok(plan);
        }
        let tables: HashSet<(String, String)> = origins
            .iter()
            .flatten()
            .map(|(d, t, _)| (d.clone(), t.clone()))
            .collect();
        let oids = self.table_oids(tables).await?;
        let exprs: Vec<Expr> = plan
            .schema()
            .iter()
            .zip(&origins)
            .map(|((qualifier, field), origin)| {
                let column = Expr::Column(datafusion::common::Column::new(
                    qualifier.cloned(),
                    field.name(),
                ));
                let Some((oid, attnum)) = origin
                    .as_ref()
                    .and_then(|(d, t, n)| Some((oids.get(&(d.clone(), t.clone()))?, *n)))
                else {
                    return column;
                };
                let mut metadata = field.metadata().clone();
                metadata.insert(TABLE_OID.to_owned(), oid.to_string());
                metadata.insert(COLUMN_NUMBER.to_owned(), attnum.to_string());
                Expr::Alias(
                    Alias::new(column, qualifier.cloned(), field.name())
                        .with_metadata(Some(metadata.into())),
                )
            })
            .collect();
        Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
    }

    /// The `pg_class` OIDs of `tables`, from the cache or `pg_class`.
    async fn table_oids(
        &self,
        tables: HashSet<(String, String)>,
    ) -> Result<HashMap<(String, String), i32>> {
        let cache = &self.engine.table_oids;
        let mut found: HashMap<_, _> = tables
            .iter()
            .filter_map(|k| cache.get(k).map(|oid| (k.clone(), oid)))
            .collect();
        if found.len() == tables.len() {
            return Ok(found);
        }
        // every relation's OID at once: pg_class is built whole on each read anyway
        let fresh: Vec<((String, String), i32)> =
            crate::pg_catalog::relations_in(&self.ctx.state())
                .await?
                .into_iter()
                .map(|(oid, name)| (name, oid))
                .collect();
        cache.put(fresh.iter().cloned());
        found.extend(fresh.into_iter().filter(|(k, _)| tables.contains(k)));
        Ok(found)
    }
}

/// Where each output column of `plan` is read from, by position: a column passed on by
/// projections (under any alias), filters, sorts, limits, joins, groupings and derived tables
/// from a lake table or view has its table and number; anything computed has none.
fn origins(plan: &LogicalPlan) -> Vec<Option<Origin>> {
    let width = plan.schema().fields().len();
    let through = |input: &LogicalPlan, exprs: &[Expr]| -> Vec<Option<Origin>> {
        let inner = origins(input);
        exprs
            .iter()
            .map(|e| match e.clone().unalias_nested().data {
                Expr::Column(c) => input
                    .schema()
                    .index_of_column(&c)
                    .ok()
                    .and_then(|i| inner.get(i).cloned().flatten()),
                _ => None,
            })
            .collect()
    };
    let found = match plan {
        LogicalPlan::TableScan(scan) => match lake_relation(scan) {
            Some((database, table, schema)) => plan
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    let index = schema.index_of(f.name()).ok()?;
                    Some((
                        database.clone(),
                        table.clone(),
                        i16::try_from(index + 1).ok()?,
                    ))
                })
                .collect(),
            None => vec![None; width],
        },
        LogicalPlan::Projection(p) => through(&p.input, &p.expr),
        LogicalPlan::Aggregate(a) => {
            let mut out = through(&a.input, &a.group_expr);
            out.resize(width, None);
            out
        }
        LogicalPlan::Window(w) => {
            let mut out = origins(&w.input);
            out.resize(width, None);
            out
        }
        LogicalPlan::Join(j) => {
            use datafusion::common::JoinType as J;
            match j.join_type {
                J::LeftSemi | J::LeftAnti | J::LeftMark => {
                    let mut out = origins(&j.left);
                    out.resize(width, None);
                    out
                }
                J::RightSemi | J::RightAnti | J::RightMark => {
                    let mut out = origins(&j.right);
                    out.resize(width, None);
                    out
                }
                _ => {
                    let mut out = origins(&j.left);
                    out.extend(origins(&j.right));
                    out
                }
            }
        }
        LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_)) => {
            origins(plan.inputs()[0])
        }
        _ => vec![None; width],
    };
    if found.len() == width {
        found
    } else {
        vec![None; width]
    }
}

/// The lake table or view `scan` reads: its database, name and columns.
fn lake_relation(
    scan: &datafusion::logical_expr::TableScan,
) -> Option<(String, String, datafusion::arrow::datatypes::SchemaRef)> {
    let provider = datafusion::datasource::source_as_provider(&scan.source).ok()?;
    let any = provider.as_ref() as &dyn std::any::Any;
    if let Some(lake) = any.downcast_ref::<LakeTableProvider>() {
        let table = lake.table();
        return Some((
            table.database.clone(),
            table.name.clone(),
            std::sync::Arc::clone(&table.schema),
        ));
    }
    // a view is a relation too: Postgres names it as its columns' table
    let view = any.downcast_ref::<LakeViewProvider>()?.view();
    Some((view.database.clone(), view.name.clone(), provider.schema()))
}
