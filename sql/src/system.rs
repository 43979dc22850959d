//! The catalog's own tables in the `system` schema: crawlers, their runs and the files they
//! skipped, table versions, and registered partitions. Each reads the catalog snapshot when it
//! is scanned.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::catalog::{SchemaProvider, Session};
use datafusion::common::Result as DfResult;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tarn_catalog::{Catalog, CatalogSnapshot, Schedule};

/// Which catalog table.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Crawlers,
    CrawlerRuns,
    SkippedFiles,
    TableVersions,
    Partitions,
}

const TABLES: [(&str, Kind); 5] = [
    ("crawlers", Kind::Crawlers),
    ("crawler_runs", Kind::CrawlerRuns),
    ("crawler_skipped_files", Kind::SkippedFiles),
    ("table_versions", Kind::TableVersions),
    ("partitions", Kind::Partitions),
];

/// Registers the catalog tables in `schema`.
pub(crate) fn register(schema: &dyn SchemaProvider, catalog: &Arc<Catalog>) -> DfResult<()> {
    for (name, kind) in TABLES {
        schema.register_table(
            name.to_owned(),
            Arc::new(CatalogTable {
                catalog: Arc::clone(catalog),
                kind,
            }),
        )?;
    }
    Ok(())
}

#[derive(Debug)]
struct CatalogTable {
    catalog: Arc<Catalog>,
    kind: Kind,
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn int(name: &str) -> Field {
    Field::new(name, DataType::Int64, false)
}

impl Kind {
    fn schema(self) -> SchemaRef {
        let fields = match self {
            Self::Crawlers => vec![
                text("name", false),
                text("location", false),
                text("database", false),
                text("schedule", true),
                text("schema_change", false),
                Field::new("table_level", DataType::Int64, true),
                Field::new("unnamed_partitions", DataType::Boolean, false),
                text("table_prefix", false),
                Field::new("created_at", ts(), false),
                Field::new("last_run", DataType::Int64, true),
                Field::new("last_run_succeeded", DataType::Boolean, true),
                Field::new("last_run_finished_at", ts(), true),
                Field::new("next_run_at", ts(), true),
            ],
            Self::CrawlerRuns => vec![
                text("crawler", false),
                int("run"),
                Field::new("started_at", ts(), false),
                Field::new("finished_at", ts(), false),
                Field::new("succeeded", DataType::Boolean, false),
                text("error", true),
                text("tables_created", false),
                text("tables_updated", false),
                int("partitions_added"),
                int("files_read"),
                int("files_skipped"),
                text("schema_changes", false),
            ],
            Self::SkippedFiles => vec![
                text("crawler", false),
                int("run"),
                text("path", false),
                text("reason", false),
            ],
            Self::TableVersions => vec![
                text("database", false),
                text("table_name", false),
                int("version"),
                Field::new("created_at", ts(), false),
                text("columns", false),
                text("partition_columns", false),
                text("reason", false),
                Field::new("current", DataType::Boolean, false),
            ],
            Self::Partitions => vec![
                text("database", false),
                text("table_name", false),
                text("partition", false),
                text("location", false),
                Field::new("created_at", ts(), false),
            ],
        };
        Arc::new(Schema::new(fields))
    }

