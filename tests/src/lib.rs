//! Shared pieces of tarn's integration tests: a server on port 0 over a temporary warehouse,
//! the two sqllogictest drivers (in-process, and over the Postgres wire), and the benchmark's
//! data at a tiny scale.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};
use tarn_catalog::{Catalog, CatalogConfig, ObjectStores, StoresConfig};
use tarn_ingest::Ingester;
use tarn_server::{Overrides, Server, TarnConfig};
use tarn_sql::{EngineConfig, QueryEngine, QueryEngineArgs, QueryOutput, Session};

pub mod bench_data;
pub mod s3;

/// Starts tarn on 127.0.0.1 port 0 over the local folder `warehouse`.
pub async fn start_server(warehouse: &Path) -> anyhow::Result<Server> {
    start_server_at(&warehouse.display().to_string(), StoresConfig::new()).await
}

/// Starts tarn on 127.0.0.1 port 0 over `warehouse` (a folder or URL) with `stores`.
pub async fn start_server_at(warehouse: &str, stores: StoresConfig) -> anyhow::Result<Server> {
    let overrides = Overrides {
        warehouse: Some(warehouse.to_owned()),
        pg_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("127.0.0.1:0".into()),
        flight_addr: Some("127.0.0.1:0".into()),
        ..Overrides::default()
    };
    let mut config = TarnConfig::load(&overrides)?;
    config.stores = stores;
    // Stream logs are local: a server on an S3 warehouse gets its own folder, not ./tarn-streams.
    if warehouse.contains("://") && !warehouse.starts_with("file://") {
        config.streams.dir = Some(
            tempfile::Builder::new()
                .prefix("tarn-streams-")
                .tempdir()?
                .keep(),
        );
    }
    Ok(Server::start(config).await?)
}

/// An engine in this process over `warehouse` (a folder or URL) with `stores`.
pub async fn engine_at(
    warehouse: &str,
    stores: StoresConfig,
    config: EngineConfig,
) -> anyhow::Result<QueryEngine> {
    let url = tarn_catalog::parse_location(warehouse)?;
    let stores = Arc::new(ObjectStores::new(stores)?);
    let catalog = Arc::new(Catalog::open(url, CatalogConfig::default(), &stores).await?);
    Ok(QueryEngine::try_new(QueryEngineArgs {
        catalog,
        ingester: Arc::new(Ingester::new(stores)),
        config,
        streams: None,
        deliveries: None,
    })
    .await?)
}

