//! The catalog over HTTP (JSON): databases, tables with columns, partitions, versions, and
//! crawlers with their runs.
//!
//! ```text
//! GET    /catalog/databases
//! GET    /catalog/databases/{db}
//! GET    /catalog/databases/{db}/tables
//! GET    /catalog/databases/{db}/tables/{table}
//! GET    /catalog/databases/{db}/tables/{table}/partitions[?expression=…]
//! GET    /catalog/databases/{db}/tables/{table}/versions
//! GET    /crawlers                     POST /crawlers {name, location, database, options}
//! GET    /crawlers/{name}              DELETE /crawlers/{name}
//! POST   /crawlers/{name}/run          GET /crawlers/{name}/runs
//! ```
//! Errors: `{"error": …, "sqlstate": …}` with 404 (not found), 409 (exists), 400 (bad input).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::Schema;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_catalog::{CrawlRun, Crawler, Partition, Table, TableVersion};

use crate::glue::hive_type;
use crate::http::HttpState;

/// A catalog error as JSON, with the SQLSTATE the Postgres wire would send.
pub(crate) struct ApiError(tarn_sql::Error);

impl<E: Into<tarn_sql::Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.sqlstate();
        let status = match code {
            "42P01" | "3F000" | "42704" => StatusCode::NOT_FOUND,
            "42P07" | "42P06" | "42710" => StatusCode::CONFLICT,
            c if ["0A", "22", "42"].iter().any(|p| c.starts_with(p)) => StatusCode::BAD_REQUEST,
            _ => {
                tracing::error!(error = %self.0, code, "catalog request failed");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": format!("internal error ({code}); see the server log"), "sqlstate": code})),
                )
                    .into_response();
            }
        };
        (
            status,
            Json(json!({"error": self.0.to_string(), "sqlstate": code})),
        )
            .into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn not_found_table(db: &str, table: &str) -> ApiError {
    ApiError(
        tarn_catalog::Error::TableNotFound {
            table: tarn_catalog::TableRef::new(db, table),
        }
        .into(),
    )
}

fn columns(schema: &Schema, partition_columns: &[String]) -> Vec<Value> {
    schema
        .fields()
        .iter()
        .map(|f| {
            json!({
                "name": f.name(),
                "type": f.data_type().to_string(),
                "hive_type": hive_type(f.data_type()),
                "nullable": f.is_nullable(),
                "partition": partition_columns.contains(f.name()),
            })
        })
        .collect()
}

fn table_json(t: &Table) -> Value {
    json!({
        "database": t.database,
        "name": t.name,
        "kind": t.kind,
        "format": t.format,
        "location": t.location,
        "columns": columns(&t.schema, &t.partition_columns),
        "partition_columns": t.partition_columns,
        "partitions": t.partitions.as_ref().map(|p| if t.partition_columns.is_empty() { 0 } else { p.len() }),
        "skipped_files": t.skipped_files,
        "options": t.options,
        "properties": t.properties,
        "version": t.version(),
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    })
}

fn version_json(v: &TableVersion) -> Value {
    json!({
        "version": v.version,
        "created_at": v.created_at,
        "reason": v.reason,
        "columns": columns(&v.schema, &v.partition_columns),
        "partition_columns": v.partition_columns,
    })
}

fn partition_json(t: &Table, p: &Partition) -> Value {
    let values: BTreeMap<&String, &String> = t.partition_columns.iter().zip(&p.values).collect();
    json!({"values": p.values, "columns": values, "location": p.location, "created_at": p.created_at})
}

fn run_json(r: &CrawlRun) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

fn crawler_json(c: &Crawler, last: Option<&Arc<CrawlRun>>) -> Value {
    json!({
        "name": c.name,
        "location": c.location,
        "database": c.database,
        "options": c.options,
        "created_at": c.created_at,
        "last_run": last.map(|r| run_json(r)),
    })
}

pub(crate) async fn databases(State(s): State<Arc<HttpState>>) -> ApiResult {
    let snapshot = s.engine.catalog_snapshot().await;
    let dbs: Vec<Value> = snapshot
        .databases
        .values()
        .map(|d| json!({"name": d.name, "properties": d.properties, "created_at": d.created_at, "tables": snapshot.tables_in(&d.name).count()}))
        .collect();
    Ok(Json(json!({"databases": dbs})))
}

pub(crate) async fn database(State(s): State<Arc<HttpState>>, Path(db): Path<String>) -> ApiResult {
    let snapshot = s.engine.catalog_snapshot().await;
    let d = snapshot.database(&db).ok_or_else(|| {
        ApiError::from(tarn_catalog::Error::DatabaseNotFound {
            database: db.clone(),
        })
    })?;
    Ok(Json(
        json!({"name": d.name, "properties": d.properties, "created_at": d.created_at, "tables": snapshot.tables_in(&db).map(|t| t.name.clone()).collect::<Vec<_>>()}),
    ))
}