    fn batch(self, snapshot: &CatalogSnapshot) -> DfResult<RecordBatch> {
        let columns: Vec<ArrayRef> = match self {
            Self::Crawlers => crawlers(snapshot),
            Self::CrawlerRuns => crawler_runs(snapshot),
            Self::SkippedFiles => skipped_files(snapshot),
            Self::TableVersions => table_versions(snapshot),
            Self::Partitions => partitions(snapshot),
        };
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn opt_strings<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

fn ints(values: impl IntoIterator<Item = u64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        values
            .into_iter()
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
    ))
}

fn times(values: impl IntoIterator<Item = Option<DateTime<Utc>>>) -> ArrayRef {
    Arc::new(
        values
            .into_iter()
            .map(|t| t.map(|t| t.timestamp_micros()))
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("UTC"),
    )
}

fn crawlers(s: &CatalogSnapshot) -> Vec<ArrayRef> {
    let cs: Vec<_> = s.crawlers.values().collect();
    let last = |name: &str| s.crawl_runs.get(name).and_then(|r| r.last());
    let now = Utc::now();
    vec![
        strings(cs.iter().map(|c| c.name.as_str())),
        strings(cs.iter().map(|c| c.location.as_str())),
        strings(cs.iter().map(|c| c.database.as_str())),
        opt_strings(cs.iter().map(|c| c.options.schedule.as_deref())),
        strings(cs.iter().map(|c| c.options.schema_change.as_str())),
        Arc::new(
            cs.iter()
                .map(|c| c.options.table_level.map(i64::from))
                .collect::<Int64Array>(),
        ),
        Arc::new(BooleanArray::from(
            cs.iter()
                .map(|c| c.options.unnamed_partitions)
                .collect::<Vec<_>>(),
        )),
        strings(cs.iter().map(|c| c.options.table_prefix.as_str())),
        times(cs.iter().map(|c| Some(c.created_at))),
        Arc::new(
            cs.iter()
                .map(|c| last(&c.name).map(|r| i64::try_from(r.run).unwrap_or(i64::MAX)))
                .collect::<Int64Array>(),
        ),
        Arc::new(
            cs.iter()
                .map(|c| last(&c.name).map(|r| r.succeeded))
                .collect::<BooleanArray>(),
        ),
        times(cs.iter().map(|c| last(&c.name).map(|r| r.finished_at))),
        times(cs.iter().map(|c| {
            c.options
                .schedule
                .as_deref()
                .and_then(|e| Schedule::parse(e).ok())
                .and_then(|sch| sch.next_after(now))
        })),
    ]
}

fn crawler_runs(s: &CatalogSnapshot) -> Vec<ArrayRef> {
    let runs: Vec<_> = s.crawl_runs.values().flatten().collect();
    vec![
        strings(runs.iter().map(|r| r.crawler.as_str())),
        ints(runs.iter().map(|r| r.run)),
        times(runs.iter().map(|r| Some(r.started_at))),
        times(runs.iter().map(|r| Some(r.finished_at))),
        Arc::new(BooleanArray::from(
            runs.iter().map(|r| r.succeeded).collect::<Vec<_>>(),
        )),
        opt_strings(runs.iter().map(|r| r.error.as_deref())),
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|r| r.tables_created.join(", ")),
        )),
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|r| r.tables_updated.join(", ")),
        )),
        ints(runs.iter().map(|r| r.partitions_added)),
        ints(runs.iter().map(|r| r.files_read)),
        ints(runs.iter().map(|r| r.files_skipped.len() as u64)),
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|r| r.schema_changes.join("; ")),
        )),
    ]
}

fn skipped_files(s: &CatalogSnapshot) -> Vec<ArrayRef> {
    let rows: Vec<_> = s
        .crawl_runs
        .values()
        .flatten()
        .flat_map(|r| r.files_skipped.iter().map(move |f| (r, f)))
        .collect();
    vec![
        strings(rows.iter().map(|(r, _)| r.crawler.as_str())),
        ints(rows.iter().map(|(r, _)| r.run)),
        strings(rows.iter().map(|(_, f)| f.path.as_str())),
        strings(rows.iter().map(|(_, f)| f.reason.as_str())),
    ]
}

fn describe_columns(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn table_versions(s: &CatalogSnapshot) -> Vec<ArrayRef> {
    let rows: Vec<_> = s
        .tables
        .values()
        .flat_map(|t| {
            let current = t.version();
            t.history()
                .into_iter()
                .map(move |v| (Arc::clone(t), v, current))
        })
        .collect();
    vec![
        strings(rows.iter().map(|(t, _, _)| t.database.as_str())),
        strings(rows.iter().map(|(t, _, _)| t.name.as_str())),
        ints(rows.iter().map(|(_, v, _)| v.version)),
        times(rows.iter().map(|(_, v, _)| Some(v.created_at))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, v, _)| describe_columns(&v.schema)),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, v, _)| v.partition_columns.join(", ")),
        )),
        strings(rows.iter().map(|(_, v, _)| v.reason.as_str())),
        Arc::new(BooleanArray::from(
            rows.iter()
                .map(|(_, v, current)| v.version == *current)
                .collect::<Vec<_>>(),
        )),
    ]
}

fn partitions(s: &CatalogSnapshot) -> Vec<ArrayRef> {
    let rows: Vec<_> = s
        .tables
        .values()
        .filter(|t| !t.partition_columns.is_empty())
        .flat_map(|t| {
            t.partitions
                .iter()
                .flatten()
                .map(move |p| (Arc::clone(t), p.clone()))
        })
        .collect();
    vec![
        strings(rows.iter().map(|(t, _)| t.database.as_str())),
        strings(rows.iter().map(|(t, _)| t.name.as_str())),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(t, p)| {
            t.partition_columns
                .iter()
                .zip(&p.values)
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("/")
        }))),
        strings(rows.iter().map(|(_, p)| p.location.as_str())),
        times(rows.iter().map(|(_, p)| Some(p.created_at))),
    ]
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.kind.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = self.kind.batch(&self.catalog.snapshot())?;
        MemTable::try_new(self.kind.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