/// Requests per operation that `store` has served since start-up
/// (`system.object_store_requests`).
pub async fn request_counts(
    engine: &QueryEngine,
    store: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, i64>> {
    let rows = query(
        &engine.session()?,
        &format!(
            "SELECT operation, requests FROM system.object_store_requests WHERE store = '{store}'"
        ),
    )
    .await?;
    rows.into_iter()
        .map(|r| Ok((r[0].clone(), r[1].parse()?)))
        .collect()
}

/// What `body` cost in requests to `store`, by operation (zeros left out).
pub async fn request_cost(
    engine: &QueryEngine,
    store: &str,
    body: &str,
) -> anyhow::Result<(Vec<Vec<String>>, std::collections::BTreeMap<String, i64>)> {
    let before = request_counts(engine, store).await?;
    let rows = query(&engine.session()?, body).await?;
    let after = request_counts(engine, store).await?;
    Ok((rows, request_diff(&before, after)))
}

/// Requests made between two [`request_counts`] readings, by operation (zeros left out).
pub fn request_diff(
    before: &std::collections::BTreeMap<String, i64>,
    after: std::collections::BTreeMap<String, i64>,
) -> std::collections::BTreeMap<String, i64> {
    after
        .into_iter()
        .map(|(op, n)| {
            let d = n - before.get(&op).copied().unwrap_or(0);
            (op, d)
        })
        .filter(|(_, d)| *d != 0)
        .collect()
}

/// Request counts as a table cell: `get_range 10, list 1`, or `none`.
pub fn describe_requests(requests: &std::collections::BTreeMap<String, i64>) -> String {
    if requests.is_empty() {
        return "none".to_owned();
    }
    requests
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes `bytes` to the object at `url` through the engine's stores (a file or an S3 key).
pub async fn put_object(engine: &QueryEngine, url: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
    let url = if url.contains("://") {
        url::Url::parse(url)?
    } else {
        url::Url::from_file_path(url).map_err(|()| anyhow::anyhow!("not a path: {url}"))?
    };
    let (store, path) = engine.ingester().stores().resolve(&url)?;
    object_store::ObjectStoreExt::put(store.as_ref(), &path, bytes.into()).await?;
    Ok(())
}

/// Runs `sql` (one or more statements) and renders the last result's rows as text.
pub async fn query(session: &Session, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
    match session.sql(sql).await?.pop() {
        Some(QueryOutput::Rows(df)) => render(&df.collect().await?),
        _ => Ok(Vec::new()),
    }
}

/// Connects tokio-postgres to a running server.
pub async fn connect(server: &Server) -> anyhow::Result<tokio_postgres::Client> {
    let addr = server.addrs().pg;
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host={} port={} user=tarn dbname=tarn",
            addr.ip(),
            addr.port()
        ),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Renders cells the way Postgres' text format does, so both drivers agree.
fn render(batches: &[RecordBatch]) -> anyhow::Result<Vec<Vec<String>>> {
    // Timestamps as Postgres writes them: a space before the time, fractions only when set.
    let options = FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"));
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(col, f)| match col.data_type() {
                    DataType::Boolean if !col.is_null(row) => {
                        if f.value(row).to_string() == "true" {
                            "t".into()
                        } else {
                            "f".into()
                        }
                    }
                    DataType::Float64 if !col.is_null(row) => {
                        tarn_server::float8_text(col.as_primitive::<Float64Type>().value(row), 1)
                    }
                    DataType::Float32 if !col.is_null(row) => {
                        tarn_server::float4_text(col.as_primitive::<Float32Type>().value(row), 1)
                    }
                    _ => f.value(row).to_string(),
                })
                .collect();
            rows.push(cells);
        }
    }
    Ok(rows)
}

/// Runs `.slt` statements on a session directly.
pub struct InProcessDb {
    pub session: Session,
}

#[derive(Debug)]
pub struct SltError {
    pub message: String,
    pub sqlstate: Option<String>,
}

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SltError {}

impl From<tarn_sql::Error> for SltError {
    fn from(e: tarn_sql::Error) -> Self {
        Self {
            sqlstate: Some(e.sqlstate().to_owned()),
            message: e.to_string(),
        }
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for InProcessDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let mut outputs = self.session.sql(sql).await?;
        match outputs.pop() {
            None => Ok(DBOutput::StatementComplete(0)),
            Some(QueryOutput::Command(tag)) => {
                Ok(DBOutput::StatementComplete(tag.rows.unwrap_or(0)))
            }
            Some(QueryOutput::Rows(df)) => {
                let width = df.schema().fields().len();
                let batches = df.collect().await.map_err(tarn_sql::Error::from)?;
                let rows = render(&batches).map_err(|e| SltError {
                    message: e.to_string(),
                    sqlstate: None,
                })?;
                Ok(DBOutput::Rows {
                    types: vec![DefaultColumnType::Any; width],
                    rows,
                })
            }
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tarn-in-process"
    }

    fn error_sql_state(err: &SltError) -> Option<String> {
        err.sqlstate.clone()
    }
}

/// Runs `.slt` statements over the Postgres wire (simple query protocol).
pub struct PgDb {
    pub client: tokio_postgres::Client,
}

#[async_trait]
impl sqllogictest::AsyncDB for PgDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        use tokio_postgres::SimpleQueryMessage;
        let messages = self.client.simple_query(sql).await.map_err(|e| SltError {
            sqlstate: e.code().map(|c| c.code().to_owned()),
            message: e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
        })?;
        let mut rows = Vec::new();
        let mut width = None;
        let mut complete = None;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(cols) => {
                    width = Some(cols.len());
                    rows.clear();
                }
                SimpleQueryMessage::Row(row) => {
                    width = Some(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => complete = Some(n),
                _ => {}
            }
        }
        match width {
            Some(width) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; width],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(complete.unwrap_or(0))),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tarn-pg-wire"
    }

    fn error_sql_state(err: &SltError) -> Option<String> {
        err.sqlstate.clone()
    }
}
