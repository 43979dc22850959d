//! HTTP: `GET /health`, `POST /query` (JSON in, JSON out), the catalog and crawlers
//! (`/catalog/…`, `/crawlers/…`, see [`crate::catalog_api`]), and AWS JSON APIs on `POST /`
//! chosen by `X-Amz-Target` (Glue, Kinesis and Firehose: [`crate::glue`], [`crate::kinesis`],
//! [`crate::firehose`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use datafusion::arrow::array::RecordBatch;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tarn_sql::{QueryEngine, QueryOutput};

#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) engine: QueryEngine,
    pub(crate) aws_credentials: std::collections::BTreeMap<String, tarn_catalog::Secret>,
    pub(crate) streams: Arc<tarn_ingest::stream::Streams>,
    pub(crate) deliveries: Arc<tarn_ingest::delivery::Deliveries>,
    pub(crate) max_rows: usize,
    /// `/query` has no user: it may name files only when no users are configured.
    pub(crate) files: crate::config::FileAccess,
}

pub(crate) fn router(state: HttpState) -> Router {
    use crate::catalog_api as api;
    Router::new()
        .route(
            "/",
            post(aws).layer(axum::extract::DefaultBodyLimit::max(MAX_AWS_BODY_BYTES)),
        )
        .route("/health", get(health))
        .route("/query", post(query))
        .route("/catalog/databases", get(api::databases))
        .route("/catalog/databases/{db}", get(api::database))
        .route("/catalog/databases/{db}/tables", get(api::tables))
        .route("/catalog/databases/{db}/tables/{table}", get(api::table))
        .route(
            "/catalog/databases/{db}/tables/{table}/partitions",
            get(api::partitions),
        )
        .route(
            "/catalog/databases/{db}/tables/{table}/versions",
            get(api::versions),
        )
        .route("/crawlers", get(api::crawlers).post(api::create_crawler))
        .route(
            "/crawlers/{name}",
            get(api::crawler).delete(api::drop_crawler),
        )
        .route("/crawlers/{name}/run", post(api::run_crawler))
        .route("/crawlers/{name}/runs", get(api::crawler_runs))
        .with_state(Arc::new(state))
}

/// The largest AWS API request body read: a Kinesis PutRecords of 5 MiB of data, base64 in
/// JSON, with room to spare. Larger bodies get an AWS-style error, not a cut connection.
const MAX_AWS_BODY_BYTES: usize = 16 << 20;

/// AWS JSON protocol requests: `X-Amz-Target: <Service>.<Operation>`.
async fn aws(
    State(state): State<Arc<HttpState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    use crate::aws::{AwsError, aws_cbor, aws_json};
    let cbor = crate::cbor::is_cbor(&headers);
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return AwsError::new(
                "InvalidArgumentException",
                format!(
                    "the request body could not be read ({rejection}); at most {} MiB is accepted",
                    MAX_AWS_BODY_BYTES >> 20
                ),
            )
            .with_status(rejection.status())
            .into_response_as(cbor);
        }
    };
    if let Err(e) = crate::sigv4::verify(&state.aws_credentials, &method, &uri, &headers, &body) {
        return e.into_response_as(cbor);
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body: Value = if cbor {
        match crate::cbor::decode(&body) {
            Ok(v) => v,
            Err(message) => {
                return AwsError::new("SerializationException", message).into_response_as(true);
            }
        }
    } else if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                return AwsError::new("SerializationException", "the body is not a JSON object")
                    .into_response();
            }
        }
    };
    let answer = match target.split_once('.') {
        Some(("Kinesis_20131202", operation)) => {
            crate::kinesis::handle(&state.streams, operation, &body).await
        }
        Some(("Firehose_20150804", operation)) => {
            crate::firehose::handle(&state.deliveries, operation, &body).await
        }
        Some(("AWSGlue", operation)) => crate::glue::handle(&state.engine, operation, &body).await,
        _ => Err(AwsError::new(
            "UnknownOperationException",
            format!(
                "unknown X-Amz-Target {target:?}; tarn serves AWSGlue.*, Kinesis_20131202.* and Firehose_20150804.*"
            ),
        )),
    };
    match answer {
        Ok(v) if cbor => aws_cbor(&v),
        Ok(v) => aws_json(v),
        Err(e) => e.into_response_as(cbor),
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
}

#[derive(Debug, Serialize)]
struct Column {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
}

/// A SQL error as JSON, with the same SQLSTATE the Postgres wire would send.
struct QueryError(tarn_sql::Error);

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let code = self.0.sqlstate();
        // Classes 0A, 22, 23, 2B, 3F, 42: the statement's fault; the rest is the server's.
        let user_fault = ["0A", "22", "23", "2B", "3F", "42"]
            .iter()
            .any(|c| code.starts_with(c));
        let (status, message) = if user_fault {
            (StatusCode::BAD_REQUEST, self.0.to_string())
        } else {
            tracing::error!(error = %self.0, code, "query failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error ({code}); see the server log"),
            )
        };
        (status, Json(json!({"error": message, "sqlstate": code}))).into_response()
    }
}

/// Runs every statement; answers with the last one's rows (at most `max_rows`) or command tag.
async fn query(
    State(state): State<Arc<HttpState>>,
    Json(request): Json<QueryRequest>,
) -> Result<Json<Value>, QueryError> {
    let session = state.engine.session().map_err(QueryError)?;
    session.set_file_access(state.files.allows(None));
    let mut outputs = session.sql(&request.sql).await.map_err(QueryError)?;
    let Some(last) = outputs.pop() else {
        return Ok(Json(json!({"command": "EMPTY"})));
    };
    match last {
        QueryOutput::Command(tag) => Ok(Json(json!({"command": tag.command, "rows": tag.rows}))),
        QueryOutput::Rows(df) => {
            let columns: Vec<Column> = df
                .schema()
                .fields()
                .iter()
                .map(|f| Column {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                })
                .collect();
            let mut stream = session.executor().stream(df);
            let mut batches: Vec<RecordBatch> = Vec::new();
            let mut rows = 0;
            let mut truncated = false;
            while let Some(batch) = stream
                .try_next()
                .await
                .map_err(|e| QueryError(tarn_sql::Error::from(e)))?
            {
                let take = batch.num_rows().min(state.max_rows - rows);
                if take < batch.num_rows() {
                    truncated = true;
                }
                rows += take;
                batches.push(batch.slice(0, take));
                if rows == state.max_rows {
                    truncated = truncated || stream.try_next().await.ok().flatten().is_some();
                    break;
                }
            }
            let rows = rows_as_json(&batches).map_err(QueryError)?;
            Ok(Json(
                json!({"columns": columns, "rows": rows, "truncated": truncated}),
            ))
        }
    }
}

fn rows_as_json(batches: &[RecordBatch]) -> tarn_sql::Result<Vec<Map<String, Value>>> {
    // Every column in every row: NULL is `null`, not a missing key.
    let mut writer = datafusion::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, datafusion::arrow::json::writer::JsonArray>(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer
        .write_batches(&refs)
        .map_err(|e| tarn_sql::Error::DataFusion(e.into()))?;
    writer
        .finish()
        .map_err(|e| tarn_sql::Error::DataFusion(e.into()))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        tarn_sql::Error::DataFusion(datafusion::error::DataFusionError::External(Box::new(e)))
    })
}