pub(crate) async fn tables(State(s): State<Arc<HttpState>>, Path(db): Path<String>) -> ApiResult {
    let snapshot = s.engine.catalog_snapshot().await;
    if snapshot.database(&db).is_none() {
        return Err(tarn_catalog::Error::DatabaseNotFound { database: db }.into());
    }
    let tables: Vec<Value> = snapshot.tables_in(&db).map(|t| table_json(t)).collect();
    Ok(Json(json!({"tables": tables})))
}

async fn find(s: &HttpState, db: &str, table: &str) -> Result<Arc<Table>, ApiError> {
    let snapshot = s.engine.catalog_snapshot().await;
    if snapshot.database(db).is_none() {
        return Err(tarn_catalog::Error::DatabaseNotFound {
            database: db.to_owned(),
        }
        .into());
    }
    snapshot
        .table(db, table)
        .cloned()
        .ok_or_else(|| not_found_table(db, table))
}

pub(crate) async fn table(
    State(s): State<Arc<HttpState>>,
    Path((db, table)): Path<(String, String)>,
) -> ApiResult {
    let t = find(&s, &db, &table).await?;
    Ok(Json(table_json(&t)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PartitionQuery {
    expression: Option<String>,
}

pub(crate) async fn partitions(
    State(s): State<Arc<HttpState>>,
    Path((db, table)): Path<(String, String)>,
    Query(q): Query<PartitionQuery>,
) -> ApiResult {
    let t = find(&s, &db, &table).await?;
    let parts = s.engine.partitions_matching(&t, q.expression.as_deref())?;
    let list: Vec<Value> = parts.iter().map(|p| partition_json(&t, p)).collect();
    Ok(Json(
        json!({"partition_columns": t.partition_columns, "partitions": list}),
    ))
}

pub(crate) async fn versions(
    State(s): State<Arc<HttpState>>,
    Path((db, table)): Path<(String, String)>,
) -> ApiResult {
    let t = find(&s, &db, &table).await?;
    let list: Vec<Value> = t.history().iter().map(version_json).collect();
    Ok(Json(json!({"current": t.version(), "versions": list})))
}

pub(crate) async fn crawlers(State(s): State<Arc<HttpState>>) -> ApiResult {
    let snapshot = s.engine.catalog_snapshot().await;
    let list: Vec<Value> = snapshot
        .crawlers
        .values()
        .map(|c| crawler_json(c, snapshot.crawl_runs.get(&c.name).and_then(|r| r.last())))
        .collect();
    Ok(Json(json!({"crawlers": list})))
}

async fn find_crawler(s: &HttpState, name: &str) -> Result<Value, ApiError> {
    let snapshot = s.engine.catalog_snapshot().await;
    let c = snapshot.crawlers.get(name).ok_or_else(|| {
        ApiError::from(tarn_catalog::Error::CrawlerNotFound {
            crawler: name.to_owned(),
        })
    })?;
    Ok(crawler_json(
        c,
        snapshot.crawl_runs.get(name).and_then(|r| r.last()),
    ))
}

pub(crate) async fn crawler(
    State(s): State<Arc<HttpState>>,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(Json(find_crawler(&s, &name).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCrawler {
    name: String,
    location: String,
    database: String,
    /// The same keys as `CREATE CRAWLER … WITH (…)`; values are strings, numbers or booleans.
    #[serde(default)]
    options: BTreeMap<String, Value>,
}

pub(crate) async fn create_crawler(
    State(s): State<Arc<HttpState>>,
    Json(body): Json<NewCrawler>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let options: Vec<(String, String)> = body
        .options
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    let options = tarn_sql::crawler_options(&options)?;
    s.engine
        .create_crawler(&body.name, &body.location, &body.database, options, false)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(find_crawler(&s, &body.name).await?),
    ))
}

pub(crate) async fn drop_crawler(
    State(s): State<Arc<HttpState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.engine.drop_crawler(&name, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn run_crawler(
    State(s): State<Arc<HttpState>>,
    Path(name): Path<String>,
) -> ApiResult {
    let run = s.engine.run_crawler(&name).await?;
    Ok(Json(run_json(&run)))
}

pub(crate) async fn crawler_runs(
    State(s): State<Arc<HttpState>>,
    Path(name): Path<String>,
) -> ApiResult {
    let snapshot = s.engine.catalog_snapshot().await;
    if !snapshot.crawlers.contains_key(&name) {
        return Err(tarn_catalog::Error::CrawlerNotFound { crawler: name }.into());
    }
    let runs: Vec<Value> = snapshot
        .crawl_runs
        .get(&name)
        .map(|r| r.iter().map(|r| run_json(r)).collect())
        .unwrap_or_default();
    Ok(Json(json!({"runs": runs})))
}
